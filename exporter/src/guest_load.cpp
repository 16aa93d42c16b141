#include "guest_load.h"

#include <array>
#include <cmath>
#include <nlohmann/json.hpp>

namespace gm::exporter {

std::string_view ReasonName(Reason reason) {
  switch (reason) {
    case Reason::kOk:
      return "ok";
    case Reason::kPending:
      return "pending";
    case Reason::kNoAgent:
      return "no_agent";
    case Reason::kAgentDisconnected:
      return "agent_disconnected";
    case Reason::kAgentTimeout:
      return "agent_timeout";
    case Reason::kAgentBusy:
      return "agent_busy";
    case Reason::kCommandNotFound:
      return "command_not_found";
    case Reason::kUnsupported:
      return "unsupported";
    case Reason::kBadReply:
      return "bad_reply";
    case Reason::kDomainNotRunning:
      return "domain_not_running";
    case Reason::kLibvirtError:
      return "libvirt_error";
    case Reason::kStale:
      return "stale";
  }
  return "unknown";
}

namespace {

// Checks one value; returns an error text or empty when it is acceptable.
std::string CheckValue(const char* name, double v) {
  if (!std::isfinite(v)) return std::string(name) + " is not a finite number";
  if (v < 0) return std::string(name) + " is negative (" + std::to_string(v) + ")";
  if (v > kMaxPlausibleLoad)
    return std::string(name) + " is implausibly large (" + std::to_string(v) + ")";
  return {};
}

LoadResult Validate(const std::array<const char*, 3>& names, const LoadAverage& l) {
  const std::array<double, 3> values{l.load1m, l.load5m, l.load15m};
  for (size_t i = 0; i < values.size(); ++i) {
    if (auto err = CheckValue(names[i], values[i]); !err.empty()) {
      return LoadResult::Fail(Reason::kBadReply, err);
    }
  }
  return LoadResult::Ok(l);
}

}  // namespace

LoadResult ParseGuestInfoLoad(const std::vector<TypedParam>& params) {
  static constexpr std::array<const char*, 3> kKeys{"load.1m", "load.5m", "load.15m"};
  std::array<std::optional<double>, 3> found;
  for (const auto& p : params) {
    for (size_t i = 0; i < kKeys.size(); ++i) {
      if (p.field != kKeys[i]) continue;
      const double* d = std::get_if<double>(&p.value);
      if (d == nullptr) {
        return LoadResult::Fail(Reason::kBadReply, p.field + " is not a double");
      }
      found[i] = *d;
    }
  }
  const int present =
      static_cast<int>(found[0].has_value()) + found[1].has_value() + found[2].has_value();
  if (present == 0) {
    return LoadResult::Fail(Reason::kCommandNotFound,
                            "guest info holds no load (agent lacks guest-get-load)");
  }
  if (present < 3) {
    for (size_t i = 0; i < kKeys.size(); ++i) {
      if (!found[i])
        return LoadResult::Fail(Reason::kBadReply, std::string(kKeys[i]) + " is missing");
    }
  }
  return Validate(kKeys, {*found[0], *found[1], *found[2]});
}

LoadResult ParseAgentLoadReply(std::string_view json) {
  static constexpr std::array<const char*, 3> kKeys{"load1m", "load5m", "load15m"};
  // No exceptions from the parser: garbage is an expected input.
  const auto doc = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return LoadResult::Fail(Reason::kBadReply, "agent reply is not JSON");
  if (!doc.is_object())
    return LoadResult::Fail(Reason::kBadReply, "agent reply is not a JSON object");
  if (auto err = doc.find("error"); err != doc.end()) {
    const std::string cls = err->is_object() ? err->value("class", "") : "";
    if (cls == "CommandNotFound") {
      return LoadResult::Fail(Reason::kCommandNotFound, "agent lacks guest-get-load");
    }
    return LoadResult::Fail(Reason::kBadReply, "agent answered an error: " + err->dump());
  }
  const auto ret = doc.find("return");
  if (ret == doc.end() || !ret->is_object()) {
    return LoadResult::Fail(Reason::kBadReply, "agent reply has no \"return\" object");
  }
  std::array<double, 3> values{};
  for (size_t i = 0; i < kKeys.size(); ++i) {
    const auto it = ret->find(kKeys[i]);
    if (it == ret->end())
      return LoadResult::Fail(Reason::kBadReply, std::string(kKeys[i]) + " is missing");
    if (!it->is_number())
      return LoadResult::Fail(Reason::kBadReply, std::string(kKeys[i]) + " is not a number");
    values[i] = it->get<double>();
  }
  return Validate(kKeys, {values[0], values[1], values[2]});
}

}  // namespace gm::exporter
