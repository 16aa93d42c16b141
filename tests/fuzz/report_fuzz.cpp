// Report decoding is the first thing the reporter does with bytes from a
// sidecar (after TokenReview): it must refuse anything malformed with a
// message and never crash, and what it accepts must survive a round trip.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "gm/report.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  std::string error;
  const auto report = gm::DecodeReport(body, error);
  if (!report) {
    if (error.empty()) std::abort();  // a refusal must say why
    return 0;
  }
  std::string again_error;
  const auto again = gm::DecodeReport(gm::EncodeReport(*report), again_error);
  if (!again) std::abort();  // what was accepted encodes to something accepted
  return 0;
}
