"""HTTP front end: routing, the REST verbs with the storage strategies of the
real registries, watch streaming, injected faults, the request log and the
fixture's admin endpoints."""

import base64
import bisect
import contextlib
import copy
import json
import queue
import random
import re
import socket
import ssl
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from types import SimpleNamespace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import apimachinery as am
from apimachinery import BY_KIND, CRD, POD, RESOURCES, VMI, ApiError
from pod_validation import ServerVersion, check_pod, drop_gated_fields
from schema import crd_has_ratio_fields, prune, vmi_crd, vmi_schema
from store import CLOSE_GRACEFUL, CLOSE_RESET, Watcher, key_of

TRUE = {"1", "t", "T", "true", "True", "TRUE"}
TOKENREVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
# Enough of a resource type for faults to match "resource": "tokenreviews".
TOKENREVIEW_TYPE = SimpleNamespace(plural="tokenreviews", kind="TokenReview",
                                   group="authentication.k8s.io")
# Likewise for /version (faults match it as resource "version", verb "get").
VERSION_TYPE = SimpleNamespace(plural="version", kind="Info", group="")
PUBLIC_PATHS = {"/version", "/healthz", "/readyz", "/livez"}
DEFAULT_VERSION = "1.30.0"

CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. "
    "You can start a new list without the continue parameter, or use the continue token "
    "in this response to retrieve the remainder of the results. Continuing with the "
    "provided token results in an inconsistent list - objects that were created, "
    "modified, or deleted between the time the first chunk was returned and now may show "
    "up in the list.")

# What a typed (Go struct) empty object serializes to, for BOOKMARK events.
TYPED_EMPTY = {"pods": {"spec": {"containers": None}, "status": {}}, "leases": {"spec": {}}}

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_CORE = re.compile(r"^/api/v1(?:/namespaces/([^/]+))?/([^/]+)(?:/([^/]+)(?:/([^/]+))?)?$")
_GROUP = re.compile(
    r"^/apis/([^/]+)/([^/]+)(?:/namespaces/([^/]+))?/([^/]+)(?:/([^/]+)(?:/([^/]+))?)?$")
_GENERATE_CHARS = "bcdfghjklmnpqrstvwxz2456789"


@dataclass
class ApiRequest:
    method: str
    path: str
    query: dict
    rt: am.ResourceType
    namespace: str
    name: str
    subresource: str
    verb: str


def route(method, path, query):
    m = _CORE.match(path)
    if m:
        group, version = "", "v1"
        namespace, plural, name, sub = m.groups()
    else:
        m = _GROUP.match(path)
        if not m:
            raise am.not_found_path()
        group, version, namespace, plural, name, sub = m.groups()
    rt = RESOURCES.get((group, version, plural))
    if rt is None or (name and not namespace and rt.namespaced) or (namespace and not rt.namespaced):
        raise am.not_found_path()
    if sub and (sub != "status" or not rt.status_subresource):
        raise am.not_found_path()
    if method == "GET":
        verb = "get" if name else ("watch" if query.get("watch") in TRUE else "list")
    elif method == "POST":
        verb = "create"
    elif method == "PUT":
        verb = "update"
    elif method == "PATCH":
        verb = "patch"
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        raise am.method_not_allowed()
    if (verb == "create" and name) or (verb in ("update", "patch") and not name) or \
            (verb in ("create", "deletecollection") and not namespace):
        raise am.method_not_allowed()
    return ApiRequest(method, path, query, rt, namespace or "", name or "", sub or "", verb)


def parse_json(body, what="body"):
    if not body:
        raise am.bad_request(f"the {what} is empty")
    try:
        return json.loads(body)
    except ValueError as e:
        raise am.bad_request(f"couldn't get version/kind; json parse error: {e}")


def warning_header(text):
    """RFC 7234 warning value as the API server writes it: 299 - "text"."""
    return '299 - "' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _without(obj, *keys):
    return {k: v for k, v in obj.items() if k not in keys}


def _without_rv(obj):
    out = dict(obj)
    out["metadata"] = _without(obj.get("metadata") or {}, "resourceVersion")
    return out


def _marked_for_deletion(obj, grace):
    out = dict(obj)
    meta = obj["metadata"]
    out["metadata"] = dict(meta, deletionTimestamp=meta.get("deletionTimestamp") or
                           am.now_rfc3339(grace), deletionGracePeriodSeconds=grace)
    return out


def _encode_continue(rv, start):
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()


def _decode_continue(token):
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError as e:
        raise am.bad_request(f"continue key is not valid: {e}")
    if not isinstance(data, dict) or data.get("v") != "meta.k8s.io/v1":
        raise am.bad_request("continue key is not valid: server does not recognize this "
                             "encoded version")
    rv, start = data.get("rv"), data.get("start")
    if not isinstance(rv, int) or rv == 0:
        raise am.bad_request("continue key is not valid: incorrect encoded start "
                             "resourceVersion (version meta.k8s.io/v1)")
    if not isinstance(start, str) or not start:
        raise am.bad_request("continue key is not valid: encoded start key empty")
    return rv, start


def _success(rt, obj):
    meta = obj["metadata"]
    details = {"name": meta["name"]}
    if rt.group:
        details["group"] = rt.group
    details.update(kind=rt.plural, uid=meta.get("uid"))
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": details}


@contextlib.contextmanager
def _warning_on_error(warnings):
    """The server's warnings go out with an error answer too (the warning
    recorder writes them as headers whatever the status)."""
    try:
        yield
    except ApiError as e:
        e.warnings = list(warnings) + getattr(e, "warnings", [])
        raise


class Fault:
    """Answers the next COUNT matching requests with CODE and/or delays them.

    answerDelaySeconds carries the request out and then holds its answer back:
    a write the server committed whose client gave up waiting (a timeout, a
    cancelled call) and so never learnt the new resourceVersion."""

    def __init__(self, spec):
        if not isinstance(spec, dict):
            raise am.bad_request("a fault is a JSON object")
        self.verb = spec.get("verb")
        self.method = spec.get("method")
        self.resource = spec.get("resource")
        self.subresource = spec.get("subresource")
        self.path = spec.get("path")
        try:
            self.path_re = re.compile(self.path) if self.path else None
            self.count = int(spec.get("count", 1))
            self.code = int(spec["code"]) if spec.get("code") is not None else None
            self.retry_after = int(spec.get("retryAfterSeconds", 1))
            self.delay = float(spec.get("delaySeconds", 0))
            self.answer_delay = float(spec.get("answerDelaySeconds", 0))
        except (re.error, TypeError, ValueError) as e:
            raise am.bad_request(f"invalid fault: {e}")
        self.message = spec.get("message")
        if self.count == 0:
            raise am.bad_request("a fault's count is positive, or negative for no limit")
        if self.code is None and self.delay <= 0 and self.answer_delay <= 0:
            raise am.bad_request("a fault needs a code, a delaySeconds or an answerDelaySeconds")
        if self.code is not None and self.answer_delay > 0:
            raise am.bad_request("answerDelaySeconds holds back the answer to a request that was "
                                 "carried out; it cannot have a code")
        if self.code is not None and not 400 <= self.code <= 599:
            raise am.bad_request("a fault's code must be 4xx or 5xx")

    def matches(self, req):
        return ((self.verb is None or self.verb == req.verb) and
                (self.method is None or self.method == req.method) and
                (self.resource is None or self.resource == req.rt.plural) and
                (self.subresource is None or self.subresource == req.subresource) and
                (self.path_re is None or self.path_re.search(req.path) is not None))

    def describe(self):
        return {"verb": self.verb, "method": self.method, "resource": self.resource,
                "subresource": self.subresource, "path": self.path, "count": self.count,
                "code": self.code, "retryAfterSeconds": self.retry_after,
                "delaySeconds": self.delay, "answerDelaySeconds": self.answer_delay,
                "message": self.message}


class ApiServer:
    """The fixture's state and the REST semantics, independent of HTTP."""

    def __init__(self, store, auth, prune_vmi_status, bookmark_interval, verbose=False,
                 version=DEFAULT_VERSION):
        self.version = ServerVersion(version)
        self.store = store
        self.auth = auth
        self.prune_vmi_status = prune_vmi_status
        self.bookmark_interval = bookmark_interval
        self.verbose = verbose
        self._faults = []
        self._requests = []
        self._lock = threading.Lock()
        # The VMI CRD the pruning follows (see crd_changed).
        crd = vmi_crd(not prune_vmi_status)
        crd["metadata"].update(uid=am.new_uid(), creationTimestamp=am.now_rfc3339(), generation=1)
        store.put(CRD, crd, None)

    # -- faults and request log ------------------------------------------------

    def add_faults(self, specs):
        faults = [Fault(s) for s in specs]
        with self._lock:
            self._faults.extend(faults)
            return [f.describe() for f in self._faults]

    def faults(self):
        with self._lock:
            return [f.describe() for f in self._faults]

    def reset_faults(self):
        with self._lock:
            self._faults.clear()

    def apply_fault(self, req):
        """Delays or fails REQ as a matching fault says; returns how long to
        hold back the answer once the request is carried out."""
        with self._lock:
            fault = next((f for f in self._faults if f.matches(req)), None)
            if fault is None:
                return 0.0
            if fault.count > 0:  # a negative count never runs out
                fault.count -= 1
                if fault.count == 0:
                    self._faults.remove(fault)
        if fault.delay > 0:
            time.sleep(fault.delay)
        if fault.code is not None:
            raise am.error_for_code(fault.code, fault.message, fault.retry_after,
                                    rt=req.rt, name=req.name)
        return fault.answer_delay

    def log_request(self, entry):
        with self._lock:
            self._requests.append(entry)

    def requests(self):
        with self._lock:
            return list(self._requests)

    def reset_requests(self):
        with self._lock:
            n = len(self._requests)
            self._requests.clear()
            return n

    # -- pruning mode ----------------------------------------------------------

    def set_pruning(self, enabled):
        """Switch the served VMI CRD variant by updating the CRD object, as a
        KubeVirt upgrade does (see crd_changed)."""
        with self.store.lock:
            old = self.store.get(CRD, "", "virtualmachineinstances.kubevirt.io")
            new = copy.deepcopy(old)
            new["spec"] = vmi_crd(not enabled)["spec"]
            self._update_locked(CRD, old, new, "")

    def crd_changed(self, crd):
        """A CRD's spec changed. For the VMI CRD: the pruning follows its
        status schema, stored VMIs are re-read through it at once (the API
        server prunes on read from etcd), and the VMI watch cache restarts
        (store.restart_watch_cache)."""
        if crd["metadata"]["name"] != "virtualmachineinstances.kubevirt.io":
            return
        self.prune_vmi_status = not crd_has_ratio_fields(crd)
        schema = vmi_schema(not self.prune_vmi_status)
        self.store.rewrite(VMI, lambda obj: prune(obj, schema)[0])
        self.store.restart_watch_cache(VMI)

    # -- decoding ----------------------------------------------------------------

    def decode(self, rt, obj, validation, patched=False):
        """Decode a request object the way the API server does: defaults
        apiVersion/kind from the endpoint, prunes unknown fields of VMIs and
        reports them per fieldValidation (Warn: warnings, Strict: error)."""
        if not isinstance(obj, dict):
            raise am.bad_request("the object provided is not a JSON object")
        for fld, want in (("apiVersion", rt.api_version), ("kind", rt.kind)):
            if obj.get(fld) not in (None, "", want):
                raise am.bad_request(f"the {fld} in the data ({obj[fld]}) does not match "
                                     f"the expected {fld} ({want})")
        if not isinstance(obj.get("metadata", {}), dict):
            raise am.bad_request("metadata must be a JSON object")
        original = obj
        # Typed objects serialize kind first, unstructured ones alphabetically.
        head = {"kind": rt.kind, "apiVersion": rt.api_version} if rt.typed else \
            {"apiVersion": rt.api_version, "kind": rt.kind}
        obj = {**head, **copy.deepcopy(_without(obj, "apiVersion", "kind"))}
        obj.setdefault("metadata", {})
        warnings = []
        if rt is VMI:
            obj, unknown = prune(obj, vmi_schema(not self.prune_vmi_status))
            if unknown and validation == "Strict":
                msg = "strict decoding error: " + ", ".join(f'unknown field "{p}"'
                                                            for p in unknown)
                if patched:
                    # patch.go: errors.NewInvalid(schema.GroupKind{}, "", {patch: ...})
                    body = f"Invalid value: {json.dumps(am.dumps(original))}: {msg}"
                    raise ApiError(am.failure(422, "Invalid", f' "" is invalid: patch: {body}',
                                              {"causes": [{"reason": "FieldValueInvalid",
                                                           "message": body,
                                                           "field": "patch"}]}))
                raise am.bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled '
                                     f"as a {rt.kind}: {msg}")
            if validation == "Warn":
                warnings = [f'unknown field "{p}"' for p in unknown]
        elif rt is POD:
            warnings = drop_gated_fields(obj, self.version, validation)
        return obj, warnings

    @staticmethod
    def field_validation(query):
        value = query.get("fieldValidation", "")
        if value in ("", "Warn"):
            return "Warn"
        if value in ("Ignore", "Strict"):
            return value
        raise am.bad_request(f'fieldValidation parameter unsupported: "{value}"; valid values '
                             'are "Ignore", "Warn" or "Strict"')

    # -- verbs -------------------------------------------------------------------

    def handle(self, req, body, content_type):
        if "dryRun" in req.query:
            raise am.bad_request("the API server fixture does not implement dryRun")
        if req.verb == "get":
            obj = self.store.get(req.rt, req.namespace, req.name)
            if obj is None:
                raise am.not_found(req.rt, req.name)
            return 200, obj, []
        if req.verb == "list":
            return 200, self.list(req), []
        if req.verb == "create":
            return self.create(req, parse_json(body))
        if req.verb == "update":
            return self.update(req, parse_json(body))
        if req.verb == "patch":
            return self.patch(req, body, content_type)
        if req.verb == "delete":
            return self.delete(req, body)
        return self.delete_collection(req, body)

    def create(self, req, body):
        rt = req.rt
        obj, warnings = self.decode(rt, body, self.field_validation(req.query))
        self._check_identity(req, obj)
        meta = obj["metadata"]
        if meta.get("resourceVersion"):
            raise am.internal_error("resourceVersion should not be set on objects to be created")
        with self.store.lock, _warning_on_error(warnings):
            return 201, self._create_locked(rt, req.namespace, obj), warnings

    def _create_locked(self, rt, namespace, obj):
        meta = obj["metadata"]
        name = meta.get("name") or ""
        if not name:
            if not meta.get("generateName"):
                raise ApiError(am.failure(
                    422, "Invalid", f'{rt.group_kind} "" is invalid: metadata.name: Required '
                    "value: name or generateName is required",
                    {"kind": rt.kind, "causes": [{"reason": "FieldValueRequired", "message":
                                                  "Required value: name or generateName is "
                                                  "required", "field": "metadata.name"}]}))
            while not name or self.store.get(rt, namespace, name):
                name = meta["generateName"] + "".join(random.choices(_GENERATE_CHARS, k=5))
        elif not _NAME.match(name) or len(name) > 253:
            raise am.invalid(rt, name, "metadata.name", name,
                             "a lowercase RFC 1123 subdomain must consist of lower case "
                             "alphanumeric characters, '-' or '.', and must start and end "
                             "with an alphanumeric character")
        if self.store.get(rt, namespace, name) is not None:
            raise am.already_exists(rt, name)
        obj["metadata"] = meta = dict(
            _without(meta, "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink",
                     "managedFields", "uid", "creationTimestamp", "generation"),
            name=name, namespace=namespace, uid=am.new_uid(),
            creationTimestamp=am.now_rfc3339())
        if rt.generation:
            meta["generation"] = 1
        if rt is POD:
            # The ServiceAccount admission plugin defaults the account; the
            # pod registry resets status to Pending with the computed QoS class.
            spec = obj.setdefault("spec", {})
            spec.setdefault("serviceAccountName", "default")
            check_pod(obj, create=True)
            obj["status"] = {"phase": "Pending", "qosClass": am.pod_qos_class(obj)}
        elif rt.status_subresource:
            obj.pop("status", None)  # custom resources: create cannot set status
        return self.store.put(rt, obj, None)

    def update(self, req, body):
        rt = req.rt
        obj, warnings = self.decode(rt, body, self.field_validation(req.query))
        self._check_identity(req, obj)
        with self.store.lock, _warning_on_error(warnings):
            old = self.store.get(rt, req.namespace, req.name)
            if old is None:
                if rt.create_on_update and not req.subresource and \
                        not obj["metadata"].get("resourceVersion"):
                    return 201, self._create_locked(rt, req.namespace, obj), warnings
                raise am.not_found(rt, req.name)
            rv = obj["metadata"].get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise am.conflict(rt, req.name)
            return 200, self._update_locked(rt, old, obj, req.subresource), warnings

    @staticmethod
    def _check_identity(req, obj):
        """Body name/namespace must agree with the URL (empty means unset)."""
        meta = obj["metadata"]
        if req.name and meta.get("name", req.name) != req.name:
            raise am.bad_request(f"the name of the object ({meta['name']}) does not match the "
                                 f"name on the URL ({req.name})")
        if (meta.get("namespace") or req.namespace) != req.namespace:
            raise am.bad_request("the namespace of the provided object does not match the "
                                 "namespace sent on the request")

    def _update_locked(self, rt, old, new, subresource):
        """Apply the registry's update strategy to NEW (a fresh decoded dict)
        and store it, unless it changes nothing."""
        om, nm = old["metadata"], new["metadata"]
        if nm.get("uid") and nm["uid"] != om["uid"]:
            raise am.invalid(rt, om["name"], "metadata.uid", nm["uid"], "field is immutable")
        # System fields are the server's: an update cannot change them.
        for fld in ("uid", "creationTimestamp", "deletionTimestamp",
                    "deletionGracePeriodSeconds", "generation", "name", "namespace"):
            if fld in om:
                nm[fld] = om[fld]
            else:
                nm.pop(fld, None)
        if subresource == "status":
            if rt.typed:
                # pods/status: spec and owners stay; labels/annotations may change.
                if "spec" in old:
                    new["spec"] = old["spec"]
                else:
                    new.pop("spec", None)
                if "ownerReferences" in om:
                    nm["ownerReferences"] = om["ownerReferences"]
                else:
                    nm.pop("ownerReferences", None)
                status = new.setdefault("status", {})
                if not status.get("qosClass") and (old.get("status") or {}).get("qosClass"):
                    status["qosClass"] = old["status"]["qosClass"]
            else:
                # custom resources: only .status is taken from the request.
                status = new.get("status")
                new = copy.deepcopy(old)
                if status is None:
                    new.pop("status", None)
                else:
                    new["status"] = status
        elif rt.status_subresource:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        if rt is POD and subresource != "status":
            check_pod(new, create=False)
        if rt.generation and not am.json_equal(_without(new, "metadata", "status"),
                                               _without(old, "metadata", "status")):
            new["metadata"]["generation"] = om.get("generation", 1) + 1
        if am.json_equal(_without_rv(new), _without_rv(old)):
            return old  # a no-op write is not a write: no new rv, no event
        nm = new["metadata"]
        if nm.get("deletionTimestamp") and not nm.get("finalizers") and \
                nm.get("deletionGracePeriodSeconds") == 0:
            return self.store.remove(rt, key_of(old), last=new)  # last finalizer removed
        stored = self.store.put(rt, new, old)
        if rt is CRD and not am.json_equal(new.get("spec"), old.get("spec")):
            self.crd_changed(stored)
        return stored

    PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
                   "application/strategic-merge-patch+json")

    def patch(self, req, body, content_type):
        rt = req.rt
        ctype = (content_type or "").split(";")[0].strip()
        # Custom resources do not support strategic merge patch.
        accepted = [t for t in self.PATCH_TYPES if rt.typed or "strategic" not in t]
        if ctype not in accepted:
            raise am.unsupported_media(accepted)
        patch = parse_json(body, "patch")
        validation = self.field_validation(req.query)
        with self.store.lock:
            old = self.store.get(rt, req.namespace, req.name)
            if old is None:
                raise am.not_found(rt, req.name)
            if ctype == "application/json-patch+json":
                try:
                    patched = am.json_patch(old, patch)
                except am.PatchError as e:
                    raise ApiError(am.failure(
                        422, "Invalid", "the server rejected our request due to an error in "
                        "our request", {"causes": [{"reason": "UnexpectedServerResponse",
                                                    "message": str(e)}]}))
            else:
                # Strategic merge is treated as JSON merge (no list merge keys).
                if not isinstance(patch, dict):
                    raise am.bad_request("a merge patch must be a JSON object")
                patched = am.merge_patch(old, patch)
            obj, warnings = self.decode(rt, patched, validation, patched=True)
            with _warning_on_error(warnings):
                self._check_identity(req, obj)
                rv = obj["metadata"].get("resourceVersion")
                if rv and rv != old["metadata"]["resourceVersion"]:
                    raise am.conflict(rt, req.name)
                return 200, self._update_locked(rt, old, obj, req.subresource), warnings

    @staticmethod
    def _delete_options(req, body):
        opts = parse_json(body, "delete options") if body else {}
        if not isinstance(opts, dict):
            raise am.bad_request("DeleteOptions must be a JSON object")
        grace = req.query.get("gracePeriodSeconds", opts.get("gracePeriodSeconds"))
        try:
            return opts, (int(grace) if grace is not None else None)
        except ValueError:
            raise am.bad_request(f"invalid gracePeriodSeconds: {grace}")

    def delete(self, req, body):
        rt = req.rt
        opts, grace = self._delete_options(req, body)
        pre = opts.get("preconditions") or {}
        with self.store.lock:
            old = self.store.get(rt, req.namespace, req.name)
            if old is None:
                raise am.not_found(rt, req.name)
            meta = old["metadata"]
            if pre.get("uid") and pre["uid"] != meta["uid"]:
                raise am.conflict(rt, req.name, f"Precondition failed: UID in precondition: "
                                  f"{pre['uid']}, UID in object meta: {meta['uid']}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
                raise am.conflict(rt, req.name, "Precondition failed: ResourceVersion in "
                                  f"precondition: {pre['resourceVersion']}, ResourceVersion "
                                  f"in meta: {meta['resourceVersion']}")
            result, gone = self._delete_locked(rt, old, grace)
        if gone and not rt.return_deleted_object:
            return 200, _success(rt, result), []
        return 200, result, []

    def _delete_locked(self, rt, old, grace):
        """Returns (object as answered, whether it is gone from storage)."""
        meta = old["metadata"]
        if rt is POD and not meta.get("deletionTimestamp"):
            spec = old.get("spec") or {}
            if grace is None:
                grace = spec.get("terminationGracePeriodSeconds", 30)
            if not spec.get("nodeName") or \
                    (old.get("status") or {}).get("phase") in ("Failed", "Succeeded"):
                grace = 0
            if grace > 0:
                marked = self.store.put(rt, _marked_for_deletion(old, grace), old)
                # There is no kubelet here: the fixture confirms termination
                # at once, as the kubelet does once the containers stopped.
                self._delete_locked(rt, marked, 0)
                return marked, False
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp") and meta.get("deletionGracePeriodSeconds") == 0:
                return old, False
            return self.store.put(rt, _marked_for_deletion(old, 0), old), False
        return self.store.remove(rt, key_of(old)), True

    def delete_collection(self, req, body):
        rt = req.rt
        _, grace = self._delete_options(req, body)
        labels = am.LabelSelector(req.query.get("labelSelector"))
        fields = am.FieldSelector(req.query.get("fieldSelector"), rt)
        prefix = f"{req.namespace}/" if req.namespace else ""
        items = []
        with self.store.lock:
            for key, obj in list(self.store.snapshot(rt).items()):
                if key.startswith(prefix) and labels.matches(obj["metadata"].get("labels")) \
                        and fields.matches(obj):
                    items.append(self._delete_locked(rt, obj, grace)[0])
            rv = self.store.rv
        return 200, self._list_body(rt, items, {"resourceVersion": str(rv)}), []

    def _list_body(self, rt, items, meta):
        if rt.typed:  # typed lists carry kind/apiVersion once, not per item
            return {"kind": rt.kind + "List", "apiVersion": rt.api_version, "metadata": meta,
                    "items": [_without(o, "apiVersion", "kind") for o in items]}
        return {"apiVersion": rt.api_version, "items": items, "kind": rt.kind + "List",
                "metadata": dict({"continue": ""}, **meta)}

    def list(self, req):
        rt, q = req.rt, req.query
        labels = am.LabelSelector(q.get("labelSelector"))
        fields = am.FieldSelector(q.get("fieldSelector"), rt)
        rv, match, cont = q.get("resourceVersion", ""), q.get("resourceVersionMatch", ""), \
            q.get("continue", "")
        try:
            limit = int(q.get("limit") or 0)
        except ValueError:
            raise am.bad_request(f"invalid limit: {q.get('limit')}")
        if match not in ("", "Exact", "NotOlderThan"):
            raise am.bad_request(f'resourceVersionMatch: Unsupported value: "{match}"')
        if match and not rv:
            raise am.bad_request("resourceVersionMatch is forbidden unless resourceVersion "
                                 "is provided")
        if match and cont:
            raise am.bad_request("resourceVersionMatch is forbidden when continue is provided")
        if match == "Exact" and rv == "0":
            raise am.bad_request('resourceVersionMatch "exact" is forbidden for '
                                 'resourceVersion "0"')
        prefix = f"{req.namespace}/" if req.namespace else ""
        start = ""
        with self.store.lock:
            current = self.store.rv
            if cont:
                if rv not in ("", "0"):
                    raise am.bad_request("specifying resource version is not allowed when "
                                         "using continue")
                token_rv, start = _decode_continue(cont)
                at = token_rv if token_rv > 0 else None  # -1: the inconsistent remainder
                try:
                    objects = self.store.snapshot(rt, at)
                except ApiError:
                    raise am.expired(CONTINUE_EXPIRED, _encode_continue(-1, start))
            else:
                if rv in ("", "0"):
                    at = None
                    if rv == "0":
                        limit = 0  # served from the watch cache, which ignores limit
                else:
                    try:
                        n = int(rv)
                    except ValueError:
                        raise am.bad_request(f"invalid resource version: {rv}")
                    if n > current:
                        raise ApiError(am.failure(
                            504, "Timeout", f"Too large resource version: {n}, current: "
                            f"{current}", {"causes": [{"reason": "ResourceVersionTooLarge",
                                                       "message": "Too large resource version"}],
                                           "retryAfterSeconds": 1}))
                    # resourceVersion with limit and no match means Exact.
                    at = n if match == "Exact" or (not match and limit > 0) else None
                objects = self.store.snapshot(rt, at)
            list_rv = at if at is not None else current
        keys = sorted(k for k in objects if k.startswith(prefix))
        if start:
            keys = keys[bisect.bisect_left(keys, prefix + start):]
        items, meta = [], {"resourceVersion": str(list_rv)}
        for i, key in enumerate(keys):
            obj = objects[key]
            if labels.matches(obj["metadata"].get("labels")) and fields.matches(obj):
                items.append(obj)
                if limit and len(items) == limit:
                    if i + 1 < len(keys):
                        meta["continue"] = _encode_continue(list_rv,
                                                            key[len(prefix):] + "\x00")
                        if not labels.reqs and not fields.reqs:
                            meta["remainingItemCount"] = len(keys) - i - 1
                    break
        return self._list_body(rt, items, meta)

    # -- TokenReview -------------------------------------------------------------

    def token_review(self, body):
        review = parse_json(body)
        if not isinstance(review, dict) or review.get("kind") not in (None, "TokenReview"):
            raise am.bad_request("the body must be a TokenReview")
        spec = review.get("spec") or {}
        if not spec.get("token"):
            raise am.bad_request("token is required for TokenReview in authentication")
        return {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"creationTimestamp": None}, "spec": spec,
                "status": self.auth.review(spec["token"], spec.get("audiences") or [])}

    # -- seeding -----------------------------------------------------------------

    def load(self, items):
        """Store objects as given, status included, as if written by their
        controllers: bypasses create strategies but not VMI pruning."""
        if not isinstance(items, list):
            raise am.bad_request("load takes a list of objects or {\"items\": [...]}")
        schema = vmi_schema(not self.prune_vmi_status)
        with self.store.lock:
            for raw in items:
                if not isinstance(raw, dict) or not isinstance(raw.get("metadata"), dict) \
                        or not raw["metadata"].get("name"):
                    raise am.bad_request("every object needs metadata.name")
                rt = BY_KIND.get((raw.get("apiVersion"), raw.get("kind")))
                if rt is None:
                    raise am.bad_request(f"not a served kind: {raw.get('apiVersion')}/"
                                         f"{raw.get('kind')}")
                obj = copy.deepcopy(raw)
                if rt is VMI:
                    obj = prune(obj, schema)[0]
                meta = obj["metadata"]
                meta.setdefault("namespace", "default")
                meta.pop("resourceVersion", None)
                old = self.store.get(rt, meta["namespace"], meta["name"])
                meta.setdefault("uid", old["metadata"]["uid"] if old else am.new_uid())
                meta.setdefault("creationTimestamp", am.now_rfc3339())
                if rt.generation:
                    meta.setdefault("generation", 1)
                self.store.put(rt, obj, old)
            return self.store.rv


def bookmark_object(rt, rv):
    """A BOOKMARK carries an empty object of the kind with only the rv."""
    obj = {"kind": rt.kind, "apiVersion": rt.api_version,
           "metadata": {"resourceVersion": str(rv)}}
    if rt.typed:
        obj["metadata"]["creationTimestamp"] = None
        obj.update(copy.deepcopy(TYPED_EMPTY.get(rt.plural, {})))
    return obj


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-apiserver-fixture"
    timeout = 600  # idle keep-alive connections are closed after this

    def log_message(self, fmt, *args):
        if self.server.api.verbose:
            super().log_message(fmt, *args)

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_json(self, code, obj, headers=()):
        data = am.dumps(obj).encode()
        self._code = code
        self.log_pending_entry()  # before the client can see the answer
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_pending_entry(self):
        entry, self._entry = getattr(self, "_entry", None), None
        if entry is not None:
            entry["code"] = self._code
            self.server.api.log_request(entry)

    def dispatch(self):
        api = self.server.api
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        self._code = None
        entry = {"method": self.command, "path": url.path, "query": url.query, "verb": None,
                 "resource": None, "subresource": None, "namespace": None, "name": None,
                 "contentType": self.headers.get("Content-Type"), "user": None, "code": None}
        self._entry = entry
        try:
            body = self.read_body()
            if url.path == "/fixture" or url.path.startswith("/fixture/"):
                entry = self._entry = None  # the fixture's own endpoints are not API traffic
                self.serve_admin(url.path, body)
                return
            if url.path == "/version":
                entry.update(verb="get", resource="version")
                api.apply_fault(ApiRequest(self.command, url.path, query, VERSION_TYPE, "", "", "", "get"))
                self.send_json(200, api.version.info())
                return
            if url.path in PUBLIC_PATHS:
                self._code = 200
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                return
            user, _ = api.auth.authenticate(self.headers.get("Authorization"))
            entry["user"] = user.get("username")
            if url.path == TOKENREVIEWS:
                entry.update(verb="create", resource="tokenreviews")
                if self.command != "POST":
                    raise am.method_not_allowed()
                # Faults apply here too (a TokenReview can fail like any call);
                # tokenreviews is a virtual resource without a registry type.
                api.apply_fault(ApiRequest(self.command, url.path, query, TOKENREVIEW_TYPE,
                                           "", "", "", "create"))
                self.send_json(201, api.token_review(body))
                return
            req = route(self.command, url.path, query)
            entry.update(verb=req.verb, resource=req.rt.plural, subresource=req.subresource,
                         namespace=req.namespace, name=req.name)
            answer_delay = api.apply_fault(req)
            if req.verb == "watch":
                self.serve_watch(req)
                entry = None  # logged when the stream started
                return
            code, obj, warnings = api.handle(req, body, self.headers.get("Content-Type"))
            if answer_delay > 0:
                # Logged as done (it is), then the answer is held back.
                entry["answerDelaySeconds"] = answer_delay
                self._code = code
                self.log_pending_entry()
                time.sleep(answer_delay)
            self.send_json(code, obj, [("Warning", warning_header(w)) for w in warnings])
        except ApiError as e:
            self.send_json(e.code, e.status, list(e.headers.items()) +
                           [("Warning", warning_header(w)) for w in getattr(e, "warnings", [])])
        except (ConnectionError, ssl.SSLError, socket.timeout):
            self.close_connection = True
        except Exception as e:  # a fixture bug: answer like the server would, keep serving
            traceback.print_exc(file=sys.stderr)
            err = am.internal_error(f"fixture: {e!r}")
            self.send_json(500, err.status)
        finally:
            if entry is not None:
                self.log_pending_entry()  # one that got no answer

    # -- watch -------------------------------------------------------------------

    def write_chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def serve_watch(self, req):
        api, q, rt = self.server.api, req.query, req.rt
        rv = q.get("resourceVersion", "")
        try:
            from_rv = None if rv in ("", "0") else int(rv)
            timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else 1800.0
        except ValueError as e:
            raise am.bad_request(f"invalid watch parameter: {e}")
        bookmarks = q.get("allowWatchBookmarks") in TRUE
        watcher = Watcher(rt, req.namespace, am.LabelSelector(q.get("labelSelector")),
                          am.FieldSelector(q.get("fieldSelector"), rt))
        # The watch is registered before the client sees the 200, so a client
        # that has its answer is watching (drop-watches, events made next).
        try:
            api.store.watch(watcher, from_rv)
            error = None
        except ApiError as e:
            error = e
        self._code = 200
        self.log_pending_entry()  # once, when the stream starts
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-cache, private")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if error is not None:
                # Past authn/authz and rv parsing, watch errors are ERROR
                # events in a 200 stream, not HTTP errors (cacher.Watch).
                self.write_chunk(am.dumps({"type": "ERROR", "object": error.status}).encode() + b"\n")
                self.wfile.write(b"0\r\n\r\n")
                return
            deadline = time.monotonic() + timeout
            next_bookmark = time.monotonic() + api.bookmark_interval
            while True:
                now = time.monotonic()
                if now >= deadline:
                    break
                if bookmarks and now >= next_bookmark:
                    api.store.bookmark(watcher)
                    next_bookmark = now + api.bookmark_interval
                wait = deadline - now
                if bookmarks:
                    wait = min(wait, max(next_bookmark - now, 0))
                try:
                    item = watcher.queue.get(timeout=wait)
                except queue.Empty:
                    continue
                if item is CLOSE_RESET:  # like a server crash: no terminating chunk
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if item is CLOSE_GRACEFUL:
                    break
                etype, payload = item
                obj = bookmark_object(rt, payload) if etype == "BOOKMARK" else payload
                self.write_chunk(am.dumps({"type": etype, "object": obj}).encode() + b"\n")
            self.wfile.write(b"0\r\n\r\n")
        except (ConnectionError, ssl.SSLError, socket.timeout, OSError):
            self.close_connection = True
        finally:
            api.store.unwatch(watcher)

    # -- admin endpoints -----------------------------------------------------------

    def serve_admin(self, path, body):
        api = self.server.api
        user, admin = api.auth.authenticate(self.headers.get("Authorization"))
        if not admin:
            raise am.forbidden(f'User "{user.get("username")}" cannot use the fixture '
                               "admin endpoints")
        data = parse_json(body) if body.strip() else {}
        op = (self.command, path)
        if op == ("GET", "/fixture/requests"):
            self.send_json(200, {"requests": api.requests()})
        elif op == ("POST", "/fixture/requests/reset"):
            self.send_json(200, {"cleared": api.reset_requests()})
        elif op == ("GET", "/fixture/faults"):
            self.send_json(200, {"faults": api.faults()})
        elif op == ("POST", "/fixture/faults"):
            specs = data.get("faults", [data]) if isinstance(data, dict) else data
            self.send_json(201, {"faults": api.add_faults(specs)})
        elif op == ("POST", "/fixture/faults/reset"):
            api.reset_faults()
            self.send_json(200, {"faults": []})
        elif op == ("POST", "/fixture/drop-watches"):
            self.send_json(200, {"dropped": api.store.drop_watchers(bool(data.get("graceful")))})
        elif op == ("POST", "/fixture/compact"):
            to = data.get("resourceVersion")
            self.send_json(200, {"resourceVersion": str(api.store.compact(
                int(to) if to is not None else None))})
        elif op == ("POST", "/fixture/load"):
            items = data.get("items") if isinstance(data, dict) else data
            self.send_json(200, {"loaded": len(items or []),
                                 "resourceVersion": str(api.load(items))})
        elif op == ("POST", "/fixture/tokens"):
            token, exp = api.auth.issue(
                data.get("namespace"), data.get("serviceAccount"), data.get("podName"),
                data.get("podUID"), data.get("audiences"), data.get("expirationSeconds", 3600))
            self.send_json(201, {"token": token, "expirationTimestamp":
                                 time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(exp))})
        elif op == ("GET", "/fixture/version"):
            self.send_json(200, api.version.info())
        elif op == ("POST", "/fixture/version"):
            try:
                api.version = ServerVersion(data.get("version"))
            except ValueError as e:
                raise am.bad_request(str(e))
            self.send_json(200, api.version.info())
        elif op == ("GET", "/fixture/pruning"):
            self.send_json(200, {"enabled": api.prune_vmi_status})
        elif op == ("POST", "/fixture/pruning"):
            if not isinstance(data.get("enabled"), bool):
                raise am.bad_request('pruning takes {"enabled": true|false}')
            api.set_pruning(data["enabled"])
            self.send_json(200, {"enabled": api.prune_vmi_status})
        else:
            raise am.not_found_path()


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512
    allow_reuse_address = True

    def __init__(self, address, api, ssl_context):
        self.api = api
        self.ssl_context = ssl_context
        super().__init__(address, Handler)

    def finish_request(self, request, client_address):
        # TLS handshakes run here, in the connection's own thread, so a slow
        # client cannot stall accept().
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request.settimeout(30)
        try:
            conn = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            conn.close()

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError, socket.timeout)):
            super().handle_error(request, client_address)
