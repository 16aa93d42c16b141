"""Pod validation and the served server version: what a real kube-apiserver
refuses in a pod (422 Invalid with field causes), and what an older server
does with an init container's restartPolicy (KEP-753 native sidecars).

Modelled on kubernetes/kubernetes:
- pkg/apis/core/validation/validation.go: ValidatePodCreate ("cannot be set
  on create" for ephemeral containers), ValidatePodSpec's order (volumes,
  containers, initContainers, ephemeralContainers), ValidateVolumes (a
  duplicate volume name), ValidateVolumeMounts (a mount without its volume),
  validateContainers (duplicate names; restartPolicy "may not be set for
  non-init containers"), validateInitContainers (names unique across
  containers and initContainers; validateInitContainerRestartPolicy;
  lifecycle and probes "may not be set for init containers without
  restartPolicy=Always"), validateEphemeralContainers (names unique across
  all three lists);
- k8s.io/apimachinery/pkg/util/validation/field (error strings and
  reasons) and api/errors.NewInvalid (message and causes);
- pkg/api/pod/util.go dropDisabledFields: without the SidecarContainers
  feature an init container's restartPolicy is dropped before validation;
- pkg/features (versioned_kube_features.go): SidecarContainers alpha and off
  in 1.28, beta and on in 1.29, GA in 1.33. Before 1.28 the field does not
  exist: the decoder drops it as an unknown field (a Warning, or 400 with
  fieldValidation=Strict).
"""

import json
import re

import apimachinery as am
from apimachinery import ApiError

_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?([-+][0-9A-Za-z.+-]*)?$")
SIDECARS_BETA = (1, 29)  # on by default from here
SIDECARS_ALPHA = (1, 28)  # the field exists, the gate is off by default
INIT_ONLY = "may not be set for init containers without restartPolicy=Always"


class ServerVersion:
    """The version the fixture says it is, and what follows from it."""

    def __init__(self, text):
        m = _VERSION.match(text or "")
        if not m:
            raise ValueError(f"not a Kubernetes version: {text!r} (want MAJOR.MINOR[.PATCH], "
                             "e.g. 1.26 or v1.28.3-gke.100)")
        self.major, self.minor = int(m.group(1)), int(m.group(2))
        self.patch = int(m.group(3) or 0)
        self.suffix = m.group(4) or ""

    @property
    def key(self):
        return (self.major, self.minor)

    def info(self):
        """The /version body (apimachinery version.Info)."""
        return {"major": str(self.major), "minor": str(self.minor),
                "gitVersion": f"v{self.major}.{self.minor}.{self.patch}{self.suffix}",
                "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                "buildDate": "2024-01-01T00:00:00Z", "goVersion": "go1.21.5", "compiler": "gc",
                "platform": "linux/amd64"}

    @property
    def native_sidecars(self):
        return self.key >= SIDECARS_BETA

    @property
    def knows_restart_policy_field(self):
        return self.key >= SIDECARS_ALPHA


def drop_gated_fields(pod, version, validation):
    """An init container's restartPolicy as a server of VERSION decodes it:
    kept (1.29+), dropped by the disabled feature gate (1.28), or an unknown
    field (before 1.28: dropped with a warning; Strict: 400). Returns the
    warnings."""
    if version.native_sidecars:
        return []
    spec = pod.get("spec")
    inits = spec.get("initContainers") if isinstance(spec, dict) else None
    if not isinstance(inits, list):
        return []
    unknown = []
    for i, c in enumerate(inits):
        if isinstance(c, dict) and "restartPolicy" in c:
            del c["restartPolicy"]
            unknown.append(f"spec.initContainers[{i}].restartPolicy")
    if version.knows_restart_policy_field or not unknown:
        return []
    if validation == "Strict":
        raise am.bad_request('Pod in version "v1" cannot be handled as a Pod: strict decoding error: ' +
                             ", ".join(f'unknown field "{p}"' for p in unknown))
    if validation == "Ignore":
        return []
    return [f'unknown field "{p}"' for p in unknown]


# -- field errors (k8s.io/apimachinery/pkg/util/validation/field) ---------------------

def _quoted(value):
    return json.dumps(value) if isinstance(value, str) else str(value)


def duplicate(path, value):
    return (path, "FieldValueDuplicate", f"Duplicate value: {_quoted(value)}")


def forbidden(path, detail):
    return (path, "FieldValueForbidden", f"Forbidden: {detail}")


def not_found(path, value):
    return (path, "FieldValueNotFound", f"Not found: {_quoted(value)}")


def not_supported(path, value, supported):
    return (path, "FieldValueNotSupported",
            f"Unsupported value: {_quoted(value)}: supported values: " +
            ", ".join(_quoted(s) for s in supported))


def required(path):
    return (path, "FieldValueRequired", "Required value")


def invalid_pod(name, errors):
    """errors.NewInvalid(Pod, name, errs): 422 with one cause per error; the
    message joins them (an aggregate of several is bracketed)."""
    texts = [f"{path}: {message}" for path, _, message in errors]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    return ApiError(am.failure(422, "Invalid", f'Pod "{name}" is invalid: {joined}',
                               {"name": name, "kind": "Pod",
                                "causes": [{"reason": reason, "message": message, "field": path}
                                           for path, reason, message in errors]}))


# -- validation -------------------------------------------------------------------------

def _dicts(value):
    return [(i, v) for i, v in enumerate(value) if isinstance(v, dict)] if isinstance(value, list) else []


def _mounts(c, path, volumes):
    errs = []
    for j, m in _dicts(c.get("volumeMounts")):
        name = m.get("name")
        if isinstance(name, str) and name and name not in volumes:
            errs.append(not_found(f"{path}.volumeMounts[{j}].name", name))
    return errs


def validate_pod_spec(spec, create):
    """The errors a real server finds in SPEC (a subset: names, mounts, what
    init and regular containers may carry)."""
    if not isinstance(spec, dict):
        return []
    errs = []
    # ValidateVolumes
    volumes = set()
    for i, v in _dicts(spec.get("volumes")):
        name = v.get("name")
        if not name:
            errs.append(required(f"spec.volumes[{i}].name"))
        elif name in volumes:
            errs.append(duplicate(f"spec.volumes[{i}].name", name))
        else:
            volumes.add(name)
    # validateContainers
    containers = _dicts(spec.get("containers"))
    if not containers:
        errs.append(required("spec.containers"))
    names = set()
    for i, c in containers:
        path = f"spec.containers[{i}]"
        errs += _mounts(c, path, volumes)
        if c.get("name") in names:
            errs.append(duplicate(f"{path}.name", c.get("name")))
        else:
            names.add(c.get("name"))
        if c.get("restartPolicy") is not None:
            errs.append(forbidden(f"{path}.restartPolicy", "may not be set for non-init containers"))
    # validateInitContainers
    all_names = {c.get("name") for _, c in containers}
    for i, c in _dicts(spec.get("initContainers")):
        path = f"spec.initContainers[{i}]"
        errs += _mounts(c, path, volumes)
        policy = c.get("restartPolicy")
        if policy is not None and policy != "Always":
            errs.append(not_supported(f"{path}.restartPolicy", policy, ["Always"]))
        name = c.get("name")
        if name in all_names:
            errs.append(duplicate(f"{path}.name", name))
        elif name:
            all_names.add(name)
        if policy != "Always":
            for fld in ("lifecycle", "livenessProbe", "readinessProbe", "startupProbe"):
                if c.get(fld) is not None:
                    errs.append(forbidden(f"{path}.{fld}", INIT_ONLY))
    # validateEphemeralContainers
    for i, c in _dicts(spec.get("ephemeralContainers")):
        name = c.get("name")
        if name in all_names:
            errs.append(duplicate(f"spec.ephemeralContainers[{i}].name", name))
        else:
            all_names.add(name)
    # ValidatePodCreate
    if create and spec.get("ephemeralContainers"):
        errs.append(forbidden("spec.ephemeralContainers", "cannot be set on create"))
    return errs


def check_pod(pod, create):
    """Raises the 422 a real server answers for an invalid POD."""
    errs = validate_pod_spec(pod.get("spec"), create)
    if errs:
        raise invalid_pod(pod["metadata"].get("name", ""), errs)
