"""Pieces of Kubernetes API machinery the fixture needs: Status errors, the
served resource types, label/field selectors and the patch formats.

Messages, reasons and detail shapes follow k8s.io/apimachinery's
api/errors constructors, so clients see the same bodies a real
kube-apiserver sends.
"""

import copy
import datetime
import json
import re
import uuid
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Callable, Dict, Optional


# ---------------------------------------------------------------------------
# Status errors
# ---------------------------------------------------------------------------

def failure(code, reason, message, details=None):
    """A metav1.Status with status Failure, fields in the server's order."""
    st = {"kind": "Status", "apiVersion": "v1", "metadata": {},
          "status": "Failure", "message": message, "reason": reason}
    if details is not None:
        st["details"] = details
    st["code"] = code
    return st


class ApiError(Exception):
    """Raised anywhere in request handling; the handler answers with .status."""

    def __init__(self, status, headers=None):
        super().__init__(status["message"])
        self.status = status
        self.headers = headers or {}

    @property
    def code(self):
        return self.status["code"]


def _details(rt, name, **extra):
    d = {"name": name}
    if rt.group:
        d["group"] = rt.group
    d["kind"] = rt.plural
    d.update(extra)
    return d


def not_found(rt, name):
    return ApiError(failure(404, "NotFound", f'{rt.qualified} "{name}" not found',
                            _details(rt, name)))


def already_exists(rt, name):
    return ApiError(failure(409, "AlreadyExists", f'{rt.qualified} "{name}" already exists',
                            _details(rt, name)))


MODIFIED_MSG = ("the object has been modified; please apply your changes "
                "to the latest version and try again")


def conflict(rt, name, why=MODIFIED_MSG):
    return ApiError(failure(409, "Conflict",
                            f'Operation cannot be fulfilled on {rt.qualified} "{name}": {why}',
                            _details(rt, name)))


def bad_request(message):
    return ApiError(failure(400, "BadRequest", message))


def invalid(rt, name, field_path, value, detail):
    """422 Invalid with one FieldValueInvalid cause (errors.NewInvalid)."""
    body = f"{field_path}: Invalid value: {json.dumps(value)}: {detail}"
    return ApiError(failure(422, "Invalid", f'{rt.group_kind} "{name}" is invalid: {body}',
                            {"name": name, **({"group": rt.group} if rt.group else {}),
                             "kind": rt.kind,
                             "causes": [{"reason": "FieldValueInvalid",
                                         "message": body[len(field_path) + 2:],
                                         "field": field_path}]}))


def expired(message, continue_token=None):
    err = ApiError(failure(410, "Expired", message))
    if continue_token is not None:
        err.status["metadata"] = {"continue": continue_token}
    return err


def unauthorized():
    return ApiError(failure(401, "Unauthorized", "Unauthorized"))


def forbidden(message):
    return ApiError(failure(403, "Forbidden", message))


def not_found_path():
    return ApiError(failure(404, "NotFound", "the server could not find the requested resource",
                            {}))


def method_not_allowed():
    return ApiError(failure(405, "MethodNotAllowed",
                            "the server does not allow this method on the requested resource",
                            {}))


def unsupported_media(accepted):
    return ApiError(failure(415, "UnsupportedMediaType",
                            "the body of the request was in an unknown format - "
                            "accepted media types include: " + ", ".join(accepted)))


def internal_error(message):
    return ApiError(failure(500, "InternalError", f"Internal error occurred: {message}",
                            {"causes": [{"message": message}]}))


def error_for_code(code, message=None, retry_after=1, rt=None, name=""):
    """The Status a real server sends for CODE; used by injected faults."""
    if code == 429:
        return ApiError(failure(429, "TooManyRequests",
                                message or "Too many requests, please try again later.",
                                {"retryAfterSeconds": retry_after}),
                        {"Retry-After": str(retry_after)})
    if code == 409 and rt is not None:
        return conflict(rt, name, message or MODIFIED_MSG)
    if code == 500:
        return internal_error(message or "injected fault")
    if code == 503:
        return ApiError(failure(503, "ServiceUnavailable",
                                message or "the server is currently unable to handle the request",
                                {"retryAfterSeconds": retry_after}),
                        {"Retry-After": str(retry_after)})
    if code == 504:
        return ApiError(failure(504, "Timeout", message or
                                "the server was unable to return a response in the time allotted, "
                                "but may still be processing the request", {}))
    if code == 403:
        return forbidden(message or "forbidden by injected fault")
    if code == 401:
        return unauthorized()
    if code == 410:
        return expired(message or "injected expiry")
    return ApiError(failure(code, "Unknown", message or
                            f"the server responded with the status code {code} "
                            "but did not return more information"))


# ---------------------------------------------------------------------------
# Served resource types
# ---------------------------------------------------------------------------

def _get(path):
    def getter(obj):
        cur = obj
        for part in path:
            if not isinstance(cur, dict):
                return ""
            cur = cur.get(part)
        if cur is None:
            return ""
        if isinstance(cur, bool):
            return "true" if cur else "false"
        return str(cur)
    return getter


_META_FIELDS = {"metadata.name": _get(("metadata", "name")),
                "metadata.namespace": _get(("metadata", "namespace"))}

# Pod field labels accepted by the real server (pkg/registry/core/pod ToSelectableFields).
_POD_FIELDS = dict(_META_FIELDS, **{
    f: _get(tuple(f.split("."))) for f in (
        "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
        "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
        "status.podIP", "status.nominatedNodeName")})


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    # Built-in (typed) resources: list items carry no kind/apiVersion,
    # strategic merge patch is accepted.
    typed: bool
    status_subresource: bool
    # Custom resources bump metadata.generation when anything but
    # metadata/status changes.
    generation: bool
    create_on_update: bool
    # Pods answer DELETE with the object, the others with Status Success.
    return_deleted_object: bool
    field_labels: Dict[str, Callable] = field(default_factory=lambda: dict(_META_FIELDS))
    # Cluster-scoped kinds have no namespace: /apis/G/V/PLURAL/NAME.
    namespaced: bool = True

    @property
    def api_version(self):
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self):
        """Group-qualified resource name, as in messages ("pods", "leases.coordination.k8s.io")."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def group_kind(self):
        return f"{self.kind}.{self.group}" if self.group else self.kind


POD = ResourceType("", "v1", "pods", "Pod", typed=True, status_subresource=True,
                   generation=False, create_on_update=False, return_deleted_object=True,
                   field_labels=_POD_FIELDS)
VMI = ResourceType("kubevirt.io", "v1", "virtualmachineinstances", "VirtualMachineInstance",
                   typed=False, status_subresource=True, generation=True,
                   create_on_update=False, return_deleted_object=False)
KUBEVIRT = ResourceType("kubevirt.io", "v1", "kubevirts", "KubeVirt", typed=False,
                        status_subresource=True, generation=True, create_on_update=False,
                        return_deleted_object=False)
LEASE = ResourceType("coordination.k8s.io", "v1", "leases", "Lease", typed=True,
                     status_subresource=False, generation=False, create_on_update=True,
                     return_deleted_object=False)

# Built in (typed), cluster-scoped; a spec change bumps generation and, for the
# VMI CRD, changes the schema VMIs are pruned with (http_api.crd_changed).
CRD = ResourceType("apiextensions.k8s.io", "v1", "customresourcedefinitions",
                   "CustomResourceDefinition", typed=True, status_subresource=True,
                   generation=True, create_on_update=False, return_deleted_object=False,
                   namespaced=False)

RESOURCES = {(rt.group, rt.version, rt.plural): rt
             for rt in (POD, VMI, KUBEVIRT, LEASE, CRD)}
BY_KIND = {(rt.api_version, rt.kind): rt for rt in RESOURCES.values()}


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

def now_rfc3339(offset_seconds=0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset_seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def new_uid():
    return str(uuid.uuid4())


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"))


def json_equal(a, b):
    """JSON value equality: unlike ==, true is not 1 and 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    return type(a) in (int, float) and type(b) in (int, float) and a == b or \
        type(a) is type(b) and a == b


_QTY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?$")
_SUFFIX = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
           "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
           "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
           "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30,
           "Ti": Decimal(2) ** 40, "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60}


def parse_quantity(q) -> Optional[Decimal]:
    """resource.Quantity value, or None when unparseable."""
    m = _QTY.match(str(q).strip())
    if not m:
        return None
    try:
        num, suf = Decimal(m.group(1)), m.group(2) or ""
    except InvalidOperation:
        return None
    if suf[:1] in ("e", "E"):
        return num * Decimal(10) ** int(suf[1:])
    return num * _SUFFIX[suf]


def pod_qos_class(pod):
    """status.qosClass as the API server computes it on create (qos.GetPodQOS)."""
    containers = list(pod.get("spec", {}).get("containers") or []) + \
        list(pod.get("spec", {}).get("initContainers") or [])
    any_set, guaranteed = False, True
    for c in containers:
        res = c.get("resources") or {}
        requests = {k: parse_quantity(v) for k, v in (res.get("requests") or {}).items()
                    if k in ("cpu", "memory")}
        limits = {k: parse_quantity(v) for k, v in (res.get("limits") or {}).items()
                  if k in ("cpu", "memory")}
        if requests or limits:
            any_set = True
        if set(limits) != {"cpu", "memory"}:
            guaranteed = False
        for k, v in requests.items():
            if limits.get(k) != v:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


# ---------------------------------------------------------------------------
# Selectors
# ---------------------------------------------------------------------------

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VAL = r"[-A-Za-z0-9_.]*"
_NOT_EXISTS = re.compile(rf"^!\s*({_KEY})$")
_SET = re.compile(rf"^({_KEY})\s+(in|notin)\s*\(\s*(.*?)\s*\)$")
_OP = re.compile(rf"^({_KEY})\s*(==|=|!=|>|<)\s*({_VAL})$")
_EXISTS = re.compile(rf"^({_KEY})$")


def _split_top(text):
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts]


class LabelSelector:
    """labels.Parse: =, ==, !=, in, notin, exists, !exists, gt, lt."""

    def __init__(self, text):
        self.reqs = []
        text = (text or "").strip()
        if not text:
            return
        for part in _split_top(text):
            if m := _NOT_EXISTS.match(part):
                self.reqs.append((m.group(1), "!", None))
            elif m := _SET.match(part):
                values = {v.strip() for v in m.group(3).split(",")}
                if not m.group(3).strip() or not all(re.fullmatch(_VAL, v) for v in values):
                    raise bad_request(f"unable to parse requirement: {part}")
                self.reqs.append((m.group(1), m.group(2), values))
            elif m := _OP.match(part):
                op, value = m.group(2), m.group(3)
                if op in (">", "<") and not re.fullmatch(r"-?[0-9]+", value):
                    raise bad_request(f"unable to parse requirement: for 'gt', 'lt' "
                                      f"operators, the value must be an integer: {part}")
                self.reqs.append((m.group(1), "=" if op == "==" else op, value))
            elif m := _EXISTS.match(part):
                self.reqs.append((m.group(1), "exists", None))
            else:
                raise bad_request(f"unable to parse requirement: {part}")

    def matches(self, labels):
        labels = labels or {}
        for key, op, val in self.reqs:
            has = key in labels
            cur = labels.get(key)
            if op == "=" and cur != val:
                return False
            if op == "!=" and has and cur == val:  # absent label matches !=
                return False
            if op == "in" and cur not in val:
                return False
            if op == "notin" and has and cur in val:
                return False
            if op == "exists" and not has:
                return False
            if op == "!" and has:
                return False
            if op in (">", "<"):
                if not has or not re.fullmatch(r"-?[0-9]+", cur):
                    return False
                if (int(cur) > int(val)) != (op == ">") or int(cur) == int(val):
                    return False
        return True


class FieldSelector:
    """fields.Parse restricted to the resource's selectable fields."""

    def __init__(self, text, rt):
        self.reqs = []
        text = (text or "").strip()
        if not text:
            return
        for part in _split_top(text):
            m = re.fullmatch(r"([A-Za-z0-9.]+)\s*(==|=|!=)\s*(.*)", part)
            if not m:
                raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
            getter = rt.field_labels.get(m.group(1))
            if getter is None:
                raise bad_request(f'field label not supported: {m.group(1)}')
            self.reqs.append((getter, m.group(2) != "!=", m.group(3)))

    def matches(self, obj):
        return all((getter(obj) == value) == equal for getter, equal, value in self.reqs)


# ---------------------------------------------------------------------------
# Patches
# ---------------------------------------------------------------------------

class PatchError(Exception):
    pass


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch; returns a new value, shares untouched subtrees."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"JSON pointer must start with '/': {path}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc, tokens, path):
    cur = doc
    for tok in tokens:
        if isinstance(cur, dict) and tok in cur:
            cur = cur[tok]
        elif isinstance(cur, list) and tok.isdigit() and int(tok) < len(cur):
            cur = cur[int(tok)]
        else:
            raise PatchError(f"doc is missing path: {path}: missing value")
    return cur


def _index(container, tok, path, allow_end):
    if tok == "-" and allow_end:
        return len(container)
    if not re.fullmatch(r"0|[1-9][0-9]*", tok):
        raise PatchError(f"Unable to access invalid index: {tok}: invalid index referenced")
    idx = int(tok)
    if idx > len(container) or (idx == len(container) and not allow_end):
        raise PatchError(f"Unable to access invalid index: {idx}: invalid index referenced")
    return idx


def _add(doc, tokens, value, path):
    if not tokens:
        return value
    parent = _walk(doc, tokens[:-1], path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, path, True), value)
    else:
        raise PatchError(f"doc is missing path: {path}: missing value")
    return doc


def _remove(doc, tokens, path):
    if not tokens:
        raise PatchError("unable to remove the whole document")
    parent = _walk(doc, tokens[:-1], path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"Unable to remove nonexistent key: {last}: missing value")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, path, False))
    raise PatchError(f"doc is missing path: {path}: missing value")


def json_patch(doc, ops):
    """RFC 6902 JSON patch on a deep copy of DOC."""
    if not isinstance(ops, list):
        raise PatchError("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict):
            raise PatchError("invalid operation")
        kind, path = op.get("op"), op.get("path")
        if not isinstance(path, str):
            raise PatchError(f"operation missing path: {kind}")
        tokens = _pointer(path)
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError(f"missing value for operation {kind}")
        if kind == "add":
            doc = _add(doc, tokens, copy.deepcopy(op["value"]), path)
        elif kind == "remove":
            _remove(doc, tokens, path)
        elif kind == "replace":
            _walk(doc, tokens, path)  # must exist
            if tokens:
                _remove(doc, tokens, path)
            doc = _add(doc, tokens, copy.deepcopy(op["value"]), path)
        elif kind in ("move", "copy"):
            src = op.get("from")
            if not isinstance(src, str):
                raise PatchError(f"operation missing from: {kind}")
            src_tokens = _pointer(src)
            value = copy.deepcopy(_walk(doc, src_tokens, src))
            if kind == "move":
                _remove(doc, src_tokens, src)
            doc = _add(doc, tokens, value, path)
        elif kind == "test":
            if not json_equal(_walk(doc, tokens, path), op["value"]):
                raise PatchError(f"testing value {path} failed: test failed")
        else:
            raise PatchError(f"Unexpected kind: {kind}")
    return doc
