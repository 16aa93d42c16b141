#!/usr/bin/env python3
"""Tests of the Helm chart helm/kubevirt-guest-metrics, offline.

Runs `helm lint --strict` and `helm template` on the chart with its default
values and with every ci/*-values.yaml scenario, and checks what comes out:
the webhook fails open and only sees launcher pods, the status-reporter runs
locked down with exactly the RBAC it needs and flags it understands, the
PrometheusRule is the rule file of promrules/ (with the values applied), the
dashboard is promrules/'s dashboard, and the schema refuses what it should.
With --promtool, PromtoolTests also run promrules/tests/*_test.yaml against the
rule groups rendered by the chart, and promtool checks every scenario's rules.

Needs: helm, python3 with PyYAML (Debian: python3-yaml; run with /usr/bin/python3
where another python3 comes first on PATH), openssl; promtool for PromtoolTests.

Usage: test_chart.py [--helm HELM] [--promtool PROMTOOL] [--status-reporter BIN]
                     [--guest-exporter BIN] [unittest arguments]
With the built binaries, the chart's flags are checked against their --help.
HELM defaults to $HELM, then scripts/install-helm.sh's install path, then PATH.
"""

import argparse
import base64
import concurrent.futures
import copy
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import unittest

try:
    import yaml
except ImportError:
    sys.exit(f"test_chart.py: PyYAML is missing for {sys.executable} (Debian package python3-yaml; "
             "run this test with /usr/bin/python3)")

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
CHART = os.path.join(REPO, "helm", "kubevirt-guest-metrics")
RULES = os.path.join(REPO, "promrules", "kubevirt-guest-metrics.rules.yaml")
VEP67_NAMES = os.path.join(REPO, "promrules", "kubevirt-vep67-names.rules.yaml")
DASHBOARD = os.path.join(REPO, "promrules", "dashboards", "kubevirt-guest-metrics.json")
PROMTOOL_TESTS = os.path.join(REPO, "promrules", "tests")
REPORTER_MAIN = os.path.join(REPO, "status-reporter", "src", "main.cpp")
REPORTER_LEADERSHIP = os.path.join(REPO, "status-reporter", "src", "leadership.h")
SHARED_CLI = os.path.join(REPO, "common", "include", "gm", "cli.h")
REPORTER_ADMISSION = os.path.join(REPO, "status-reporter", "src", "admission.cpp")

RELEASE = "kubevirt-guest-metrics"
NAMESPACE = "guest-metrics"
FULLNAME = "kubevirt-guest-metrics"
REPORTER = "kubevirt-guest-metrics-status-reporter"
GUEST_LOAD_GROUP = "kubevirt-guest-metrics.guest-load"
OWN_QUEUE = "vmi_node:kubevirt_vmi_guest_queue_length:clamp_min"
OPT_OUT_LABEL = "guestmetrics.kubevirt.io/inject"
SOURCE_RUNBOOK_BASE = "https://kubevirt.io/monitoring/runbooks/"

LEADER_LABEL = "guestmetrics.kubevirt.io/leader"

HELM = None
PROMTOOL = None
# Built binaries (optional): their --help is checked against what the chart sets.
STATUS_REPORTER = None
GUEST_EXPORTER = None
# node_modules holding @bufbuild/cel (scripts/install-cel.sh), for AdmissionPolicy.
CEL_MODULES = None


def run(cmd, check=True, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stderr}{p.stdout}")
    return p


def helm(*args, check=True):
    return run([HELM, *args], check=check)


def parallel(fn, items):
    """fn over items on a few threads (helm spends much of its time starting up)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(fn, items))


def scenario_files():
    return sorted(glob.glob(os.path.join(CHART, "ci", "*-values.yaml")))


def scenario_name(path):
    return os.path.basename(path)[: -len("-values.yaml")]


_renders = {}

# The API groups a cluster serves beyond Kubernetes' own, as `helm template
# --api-versions` gives them to .Capabilities. Most tests render for a cluster
# with prometheus-operator; Capabilities renders without it.
MONITORING = ("monitoring.coreos.com/v1",)
VAP = "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy"


def render(values_file=None, sets=(), chart=CHART, release=RELEASE, extra=(), apis=MONITORING):
    """helm template, parsed: a list of objects (cached per arguments)."""
    key = (values_file, tuple(sets), chart, release, tuple(extra), tuple(apis))
    if key not in _renders:
        args = ["template", release, chart, "--namespace", NAMESPACE, *extra]
        for api in apis:
            args += ["--api-versions", api]
        if values_file:
            args += ["-f", values_file]
        for s in sets:
            args += ["--set", s]
        out = helm(*args).stdout
        _renders[key] = [d for d in yaml.safe_load_all(out) if d]
    return copy.deepcopy(_renders[key])


def setUpModule():
    # Render the scenarios that most tests look at, side by side.
    parallel(lambda f: render(f), [None, *scenario_files()])


def objects(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind, name=None):
    found = [d for d in objects(docs, kind) if name is None or d["metadata"]["name"] == name]
    if len(found) != 1:
        raise AssertionError(f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}")
    return found[0]


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def values_of(values_file):
    defaults = load_yaml(os.path.join(CHART, "values.yaml"))
    if values_file:
        merge(defaults, load_yaml(values_file) or {})
    return defaults


def merge(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            merge(dst[k], v)
        else:
            dst[k] = v


# The alerts that KubeVirt ships itself, with a runbook on its site
# (kubevirt/monitoring, docs/runbooks/<AlertName>.md).
KUBEVIRT_RUNBOOKS = {"GuestVCPUQueueHighWarning", "GuestVCPUQueueHighCritical"}
KUBEVIRT_RUNBOOK_BASE = "https://kubevirt.io/monitoring/runbooks/"
RUNBOOKS = os.path.join(REPO, "runbooks")


def runbooks_configmap():
    return f"{FULLNAME}-runbooks"


def source_runbook(name):
    """The runbook_url of the rule file (promrules/tests/check_runbooks.py)."""
    return SOURCE_RUNBOOK_BASE + name if name in KUBEVIRT_RUNBOOKS else f"runbooks/{name}.md"


def default_runbook(name, values=None):
    """The runbook_url the chart gives an alert (templates/_rules.tpl)."""
    alerts = (values or values_of(None))["alerts"]
    if alerts["runbookBaseURL"]:
        return f"{alerts['runbookBaseURL']}{name}{alerts['runbookURLSuffix']}"
    if name in KUBEVIRT_RUNBOOKS:
        return KUBEVIRT_RUNBOOK_BASE + name
    return f"/api/v1/namespaces/{NAMESPACE}/configmaps/{runbooks_configmap()}#{name}.md"


def source_groups(values=None):
    """promrules' groups with runbook_url moved to the chart's base URL."""
    groups = load_yaml(RULES)["groups"]
    for g in groups:
        for r in g["rules"]:
            if "alert" in r:
                assert r["annotations"]["runbook_url"] == source_runbook(r["alert"]), r["annotations"]["runbook_url"]
                r["annotations"]["runbook_url"] = default_runbook(r["alert"], values)
    return groups


def vep67_names_groups():
    """promrules' VEP 67 names file: the chart adds it in the `none` case."""
    return load_yaml(VEP67_NAMES)["groups"]


def rule_groups(docs):
    return one(docs, "PrometheusRule")["spec"]["groups"]


def alerts_by_name(groups):
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def reporter_flags(main_cpp=REPORTER_MAIN):
    with open(main_cpp) as f:
        source = f.read()
    flags = set(re.findall(r'Flag\(app,\s*"([a-z0-9-]+)"', source))
    if "gm::AddLogFlags(" in source:  # the logging flags both binaries share
        with open(SHARED_CLI) as f:
            shared = f.read()
        body = shared[shared.index("inline void AddLogFlags("):]
        flags |= set(re.findall(r'AddFlag\(app,\s*env_prefix,\s*"([a-z0-9-]+)"', body))
    return flags


def leader_label_of_controller():
    """The label the status-reporter puts on its own pod while it leads."""
    with open(REPORTER_LEADERSHIP) as f:
        m = re.search(r'kLeaderLabel\s*=\s*"([^"]+)"', f.read())
    assert m, f"kLeaderLabel not found in {REPORTER_LEADERSHIP}"
    return m.group(1)


def help_of(binary, *args):
    return run([binary, *args, "--help"]).stdout


def container(docs):
    dep = one(docs, "Deployment", REPORTER)
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return dep, c


def args_of(c):
    out = {}
    for a in c["args"]:
        m = re.fullmatch(r"--([a-z0-9-]+)=(.*)", a)
        assert m, f"argument {a!r} is not --flag=value"
        assert m.group(1) not in out, f"--{m.group(1)} given twice"
        out[m.group(1)] = m.group(2)
    return out


class LintAndSchema(unittest.TestCase):
    def test_lint_strict_every_scenario(self):
        self.assertGreaterEqual(len(scenario_files()), 6, "ci/*-values.yaml scenarios are missing")
        files = [None, *scenario_files()]
        results = parallel(lambda f: helm("lint", "--strict", CHART, *(["-f", f] if f else []), check=False), files)
        for f, p in zip(files, results):
            with self.subTest(scenario=scenario_name(f) if f else "chart defaults"):
                self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
                self.assertNotIn("[WARNING]", p.stdout)
                self.assertNotIn("[ERROR]", p.stdout)

    def test_schema_rejects_unknown_keys_and_wrong_types(self):
        bad = {
            "unknown top-level key": ["nope=1"],
            "unknown nested key": ["statusReporter.nope=1"],
            "unknown key in an alert": ["alerts.GuestVCPUQueueHighWarning.treshold=5"],
            "threshold on an alert without one": ["alerts.GuestLoadMetricsMissing.threshold=5"],
            "unknown alert": ["alerts.GuestSomethingElse.enabled=false"],
            "string for an integer": ["statusReporter.replicas=two"],
            "string for a boolean": ["webhook.enabled=maybe"],
            "webhook timeout above 10 s": ["webhook.timeoutSeconds=30"],
            "unknown severity": ["alerts.GuestVCPUQueueHighCritical.severity=page"],
            "not a duration": ["alerts.GuestMetricsStatusReporterDown.for=ten minutes"],
            "negative threshold": ["alerts.GuestVCPUQueueHighWarning.threshold=-1"],
            "unknown log format": ["statusReporter.logFormat=xml"],
            "rbac.events (removed: the status-reporter creates no Events)": ["rbac.events=true"],
        }
        def lint(sets):
            args = ["lint", "--strict", CHART]
            for s in sets:
                args += ["--set", s]
            return helm(*args, check=False)

        results = parallel(lint, bad.values())
        for (what, sets), p in zip(bad.items(), results):
            with self.subTest(what):
                self.assertNotEqual(p.returncode, 0, f"{sets} was accepted")
                self.assertIn("schema", p.stdout + p.stderr)

    def test_schema_is_closed_at_every_level(self):
        schema = load_yaml(os.path.join(CHART, "values.schema.json"))
        self.assertEqual(schema["$schema"], "http://json-schema.org/draft-07/schema#")

        def walk(node, path):
            if not isinstance(node, dict):
                return
            is_object = node.get("type") == "object" or "properties" in node
            if is_object and path != "/global":  # Helm's globals belong to a parent chart
                if "properties" in node:
                    self.assertIs(node.get("additionalProperties"), False, f"{path or '/'} is open")
                else:
                    # Maps (labels, annotations) constrain their values; a
                    # Kubernetes object handed through says so.
                    self.assertTrue("additionalProperties" in node or "Kubernetes" in node.get("description", ""),
                                    f"{path} accepts anything")
            for k, v in node.get("properties", {}).items():
                walk(v, f"{path}/{k}")
            for k in ("items", "additionalProperties"):
                if isinstance(node.get(k), dict):
                    walk(node[k], f"{path}/{k}")
            for v in node.get("anyOf", []):
                walk(v, path)

        walk(schema, "")

    def test_every_values_key_is_commented(self):
        # Keys inside Kubernetes objects given as defaults are commented as a whole.
        passthrough = {("statusReporter", "resources"), ("statusReporter", "strategy"), ("webhook", "namespaceSelector"),
                       ("statusReporter", "podSecurityContext"), ("statusReporter", "securityContext"),
                       ("networkPolicy", "webhookFrom"), ("networkPolicy", "metricsFrom")}
        stack, previous, missing = [], "", []
        with open(os.path.join(CHART, "values.yaml")) as f:
            for n, line in enumerate(f, 1):
                m = re.match(r"^(\s*)([A-Za-z][A-Za-z0-9_.-]*):(\s|$)", line)
                if m:
                    indent = len(m.group(1))
                    while stack and stack[-1][0] >= indent:
                        stack.pop()
                    parents = tuple(k for _, k in stack)
                    stack.append((indent, m.group(2)))
                    inside = any(parents[: len(p)] == p for p in passthrough)
                    if not inside and not previous.startswith("#"):
                        missing.append(f"line {n}: {'.'.join(parents + (m.group(2),))}")
                if line.strip():
                    previous = line.strip()
        self.assertEqual(missing, [], "keys without a comment right above them")

    def test_kube_version(self):
        self.assertNotEqual(helm("template", RELEASE, CHART, "--kube-version", "1.28.9", check=False).returncode, 0,
                            "native sidecars need Kubernetes 1.29")
        helm("template", RELEASE, CHART, "--kube-version", "1.29.0")


class Webhook(unittest.TestCase):
    def test_webhook_in_every_scenario(self):
        for f in [None, *scenario_files()]:
            values = values_of(f)
            docs = render(f)
            with self.subTest(scenario=scenario_name(f) if f else "defaults"):
                hooks = objects(docs, "MutatingWebhookConfiguration")
                if not values["webhook"]["enabled"]:
                    self.assertEqual(hooks, [])
                    continue
                self.assertEqual(len(hooks), 1)
                cfg = hooks[0]
                (w,) = cfg["webhooks"]
                self.assertEqual(w["failurePolicy"], "Ignore")
                self.assertLessEqual(w["timeoutSeconds"], 10)
                self.assertEqual(w["timeoutSeconds"], values["webhook"]["timeoutSeconds"])
                self.assertEqual(w["sideEffects"], "None")
                self.assertEqual(w["admissionReviewVersions"], ["v1"])
                self.assertEqual(w["reinvocationPolicy"], "Never")
                self.assertEqual(w["rules"], [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                               "resources": ["pods"], "scope": "Namespaced"}])
                self.assertEqual(w["objectSelector"], {
                    "matchLabels": {"kubevirt.io": "virt-launcher"},
                    "matchExpressions": [{"key": OPT_OUT_LABEL, "operator": "NotIn", "values": ["false"]}],
                })
                self.assertEqual(w["namespaceSelector"], values["webhook"]["namespaceSelector"])
                svc = w["clientConfig"]["service"]
                self.assertEqual(svc, {"name": REPORTER, "namespace": NAMESPACE, "path": "/mutate",
                                       "port": values["service"]["port"]})
                service = one(docs, "Service", REPORTER)
                self.assertIn(svc["port"], [p["port"] for p in service["spec"]["ports"]])
                if values["tls"]["certManager"]["enabled"]:
                    self.assertNotIn("caBundle", w["clientConfig"])
                    ref = cfg["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
                    ns, name = ref.split("/")
                    self.assertEqual(ns, NAMESPACE)
                    cert = one(docs, "Certificate", name)
                    self.assertEqual(cert["spec"]["secretName"], f"{REPORTER}-tls")
                    self.assertEqual(objects(docs, "Secret"), [])
                else:
                    secret = one(docs, "Secret", f"{REPORTER}-tls")
                    self.assertEqual(w["clientConfig"]["caBundle"], secret["data"]["ca.crt"])
                    self.assertNotIn("annotations", cfg["metadata"])

    def test_namespace_selector_default_honours_opt_out_label(self):
        w = one(render(), "MutatingWebhookConfiguration")["webhooks"][0]
        self.assertEqual(w["namespaceSelector"], {
            "matchExpressions": [{"key": OPT_OUT_LABEL, "operator": "NotIn", "values": ["false"]}]})

    def test_generated_certificate_is_signed_by_the_bundle_and_names_the_service(self):
        openssl = shutil.which("openssl")
        self.assertIsNotNone(openssl, "openssl is needed")
        docs = render()
        data = {k: base64.b64decode(v).decode() for k, v in one(docs, "Secret", f"{REPORTER}-tls")["data"].items()}
        self.assertEqual(one(docs, "Secret", f"{REPORTER}-tls")["type"], "kubernetes.io/tls")
        with tempfile.TemporaryDirectory() as tmp:
            for k, v in data.items():
                with open(os.path.join(tmp, k), "w") as f:
                    f.write(v)
            run([openssl, "verify", "-CAfile", os.path.join(tmp, "ca.crt"), os.path.join(tmp, "tls.crt")])
            out = run([openssl, "x509", "-noout", "-ext", "subjectAltName", "-in", os.path.join(tmp, "tls.crt")]).stdout
            sans = {s.strip() for s in out.split("\n", 1)[1].split(",")}
            self.assertEqual(sans, {f"DNS:{n}" for n in (REPORTER, f"{REPORTER}.{NAMESPACE}", f"{REPORTER}.{NAMESPACE}.svc")})
            cert_key = run([openssl, "x509", "-noout", "-pubkey", "-in", os.path.join(tmp, "tls.crt")]).stdout
            key_key = run([openssl, "pkey", "-pubout", "-in", os.path.join(tmp, "tls.key")]).stdout
            self.assertEqual(cert_key, key_key, "tls.key does not belong to tls.crt")
        # Pods roll when the certificate changes.
        dep, _ = container(docs)
        self.assertEqual(dep["spec"]["template"]["metadata"]["annotations"]["checksum/tls"],
                         hashlib.sha256(data["tls.crt"].encode()).hexdigest())

    def test_cert_manager_chain(self):
        docs = render(os.path.join(CHART, "ci", "cert-manager-values.yaml"))
        issuers = {d["metadata"]["name"]: d["spec"] for d in objects(docs, "Issuer")}
        certs = {d["metadata"]["name"]: d["spec"] for d in objects(docs, "Certificate")}
        self.assertEqual(issuers[f"{REPORTER}-selfsigned"], {"selfSigned": {}})
        ca = certs[f"{REPORTER}-ca"]
        self.assertTrue(ca["isCA"])
        self.assertEqual(ca["issuerRef"]["name"], f"{REPORTER}-selfsigned")
        self.assertEqual(issuers[f"{REPORTER}-ca"], {"ca": {"secretName": ca["secretName"]}})
        serving = certs[f"{REPORTER}-tls"]
        self.assertEqual(serving["issuerRef"]["name"], f"{REPORTER}-ca")
        self.assertEqual(serving["dnsNames"], [REPORTER, f"{REPORTER}.{NAMESPACE}", f"{REPORTER}.{NAMESPACE}.svc"])
        self.assertEqual((serving["duration"], serving["renewBefore"]), ("720h", "240h"))
        dep, _ = container(docs)
        self.assertNotIn("checksum/tls", dep["spec"]["template"]["metadata"].get("annotations", {}))


class StatusReporter(unittest.TestCase):
    def test_deployment_is_locked_down_in_every_scenario(self):
        for f in [None, *scenario_files()]:
            values = values_of(f)
            with self.subTest(scenario=scenario_name(f) if f else "defaults"):
                dep, c = container(render(f))
                spec = dep["spec"]["template"]["spec"]
                self.assertEqual(dep["spec"]["replicas"], values["statusReporter"]["replicas"])
                psc = spec["securityContext"]
                self.assertIs(psc["runAsNonRoot"], True)
                self.assertEqual(psc["seccompProfile"], {"type": "RuntimeDefault"})
                sc = c["securityContext"]
                self.assertIs(sc["runAsNonRoot"], True)
                self.assertEqual(sc.get("runAsUser"), values["statusReporter"]["securityContext"].get("runAsUser"))
                self.assertIs(sc["readOnlyRootFilesystem"], True)
                self.assertIs(sc["allowPrivilegeEscalation"], False)
                self.assertEqual(sc["capabilities"], {"drop": ["ALL"]})
                self.assertNotIn("privileged", sc)
                self.assertEqual(sc["seccompProfile"], {"type": "RuntimeDefault"})
                self.assertNotIn("hostNetwork", spec)
                self.assertNotIn("hostPID", spec)
                self.assertTrue(c["resources"]["requests"])
                self.assertIn("memory", c["resources"]["limits"])

    def test_defaults(self):
        docs = render()
        dep, c = container(docs)
        spec = dep["spec"]["template"]["spec"]
        self.assertEqual(dep["spec"]["replicas"], 2)
        self.assertEqual(c["command"], ["/usr/local/bin/status-reporter"])
        # The tag defaults to the chart's appVersion, which is VERSION (lint.version).
        with open(os.path.join(REPO, "VERSION")) as f:
            version = f.read().strip()
        self.assertEqual(c["image"], "ghcr.io/kubevirt-guest-metrics/kubevirt-guest-metrics:" + version)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        self.assertEqual(ports, {"https": 8443, "http-metrics": 8080})
        self.assertEqual(c["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "http-metrics"})
        self.assertEqual(c["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "http-metrics"})
        # Soft spreading over nodes.
        term = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
        self.assertEqual(term["podAffinityTerm"]["topologyKey"], "kubernetes.io/hostname")
        self.assertEqual(term["podAffinityTerm"]["labelSelector"]["matchLabels"], dep["spec"]["selector"]["matchLabels"])
        # An ordinary rolling update: every replica is Ready once synced, so a
        # new one is Ready before an old one goes.
        self.assertEqual(dep["spec"]["strategy"], {"type": "RollingUpdate",
                                                   "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
        # Ready means caches synced, on every replica (not "is the leader").
        self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
        # Drains take one replica at a time.
        pdb = one(docs, "PodDisruptionBudget", REPORTER)
        self.assertEqual(pdb["spec"]["minAvailable"], 1)
        self.assertEqual(pdb["spec"]["selector"]["matchLabels"], dep["spec"]["selector"]["matchLabels"])
        self.assertNotIn(LEADER_LABEL, pdb["spec"]["selector"]["matchLabels"])
        self.assertEqual(pdb["spec"]["unhealthyPodEvictionPolicy"], "AlwaysAllow")

    def test_pdb_needs_more_replicas_than_it_keeps(self):
        for sets in (["statusReporter.replicas=1"], ["statusReporter.replicas=3", "statusReporter.podDisruptionBudget.minAvailable=3"]):
            with self.subTest(sets=sets):
                args = ["template", RELEASE, CHART]
                for s in sets:
                    args += ["--set", s]
                p = helm(*args, check=False)
                self.assertNotEqual(p.returncode, 0, f"{sets} rendered a PodDisruptionBudget that blocks every drain")
                self.assertIn("must be below statusReporter.replicas", p.stderr)
        docs = render(sets=["statusReporter.replicas=1", "statusReporter.podDisruptionBudget.enabled=false"])
        self.assertEqual(objects(docs, "PodDisruptionBudget"), [])
        docs = render(sets=["statusReporter.podDisruptionBudget.minAvailable=50%"])
        self.assertEqual(one(docs, "PodDisruptionBudget")["spec"]["minAvailable"], "50%")

    def test_flags(self):
        docs = render()
        dep, c = container(docs)
        a = args_of(c)
        self.assertEqual(a["namespace"], "$(POD_NAMESPACE)")
        self.assertEqual(a["identity"], "$(POD_NAME)")
        env = {e["name"]: e for e in c["env"]}
        self.assertEqual(env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.namespace")
        self.assertEqual(env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name")
        self.assertEqual(a["https-address"], ":8443")
        self.assertEqual(a["metrics-address"], ":8080")
        self.assertEqual(a["audience"], "kubevirt-guest-metrics")
        self.assertEqual(a["export-guest-load"], "true")
        self.assertEqual(a["log-format"], "json")
        self.assertEqual(a["sidecar-image"], c["image"])
        self.assertEqual(a["sidecar-reporter-url"], f"https://{REPORTER}.{NAMESPACE}.svc/v1/reports")
        self.assertEqual((a["sidecar-interval"], a["sidecar-cpu"], a["sidecar-memory"]), ("120", "10m", "24Mi"))
        for flag in ("qps", "burst", "workers"):
            self.assertIn(flag, a)
        self.assertNotIn("report-max-age", a)
        self.assertNotIn("sidecar-token-expiration", a)
        # TLS files and the CA bundle come from the TLS Secret's mount.
        (mount,) = c["volumeMounts"]
        (vol,) = [v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
        self.assertEqual(vol["secret"]["secretName"], f"{REPORTER}-tls")
        self.assertTrue(mount["readOnly"])
        for flag, key in (("tls-cert-file", "tls.crt"), ("tls-key-file", "tls.key"), ("sidecar-ca-file", "ca.crt")):
            self.assertEqual(a[flag], f"{mount['mountPath']}/{key}")
        # The Lease the Role allows is the one the status-reporter uses.
        role = one(docs, "Role", REPORTER)
        names = {n for r in role["rules"] for n in r.get("resourceNames", [])}
        self.assertEqual(names, {a["lease-name"]})

    def test_flags_are_known_to_the_status_reporter(self):
        known = reporter_flags()
        self.assertIn("sidecar-reporter-url", known, f"could not read the flags of {REPORTER_MAIN}")
        for f in [None, *scenario_files()]:
            with self.subTest(scenario=scenario_name(f) if f else "defaults"):
                _, c = container(render(f))
                self.assertEqual(set(args_of(c)) - known, set(), "flags status-reporter does not define")
                for e in c.get("env", []):
                    if e["name"].startswith("STATUS_REPORTER_"):
                        flag = e["name"][len("STATUS_REPORTER_"):].lower().replace("_", "-")
                        self.assertIn(flag, known, e["name"])

    def test_flags_are_in_the_built_status_reporters_help(self):
        if not STATUS_REPORTER:
            self.skipTest("no status-reporter binary given (--status-reporter)")
        text = help_of(STATUS_REPORTER)
        known = set(re.findall(r"^\s+--([a-z0-9-]+)", text, re.M))
        self.assertIn("sidecar-reporter-url", known, text)
        for f in [None, *scenario_files()]:
            with self.subTest(scenario=scenario_name(f) if f else "defaults"):
                _, c = container(render(f))
                self.assertEqual(set(args_of(c)) - known, set(), "flags the built status-reporter does not have")
                # The environment it reads: POD_NAMESPACE and POD_NAME feed
                # --namespace/--identity; STATUS_REPORTER_* would be flags.
                for e in c.get("env", []):
                    self.assertIn(e["name"], text, f"{e['name']} is not read by status-reporter")

    def test_injected_sidecar_settings_are_in_the_built_guest_exporters_help(self):
        # The chart's sidecar values reach guest-exporter as the variables the
        # webhook injects (admission.cpp): each must be one it reads.
        if not GUEST_EXPORTER:
            self.skipTest("no guest-exporter binary given (--guest-exporter)")
        with open(REPORTER_ADMISSION) as f:
            injected = set(re.findall(r'"(GUEST_EXPORTER_[A-Z0-9_]+)"', f.read()))
        self.assertIn("GUEST_EXPORTER_GUEST_INFO_INTERVAL", injected)  # sidecar.intervalSeconds
        self.assertIn("GUEST_EXPORTER_LISTEN_ADDRESS", injected)       # podMonitor.port
        known = set(re.findall(r"GUEST_EXPORTER_[A-Z0-9_]+", help_of(GUEST_EXPORTER)))
        self.assertEqual(injected - known, set(), "variables guest-exporter does not read")

    def test_guest_load_off_turns_off_the_reporter_gauges(self):
        _, c = container(render(os.path.join(CHART, "ci", "guest-load-off-values.yaml")))
        self.assertEqual(args_of(c)["export-guest-load"], "false")

    def test_minimal_scenario(self):
        docs = render(os.path.join(CHART, "ci", "minimal-values.yaml"))
        dep, c = container(docs)
        self.assertEqual(dep["spec"]["template"]["spec"]["serviceAccountName"], "guest-metrics")
        for kind in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
                     "MutatingWebhookConfiguration", "ServiceMonitor", "PrometheusRule", "ConfigMap", "PodMonitor"):
            self.assertEqual(objects(docs, kind), [], kind)
        self.assertEqual(c["image"], "registry.example.com/kgm/kubevirt-guest-metrics:0.1.0-rc1@sha256:"
                         "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
        a = args_of(c)
        self.assertEqual((a["report-max-age"], a["sidecar-token-expiration"]), ("600", "7200"))
        pdb = one(docs, "PodDisruptionBudget")
        self.assertEqual(pdb["spec"]["minAvailable"], 1)
        self.assertEqual(pdb["spec"]["selector"]["matchLabels"], dep["spec"]["selector"]["matchLabels"])
        self.assertEqual(dep["spec"]["replicas"], 3)
        self.assertIn("requiredDuringSchedulingIgnoredDuringExecution",
                      dep["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"])

    def test_services(self):
        docs = render()
        dep, _ = container(docs)
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(set(dep["spec"]["selector"]["matchLabels"].items()) <= set(pod_labels.items()))
        main = one(docs, "Service", REPORTER)
        metrics = one(docs, "Service", f"{REPORTER}-metrics")
        # Reports and webhook calls go to the leader only: the label the
        # status-reporter puts on its own pod while it leads, and which no
        # pod carries from the template (else every replica would match).
        label = leader_label_of_controller()
        self.assertEqual(label, LEADER_LABEL)
        self.assertEqual(main["spec"]["selector"], {**dep["spec"]["selector"]["matchLabels"], label: "true"})
        self.assertNotIn(label, pod_labels)
        self.assertNotIn(label, dep["spec"]["selector"]["matchLabels"])
        self.assertTrue(set(metrics["spec"]["selector"].items()) <= set(pod_labels.items()))
        self.assertNotIn(label, metrics["spec"]["selector"])  # every replica is scraped
        self.assertEqual(main["spec"]["ports"], [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}])
        self.assertNotIn("publishNotReadyAddresses", main["spec"])  # a leader whose caches are not synced gets nothing
        self.assertEqual(metrics["spec"]["ports"],
                         [{"name": "http-metrics", "port": 8080, "targetPort": "http-metrics", "protocol": "TCP"}])
        self.assertIs(metrics["spec"]["publishNotReadyAddresses"], True)  # every replica is scraped

    def test_names_fit_with_the_longest_release_name(self):
        release = "r" * 53  # Helm's limit
        docs = render(release=release)
        for d in docs:
            self.assertLessEqual(len(d["metadata"]["name"]), 63, d["metadata"]["name"])
            for k, v in d["metadata"].get("labels", {}).items():
                self.assertLessEqual(len(str(v)), 63, f"{d['kind']} label {k}")


class Rbac(unittest.TestCase):
    # What the status-reporter's code requests, and nothing else:
    # pods: informer list/watch, ratio annotations and its own leader label (patch);
    # VMIs: informer list/watch, the webhook's get, annotations (patch), status patch;
    # kubevirts: the webhook lists them (never a get by name); TokenReviews.
    CLUSTER = {
        ("", "pods"): {"list", "watch", "patch"},
        ("kubevirt.io", "virtualmachineinstances"): {"get", "list", "watch", "patch"},
        ("kubevirt.io", "virtualmachineinstances/status"): {"patch"},
        ("kubevirt.io", "kubevirts"): {"list"},
        ("authentication.k8s.io", "tokenreviews"): {"create"},
    }

    @staticmethod
    def grants(role):
        """Every (group, resource, verb, resourceName or '*') the role grants."""
        out = set()
        for r in role["rules"]:
            assert "nonResourceURLs" not in r, r
            for g in r["apiGroups"]:
                for res in r["resources"]:
                    for v in r["verbs"]:
                        for n in r.get("resourceNames") or ["*"]:
                            out.add((g, res, v, n))
        return out

    # The VMI CRD, by name only: the reporter reads it, then lists and watches
    # it with a metadata.name field selector (vmi_crd_watch.cpp).
    # Report states (injection_watch.cpp): its own webhook configuration by
    # name, and the list of opted-out namespaces.
    REPORT_STATES = {("admissionregistration.k8s.io", "mutatingwebhookconfigurations", "get", FULLNAME),
                     ("", "namespaces", "list", "*")}
    VMI_CRD = {("apiextensions.k8s.io", "customresourcedefinitions", v, "virtualmachineinstances.kubevirt.io")
               for v in ("get", "list", "watch")}

    def test_cluster_role_is_exactly_what_is_needed(self):
        role = one(render(), "ClusterRole", REPORTER)
        self.assertNotIn("aggregationRule", role)
        want = {(g, res, v, "*") for (g, res), verbs in self.CLUSTER.items() for v in verbs}
        self.assertEqual(self.grants(role), want | self.REPORT_STATES | self.VMI_CRD)
        for r in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                self.assertNotIn("*", r[field])

    def test_ratios_off_drops_the_crd_rule_and_tells_the_reporter(self):
        docs = render(sets=("ratios.enabled=false",))
        want = {(g, res, v, "*") for (g, res), verbs in self.CLUSTER.items() for v in verbs}
        self.assertEqual(self.grants(one(docs, "ClusterRole", REPORTER)), want | self.REPORT_STATES)
        _, c = container(docs)
        self.assertEqual(args_of(c)["write-ratios"], "false")
        _, c = container(render())
        self.assertEqual(args_of(c)["write-ratios"], "true")

    def test_role_is_the_lease_only(self):
        lease = REPORTER
        want = {("coordination.k8s.io", "leases", "get", lease), ("coordination.k8s.io", "leases", "update", lease),
                ("coordination.k8s.io", "leases", "create", "*")}
        docs = render()
        role = one(docs, "Role", REPORTER)
        self.assertEqual(role["metadata"]["namespace"], NAMESPACE)
        self.assertEqual(self.grants(role), want)

    def test_leader_label_patch_is_granted(self):
        # LabelSelfAsLeader patches the status-reporter's own pod (random
        # name, release namespace): the ClusterRole's pods patch covers it.
        docs = render()
        grants = self.grants(one(docs, "ClusterRole", REPORTER))
        self.assertIn(("", "pods", "patch", "*"), grants)
        binding = one(docs, "ClusterRoleBinding", REPORTER)
        self.assertEqual(binding["subjects"][0]["namespace"], NAMESPACE)

    def test_bindings_name_the_service_account(self):
        docs = render()
        sa = one(docs, "ServiceAccount", REPORTER)
        dep, _ = container(docs)
        self.assertEqual(dep["spec"]["template"]["spec"]["serviceAccountName"], sa["metadata"]["name"])
        for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
            b = one(docs, kind, REPORTER)
            self.assertEqual(b["roleRef"], {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": REPORTER})
            self.assertEqual(b["subjects"], [{"kind": "ServiceAccount", "name": REPORTER, "namespace": NAMESPACE}])


class Monitoring(unittest.TestCase):
    def test_service_monitor_keeps_the_vmi_labels(self):
        docs = render()
        sm = one(docs, "ServiceMonitor", REPORTER)
        (ep,) = sm["spec"]["endpoints"]
        self.assertIs(ep["honorLabels"], True)
        self.assertEqual(ep["port"], "http-metrics")
        metrics = one(docs, "Service", f"{REPORTER}-metrics")
        main = one(docs, "Service", REPORTER)
        sel = set(sm["spec"]["selector"]["matchLabels"].items())
        self.assertTrue(sel <= set(metrics["metadata"]["labels"].items()))
        self.assertFalse(sel <= set(main["metadata"]["labels"].items()), "the ServiceMonitor must not scrape the HTTPS Service")
        self.assertEqual(sm["spec"]["namespaceSelector"], {"matchNames": [NAMESPACE]})
        self.assertEqual(objects(render(sets=["serviceMonitor.enabled=false"]), "ServiceMonitor"), [])

    def test_pod_monitor_is_off_by_default(self):
        docs = render()
        self.assertEqual(objects(docs, "PodMonitor"), [])
        _, c = container(docs)
        self.assertNotIn("sidecar-listen-address", args_of(c))  # sidecars serve their unix socket only
        self.assertNotIn("STATUS_REPORTER_SIDECAR_LISTEN_ADDRESS", [e["name"] for e in c["env"]])

    def test_pod_monitor(self):
        docs = render(os.path.join(CHART, "ci", "podmonitor-values.yaml"))
        pm = one(docs, "PodMonitor")
        self.assertEqual(pm["metadata"]["labels"]["release"], "kube-prometheus-stack")
        self.assertEqual(pm["spec"]["selector"], {"matchLabels": {"kubevirt.io": "virt-launcher"}})
        self.assertEqual(pm["spec"]["namespaceSelector"], {"any": True})
        (ep,) = pm["spec"]["podMetricsEndpoints"]
        self.assertIs(ep["honorLabels"], True)
        keep, address = ep["relabelings"]
        self.assertEqual((keep["sourceLabels"], keep["regex"], keep["action"]),
                         (["__meta_kubernetes_pod_container_name"], "guest-exporter", "keep"))
        self.assertEqual((address["targetLabel"], address["replacement"]), ("__address__", "${1}:9477"))
        _, c = container(docs)
        self.assertEqual(args_of(c)["sidecar-listen-address"], ":9477")
        self.assertNotIn("STATUS_REPORTER_SIDECAR_LISTEN_ADDRESS", [e["name"] for e in c["env"]])

    def test_dashboard_is_promrules_dashboard(self):
        docs = render()
        cm = one(docs, "ConfigMap", f"{FULLNAME}-dashboard")
        self.assertEqual(cm["metadata"]["labels"]["grafana_dashboard"], "1")
        with open(DASHBOARD) as f:
            source = f.read()
        self.assertEqual(list(cm["data"]), ["kubevirt-guest-metrics.json"])
        self.assertEqual(cm["data"]["kubevirt-guest-metrics.json"], source)
        self.assertEqual(json.loads(cm["data"]["kubevirt-guest-metrics.json"]), json.loads(source))
        other = one(render(sets=["dashboards.namespace=monitoring", "dashboards.annotations.grafana_folder=KubeVirt"]),
                    "ConfigMap", f"{FULLNAME}-dashboard")
        self.assertEqual(other["metadata"]["namespace"], "monitoring")
        self.assertEqual(other["metadata"]["annotations"], {"grafana_folder": "KubeVirt"})


class Rules(unittest.TestCase):
    def test_default_render_is_the_rule_file(self):
        self.assertEqual(rule_groups(render()), source_groups())

    def test_values_name_every_alert_of_the_rule_file(self):
        names = {r["alert"] for g in load_yaml(RULES)["groups"] for r in g["rules"] if "alert" in r}
        alerts = values_of(None)["alerts"]
        self.assertEqual({k for k in alerts if k[0].isupper()}, names)

    def test_tuned_alerts(self):
        f = os.path.join(CHART, "ci", "alerts-tuned-values.yaml")
        values = values_of(f)
        docs = render(f)
        self.assertEqual(one(docs, "PrometheusRule")["metadata"]["labels"]["release"], "kube-prometheus-stack")
        got = alerts_by_name(rule_groups(docs))
        src = alerts_by_name(source_groups(values))
        self.assertNotIn("GuestLoadMetricsMissing", got)

        w = got["GuestVCPUQueueHighWarning"]
        self.assertEqual(w["expr"], f"{OWN_QUEUE} > 15")
        self.assertEqual(w["for"], "5m")
        self.assertEqual(w["annotations"]["summary"], "Guest vCPU run queue is above 15.")
        self.assertTrue(w["annotations"]["description"].endswith("above 15."))
        self.assertEqual(w["labels"], src["GuestVCPUQueueHighWarning"]["labels"])

        c = got["GuestVCPUQueueHighCritical"]
        self.assertEqual(c["expr"], f"{OWN_QUEUE} > 30.5")
        self.assertEqual(c["for"], "10m")
        self.assertEqual(c["labels"]["severity"], "warning")
        self.assertEqual(c["annotations"]["summary"], "Guest vCPU run queue has been above 30.5 for 10 minutes.")
        self.assertIn("above 30.5 for 10 minutes", c["annotations"]["description"])
        self.assertNotIn("20", c["annotations"]["description"])

        d = got["GuestMetricsStatusReporterDown"]
        self.assertEqual((d["for"], d["labels"]["severity"]), ("1h", "critical"))
        self.assertEqual(d["expr"], src["GuestMetricsStatusReporterDown"]["expr"])
        self.assertNotIn("10 minutes", d["annotations"]["summary"] + d["annotations"]["description"])
        self.assertIn("for 1 hour", d["annotations"]["summary"])
        self.assertTrue(d["annotations"]["description"].startswith("For 1 hour "))

        for name, rule in got.items():
            self.assertEqual(rule["annotations"]["runbook_url"], f"https://runbooks.example.com/kubevirt-guest-metrics/{name}")
        # Recording rules untouched.
        records = lambda groups: [r for g in groups for r in g["rules"] if "record" in r]
        self.assertEqual(records(rule_groups(docs)), records(source_groups()))

    def test_each_alert_can_be_turned_off_alone(self):
        full = source_groups()
        for name in alerts_by_name(full):
            with self.subTest(alert=name):
                want = [dict(g, rules=[r for r in g["rules"] if r.get("alert") != name]) for g in full]
                self.assertEqual(rule_groups(render(sets=[f"alerts.{name}.enabled=false"])), want)

    def test_guest_load_switches(self):
        full = source_groups()
        (guest, operability) = full
        self.assertEqual(guest["name"], GUEST_LOAD_GROUP)
        records_only = dict(guest, rules=[r for r in guest["rules"] if "record" in r])
        cases = {
            ("false", "false", "kubevirt"): [operability],
            ("false", "false", "none"): [operability],
            ("true", "false", "kubevirt"): [records_only, operability],
            ("true", "false", "none"): [records_only, operability, *vep67_names_groups()],
        }
        for (records, alerts, case), want in cases.items():
            with self.subTest(recordingRules=records, queueAlerts=alerts, kubevirtRules=case):
                got = rule_groups(render(sets=[f"guestLoad.recordingRules.enabled={records}",
                                               f"guestLoad.queueAlerts.enabled={alerts}",
                                               f"guestLoad.kubevirtRules={case}"]))
                self.assertEqual(got, want)
        self.assertEqual(rule_groups(render(os.path.join(CHART, "ci", "guest-load-off-values.yaml"))), [operability])
        # The queue alerts read the chart's own recorded queue: alerts
        # without those recording rules would never fire, so the render stops.
        p = helm("template", RELEASE, CHART, "--set", "guestLoad.recordingRules.enabled=false", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("guestLoad.queueAlerts.enabled=true needs guestLoad.recordingRules.enabled=true", p.stderr)

    def test_alerts_are_templated_not_rewritten(self):
        # Thresholds and `for` come from values into the alerts the chart
        # writes (templates/_rules.tpl): no regular expression edits rule text.
        for name in ("_rules.tpl", "prometheusrule.yaml"):
            with open(os.path.join(CHART, "templates", name)) as f:
                self.assertNotRegex(f.read(), r"regex(Replace|Find|Match)", name)
        got = alerts_by_name(rule_groups(render(sets=["alerts.GuestVCPUQueueHighWarning.threshold=7",
                                                      "alerts.GuestLoadMetricsMissing.for=45m"])))
        self.assertEqual(got["GuestVCPUQueueHighWarning"]["expr"], f"{OWN_QUEUE} > 7")
        self.assertEqual(got["GuestVCPUQueueHighWarning"]["annotations"]["summary"], "Guest vCPU run queue is above 7.")
        self.assertEqual(got["GuestLoadMetricsMissing"]["for"], "45m")
        self.assertIn("for 45 minutes", got["GuestLoadMetricsMissing"]["annotations"]["summary"])
        # Without `for`, the critical alert's text does not claim a duration.
        c = alerts_by_name(rule_groups(render(sets=["alerts.GuestVCPUQueueHighCritical.for="])))["GuestVCPUQueueHighCritical"]
        self.assertNotIn("for", c)
        self.assertEqual(c["annotations"]["summary"], "Guest vCPU run queue is above 20.")
        for bad in ("alerts.GuestVCPUQueueHighWarning.threshold=-1", "alerts.GuestVCPUQueueHighCritical.severity=",
                    "alerts.GuestLoadMetricsMissing.for=soon"):
            with self.subTest(bad=bad):
                self.assertNotEqual(helm("template", RELEASE, CHART, "--set", bad, check=False).returncode, 0)

    def test_rule_file_and_chart_must_agree_on_the_alerts(self):
        # An alert in the rule file that the chart does not write, or one the
        # chart writes that the file lacks, stops the render.
        with tempfile.TemporaryDirectory() as tmp:
            chart = os.path.join(tmp, "kubevirt-guest-metrics")
            shutil.copytree(CHART, chart, symlinks=False)
            rules_path = os.path.join(chart, "files", "kubevirt-guest-metrics.rules.yaml")
            with open(rules_path) as f:
                text = f.read()
            with open(rules_path, "w") as f:
                f.write(text.replace("alert: GuestMetricsStatusReporterDown", "alert: GuestMetricsSomethingNew"))
            p = helm("template", RELEASE, chart, check=False)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("alert GuestMetricsSomethingNew of files/kubevirt-guest-metrics.rules.yaml is not defined by the chart", p.stderr)

            groups = load_yaml(RULES)
            groups["groups"][1]["rules"] = [r for r in groups["groups"][1]["rules"] if r.get("alert") != "GuestLoadMetricsMissing"]
            with open(rules_path, "w") as f:
                yaml.safe_dump(groups, f)
            p = helm("template", RELEASE, chart, check=False)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("the chart defines alert GuestLoadMetricsMissing", p.stderr)

            os.remove(rules_path)
            p = helm("template", RELEASE, chart, check=False)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("must link to promrules", p.stderr)


class SingleSource(unittest.TestCase):
    def test_files_are_links_to_promrules(self):
        for rel, target in (("files/kubevirt-guest-metrics.rules.yaml", RULES),
                            ("files/kubevirt-vep67-names.rules.yaml", VEP67_NAMES),
                            ("files/dashboards/kubevirt-guest-metrics.json", DASHBOARD)):
            path = os.path.join(CHART, rel)
            self.assertTrue(os.path.islink(path), f"{rel} must be a symlink to promrules/, not a copy")
            self.assertFalse(os.path.isabs(os.readlink(path)), f"{rel} must be a relative link")
            self.assertEqual(os.path.realpath(path), os.path.realpath(target))
        runbooks = sorted(f for f in os.listdir(RUNBOOKS) if f != "README.md")
        for name in runbooks:
            path = os.path.join(CHART, "files", "runbooks", name)
            self.assertTrue(os.path.islink(path), f"files/runbooks/{name} must be a symlink to runbooks/")
            self.assertFalse(os.path.isabs(os.readlink(path)))
            self.assertEqual(os.path.realpath(path), os.path.realpath(os.path.join(RUNBOOKS, name)))
        linked = {os.path.relpath(p, CHART) for p in glob.glob(os.path.join(CHART, "files", "**", "*"), recursive=True)
                  if os.path.isfile(p)}
        self.assertEqual(linked, {"files/kubevirt-guest-metrics.rules.yaml", "files/kubevirt-vep67-names.rules.yaml",
                                  "files/dashboards/kubevirt-guest-metrics.json",
                                  *(f"files/runbooks/{n}" for n in runbooks)})

    def test_packaged_chart_carries_the_contents(self):
        with tempfile.TemporaryDirectory() as tmp:
            helm("package", CHART, "--destination", tmp)
            (tgz,) = glob.glob(os.path.join(tmp, "*.tgz"))
            with tarfile.open(tgz) as t:
                names = t.getnames()
                for rel, source in (("files/kubevirt-guest-metrics.rules.yaml", RULES),
                                    ("files/kubevirt-vep67-names.rules.yaml", VEP67_NAMES),
                                    ("files/dashboards/kubevirt-guest-metrics.json", DASHBOARD),
                                    *((f"files/runbooks/{n}", os.path.join(RUNBOOKS, n))
                                      for n in os.listdir(RUNBOOKS) if n != "README.md")):
                    member = t.getmember(f"kubevirt-guest-metrics/{rel}")
                    self.assertTrue(member.isfile(), f"{rel} is not a regular file in the package")
                    with open(source, "rb") as f:
                        self.assertEqual(t.extractfile(member).read(), f.read())
                self.assertFalse([n for n in names if "/ci/" in n], "ci/ scenarios are packaged")
            self.assertEqual(rule_groups(render(chart=tgz)), source_groups())
            self.assertEqual(rule_groups(render(chart=tgz, sets=["guestLoad.kubevirtRules=none"])),
                             source_groups() + vep67_names_groups())


class GuestLoadCases(unittest.TestCase):
    """guestLoad.kubevirtRules: which guest-load rules KubeVirt loads itself.
    promtool runs each case's render in PromtoolTests (coexist_* tests)."""

    KUBEVIRT_LOOKUP = 'lookup "kubevirt.io/v1" "KubeVirt" "" ""'
    RULE_LOOKUP = 'lookup "monitoring.coreos.com/v1" "PrometheusRule" $crNamespace $ruleName'

    def render_with_kubevirt_cr(self, items, rules=(), sets=(), apis=MONITORING):
        """The chart rendered as `helm install` on a cluster whose KubeVirt CRs
        are `items` and whose PrometheusRules are `rules` ("namespace/name"):
        no cluster here, so a copy of the chart gets them in place of its
        lookups. Returns (rule groups or None, NOTES)."""
        with tempfile.TemporaryDirectory() as tmp:
            chart = os.path.join(tmp, "kubevirt-guest-metrics")
            shutil.copytree(CHART, chart, symlinks=False)
            path = os.path.join(chart, "templates", "_rules.tpl")
            with open(path) as f:
                text = f.read()
            self.assertEqual(text.count(self.KUBEVIRT_LOOKUP), 1)
            self.assertEqual(text.count(self.RULE_LOOKUP), 1)
            text = text.replace(self.KUBEVIRT_LOOKUP, "fromJson `" + json.dumps({"items": items}) + "`")
            found = {r: {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule"} for r in rules}
            text = text.replace(self.RULE_LOOKUP, "index (fromJson `" + json.dumps(found) +
                                "`) (printf \"%s/%s\" $crNamespace $ruleName) | default dict")
            with open(path, "w") as f:
                f.write(text)
            with open(os.path.join(chart, "templates", "zz-notes-test.yaml"), "w") as f:
                f.write('kind: RenderedNotes\nnotes: |\n  {{- include "kubevirt-guest-metrics/templates/NOTES.txt" . | nindent 2 }}\n')
            docs = render(chart=chart, sets=sets, apis=apis)
            groups = rule_groups(docs) if objects(docs, "PrometheusRule") else None
            return groups, one(docs, "RenderedNotes")["notes"]

    @staticmethod
    def kubevirt_cr(version, namespace="kubevirt", name="kubevirt"):
        cr = {"apiVersion": "kubevirt.io/v1", "kind": "KubeVirt", "metadata": {"namespace": namespace, "name": name}}
        if version is not None:
            cr["status"] = {"observedKubeVirtVersion": version, "phase": "Deployed"}
        return cr

    def test_default_is_auto_and_falls_back_to_kubevirt(self):
        # helm template (and --dry-run, GitOps renders): lookup sees nothing.
        self.assertEqual(values_of(None)["guestLoad"]["kubevirtRules"], "auto")
        self.assertEqual(rule_groups(render()), source_groups())
        self.assertIn("Guest-load rules, case kubevirt (auto, no KubeVirt CR with status.observedKubeVirtVersion was visible",
                      notes())
        # Also where the rules come as a ConfigMap; not said without rules.
        n = notes(apis=())
        self.assertIn(f"- ConfigMap {FULLNAME}-rules: the recording rules and alerts", n)
        self.assertIn("- Guest-load rules, case kubevirt (auto", n)
        self.assertNotIn("Guest-load rules", notes(sets=["prometheusRule.enabled=false"]))
        self.assertNotIn("Guest-load rules", notes(sets=["guestLoad.recordingRules.enabled=false",
                                                         "guestLoad.queueAlerts.enabled=false"]))

    def test_cases_set_by_hand(self):
        self.assertEqual(rule_groups(render(sets=["guestLoad.kubevirtRules=kubevirt"])), source_groups())
        self.assertEqual(rule_groups(render(sets=["guestLoad.kubevirtRules=none"])), source_groups() + vep67_names_groups())
        n = notes(sets=["guestLoad.kubevirtRules=none"])
        self.assertIn("Guest-load rules, case none (guestLoad.kubevirtRules=none)", n)
        self.assertIn("set guestLoad.kubevirtRules=kubevirt there", n)
        p = helm("template", RELEASE, CHART, "--set", "guestLoad.kubevirtRules=v1.7", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("kubevirtRules", p.stderr)

    def test_no_name_is_recorded_by_two_groups_in_any_case(self):
        for case in ("auto", "none", "kubevirt"):
            with self.subTest(case=case):
                records = [r["record"] for g in rule_groups(render(sets=[f"guestLoad.kubevirtRules={case}"]))
                           for r in g["rules"] if "record" in r]
                self.assertEqual(len(records), len(set(records)), records)

    def test_auto_reads_the_kubevirt_crs_observed_version(self):
        names = vep67_names_groups()
        kv_rule = "kubevirt/prometheus-kubevirt-rules"
        cases = [
            ([self.kubevirt_cr("v1.3.0")], [kv_rule], "none", "KubeVirt CR kubevirt/kubevirt observes v1.3.0, before v1.6.4"),
            ([self.kubevirt_cr("v1.6.3")], [kv_rule], "none", "observes v1.6.3, before v1.6.4"),
            ([self.kubevirt_cr("v1.6.4")], [kv_rule], "kubevirt",
             "observes v1.6.4 and its PrometheusRule kubevirt/prometheus-kubevirt-rules, with its own guest-load rules (v1.6.4+), is deployed"),
            ([self.kubevirt_cr("v1.7.0-rc.1+abc")], [kv_rule], "kubevirt", "observes v1.7.0-rc.1+abc and its PrometheusRule"),
            ([self.kubevirt_cr("v1.10.2")], [kv_rule], "kubevirt", "observes v1.10.2 and its PrometheusRule"),
            ([self.kubevirt_cr("v2.0.0", namespace="virt", name="kv")], ["virt/prometheus-kubevirt-rules"], "kubevirt",
             "KubeVirt CR virt/kv observes v2.0.0 and its PrometheusRule virt/prometheus-kubevirt-rules"),
            # v1.6.4+ whose virt-operator found no Prometheus to give its rules
            # to (or whose rules live elsewhere than asked): they are not loaded.
            ([self.kubevirt_cr("v1.9.0")], [], "none",
             "observes v1.9.0 but has not deployed its PrometheusRule kubevirt/prometheus-kubevirt-rules"),
            ([self.kubevirt_cr("v2.0.0", namespace="virt")], [kv_rule], "none", "has not deployed its PrometheusRule virt/"),
            ([self.kubevirt_cr("devel")], [kv_rule], "kubevirt", 'observes version "devel", which is not vMAJOR.MINOR.PATCH'),
            ([self.kubevirt_cr(None)], [kv_rule], "kubevirt", "no KubeVirt CR with status.observedKubeVirtVersion was visible"),
            ([], [kv_rule], "kubevirt", "no KubeVirt CR with status.observedKubeVirtVersion was visible"),
        ]

        def check(item):
            items, rules, want, how = item
            return (*item, *self.render_with_kubevirt_cr(items, rules))

        for items, rules, want, how, groups, text in parallel(check, cases):
            with self.subTest(items=items, rules=rules):
                self.assertEqual(groups, source_groups() + (names if want == "none" else []))
                line = next(l for l in text.splitlines() if l.startswith("- Guest-load rules, case"))
                self.assertTrue(line.startswith(f"- Guest-load rules, case {want} (auto, "), line)
                self.assertIn(how, line)
        # Without the PrometheusRule API KubeVirt cannot have deployed its
        # rules (the chart then writes its own as a ConfigMap).
        _, text = self.render_with_kubevirt_cr([self.kubevirt_cr("v1.7.0")], [kv_rule], apis=())
        self.assertIn("- Guest-load rules, case none (auto, KubeVirt CR kubevirt/kubevirt observes v1.7.0 but has not deployed", text)
        # A case set by hand wins over what the cluster says.
        groups, _ = self.render_with_kubevirt_cr([self.kubevirt_cr("v1.5.0")], sets=["guestLoad.kubevirtRules=kubevirt"])
        self.assertEqual(groups, source_groups())


def notes(values_file=None, sets=(), apis=MONITORING):
    """NOTES.txt as `helm install` prints it, for the given API groups (helm
    install offline has no --api-versions: NOTES is rendered through a
    template of a copy of the chart that includes it)."""
    with tempfile.TemporaryDirectory() as tmp:
        chart = os.path.join(tmp, "kubevirt-guest-metrics")
        shutil.copytree(CHART, chart, symlinks=False)
        with open(os.path.join(chart, "templates", "zz-notes-test.yaml"), "w") as f:
            f.write('kind: RenderedNotes\nnotes: |\n  {{- include "kubevirt-guest-metrics/templates/NOTES.txt" . | nindent 2 }}\n')
        docs = render(values_file, sets, chart=chart, apis=apis, extra=("--show-only", "templates/zz-notes-test.yaml"))
        (doc,) = docs
        return doc["notes"]


MONITORING_KINDS = ("ServiceMonitor", "PodMonitor", "PrometheusRule")


class Capabilities(unittest.TestCase):
    """The chart installs on a cluster without prometheus-operator: the
    monitoring.coreos.com/v1 objects are rendered only where the API exists."""

    def test_no_monitoring_objects_without_the_api(self):
        for f in [None, *scenario_files()]:
            with self.subTest(scenario=scenario_name(f) if f else "defaults"):
                docs = render(f, apis=())
                self.assertEqual([d["kind"] for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")], [])
                values = values_of(f)
                rules = [d for d in objects(docs, "ConfigMap") if d["metadata"]["name"] == f"{FULLNAME}-rules"]
                if values["prometheusRule"]["enabled"]:
                    # The same groups, as a rule file a plain Prometheus loads.
                    (cm,) = rules
                    self.assertEqual(yaml.safe_load(cm["data"]["kubevirt-guest-metrics.rules.yaml"]),
                                     {"groups": rule_groups(render(f))})
                else:
                    self.assertEqual(rules, [])

    def test_with_the_api_the_objects_are_there(self):
        docs = render(os.path.join(CHART, "ci", "podmonitor-values.yaml"))
        for kind in MONITORING_KINDS:
            one(docs, kind)
        self.assertNotIn(f"{FULLNAME}-rules", [d["metadata"]["name"] for d in objects(docs, "ConfigMap")])
        # A cluster lists each served kind: only the kinds it has are rendered.
        docs = render(apis=("monitoring.coreos.com/v1/ServiceMonitor",))
        one(docs, "ServiceMonitor")
        self.assertEqual(objects(docs, "PrometheusRule"), [])
        one(docs, "ConfigMap", f"{FULLNAME}-rules")

    def test_notes_say_how_to_scrape_and_load_the_rules_without_the_api(self):
        text = notes(apis=())
        self.assertIn("does not serve prometheus-operator's monitoring.coreos.com/v1 API", text)
        self.assertIn("so no\nServiceMonitor, no PrometheusRule was created", text)
        self.assertIn("honor_labels: true", text)
        self.assertIn(f"regex: {REPORTER}-metrics, action: keep", text)
        self.assertIn(f"kubectl -n {NAMESPACE} get configmap {FULLNAME}-rules", text)
        self.assertNotIn("WARNING", text)  # nothing for kube-prometheus-stack to select
        self.assertNotIn("does not serve", notes())

    def test_notes_warn_when_kube_prometheus_stacks_release_label_is_missing(self):
        text = notes()
        self.assertIn("WARNING: no `release` label in serviceMonitor.additionalLabels, prometheusRule.additionalLabels", text)
        self.assertIn("--set serviceMonitor.additionalLabels.release=<kube-prometheus-stack release>", text)
        self.assertIn("--set prometheusRule.additionalLabels.release=<kube-prometheus-stack release>", text)
        labelled = ["serviceMonitor.additionalLabels.release=kps", "prometheusRule.additionalLabels.release=kps"]
        self.assertNotIn("WARNING", notes(sets=labelled))
        self.assertNotIn("WARNING", notes(sets=["commonLabels.release=kps"]))
        self.assertIn("podMonitor.additionalLabels", notes(sets=[*labelled, "podMonitor.enabled=true"]))


class OpenShift(unittest.TestCase):
    def test_openshift_values_leave_uids_to_the_scc(self):
        # restricted-v2 assigns runAsUser, runAsGroup and fsGroup; a pod that
        # sets its own outside the namespace's range is refused.
        f = os.path.join(CHART, "ci", "openshift-values.yaml")
        dep, c = container(render(f))
        psc = dep["spec"]["template"]["spec"]["securityContext"]
        sc = c["securityContext"]
        for ctx in (psc, sc):
            for key in ("runAsUser", "runAsGroup", "fsGroup"):
                self.assertNotIn(key, ctx)
        self.assertEqual(psc, {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}})
        self.assertEqual(sc, {"runAsNonRoot": True, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                              "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}})
        self.assertEqual(render(f, apis=())[0:0], [])  # renders without the monitoring CRDs too

    def test_security_context_is_a_value(self):
        dep, c = container(render(sets=["statusReporter.podSecurityContext.runAsUser=1000710000",
                                        "statusReporter.securityContext.runAsUser=1000710000"]))
        self.assertEqual(dep["spec"]["template"]["spec"]["securityContext"]["runAsUser"], 1000710000)
        self.assertEqual(c["securityContext"]["runAsUser"], 1000710000)
        dep, c = container(render())
        self.assertEqual((dep["spec"]["template"]["spec"]["securityContext"]["fsGroup"], c["securityContext"]["runAsUser"]),
                         (107, 107))


class Runbooks(unittest.TestCase):
    def resolve(self, url, docs):
        """The runbook file a runbook_url leads to, read from where it leads."""
        if url.startswith(KUBEVIRT_RUNBOOK_BASE):
            name = url[len(KUBEVIRT_RUNBOOK_BASE):]
            self.assertIn(name, KUBEVIRT_RUNBOOKS, f"{url}: KubeVirt's site has no runbook {name}")
            return name, None
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/configmaps/([^/#]+)#(.+)\.md", url)
        if m:
            cm = one(docs, "ConfigMap", m.group(2))
            self.assertEqual(cm["metadata"]["namespace"], m.group(1))
            return m.group(3), cm["data"][m.group(3) + ".md"]
        m = re.fullmatch(r"https://runbooks\.example\.com/kubevirt-guest-metrics/([A-Za-z]+)", url)
        self.assertTrue(m, f"runbook_url {url} leads nowhere this repository publishes")
        return m.group(1), None

    def test_every_runbook_url_resolves_to_a_shipped_runbook(self):
        for f in [None, *scenario_files()]:
            docs = render(f)
            if not objects(docs, "PrometheusRule"):
                continue
            shipped = one(docs, "ConfigMap", runbooks_configmap())["data"]
            for name, rule in alerts_by_name(rule_groups(docs)).items():
                with self.subTest(scenario=scenario_name(f) if f else "defaults", alert=name):
                    target, text = self.resolve(rule["annotations"]["runbook_url"], docs)
                    self.assertEqual(target, name)
                    path = os.path.join(RUNBOOKS, f"{name}.md")
                    self.assertTrue(os.path.isfile(path), f"runbooks/{name}.md")
                    with open(path) as fh:
                        source = fh.read()
                    self.assertEqual(shipped[f"{name}.md"], source)
                    if text is not None:
                        self.assertEqual(text, source)

    def test_defaults(self):
        got = {n: r["annotations"]["runbook_url"] for n, r in alerts_by_name(rule_groups(render())).items()}
        self.assertEqual(got, {
            "GuestVCPUQueueHighWarning": "https://kubevirt.io/monitoring/runbooks/GuestVCPUQueueHighWarning",
            "GuestVCPUQueueHighCritical": "https://kubevirt.io/monitoring/runbooks/GuestVCPUQueueHighCritical",
            "GuestLoadMetricsMissing": f"/api/v1/namespaces/{NAMESPACE}/configmaps/{FULLNAME}-runbooks#GuestLoadMetricsMissing.md",
            "GuestMetricsStatusReporterDown":
                f"/api/v1/namespaces/{NAMESPACE}/configmaps/{FULLNAME}-runbooks#GuestMetricsStatusReporterDown.md",
            "GuestMetricsSidecarSilent":
                f"/api/v1/namespaces/{NAMESPACE}/configmaps/{FULLNAME}-runbooks#GuestMetricsSidecarSilent.md",
        })
        self.assertNotIn("kubevirt-guest-metrics/kubevirt-guest-metrics", json.dumps(got), "no placeholder organisation")
        self.assertIn(f"get configmap {FULLNAME}-runbooks", notes())


class NetworkPolicy(unittest.TestCase):
    """networkPolicy.enabled: an ingress policy on the status-reporter that
    admits launcher pods of every namespace and the API server to the HTTPS
    port, and Prometheus to the metrics port; nothing by default."""

    def test_off_by_default(self):
        self.assertEqual(objects(render(), "NetworkPolicy"), [])

    def test_admits_launcher_pods_the_api_server_and_prometheus(self):
        docs = render(sets=("networkPolicy.enabled=true",))
        pol = one(docs, "NetworkPolicy", REPORTER)
        self.assertEqual(pol["metadata"]["namespace"], NAMESPACE)
        dep, _ = container(docs)
        # It selects exactly the status-reporter's pods.
        self.assertEqual(pol["spec"]["podSelector"]["matchLabels"], dep["spec"]["selector"]["matchLabels"])
        self.assertEqual(pol["spec"]["policyTypes"], ["Ingress"])
        ports = {p["name"]: p["containerPort"] for p in container(docs)[1]["ports"]}
        rules = pol["spec"]["ingress"]
        self.assertEqual(len(rules), 3)
        reports, webhook, metrics = rules
        self.assertEqual(reports["from"], [{"namespaceSelector": {},
                                            "podSelector": {"matchLabels": {"kubevirt.io": "virt-launcher"}}}],
                         "launcher pods of any namespace, and only them")
        self.assertEqual(reports["ports"], [{"protocol": "TCP", "port": ports["https"]}])
        self.assertEqual(webhook["ports"], [{"protocol": "TCP", "port": ports["https"]}])
        self.assertEqual(webhook["from"], [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}])
        self.assertEqual(metrics["ports"], [{"protocol": "TCP", "port": ports["http-metrics"]}])
        # The Service's target is the port the policy opens.
        svc_ports = {p["targetPort"] for s in objects(docs, "Service") for p in s["spec"]["ports"]}
        self.assertTrue(svc_ports & {"https", ports["https"]}, svc_ports)

    def test_narrowed_peers_and_no_webhook_rule_without_the_webhook(self):
        docs = render(sets=("networkPolicy.enabled=true", "webhook.enabled=false",
                            "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.name=monitoring"))
        rules = one(docs, "NetworkPolicy", REPORTER)["spec"]["ingress"]
        self.assertEqual(len(rules), 2, "no webhook, no rule for the API server")
        self.assertEqual(rules[1]["from"], [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}])
        none = render(sets=("networkPolicy.enabled=true",), extra=("--set-json", "networkPolicy.metricsFrom=[]"))
        self.assertEqual(len(one(none, "NetworkPolicy", REPORTER)["spec"]["ingress"]), 2, "no metrics rule")

    def test_the_reporter_is_told_the_webhook_configuration_and_the_silence_bound(self):
        docs = render(sets=("statusReporter.silentIntervals=5",))
        _, c = container(docs)
        mwc = one(docs, "MutatingWebhookConfiguration")
        self.assertIn(f"--webhook-configuration={mwc['metadata']['name']}", c["args"])
        self.assertIn("--silent-intervals=5", c["args"])
        self.assertIn("--silent-intervals=3", container(render())[1]["args"])


class AdmissionPolicy(unittest.TestCase):
    """The ValidatingAdmissionPolicy, rendered where the API exists and
    evaluated with a CEL implementation (@bufbuild/cel, scripts/install-cel.sh)
    against admission requests the status-reporter and others would send.
    Not modelled: the API server's type checking and cost estimation of the
    expressions, and Kubernetes' CEL extension libraries (not used here)."""

    USER = f"system:serviceaccount:{NAMESPACE}:{REPORTER}"
    CPU = "guestmetrics.kubevirt.io/cpu-allocation-ratio"
    MEM = "guestmetrics.kubevirt.io/memory-overcommit-ratio"
    LEADER = "guestmetrics.kubevirt.io/leader"

    @classmethod
    def setUpClass(cls):
        docs = render(apis=(*MONITORING, VAP))
        cls.policy = one(docs, "ValidatingAdmissionPolicy", REPORTER)
        cls.binding = one(docs, "ValidatingAdmissionPolicyBinding", REPORTER)
        dep, _ = container(docs)
        cls.reporter_pod_labels = dep["spec"]["template"]["metadata"]["labels"]

    def test_rendered_only_where_the_api_exists(self):
        self.assertEqual(self.binding["spec"], {"policyName": REPORTER, "validationActions": ["Deny"]})
        for apis in (MONITORING, (*MONITORING, "admissionregistration.k8s.io/v1")):
            self.assertEqual(objects(render(apis=apis), "ValidatingAdmissionPolicy"), [])
        self.assertEqual(objects(render(sets=["statusReporter.admissionPolicy.enabled=false"], apis=(VAP,)),
                                 "ValidatingAdmissionPolicy"), [])
        spec = self.policy["spec"]
        self.assertEqual(spec["failurePolicy"], "Fail")
        self.assertEqual({(tuple(r["apiGroups"]), tuple(r["resources"]), tuple(r["operations"]))
                          for r in spec["matchConstraints"]["resourceRules"]},
                         {(("",), ("pods",), ("UPDATE",)), (("kubevirt.io",), ("virtualmachineinstances",), ("UPDATE",))})

    def evaluate(self, cases):
        cel_modules = CEL_MODULES
        self.assertTrue(cel_modules and os.path.isdir(os.path.join(cel_modules, "@bufbuild", "cel")),
                        f"no @bufbuild/cel in {cel_modules}: run scripts/install-cel.sh")
        spec = self.policy["spec"]
        exprs = {f"match/{m['name']}": m["expression"] for m in spec["matchConditions"]}
        exprs.update({f"validation/{i}": v["expression"] for i, v in enumerate(spec["validations"])})
        p = run(["node", os.path.join(HERE, "cel", "eval.js"), cel_modules],
                input=json.dumps({"expressions": exprs, "cases": cases}))
        out = json.loads(p.stdout)
        verdicts = {}
        for name, results in out.items():
            errors = [f"{k}: {v}" for k, v in results.items() if isinstance(v, str)]
            self.assertEqual(errors, [], f"{name}: the policy's expressions fail to evaluate")
            if not all(v for k, v in results.items() if k.startswith("match/")):
                verdicts[name] = "not matched"
            else:
                denied = [spec["validations"][int(k.split("/")[1])]["message"]
                          for k, v in results.items() if k.startswith("validation/") and not v]
                verdicts[name] = "denied: " + "; ".join(denied) if denied else "allowed"
        return verdicts

    def request(self, old, new, user=None, namespace="vms", resource="pods"):
        return {"request": {"userInfo": {"username": user or self.USER}, "namespace": namespace,
                            "resource": {"group": "" if resource == "pods" else "kubevirt.io", "resource": resource},
                            "operation": "UPDATE"},
                "oldObject": old, "object": new}

    @staticmethod
    def launcher(annotations=None, labels=None, image="virt-launcher:v1.6", finalizers=None):
        meta = {"name": "virt-launcher-db-x7k2p", "namespace": "vms",
                "labels": {"kubevirt.io": "virt-launcher", "kubevirt.io/created-by": "uid-1", **(labels or {})},
                "annotations": {"kubevirt.io/domain": "db", **(annotations or {})}}
        if finalizers:
            meta["finalizers"] = finalizers
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                "spec": {"containers": [{"name": "compute", "image": image}], "nodeName": "node-1"}}

    def reporter_pod(self, leader=None, instance=None):
        labels = dict(self.reporter_pod_labels)
        if instance:
            labels["app.kubernetes.io/instance"] = instance
        if leader:
            labels[self.LEADER] = leader
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"{REPORTER}-5d9f-abcde", "namespace": NAMESPACE, "labels": labels},
                "spec": {"containers": [{"name": "status-reporter", "image": "kgm:0.2.0"}]}}

    @staticmethod
    def vmi(annotations=None, cores=2):
        return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                "metadata": {"name": "db", "namespace": "vms", "annotations": dict(annotations or {})},
                "spec": {"domain": {"cpu": {"cores": cores}}},
                "status": {"phase": "Running"}}

    def test_policy_against_sample_requests(self):
        L, C, M = self.launcher, self.CPU, self.MEM
        ratios = {C: "10.0", M: "1.5"}
        rp = self.reporter_pod
        cases = {
            "ratios added to a launcher pod": (self.request(L(), L(ratios)), "allowed"),
            "ratios changed": (self.request(L(ratios), L({C: "8.0", M: "1.5"})), "allowed"),
            "ratios removed": (self.request(L(ratios), L()), "allowed"),
            "ratios on a pod without annotations": (self.request(dict(L(), metadata={"name": "p", "namespace": "vms"}),
                                                                 dict(L(), metadata={"name": "p", "namespace": "vms",
                                                                                     "annotations": ratios})), "allowed"),
            "another annotation added": (self.request(L(), L({"example.com/x": "1"})), "denied"),
            "another annotation changed": (self.request(L(), L({"kubevirt.io/domain": "other"})), "denied"),
            "another annotation removed": (self.request(L(ratios), dict(L(), metadata=dict(L()["metadata"], annotations=ratios))), "denied"),
            "leader label on a launcher pod": (self.request(L(), L(labels={self.LEADER: "true"})), "denied"),
            "another label on a launcher pod": (self.request(L(), L(labels={"app": "x"})), "denied"),
            "launcher pod's image": (self.request(L(), L(image="evil:latest")), "denied"),
            "launcher pod's finalizers": (self.request(L(), L(finalizers=["example.com/hold"])), "denied"),
            "leader label on its own pod": (self.request(rp(), rp("true"), namespace=NAMESPACE), "allowed"),
            "leader label off its own pod": (self.request(rp("true"), rp(), namespace=NAMESPACE), "allowed"),
            "leader label on another release's pod": (self.request(rp(instance="other"), rp("true", instance="other"),
                                                                   namespace=NAMESPACE), "denied"),
            "leader label on a look-alike in another namespace": (self.request(rp(), rp("true"), namespace="vms"), "denied"),
            "ratios on a VMI": (self.request(self.vmi(), self.vmi(ratios), resource="virtualmachineinstances"), "allowed"),
            "a VMI's spec": (self.request(self.vmi(), self.vmi(cores=64), resource="virtualmachineinstances"), "denied"),
            "another user changes anything": (self.request(L(), L(image="x", labels={"a": "b"}), user="system:admin"),
                                              "not matched"),
        }
        verdicts = self.evaluate({name: bindings for name, (bindings, _) in cases.items()})
        for name, (_, want) in cases.items():
            with self.subTest(request=name):
                self.assertTrue(verdicts[name].startswith(want), f"{name}: {verdicts[name]}, want {want}")


PREVIOUS = os.path.join(HERE, "previous")


class Upgrade(unittest.TestCase):
    """`helm upgrade` from the previous chart version, offline: no cluster
    runs here, so what a cluster would refuse is checked between the renders
    of helm/tests/previous/ (the packaged previous release) and of this chart.
    Not covered: the API server's own validation, objects' live state, and
    hooks (the chart has none)."""

    @classmethod
    def setUpClass(cls):
        (cls.previous,) = glob.glob(os.path.join(PREVIOUS, "kubevirt-guest-metrics-*.tgz"))
        with tarfile.open(cls.previous) as t:
            cls.previous_version = yaml.safe_load(t.extractfile("kubevirt-guest-metrics/Chart.yaml"))["version"]
            cls.previous_values = yaml.safe_load(t.extractfile("kubevirt-guest-metrics/values.yaml"))

    def test_helm_install_dry_run(self):
        # `helm install --dry-run=client` works offline (`helm upgrade` needs
        # the cluster's release history): the previous and this version.
        for chart in (self.previous, CHART):
            with self.subTest(chart=os.path.basename(chart)):
                p = helm("install", RELEASE, chart, "--namespace", NAMESPACE, "--dry-run=client")
                self.assertIn("STATUS: pending-install", p.stdout)
                self.assertIn("How to check", p.stdout)

    def test_version_moved_on(self):
        current = load_yaml(os.path.join(CHART, "Chart.yaml"))["version"]
        key = lambda v: tuple(int(x) for x in v.split("-")[0].split("."))
        self.assertGreater(key(current), key(self.previous_version), "bump Chart.yaml's version when the chart changes")

    def pairs(self, old, new):
        index = lambda docs: {(d["kind"], d["metadata"]["name"]): d for d in docs}
        return index(old), index(new)

    def test_install_and_upgrade_keep_what_a_cluster_cannot_change(self):
        for apis in ((), MONITORING, (*MONITORING, VAP)):
            with self.subTest(apis=apis):
                old, new = self.pairs(render(chart=self.previous, apis=apis),
                                      render(extra=("--is-upgrade",), apis=apis))
                # Nothing the old release made disappears. (Without the
                # monitoring API the previous version could not be installed
                # at all: it rendered its ServiceMonitor and PrometheusRule
                # regardless, which the API server refuses.)
                gone = set(old) - set(new)
                if not apis:
                    self.assertEqual({k[0] for k in gone}, {"ServiceMonitor", "PrometheusRule"})
                    old = {k: v for k, v in old.items() if k not in gone}
                else:
                    self.assertEqual(gone, set(), f"upgrade deletes {gone}")
                for key, o in old.items():
                    n = new[key]
                    self.assertEqual(o["apiVersion"], n["apiVersion"], key)
                    self.assertEqual(o["metadata"].get("namespace"), n["metadata"].get("namespace"), key)
                    if key[0] == "Deployment":
                        self.assertEqual(o["spec"]["selector"], n["spec"]["selector"], "Deployment selectors are immutable")
                        labels = n["spec"]["template"]["metadata"]["labels"]
                        self.assertTrue(set(n["spec"]["selector"]["matchLabels"].items()) <= set(labels.items()))
                    if key[0] == "Service":
                        for field in ("clusterIP", "clusterIPs", "type", "ipFamilies"):
                            self.assertEqual(o["spec"].get(field), n["spec"].get(field), f"{key} {field}")
                        self.assertEqual(o["spec"]["selector"], n["spec"]["selector"], key)
                    if key[0] == "PodDisruptionBudget":
                        self.assertEqual(o["spec"]["selector"], n["spec"]["selector"], key)
                    if key[0] == "MutatingWebhookConfiguration":
                        self.assertEqual([w["name"] for w in o["webhooks"]], [w["name"] for w in n["webhooks"]])
                    if key[0] in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"):
                        self.assertEqual(o.get("roleRef"), n.get("roleRef"), f"{key}: roleRef is immutable")
                    if key[0] == "Secret":
                        self.assertEqual(o["type"], n["type"], f"{key}: a Secret's type is immutable")
                new_kinds = {k for k in set(new) - set(old)}
                self.assertTrue(all(k[0] in ("ConfigMap", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
                                    for k in new_kinds), new_kinds)

    def test_values_of_the_previous_version_still_render(self):
        # A user's -f values written for the previous version: its scenarios.
        with tarfile.open(self.previous) as t:
            names = [n for n in t.getnames() if "/ci/" in n]
        for f in scenario_files():
            if scenario_name(f) == "openshift":
                continue  # new in this version
            with self.subTest(scenario=scenario_name(f)):
                render(f, extra=("--is-upgrade",))
        self.assertEqual(names, [], "the packaged previous chart has no ci/")

    def test_reuse_values_fails_loudly(self):
        # `helm upgrade --reuse-values` renders the new templates with the
        # previous chart's values (Helm's documented behaviour); the schema
        # must refuse that instead of rendering a pod without its security
        # context. `--reset-then-reuse-values` is the way (chart README).
        with tempfile.TemporaryDirectory() as tmp:
            chart = os.path.join(tmp, "kubevirt-guest-metrics")
            shutil.copytree(CHART, chart, symlinks=False)
            with open(os.path.join(chart, "values.yaml"), "w") as f:
                yaml.safe_dump(self.previous_values, f)
            p = helm("template", RELEASE, chart, "--is-upgrade", check=False)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("podSecurityContext", p.stderr)


class PromtoolTests(unittest.TestCase):
    """promtool on what the chart ships (promrules/README.md: "Test what ships")."""

    def setUp(self):
        if not PROMTOOL:
            self.skipTest("no --promtool")

    def write_rules(self, docs, path):
        with open(path, "w") as f:
            yaml.safe_dump({"groups": rule_groups(docs)}, f, sort_keys=False)

    def test_promrules_unit_tests_pass_on_the_rendered_rules(self):
        # Each test file names the case it stands for by its rule files: with
        # promrules/kubevirt-vep67-names.rules.yaml it is the `none` case,
        # without it the `kubevirt` case (the coexist_* tests beside a copy of
        # KubeVirt's rules, which stays loaded). This project's files are
        # replaced by the groups the chart renders for that case.
        tests = sorted(glob.glob(os.path.join(PROMTOOL_TESTS, "*_test.yaml")))
        self.assertTrue(tests, "no promtool tests in promrules/tests")
        own = {"../kubevirt-guest-metrics.rules.yaml", "../kubevirt-vep67-names.rules.yaml"}
        with tempfile.TemporaryDirectory() as tmp:
            for case in ("none", "kubevirt"):
                self.write_rules(render(sets=[f"guestLoad.kubevirtRules={case}"]), os.path.join(tmp, f"rendered-{case}.rules.yaml"))
            for test in tests:
                with open(test) as f:
                    text = f.read()
                listed = load_yaml(test)["rule_files"]
                self.assertIn("../kubevirt-guest-metrics.rules.yaml", listed, f"{test}: does not load the rule file")
                case = "none" if "../kubevirt-vep67-names.rules.yaml" in listed else "kubevirt"
                files = [f"rendered-{case}.rules.yaml"] + [os.path.join(PROMTOOL_TESTS, f) for f in listed if f not in own]
                text, n = re.subn(r"(?m)^rule_files:\n(\s+- .*\n)+",
                                  "rule_files:\n" + "".join(f"  - {f}\n" for f in files), text)
                self.assertEqual(n, 1, f"{test}: no rule_files to replace")
                # The runbook URLs are the chart's.
                text = re.sub(r"(?m)(runbook_url: )(" + re.escape(SOURCE_RUNBOOK_BASE) + r"([A-Za-z]+)|runbooks/([A-Za-z]+)\.md)$",
                              lambda m: m.group(1) + default_runbook(m.group(3) or m.group(4)), text)
                copy_path = os.path.join(tmp, os.path.basename(test))
                with open(copy_path, "w") as f:
                    f.write(text)
                with self.subTest(test=os.path.basename(test), case=case):
                    p = run([PROMTOOL, "test", "rules", os.path.basename(copy_path)], check=False, cwd=tmp)
                    self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_every_scenario_renders_valid_rules(self):
        with tempfile.TemporaryDirectory() as tmp:
            for f in [None, *scenario_files()]:
                for case in ("auto", "none", "kubevirt"):
                    docs = render(f, sets=[f"guestLoad.kubevirtRules={case}"])
                    if not objects(docs, "PrometheusRule"):
                        continue
                    with self.subTest(scenario=scenario_name(f) if f else "defaults", case=case):
                        path = os.path.join(tmp, "rules.yaml")
                        self.write_rules(docs, path)
                        p = run([PROMTOOL, "check", "rules", path], check=False)
                        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


def find_helm(given):
    if given:
        return given
    if os.environ.get("HELM"):
        return os.environ["HELM"]
    cached = run([os.path.join(REPO, "scripts", "install-helm.sh"), "--print"], check=False).stdout.strip()
    if cached and os.access(cached, os.X_OK):
        return cached
    return shutil.which("helm")


def find_cel():
    if not shutil.which("node"):
        return None
    path = run([os.path.join(REPO, "scripts", "install-cel.sh"), "--print"], check=False).stdout.strip()
    return path if path and os.path.isdir(os.path.join(path, "@bufbuild", "cel")) else None


def main():
    global HELM, PROMTOOL, STATUS_REPORTER, GUEST_EXPORTER
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--helm")
    parser.add_argument("--promtool")
    parser.add_argument("--status-reporter")
    parser.add_argument("--guest-exporter")
    parser.add_argument("--cel-modules")
    opts, rest = parser.parse_known_args()
    HELM = find_helm(opts.helm)
    if not HELM or not os.access(HELM, os.X_OK):
        sys.exit(f"test_chart.py: helm not found ({HELM or 'none'}); run scripts/install-helm.sh")
    PROMTOOL = opts.promtool
    STATUS_REPORTER, GUEST_EXPORTER = opts.status_reporter, opts.guest_exporter
    global CEL_MODULES
    CEL_MODULES = opts.cel_modules or find_cel()
    print(f"helm: {HELM} ({run([HELM, 'version', '--template', '{{.Version}}']).stdout.strip()})", flush=True)
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)


if __name__ == "__main__":
    main()
