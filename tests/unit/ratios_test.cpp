#include "gm/ratios.h"

#include <doctest/doctest.h>

using namespace gm;

namespace {
constexpr double Gi = 1073741824.0;
}

TEST_CASE("VEP 156 example: 2 vCPUs at the default ratio give 10.0") {
  RatioInputs in;
  in.guest_vcpus = 2;
  in.compute_cpu_request = 0.2;  // 2 vCPUs / cpuAllocationRatio 10 = 200m
  const auto r = ComputeRatios(in);
  REQUIRE(r.cpu_allocation);
  CHECK(*r.cpu_allocation == doctest::Approx(10.0));
  CHECK(FormatRatio(*r.cpu_allocation) == "10.0");
}

TEST_CASE("VEP 156 example: 6Gi of guest memory over a 4Gi request gives 1.5") {
  RatioInputs in;
  in.guest_memory_bytes = 6 * Gi;
  in.vmi_memory_request = 4 * Gi;
  const auto r = ComputeRatios(in);
  REQUIRE(r.memory_overcommit);
  CHECK(*r.memory_overcommit == doctest::Approx(1.5));
  CHECK(r.memory_source == MemoryRequestSource::kVmiRequest);
  CHECK(FormatRatio(*r.memory_overcommit) == "1.5");
}

TEST_CASE(
    "memory request precedence: compute minus overhead, then VMI request, then cluster "
    "overcommit") {
  RatioInputs in;
  in.guest_memory_bytes = 6 * Gi;
  in.compute_memory_request = 4 * Gi + 300 * 1048576.0;
  in.memory_overhead = 300 * 1048576.0;
  in.vmi_memory_request = 3 * Gi;
  in.cluster_memory_overcommit = 150;
  auto m = MemoryRequestWithoutOverhead(in);
  CHECK(m.source == MemoryRequestSource::kComputeMinusOverhead);
  CHECK(m.bytes == doctest::Approx(4 * Gi));
  CHECK(*ComputeRatios(in).memory_overcommit == doctest::Approx(1.5));

  in.memory_overhead.reset();  // KubeVirt < 1.9 has no overhead annotation
  m = MemoryRequestWithoutOverhead(in);
  CHECK(m.source == MemoryRequestSource::kVmiRequest);
  CHECK(*ComputeRatios(in).memory_overcommit == doctest::Approx(2.0));

  in.vmi_memory_request.reset();
  m = MemoryRequestWithoutOverhead(in);
  CHECK(m.source == MemoryRequestSource::kClusterOvercommit);
  CHECK(m.bytes == doctest::Approx(4 * Gi));  // 6Gi × 100 / 150
  CHECK(*ComputeRatios(in).memory_overcommit == doctest::Approx(1.5));
}

TEST_CASE("an overhead at or above the compute request falls through to the next input") {
  RatioInputs in;
  in.guest_memory_bytes = 2 * Gi;
  in.compute_memory_request = 1 * Gi;
  in.memory_overhead = 1 * Gi;
  in.vmi_memory_request = 2 * Gi;
  CHECK(MemoryRequestWithoutOverhead(in).source == MemoryRequestSource::kVmiRequest);
}

TEST_CASE("missing inputs give no ratio and say why") {
  RatioInputs in;
  in.guest_vcpus = 4;
  in.guest_memory_bytes = 1 * Gi;
  const auto r = ComputeRatios(in);
  CHECK_FALSE(r.cpu_allocation);
  CHECK_FALSE(r.memory_overcommit);
  CHECK(r.why_missing.find("no vCPU share of the compute CPU request") != std::string::npos);
  CHECK(r.why_missing.find("no memory request without overhead") != std::string::npos);
  in.compute_cpu_request = 0;
  CHECK_FALSE(ComputeRatios(in).cpu_allocation);
}

TEST_CASE("hotplugged vCPUs raise the ratio; a dedicated-CPU VM is 1.0") {
  RatioInputs in;
  in.guest_vcpus = 4;
  in.compute_cpu_request = 0.2;
  CHECK(*ComputeRatios(in).cpu_allocation == doctest::Approx(20.0));
  in.compute_cpu_request = 4;
  CHECK(FormatRatio(*ComputeRatios(in).cpu_allocation) == "1.0");
}

TEST_CASE("ratio text") {
  CHECK(FormatRatio(1.0 / 3.0) == "0.333");
  CHECK(FormatRatio(4.0 / 3.0) == "1.333");
  CHECK(FormatRatio(2.25) == "2.25");
  CHECK(FormatRatio(12.5) == "12.5");
  CHECK(FormatRatio(0.9999) == "1.0");
}
