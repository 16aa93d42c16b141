#include "gm/kube/paths.h"

#include <doctest/doctest.h>

#include <stdexcept>

using namespace gm::kube;

TEST_CASE("API paths for the core group and named groups, namespaced or not") {
  CHECK(ApiPrefix("v1") == "/api/v1");
  CHECK(ApiPrefix("kubevirt.io/v1") == "/apis/kubevirt.io/v1");
  CHECK(CollectionPath("v1", "pods") == "/api/v1/pods");
  CHECK(CollectionPath("v1", "pods", "ns") == "/api/v1/namespaces/ns/pods");
  CHECK(ObjectPath("kubevirt.io/v1", "virtualmachineinstances", "ns", "vm", "status") ==
        "/apis/kubevirt.io/v1/namespaces/ns/virtualmachineinstances/vm/status");
  CHECK(ObjectPath("coordination.k8s.io/v1", "leases", "kube-system", "gm") ==
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/gm");
  CHECK_THROWS_AS(ObjectPath("v1", "pods", "ns", ""), std::invalid_argument);
  CHECK_THROWS_AS(ObjectPath("v1", "pods", "ns", "a/b"), std::invalid_argument);
  CHECK_THROWS_AS(ObjectPath("v1", "pods", "..", "a"), std::invalid_argument);
  CHECK_THROWS_AS(ObjectPath("v1", "pods", "ns", "a?watch=1"), std::invalid_argument);
}

TEST_CASE("object keys are namespace/name, or name for cluster-scoped objects") {
  CHECK(ObjectKey(nlohmann::json::parse(R"({"metadata":{"namespace":"ns","name":"a"}})")) ==
        "ns/a");
  CHECK(ObjectKey(nlohmann::json::parse(R"({"metadata":{"name":"node1"}})")) == "node1");
  CHECK_THROWS_AS(ObjectKey(nlohmann::json::parse(R"({"metadata":{"namespace":"ns"}})")),
                  std::invalid_argument);
  CHECK_THROWS_AS(ObjectKey(nlohmann::json::parse("[]")), std::invalid_argument);
}
