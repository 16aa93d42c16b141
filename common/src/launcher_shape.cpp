#include "gm/launcher_shape.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <nlohmann/json.hpp>

#include "gm/quantity.h"

// Source references below name files of kubevirt/kubevirt at a tag:
//   RR  = pkg/virt-controller/services/renderresources.go
//   TPL = pkg/virt-controller/services/template.go (VMIResourcePredicates: which options apply)
//   DEF = pkg/defaults/defaults.go (v1.6+; v1.3–v1.5: pkg/virt-api/webhooks/defaults.go), the
//         VMI mutating webhook's setDefaultResourceRequests
//   HW  = pkg/util/hardware/hw_utils.go GetNumberOfVCPUs

namespace gm {

using nlohmann::json;

namespace {

// Versions where what KubeVirt renders changed.
// RR v1.5.0: WithIOThreads adds the supplemental pool to the CPU limit.
constexpr KubeVirtVersion kPoolInLimits{1, 5, 0};
// RR v1.5.2: getIOThreadsCount in WithoutDedicatedCPU / WithCPUPinning.
constexpr KubeVirtVersion kPoolInRequest{1, 5, 2};
// RR v1.6.2 only: WithMemoryOvercommit (reverted in v1.6.3).
constexpr KubeVirtVersion kScaledVmiRequest{1, 6, 2};
// RR v1.6.4: WithMemoryRequests; DEF stops setting the VMI's memory request.
constexpr KubeVirtVersion kRendererMemoryRequest{1, 6, 4};
// TPL v1.8.0: the kubevirt.io/memory-overhead-bytes pod annotation (feature gate
// VmiMemoryOverheadReport: alpha in v1.8, beta and on by default in v1.9).
constexpr KubeVirtVersion kOverheadAnnotation{1, 8, 0};

constexpr const char* kOverheadAnnotationKey = "kubevirt.io/memory-overhead-bytes";
constexpr const char* kEvenParityAnnotation =
    "alpha.kubevirt.io/EmulatorThreadCompleteToEvenParity";

const json& At(const json& j, const char* key) {
  static const json kNull;
  if (!j.is_object()) return kNull;
  const auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

// Text from the VMI or pod goes into reasons that get logged: printable ASCII
// only, and not much of it.
std::string Quote(std::string_view s) {
  std::string out = "'";
  for (size_t i = 0; i < s.size() && i < 64; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      static_cast<void>(std::snprintf(buf, sizeof buf, "\\x%02x", c));
      out += buf;
    }
  }
  if (s.size() > 64) out += "...";
  return out + "'";
}

std::string Cores(double v) {
  char buf[48];
  if (v < 1.0) {
    static_cast<void>(std::snprintf(buf, sizeof buf, "%gm", std::round(v * 1e6) / 1e3));
  } else {
    static_cast<void>(std::snprintf(buf, sizeof buf, "%g", std::round(v * 1e3) / 1e3));
  }
  return buf;
}

std::string Bytes(double v) {
  char buf[320];  // "%.0f" of any finite double fits (DBL_MAX has 309 digits)
  constexpr double Mi = 1048576.0;
  if (v >= Mi && std::fmod(v, Mi) == 0) {
    static_cast<void>(std::snprintf(buf, sizeof buf, "%.0fMi", v / Mi));
  } else {
    static_cast<void>(std::snprintf(buf, sizeof buf, "%.0f", v));
  }
  return buf;
}

// A field that is absent is not an error; one of the wrong kind is.
struct Field {
  std::optional<double> value;
  std::string error;  // set when present but unusable
};

// A Kubernetes quantity: a string as the API writes it, or a plain JSON number.
Field QuantityField(const json& v, const std::string& what) {
  Field f;
  if (v.is_null()) return f;
  if (v.is_string()) {
    std::string err;
    f.value = ParseQuantity(v.get_ref<const std::string&>(), err);
    if (!f.value) f.error = what + ": " + Quote(err);
  } else if (v.is_number()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && d >= 0)
      f.value = d;
    else
      f.error = what + " is not a non-negative number";
  } else {
    f.error = what + " is not a quantity";
  }
  return f;
}

// A uint32 of the VMI API (sockets, cores, supplementalPoolThreadCount).
Field CountField(const json& v, const std::string& what) {
  Field f;
  if (v.is_null()) return f;
  if (v.is_number_unsigned() || v.is_number_integer()) {
    const double d = v.get<double>();
    if (d >= 0 && d <= 4294967295.0)
      f.value = d;
    else
      f.error = what + " is out of range";
  } else {
    f.error = what + " is not an integer";
  }
  return f;
}

std::optional<bool> BoolField(const json& v) {
  if (v.is_null()) return false;
  if (v.is_boolean()) return v.get<bool>();
  return std::nullopt;
}

void Note(LauncherShape& s, std::string n) { s.notes.push_back(std::move(n)); }

bool Near(double a, double b) { return std::fabs(a - b) <= std::max(0.0005, 1e-9 * std::fabs(b)); }

const json* ComputeContainer(const json& pod) {
  const json& containers = At(At(pod, "spec"), "containers");
  if (!containers.is_array()) return nullptr;
  for (const auto& c : containers) {
    const json& name = At(c, "name");
    if (name.is_string() && name.get_ref<const std::string&>() == "compute") return &c;
  }
  return nullptr;
}

// A container resource: the request, else the limit (Kubernetes defaults a
// missing request to the limit before any admission webhook sees the pod).
Field ContainerResource(const json* compute, const std::string& name) {
  if (!compute) return {};
  const json& res = At(*compute, "resources");
  Field f = QuantityField(At(At(res, "requests"), name.c_str()), "compute requests." + name);
  if (!f.value && f.error.empty())
    f = QuantityField(At(At(res, "limits"), name.c_str()), "compute limits." + name);
  return f;
}

KubeVirtRange FindRange(const json& pod, const json* compute, const ShapeOptions& opt,
                        LauncherShape& s) {
  KubeVirtRange r;
  r.source = "unknown";
  if (compute) {
    // The launcher image carries KubeVirt's version as its tag unless the
    // operator was told to use digests.
    const json& image = At(*compute, "image");
    if (image.is_string()) {
      const auto& ref = image.get_ref<const std::string&>();
      const size_t slash = ref.rfind('/');
      const size_t colon = ref.rfind(':');
      if (ref.find('@') == std::string::npos && colon != std::string::npos &&
          (slash == std::string::npos || colon > slash)) {
        if (auto v = ParseKubeVirtVersion(std::string_view(ref).substr(colon + 1))) {
          r = {*v, *v, "compute image tag"};
        }
      }
    }
  }
  if (opt.kubevirt_version) {
    if (r.source != "unknown" && !(r.min == *opt.kubevirt_version)) {
      Note(s, "the compute image tag says " + r.min.ToString() + ", the given version " +
                  opt.kubevirt_version->ToString() + ": the given version is used");
    }
    r = {*opt.kubevirt_version, *opt.kubevirt_version, "explicit"};
  }
  if (At(At(At(pod, "metadata"), "annotations"), kOverheadAnnotationKey).is_string()) {
    if (r.Below(kOverheadAnnotation)) {
      Note(s, std::string(kOverheadAnnotationKey) + " exists only from v1.8.0 on, but the " +
                  r.source + " says " + r.ToString() + ": the pod is trusted");
      r = {kOverheadAnnotation, std::nullopt, "overhead annotation"};
    } else if (r.min < kOverheadAnnotation) {
      r.min = kOverheadAnnotation;
      r.source =
          r.source == "unknown" ? "overhead annotation" : r.source + " and overhead annotation";
    }
  }
  if (r.min < KubeVirtVersion{1, 3, 0}) {
    Note(s, "KubeVirt " + r.min.ToString() + " is older than v1.3.0: v1.3.0's rules are used");
  }
  return r;
}

// ---------------------------------------------------------------- CPU

struct CpuFacts {
  double vcpus = 0;  // N
  // supplementalPoolThreadCount whatever the policy (RR v1.5.2+ getIOThreadsCount) ...
  double pool_any = 0;
  // ... and only with ioThreadsPolicy supplementalPool (TPL additionalCPUs, RR v1.5.0).
  double pool_policy = 0;
  bool dedicated = false;
  bool isolate = false;
  bool even_parity = false;
  // The VMI's requests.cpu, else its limits.cpu (DEF copies the limit into the request).
  std::optional<double> vmi_cpu;
};

// Eras of the rendering rules for CPU: before the pool existed, the pool in
// the limit only, the pool in the request.
enum Era { kBeforePool = 0, kPoolLimitOnly = 1, kPoolInRequestEra = 2 };

std::vector<Era> ErasOf(const KubeVirtRange& r) {
  std::vector<Era> eras;
  if (!r.AtLeast(kPoolInLimits)) eras.push_back(kBeforePool);
  if (!r.AtLeast(kPoolInRequest) && !r.Below(kPoolInLimits)) eras.push_back(kPoolLimitOnly);
  if (!r.Below(kPoolInRequest)) eras.push_back(kPoolInRequestEra);
  return eras;
}

// Emulator-thread CPUs and the request RR's WithCPUPinning renders, per era.
struct Pinned {
  double emulator = 0;
  double pool = 0;                // pool CPUs in the request (or the limit it defaults from)
  std::optional<double> request;  // the request, or the limit Kubernetes defaults it from
};

Pinned DedicatedRequest(const CpuFacts& f, Era era) {
  Pinned p;
  const double n = f.vcpus;
  switch (era) {
    case kBeforePool:
      // RR v1.3.0: limit = N (+E); request = the user's (+E), else defaulted from the limit.
      if (f.isolate) p.emulator = f.even_parity && std::fmod(n, 2) == 0 ? 2 : 1;
      p.request = f.vmi_cpu ? *f.vmi_cpu + p.emulator : n + p.emulator;
      break;
    case kPoolLimitOnly:
      // RR v1.5.0: parity counts the pool; WithIOThreads adds it to vmLimits, which without
      // an emulator thread or a user limit replaces the computed limit of N altogether.
      if (f.isolate) p.emulator = f.even_parity && std::fmod(n + f.pool_policy, 2) == 0 ? 2 : 1;
      p.pool = f.pool_policy;
      if (f.vmi_cpu) {
        p.request = *f.vmi_cpu + p.emulator;
      } else if (f.isolate) {
        p.request = n + p.emulator + f.pool_policy;
      } else {
        p.request = f.pool_policy > 0 ? f.pool_policy : n;
      }
      break;
    case kPoolInRequestEra:
      // RR v1.5.2+: request = limit = N + pool (+E); the parity test adds the pool twice
      // (once in the limit, once as additionalCPUs).
      p.pool = f.pool_any;
      if (f.isolate) {
        p.emulator = f.even_parity && std::fmod(n + f.pool_any + f.pool_policy, 2) == 0 ? 2 : 1;
      }
      p.request = n + f.pool_any + p.emulator;
      break;
  }
  return p;
}

void DeriveCpu(const json& vmi, const json* compute, const ShapeOptions& opt, LauncherShape& s) {
  const json& domain = At(At(vmi, "spec"), "domain");
  const json& cpu = At(domain, "cpu");
  CpuFacts f;

  // HW GetNumberOfVCPUs: the product of the non-zero of cores, sockets,
  // threads; RR calcVCPUs: 1 when the VMI has no cpu at all.
  if (cpu.is_null()) {
    f.vcpus = 1;
  } else if (!cpu.is_object()) {
    s.cpu_why = "spec.domain.cpu is not an object";
    return;
  } else {
    double product = 0;
    for (const char* key : {"cores", "sockets", "threads"}) {
      const Field c = CountField(At(cpu, key), std::string("spec.domain.cpu.") + key);
      if (!c.error.empty()) {
        s.cpu_why = c.error;
        return;
      }
      if (c.value && *c.value > 0) product = product == 0 ? *c.value : product * *c.value;
    }
    if (product > 65536) {
      s.cpu_why = "spec.domain.cpu gives an implausible vCPU count";
      return;
    }
    f.vcpus = product;
    const auto dedicated = BoolField(At(cpu, "dedicatedCpuPlacement"));
    const auto isolate = BoolField(At(cpu, "isolateEmulatorThread"));
    if (!dedicated || !isolate) {
      s.cpu_why = "spec.domain.cpu.dedicatedCpuPlacement/isolateEmulatorThread is not a boolean";
      return;
    }
    f.dedicated = *dedicated;
    f.isolate = *isolate;
  }
  s.render_vcpus = static_cast<unsigned>(f.vcpus);
  s.dedicated = f.dedicated;

  const Field pool = CountField(At(At(domain, "ioThreads"), "supplementalPoolThreadCount"),
                                "spec.domain.ioThreads.supplementalPoolThreadCount");
  if (!pool.error.empty()) {
    s.cpu_why = pool.error;
    return;
  }
  f.pool_any = pool.value.value_or(0);
  if (f.pool_any > 65536) {
    s.cpu_why = "spec.domain.ioThreads.supplementalPoolThreadCount is implausible";
    return;
  }
  const json& policy = At(domain, "ioThreadsPolicy");
  f.pool_policy = policy.is_string() && policy.get_ref<const std::string&>() == "supplementalPool"
                      ? f.pool_any
                      : 0;
  f.even_parity = At(At(vmi, "metadata"), "annotations").is_object() &&
                  At(At(vmi, "metadata"), "annotations").contains(kEvenParityAnnotation);

  const json& resources = At(domain, "resources");
  Field vmi_cpu =
      QuantityField(At(At(resources, "requests"), "cpu"), "spec.domain.resources.requests.cpu");
  if ((!vmi_cpu.value || *vmi_cpu.value == 0) && vmi_cpu.error.empty()) {
    // DEF setDefaultResourceRequests: a CPU limit without a (non-zero) request becomes the request.
    Field limit =
        QuantityField(At(At(resources, "limits"), "cpu"), "spec.domain.resources.limits.cpu");
    if (!limit.error.empty() || (limit.value && *limit.value > 0)) vmi_cpu = limit;
  }
  if (!vmi_cpu.error.empty()) {
    s.cpu_why = vmi_cpu.error;
    return;
  }
  f.vmi_cpu = vmi_cpu.value;

  const Field pod_cpu = ContainerResource(compute, "cpu");
  if (!pod_cpu.error.empty()) {
    s.cpu_why = pod_cpu.error;
    return;
  }
  s.compute_cpu_request = pod_cpu.value;
  const std::vector<Era> eras = ErasOf(s.kubevirt);

  if (f.dedicated) {
    // Every vCPU runs pinned on a whole CPU of its own: the vCPUs' share is N
    // cores, whatever else (pool, emulator thread) the request carries.
    if (f.vcpus == 0) {
      s.cpu_why = "dedicatedCpuPlacement with a CPU topology of 0 vCPUs";
      return;
    }
    std::optional<Pinned> agreed;
    bool differ = false;
    for (Era e : eras) {
      const Pinned p = DedicatedRequest(f, e);
      if (!agreed)
        agreed = p;
      else if (agreed->emulator != p.emulator || agreed->pool != p.pool ||
               agreed->request != p.request)
        differ = true;
    }
    if (agreed && !differ) {
      s.emulator_cpus = static_cast<unsigned>(agreed->emulator);
      s.iothread_cpus = static_cast<unsigned>(agreed->pool);
      s.expected_cpu_request = agreed->request;
    } else {
      Note(s, "what else the dedicated request holds depends on the KubeVirt version (" +
                  s.kubevirt.ToString() + "); the vCPUs' share does not");
    }
    if (s.expected_cpu_request && s.compute_cpu_request &&
        !Near(*s.expected_cpu_request, *s.compute_cpu_request)) {
      Note(s, "the compute CPU request is " + Cores(*s.compute_cpu_request) +
                  ", KubeVirt's rule renders " + Cores(*s.expected_cpu_request));
    }
    s.vcpu_cpu_request = f.vcpus;
    s.cpu_rule = CpuShareRule::kDedicated;
    s.cpu_why = "dedicatedCpuPlacement: " + Cores(f.vcpus) + " vCPUs pinned on " + Cores(f.vcpus) +
                " whole CPUs (RR WithCPUPinning)";
    if (s.emulator_cpus)
      s.cpu_why += "; +" + std::to_string(s.emulator_cpus) + " for the emulator thread";
    if (s.iothread_cpus)
      s.cpu_why += "; +" + std::to_string(s.iothread_cpus) + " for the IOThread pool";
    return;
  }

  if (f.isolate)
    Note(
        s,
        "isolateEmulatorThread without dedicatedCpuPlacement adds no CPU (RR WithoutDedicatedCPU)");

  if (f.vmi_cpu) {
    // RR ResourceRenderer.Requests(): the VMI's own requests override the
    // computed ones, so nothing (no pool) is added to an explicit request.
    if (*f.vmi_cpu <= 0) {
      s.cpu_why = "the VMI's CPU request is 0";
      return;
    }
    double share = *f.vmi_cpu;
    if (s.compute_cpu_request) {
      if (!Near(*s.compute_cpu_request, *f.vmi_cpu)) {
        Note(s, "the compute CPU request " + Cores(*s.compute_cpu_request) +
                    " differs from the VMI's " + Cores(*f.vmi_cpu) + ": the pod's is used");
      }
      share = *s.compute_cpu_request;
    }
    if (share <= 0) {
      s.cpu_why = "the compute CPU request is 0";
      return;
    }
    s.expected_cpu_request = *f.vmi_cpu;
    s.vcpu_cpu_request = share;
    s.cpu_rule = CpuShareRule::kExplicitRequest;
    s.cpu_why = "explicit CPU request " + Cores(share) + " for " + Cores(f.vcpus) +
                " vCPUs (RR Requests(): the VMI's request replaces the computed one)";
    return;
  }

  if (!s.compute_cpu_request) {
    s.cpu_why =
        compute ? "the compute container has no CPU request" : "the pod has no compute container";
    return;
  }
  if (*s.compute_cpu_request <= 0) {
    s.cpu_why = "the compute CPU request is 0";
    return;
  }
  if (f.vcpus == 0) {
    s.cpu_why = "the VMI's CPU topology gives 0 vCPUs";
    return;
  }
  // RR WithoutDedicatedCPU: request = (N + pool) ÷ cpuAllocationRatio, the
  // pool counted from v1.5.2 on (before, v1.5.0–v1.5.1 put it in the limit).
  const double r = *s.compute_cpu_request;
  const bool pool_matters = f.pool_any > 0;
  bool with_pool = !eras.empty() && eras.back() == kPoolInRequestEra;
  if (pool_matters && eras.size() > 1 && with_pool) {
    // The range spans v1.5.2: the cluster's cpuAllocationRatio tells which rule rendered r.
    if (!opt.cluster_cpu_allocation_ratio || *opt.cluster_cpu_allocation_ratio <= 0) {
      const std::string version =
          s.kubevirt.source == "unknown"
              ? "the KubeVirt version is unknown"
              : "KubeVirt " + s.kubevirt.ToString() + " (" + s.kubevirt.source + ") spans v1.5.2";
      s.cpu_why = version + ": from v1.5.2 on the request also holds " + Cores(f.pool_any) +
                  " IOThread pool CPU(s), before it does not; give the version or the cluster's "
                  "cpuAllocationRatio";
      return;
    }
    const double ratio = *opt.cluster_cpu_allocation_ratio;
    const bool newer = Near((f.vcpus + f.pool_any) / ratio, r);
    const bool older = Near(f.vcpus / ratio, r);
    if (newer == older) {
      s.cpu_why = "the compute CPU request " + Cores(r) +
                  " matches neither (vCPUs + pool) nor vCPUs ÷ " + Cores(ratio) +
                  "; give the KubeVirt version";
      return;
    }
    with_pool = newer;
    Note(s, std::string("the cluster's cpuAllocationRatio shows the request ") +
                (newer ? "includes" : "excludes") + " the IOThread pool (KubeVirt " +
                (newer ? "v1.5.2 or later" : "before v1.5.2") + ")");
  }
  const double pool_in_request = with_pool ? f.pool_any : 0;
  if (f.pool_policy > 0 && !with_pool && !s.kubevirt.Below(kPoolInLimits)) {
    Note(s,
         "KubeVirt v1.5.0–v1.5.1 put the IOThread pool in the CPU limit, not the request (RR "
         "WithIOThreads)");
  }
  const double total = f.vcpus + pool_in_request;
  s.iothread_cpus = static_cast<unsigned>(pool_in_request);
  s.vcpu_cpu_request = r * f.vcpus / total;
  if (opt.cluster_cpu_allocation_ratio && *opt.cluster_cpu_allocation_ratio > 0) {
    s.expected_cpu_request = total / *opt.cluster_cpu_allocation_ratio;
    if (!Near(*s.expected_cpu_request, r)) {
      Note(s, "the compute CPU request " + Cores(r) + " is not (" + Cores(total) +
                  " ÷ cpuAllocationRatio " + Cores(*opt.cluster_cpu_allocation_ratio) +
                  ") = " + Cores(*s.expected_cpu_request));
    }
  }
  s.cpu_rule = CpuShareRule::kAllocationRatio;
  s.cpu_why = "cpuAllocationRatio: request " + Cores(r) + " for " + Cores(f.vcpus) + " vCPUs";
  if (pool_in_request > 0) {
    s.cpu_why += " + " + Cores(pool_in_request) + " IOThread pool CPU(s); vCPUs' share " +
                 Cores(r) + " × " + Cores(f.vcpus) + " ÷ " + Cores(total) + " = " +
                 Cores(*s.vcpu_cpu_request);
  }
  s.cpu_why += " (RR WithoutDedicatedCPU)";
}

// ---------------------------------------------------------------- memory

void DeriveMemory(const json& vmi, const json& pod, const json* compute, const ShapeOptions& opt,
                  LauncherShape& s) {
  const json& domain = At(At(vmi, "spec"), "domain");
  const json& memory = At(domain, "memory");
  const json& resources = At(domain, "resources");
  if (!memory.is_null() && !memory.is_object()) {
    s.memory_why = "spec.domain.memory is not an object";
    return;
  }
  // TPL hasHugePages: memory.hugepages is set.
  const json& hugepages = At(memory, "hugepages");
  const bool has_hugepages = !hugepages.is_null();
  std::string page_size;
  if (has_hugepages) {
    const json& ps = At(hugepages, "pageSize");
    if (!ps.is_string() || ps.get_ref<const std::string&>().empty()) {
      s.memory_why = "spec.domain.memory.hugepages.pageSize is missing";
      return;
    }
    page_size = ps.get<std::string>();
  }
  const Field guest = QuantityField(At(memory, "guest"), "spec.domain.memory.guest");
  const Field vmi_req = QuantityField(At(At(resources, "requests"), "memory"),
                                      "spec.domain.resources.requests.memory");
  const Field vmi_lim =
      QuantityField(At(At(resources, "limits"), "memory"), "spec.domain.resources.limits.memory");
  for (const Field* f : {&guest, &vmi_req, &vmi_lim}) {
    if (!f->error.empty()) {
      s.memory_why = f->error;
      return;
    }
  }
  const auto overcommit_guest_overhead = BoolField(At(resources, "overcommitGuestOverhead"));
  if (!overcommit_guest_overhead) {
    s.memory_why = "spec.domain.resources.overcommitGuestOverhead is not a boolean";
    return;
  }

  const Field pod_mem = ContainerResource(compute, "memory");
  const Field pod_huge =
      has_hugepages ? ContainerResource(compute, "hugepages-" + page_size) : Field{};
  if (!pod_mem.error.empty()) Note(s, pod_mem.error);
  if (!pod_huge.error.empty()) Note(s, pod_huge.error);
  s.compute_memory_request = pod_mem.value;
  s.hugepages_request = pod_huge.value;

  const json& ann = At(At(At(pod, "metadata"), "annotations"), kOverheadAnnotationKey);
  if (ann.is_string()) {
    // TPL (v1.8+) writes strconv.FormatInt(overhead.Value(), 10): digits only.
    const auto& text = ann.get_ref<const std::string&>();
    if (!text.empty() && text.size() <= 19 &&
        text.find_first_not_of("0123456789") == std::string::npos) {
      s.memory_overhead = std::stod(text);
    } else {
      Note(s, std::string(kOverheadAnnotationKey) + " " + Quote(text) + " is not a byte count");
    }
  } else if (!ann.is_null()) {
    Note(s, std::string(kOverheadAnnotationKey) + " is not a string");
  }

  const auto done = [&](double bytes, GuestMemoryRule rule, std::string why) {
    s.guest_memory_request = bytes;
    s.memory_rule = rule;
    s.memory_why = std::move(why);
  };

  // 1. The pod's own numbers, when KubeVirt says what the overhead is.
  if (s.memory_overhead && s.compute_memory_request) {
    const double m = *s.compute_memory_request, o = *s.memory_overhead;
    if (has_hugepages) {
      // RR WithHugePages: hugepages-<size> = min(request, guest); memory =
      // (request − guest, when larger) + overhead. The guest's request is both.
      if (!s.hugepages_request) {
        Note(s, "a hugepages VM without a hugepages-" + page_size +
                    " request on the compute container");
      } else if (m + 0.5 < o) {
        Note(s, "the compute memory request " + Bytes(m) + " is below the overhead " + Bytes(o));
      } else {
        const double rest = std::max(0.0, m - o);
        done(*s.hugepages_request + rest, GuestMemoryRule::kHugepagesPlusRest,
             "hugepages-" + page_size + " " + Bytes(*s.hugepages_request) + " + (compute " +
                 Bytes(m) + " − overhead " + Bytes(o) + ") (RR WithHugePages)");
      }
    } else if (*overcommit_guest_overhead) {
      // RR WithMemoryOverhead: with overcommitGuestOverhead the overhead is not added.
      done(m, GuestMemoryRule::kComputeOverheadNotAdded,
           "overcommitGuestOverhead: the compute request " + Bytes(m) +
               " holds no overhead (RR WithMemoryOverhead)");
    } else if (m > o) {
      done(m - o, GuestMemoryRule::kComputeMinusOverhead,
           "compute " + Bytes(m) + " − overhead " + Bytes(o) + " (RR WithMemoryOverhead)");
    } else {
      Note(s, "the compute memory request " + Bytes(m) + " is not above the overhead " + Bytes(o));
    }
    if (s.guest_memory_request && vmi_req.value && !Near(*vmi_req.value, *s.guest_memory_request) &&
        !s.kubevirt.Contains(kScaledVmiRequest)) {
      Note(s, "the pod gives " + Bytes(*s.guest_memory_request) + ", the VMI requests " +
                  Bytes(*vmi_req.value) + ": the pod's is used");
    }
  }

  // 2. The request KubeVirt started from, read off the VMI.
  const bool oc_known = opt.cluster_memory_overcommit && *opt.cluster_memory_overcommit > 0;
  const double oc = oc_known ? *opt.cluster_memory_overcommit : 100;
  if (!s.guest_memory_request && vmi_req.value && *vmi_req.value > 0) {
    // DEF (v1.3–v1.6.3) sets the request from guest × 100 ÷ memoryOvercommit
    // when unset; v1.6.2 alone set it to guest and scaled at rendering.
    if (s.kubevirt.min == kScaledVmiRequest && s.kubevirt.max &&
        *s.kubevirt.max == kScaledVmiRequest && oc != 100) {
      done(std::floor(*vmi_req.value * 100 / oc), GuestMemoryRule::kVmiRequestOvercommitted,
           "v1.6.2: the VMI's request " + Bytes(*vmi_req.value) + " × 100 ÷ memoryOvercommit " +
               Cores(oc) + " (RR v1.6.2 WithMemoryOvercommit)");
    } else {
      if (s.kubevirt.Contains(kScaledVmiRequest) && (!oc_known || oc != 100)) {
        Note(s,
             "KubeVirt v1.6.2 alone scaled the VMI's memory request by memoryOvercommit at "
             "rendering; "
             "this range includes it and the request is used as it is");
      }
      done(*vmi_req.value, GuestMemoryRule::kVmiRequest,
           "the VMI's memory request " + Bytes(*vmi_req.value) +
               (has_hugepages ? " (RR WithHugePages: hugepages plus the part above guest memory)"
                              : " (RR WithMemoryOverhead adds the overhead to it)"));
    }
  }
  if (!s.guest_memory_request && vmi_lim.value && *vmi_lim.value > 0) {
    // RR v1.6.4+ WithMemoryRequests: a limit without a request becomes the request.
    if (s.kubevirt.Below(kRendererMemoryRequest)) {
      Note(s,
           "before v1.6.4 KubeVirt's webhook copied a memory limit into the VMI's request: this "
           "VMI was not "
           "mutated by it");
    }
    done(
        *vmi_lim.value, GuestMemoryRule::kVmiLimit,
        "the VMI's memory limit " + Bytes(*vmi_lim.value) + ", no request (RR WithMemoryRequests)");
  }
  if (!s.guest_memory_request) {
    // RR v1.6.4+ WithMemoryRequests: guest (else the hugepage size) × 100 ÷ memoryOvercommit.
    std::optional<double> base = guest.value;
    std::string page_size_error;  // not shown: an unparseable page size ends as "no memory request"
    if (!base && has_hugepages) base = ParseQuantity(page_size, page_size_error);
    if (!base || *base <= 0) {
      s.memory_why =
          "no memory request: no overhead annotation, VMI request, VMI limit or guest memory";
      return;
    }
    if (!oc_known) {
      s.memory_why = "the VMI sets no memory request: KubeVirt derives it from guest memory " +
                     Bytes(*base) + " and the cluster's memoryOvercommit, which was not given";
      return;
    }
    done(oc == 100 ? *base : std::floor(*base * 100 / oc), GuestMemoryRule::kGuestOvercommit,
         "guest " + Bytes(*base) + " × 100 ÷ memoryOvercommit " + Cores(oc) +
             " (RR WithMemoryRequests)");
  }

  if (has_hugepages && s.hugepages_request &&
      s.memory_rule != GuestMemoryRule::kHugepagesPlusRest) {
    const double want =
        guest.value ? std::min(*s.guest_memory_request, *guest.value) : *s.guest_memory_request;
    if (!Near(want, *s.hugepages_request)) {
      Note(s, "hugepages-" + page_size + " is " + Bytes(*s.hugepages_request) +
                  ", KubeVirt's rule renders " + Bytes(want));
    }
  }
}

}  // namespace

std::string KubeVirtVersion::ToString() const {
  return "v" + std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

std::optional<KubeVirtVersion> ParseKubeVirtVersion(std::string_view text) {
  if (!text.empty() && text[0] == 'v') text.remove_prefix(1);
  unsigned parts[3] = {0, 0, 0};
  size_t i = 0;
  for (int p = 0; p < 3; ++p) {
    const size_t start = i;
    unsigned long v = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9' && i - start < 6) {
      v = v * 10 + static_cast<unsigned long>(text[i] - '0');
      ++i;
    }
    if (i == start) return std::nullopt;
    parts[p] = static_cast<unsigned>(v);
    if (p < 2) {
      if (i >= text.size() || text[i] != '.') return std::nullopt;
      ++i;
    }
  }
  if (i < text.size() && text[i] != '-' && text[i] != '+') return std::nullopt;
  return KubeVirtVersion{parts[0], parts[1], parts[2]};
}

std::string KubeVirtRange::ToString() const {
  if (max && *max == min) return min.ToString();
  if (!max)
    return min == KubeVirtVersion{1, 3, 0} ? "unknown (v1.3.0 or later)"
                                           : min.ToString() + " or later";
  return min.ToString() + " to " + max->ToString();
}

const char* CpuShareRuleName(CpuShareRule r) {
  switch (r) {
    case CpuShareRule::kNone:
      return "none";
    case CpuShareRule::kAllocationRatio:
      return "cpu-allocation-ratio";
    case CpuShareRule::kExplicitRequest:
      return "explicit-request";
    case CpuShareRule::kDedicated:
      return "dedicated";
  }
  return "none";
}

const char* GuestMemoryRuleName(GuestMemoryRule r) {
  switch (r) {
    case GuestMemoryRule::kNone:
      return "none";
    case GuestMemoryRule::kComputeMinusOverhead:
      return "compute-minus-overhead";
    case GuestMemoryRule::kComputeOverheadNotAdded:
      return "compute-overhead-not-added";
    case GuestMemoryRule::kHugepagesPlusRest:
      return "hugepages-plus-rest";
    case GuestMemoryRule::kVmiRequest:
      return "vmi-request";
    case GuestMemoryRule::kVmiRequestOvercommitted:
      return "vmi-request-overcommitted";
    case GuestMemoryRule::kVmiLimit:
      return "vmi-limit";
    case GuestMemoryRule::kGuestOvercommit:
      return "guest-overcommit";
  }
  return "none";
}

std::optional<double> LauncherShape::CpuAllocationRatio(unsigned live_vcpus) const {
  if (!vcpu_cpu_request || *vcpu_cpu_request <= 0 || live_vcpus == 0) return std::nullopt;
  return live_vcpus / *vcpu_cpu_request;
}

std::optional<double> LauncherShape::CpuRequestPerVcpu() const {
  if (!vcpu_cpu_request || render_vcpus == 0) return std::nullopt;
  return *vcpu_cpu_request / render_vcpus;
}

std::optional<double> LauncherShape::MemoryOvercommitRatio(double live_guest_memory_bytes) const {
  if (!guest_memory_request || *guest_memory_request <= 0 || !(live_guest_memory_bytes > 0))
    return std::nullopt;
  return live_guest_memory_bytes / *guest_memory_request;
}

LauncherShape DeriveLauncherShape(const json& vmi, const json& pod,
                                  const ShapeOptions& options) noexcept {
  LauncherShape s;
  try {
    if (!vmi.is_object() || !At(vmi, "spec").is_object()) {
      s.cpu_why = s.memory_why = "the VMI is not an object with a spec";
      return s;
    }
    if (!pod.is_object()) {
      s.cpu_why = s.memory_why = "the pod is not an object";
      return s;
    }
    const json* compute = ComputeContainer(pod);
    if (!compute) Note(s, "the pod has no container named compute");
    s.kubevirt = FindRange(pod, compute, options, s);
    DeriveCpu(vmi, compute, options, s);
    DeriveMemory(vmi, pod, compute, options, s);
  } catch (const std::exception& e) {
    // Not expected: every access above checks its type. Say so rather than guess.
    LauncherShape failed;
    failed.cpu_why = failed.memory_why = std::string("internal error: ") + Quote(e.what());
    return failed;
  }
  return s;
}

LauncherShape DeriveLauncherShapeFromText(std::string_view vmi_json, std::string_view pod_json,
                                          const ShapeOptions& options) noexcept {
  try {
    const json vmi =
        json::parse(vmi_json.begin(), vmi_json.end(), nullptr, /*allow_exceptions=*/false);
    const json pod =
        json::parse(pod_json.begin(), pod_json.end(), nullptr, /*allow_exceptions=*/false);
    if (vmi.is_discarded() || pod.is_discarded()) {
      LauncherShape s;
      s.cpu_why = s.memory_why = vmi.is_discarded() ? "the VMI is not JSON" : "the pod is not JSON";
      return s;
    }
    return DeriveLauncherShape(vmi, pod, options);
  } catch (const std::exception& e) {  // allocation failure on huge input
    LauncherShape s;
    s.cpu_why = s.memory_why = std::string("internal error: ") + Quote(e.what());
    return s;
  }
}

}  // namespace gm
