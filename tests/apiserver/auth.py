"""Bearer-token authentication and pod-bound service-account tokens.

Tokens are JWTs with the claims a real bound service-account token carries
(iss, sub, aud, exp, iat, nbf, kubernetes.io{namespace, pod, serviceaccount}).
They are signed with HMAC-SHA256 because the standard library has no RSA;
clients treat tokens as opaque, so only the TokenReview answers matter, and
those follow pkg/serviceaccount (claims.go) and the JWT token authenticator.
"""

import base64
import calendar
import hashlib
import hmac
import json
import secrets
import time
import uuid

from apimachinery import POD, ApiError, bad_request, failure, not_found, unauthorized

API_AUDIENCE = "https://kubernetes.default.svc.cluster.local"
ISSUER = API_AUDIENCE
# go-jose validates exp/nbf with a one-minute leeway (jwt.DefaultLeeway).
LEEWAY_SECONDS = 60


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _go_quote_list(values):
    """Go's %q of a []string: ["a" "b"]."""
    return "[" + " ".join(json.dumps(v) for v in values) + "]"


def service_account_uid(namespace, name):
    """The fixture has no ServiceAccount objects; a stable uid stands in."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"serviceaccount/{namespace}/{name}"))


ADMIN_USER = {"username": "fixture-admin", "groups": ["system:masters", "system:authenticated"]}


class Authenticator:
    def __init__(self, store, admin_token=None):
        self.store = store
        self.admin_token = admin_token or secrets.token_urlsafe(32)
        self._key = secrets.token_bytes(32)

    # -- request authentication ---------------------------------------------

    def authenticate(self, authorization_header):
        """(user info, is_admin) for the request, or raises 401."""
        scheme, _, token = (authorization_header or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized()
        if hmac.compare_digest(token.encode(), self.admin_token.encode()):
            return ADMIN_USER, True
        status = self.review(token, [])
        if status.get("authenticated"):
            return status["user"], False
        raise unauthorized()

    # -- issuing (what the kubelet gets through TokenRequest) -----------------

    def issue(self, namespace, service_account, pod_name, pod_uid=None, audiences=None,
              expiration_seconds=3600):
        """A token bound to pod NAMESPACE/POD_NAME. Refused, as TokenRequest
        does, unless the pod runs as SERVICE_ACCOUNT; a POD_UID that does not
        match the live pod is a conflict. EXPIRATION_SECONDS may be negative
        to get a token that is already expired."""
        for name, value in (("namespace", namespace), ("serviceAccount", service_account),
                            ("podName", pod_name)):
            if not isinstance(value, str) or not value:
                raise bad_request(f"{name} is required")
        pod = self.store.get(POD, namespace, pod_name)
        if pod is None:
            raise not_found(POD, pod_name)
        if (pod.get("spec") or {}).get("serviceAccountName", "default") != service_account:
            raise bad_request(f'cannot bind token for serviceaccount "{service_account}" '
                              "to pod running with different serviceaccount name.")
        live_uid = pod["metadata"]["uid"]
        if pod_uid and pod_uid != live_uid:
            raise ApiError(failure(409, "Conflict",
                                   f'Operation cannot be fulfilled on Pod "{pod_name}": the UID '
                                   f"in the bound object reference ({pod_uid}) does not match "
                                   "the UID in record. The object might have been deleted and "
                                   "then recreated",
                                   {"name": pod_name, "kind": "Pod"}))
        audiences = list(audiences or [API_AUDIENCE])
        try:
            lifetime = int(expiration_seconds)
        except (TypeError, ValueError):
            raise bad_request(f"invalid expirationSeconds: {expiration_seconds!r}")
        now = int(time.time())
        exp = now + lifetime
        claims = {
            "aud": audiences, "exp": exp, "iat": now, "iss": ISSUER,
            "kubernetes.io": {
                "namespace": namespace,
                "pod": {"name": pod_name, "uid": live_uid},
                "serviceaccount": {"name": service_account,
                                   "uid": service_account_uid(namespace, service_account)},
            },
            "nbf": now, "sub": f"system:serviceaccount:{namespace}:{service_account}",
        }
        header = _b64(json.dumps({"alg": "HS256", "kid": "fixture"}).encode())
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = _b64(hmac.new(self._key, f"{header}.{payload}".encode(),
                                  hashlib.sha256).digest())
        return f"{header}.{payload}.{signature}", exp

    # -- TokenReview ---------------------------------------------------------

    def _claims(self, token):
        parts = token.split(".")
        if len(parts) != 3:
            return None
        expected = _b64(hmac.new(self._key, f"{parts[0]}.{parts[1]}".encode(),
                                 hashlib.sha256).digest())
        if not hmac.compare_digest(expected, parts[2]):
            return None
        try:
            claims = json.loads(_unb64(parts[1]))
        except ValueError:
            return None
        return claims if claims.get("iss") == ISSUER else None

    def review(self, token, audiences):
        """TokenReviewStatus for TOKEN against AUDIENCES (empty: the API
        server's own audience)."""
        claims = self._claims(token)
        if claims is None:
            return {"user": {}, "error": "invalid bearer token"}
        requested = list(audiences) or [API_AUDIENCE]
        token_auds = claims.get("aud") or []
        granted = [a for a in token_auds if a in requested]
        if not granted:
            return {"user": {}, "error": "[invalid bearer token, token audiences "
                    f"{_go_quote_list(token_auds)} is invalid for the target audiences "
                    f"{_go_quote_list(requested)}]"}
        now = time.time()
        if now > claims["exp"] + LEEWAY_SECONDS:
            return {"user": {}, "error": "[invalid bearer token, Token has expired.]"}
        if now < claims["nbf"] - LEEWAY_SECONDS:
            return {"user": {}, "error": "[invalid bearer token, Token could not be validated.]"}
        k8s = claims["kubernetes.io"]
        ns, pod_ref, sa = k8s["namespace"], k8s["pod"], k8s["serviceaccount"]
        pod = self.store.get(POD, ns, pod_ref["name"])
        # A token dies with its pod: deleted, or replaced by one with a new uid.
        if pod is None or (pod["metadata"].get("deletionTimestamp") and
                           _parse_time(pod["metadata"]["deletionTimestamp"])
                           < now - LEEWAY_SECONDS):
            return {"user": {}, "error": "[invalid bearer token, Token has been invalidated]"}
        if pod["metadata"]["uid"] != pod_ref["uid"]:
            return {"user": {}, "error": f"[invalid bearer token, Pod UID "
                    f"({pod['metadata']['uid']}) does not match claim ({pod_ref['uid']})]"}
        return {
            "authenticated": True,
            "user": {
                "username": f"system:serviceaccount:{ns}:{sa['name']}",
                "uid": sa["uid"],
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ns}",
                           "system:authenticated"],
                "extra": {
                    "authentication.kubernetes.io/pod-name": [pod_ref["name"]],
                    "authentication.kubernetes.io/pod-uid": [pod_ref["uid"]],
                },
            },
            "audiences": granted,
        }


def _parse_time(text):
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))
