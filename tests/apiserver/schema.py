"""Structural pruning of VirtualMachineInstance objects, as the API server
does for a CRD whose schema has no x-kubernetes-preserve-unknown-fields.

The status schema mirrors VirtualMachineInstanceStatus in KubeVirt main
(staging/src/kubevirt.io/api/core/v1/types.go): every status property is
listed, and the nested objects are listed as deep as the reporter and its
tests can reach. `memory` and `currentCPUTopology` are exact, which is what
makes the VEP 156 ratio fields disappear on stock KubeVirt.

A schema node is one of:
  LEAF             a scalar, or a subtree whose inner shape is not modelled
                   (kept as is: see the README's gaps)
  {"p": {...}}     an object with known properties; anything else is pruned
  {"items": node}  an array whose items follow node
  {"map": node}    an object whose values (any key) follow node
"""

LEAF = None


def obj(*names, **nested):
    props = {n: LEAF for n in names}
    props.update(nested)
    return {"p": props}


def arr(node):
    return {"items": node}


def mapof(node):
    return {"map": node}


_PVC_INFO = obj("claimName", "accessModes", "volumeMode", "preallocated", "filesystemOverhead",
                capacity=mapof(LEAF), requests=mapof(LEAF))

_MIGRATION_COMMON = ("node", "pod", "migrationUID", "domainName", "domainNamespace",
                     "syncAddress", "persistentStatePVCName", "selinuxContext",
                     "virtualMachineInstanceUID")

_MIGRATION_STATE = obj(
    "startTimestamp", "endTimestamp", "targetNodeDomainReadyTimestamp",
    "targetNodeDomainDetected", "targetNodeAddress", "targetNode", "targetPod",
    "targetAttachmentPodUID", "sourceNode", "sourcePod", "completed", "failed",
    "abortRequested", "abortStatus", "failureReason", "migrationUid", "mode",
    "migrationPolicyName", "migrationConfiguration", "targetCPUSet", "targetNodeTopology",
    "sourcePersistentStatePVCName", "targetPersistentStatePVCName", "migrationNetworkType",
    "targetMemoryOverhead",
    targetDirectMigrationNodePorts=mapof(LEAF),
    sourceState=obj(*_MIGRATION_COMMON, nodeSelectors=mapof(LEAF)),
    targetState=obj(*_MIGRATION_COMMON, "domainReadyTimestamp", "domainDetected",
                    "nodeAddress", "attachmentPodUID", "cpuSet", "nodeTopology",
                    directMigrationNodePorts=mapof(LEAF)),
)


def _status(with_ratio_fields):
    cpu = ["cores", "sockets", "threads"]
    memory = ["guestAtBoot", "guestCurrent", "guestRequested", "memoryOverhead"]
    if with_ratio_fields:  # the CRD variant of a KubeVirt that ships VEP 156
        cpu.append("cpuAllocationRatio")
        memory.append("memoryOvercommitRatio")
    return obj(
        "nodeName", "reason", "phase", "migrationMethod", "migrationTransport", "qosClass",
        "launcherContainerImageVersion", "evacuationNodeName", "fsFreezeStatus",
        "virtualMachineRevisionName", "runtimeUser", "VSOCKCID", "selinuxContext",
        "changedBlockTracking",
        conditions=arr(obj("type", "status", "lastProbeTime", "lastTransitionTime",
                           "reason", "message")),
        phaseTransitionTimestamps=arr(obj("phase", "phaseTransitionTimestamp")),
        interfaces=arr(obj("ipAddress", "mac", "name", "ipAddresses", "podInterfaceName",
                           "interfaceName", "infoSource", "queueCount", "linkState")),
        guestOSInfo=obj("name", "kernelRelease", "version", "prettyName", "versionId",
                        "kernelVersion", "machine", "id"),
        migrationState=_MIGRATION_STATE,
        activePods=mapof(LEAF),
        volumeStatus=arr(obj("name", "target", "phase", "reason", "message", "size",
                             persistentVolumeClaimInfo=_PVC_INFO,
                             hotplugVolume=obj("attachPodName", "attachPodUID"),
                             memoryDumpVolume=obj("startTimestamp", "endTimestamp",
                                                  "claimName", "targetFileName"),
                             containerDiskVolume=obj("checksum"))),
        kernelBootStatus=obj(kernelInfo=obj("checksum"), initrdInfo=obj("checksum")),
        topologyHints=obj("tscFrequency"),
        machine=obj("type"),
        currentCPUTopology=obj(*cpu),
        memory=obj(*memory),
        migratedVolumes=arr(obj("volumeName", sourcePVCInfo=_PVC_INFO,
                                destinationPVCInfo=_PVC_INFO)),
    )


def vmi_schema(with_ratio_fields):
    """Whole-object schema. metadata is handled by ObjectMeta coercion, not
    pruning, and spec is not modelled, so both are leaves here."""
    return obj("apiVersion", "kind", "metadata", "spec", status=_status(with_ratio_fields))


def prune(value, node, path="", unknown=None):
    """Returns (pruned copy of VALUE, sorted unknown field paths).

    Paths are written like the API server's warnings and strict errors:
    "status.memory.memoryOvercommitRatio", "status.conditions[0].foo"."""
    top = unknown is None
    if top:
        unknown = []
    if node is LEAF:
        result = value
    elif "p" in node and isinstance(value, dict):
        result = {}
        for key, sub in value.items():
            child = f"{path}.{key}" if path else key
            if key in node["p"]:
                result[key] = prune(sub, node["p"][key], child, unknown)[0]
            else:
                unknown.append(child)
    elif "items" in node and isinstance(value, list):
        result = [prune(v, node["items"], f"{path}[{i}]", unknown)[0]
                  for i, v in enumerate(value)]
    elif "map" in node and isinstance(value, dict):
        result = {k: prune(v, node["map"], f"{path}.{k}", unknown)[0] for k, v in value.items()}
    else:
        result = value  # type mismatches are validation's business, not pruning's
    if top:
        unknown.sort()  # structural pruning sorts the paths it reports
    return result, unknown


def openapi(node):
    """NODE as an openAPIV3Schema fragment of a CRD. A LEAF (not modelled)
    becomes a subtree kept as is."""
    if node is LEAF:
        return {"x-kubernetes-preserve-unknown-fields": True}
    if "p" in node:
        return {"type": "object", "properties": {k: openapi(v) for k, v in node["p"].items()}}
    if "items" in node:
        return {"type": "array", "items": openapi(node["items"])}
    return {"type": "object", "additionalProperties": openapi(node["map"])}


def vmi_crd(with_ratio_fields):
    """KubeVirt's VMI CustomResourceDefinition as the fixture serves it: the
    status schema above (spec and metadata kept as is)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "virtualmachineinstances.kubevirt.io"},
        "spec": {
            "group": "kubevirt.io",
            "names": {"kind": "VirtualMachineInstance", "listKind": "VirtualMachineInstanceList",
                      "plural": "virtualmachineinstances", "singular": "virtualmachineinstance",
                      "shortNames": ["vmi", "vmis"]},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": True, "storage": True,
                          "subresources": {"status": {}},
                          "schema": {"openAPIV3Schema": openapi(vmi_schema(with_ratio_fields))}}],
        },
    }


def crd_has_ratio_fields(crd):
    """Whether a VMI CRD's status schema knows both VEP 156 ratio fields."""
    try:
        versions = crd["spec"]["versions"]
        status = next(v for v in versions if v.get("storage"))["schema"]["openAPIV3Schema"][
            "properties"]["status"]["properties"]
        return "memoryOvercommitRatio" in status["memory"]["properties"] and \
            "cpuAllocationRatio" in status["currentCPUTopology"]["properties"]
    except (KeyError, TypeError, StopIteration, AttributeError):
        return False
