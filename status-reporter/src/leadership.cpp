#include "leadership.h"

#include <prometheus/gauge.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "gm/logging.h"
#include "reconciler.h"
#include "write_worker.h"

namespace gm::reporter {

using nlohmann::json;

void Leadership::Started() {
  spdlog::info("{} is now the leader", pod_);
  leader_metric_.Set(1);
  Label(true);
}

void Leadership::Stopped() {
  spdlog::warn("{} stopped leading", pod_);
  leader_metric_.Set(0);
  Label(false);
  gate_.WaitIdle();
}

void Leadership::Label(bool leading) {
  const json patch = {
      {"metadata", {{"labels", {{kLeaderLabel, leading ? json("true") : json(nullptr)}}}}}};
  const WriteResult r = writer_.PatchPod(namespace_, pod_, patch);
  if (!r.ok()) {
    spdlog::debug("cannot label pod {}/{} as leader={}: HTTP {}: {}", namespace_, pod_, leading,
                  r.code, EscapeForLog(r.message));
  }
}

}  // namespace gm::reporter
