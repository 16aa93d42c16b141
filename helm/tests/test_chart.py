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
DASHBOARD = os.path.join(REPO, "promrules", "dashboards", "kubevirt-guest-metrics.json")
PROMTOOL_TESTS = os.path.join(REPO, "promrules", "tests")
REPORTER_MAIN = os.path.join(REPO, "status-reporter", "src", "main.cpp")
REPORTER_CONTROLLER = os.path.join(REPO, "status-reporter", "src", "controller.cpp")
SHARED_CLI = os.path.join(REPO, "common", "include", "gm", "cli.h")
REPORTER_ADMISSION = os.path.join(REPO, "status-reporter", "src", "admission.cpp")

RELEASE = "kubevirt-guest-metrics"
NAMESPACE = "guest-metrics"
FULLNAME = "kubevirt-guest-metrics"
REPORTER = "kubevirt-guest-metrics-status-reporter"
GUEST_LOAD_GROUP = "kubevirt-guest-metrics.guest-load"
OPT_OUT_LABEL = "guestmetrics.kubevirt.io/inject"
SOURCE_RUNBOOK_BASE = "https://kubevirt.io/monitoring/runbooks/"

LEADER_LABEL = "guestmetrics.kubevirt.io/leader"

HELM = None
PROMTOOL = None
# Built binaries (optional): their --help is checked against what the chart sets.
STATUS_REPORTER = None
GUEST_EXPORTER = None


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


def render(values_file=None, sets=(), chart=CHART, release=RELEASE, extra=()):
    """helm template, parsed: a list of objects (cached per arguments)."""
    key = (values_file, tuple(sets), chart, release, tuple(extra))
    if key not in _renders:
        args = ["template", release, chart, "--namespace", NAMESPACE, *extra]
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


def default_runbook(name, values=None):
    alerts = (values or values_of(None))["alerts"]
    return f"{alerts['runbookBaseURL']}{name}{alerts['runbookURLSuffix']}"


def source_groups(values=None):
    """promrules' groups with runbook_url moved to the chart's base URL."""
    groups = load_yaml(RULES)["groups"]
    for g in groups:
        for r in g["rules"]:
            if "alert" in r:
                assert r["annotations"]["runbook_url"] == SOURCE_RUNBOOK_BASE + r["alert"]
                r["annotations"]["runbook_url"] = default_runbook(r["alert"], values)
    return groups


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
    with open(REPORTER_CONTROLLER) as f:
        m = re.search(r'kLeaderLabel\s*=\s*"([^"]+)"', f.read())
    assert m, f"kLeaderLabel not found in {REPORTER_CONTROLLER}"
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
        passthrough = {("statusReporter", "resources"), ("statusReporter", "strategy"), ("webhook", "namespaceSelector")}
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
                self.assertEqual(sc["runAsUser"], 107)
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
        self.assertEqual(c["image"], "ghcr.io/kubevirt-guest-metrics/kubevirt-guest-metrics:0.1.0")
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

    def test_cluster_role_is_exactly_what_is_needed(self):
        role = one(render(), "ClusterRole", REPORTER)
        self.assertNotIn("aggregationRule", role)
        want = {(g, res, v, "*") for (g, res), verbs in self.CLUSTER.items() for v in verbs}
        self.assertEqual(self.grants(role), want)
        for r in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                self.assertNotIn("*", r[field])

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
        self.assertEqual(w["expr"], "vmi:kubevirt_vmi_guest_queue_length:sum > 15")
        self.assertEqual(w["for"], "5m")
        self.assertEqual(w["annotations"]["summary"], "Guest vCPU run queue is above 15.")
        self.assertTrue(w["annotations"]["description"].endswith("above 15."))
        self.assertEqual(w["labels"], src["GuestVCPUQueueHighWarning"]["labels"])

        c = got["GuestVCPUQueueHighCritical"]
        self.assertEqual(c["expr"], "vmi:kubevirt_vmi_guest_queue_length:sum > 30.5")
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
        cases = {
            ("false", "false"): [operability],
            ("false", "true"): [dict(guest, rules=[r for r in guest["rules"] if "alert" in r]), operability],
            ("true", "false"): [dict(guest, rules=[r for r in guest["rules"] if "record" in r]), operability],
        }
        for (records, alerts), want in cases.items():
            with self.subTest(recordingRules=records, queueAlerts=alerts):
                got = rule_groups(render(sets=[f"guestLoad.recordingRules.enabled={records}",
                                               f"guestLoad.queueAlerts.enabled={alerts}"]))
                self.assertEqual(got, want)
        self.assertEqual(rule_groups(render(os.path.join(CHART, "ci", "guest-load-off-values.yaml"))), [operability])

    def test_threshold_only_where_the_expression_allows_it(self):
        # A rule file whose queue alert no longer ends in "> N" must stop the
        # render when a threshold is set, not render a wrong expression; an
        # alert the values do not know must stop it too.
        with tempfile.TemporaryDirectory() as tmp:
            chart = os.path.join(tmp, "kubevirt-guest-metrics")
            shutil.copytree(CHART, chart, symlinks=False)
            rules_path = os.path.join(chart, "files", "kubevirt-guest-metrics.rules.yaml")
            with open(rules_path) as f:
                text = f.read()
            changed = text.replace("vmi:kubevirt_vmi_guest_queue_length:sum > 10",
                                   "vmi:kubevirt_vmi_guest_queue_length:sum >= bool 10")
            self.assertNotEqual(changed, text)
            with open(rules_path, "w") as f:
                f.write(changed)
            p = helm("template", RELEASE, chart, "--set", "alerts.GuestVCPUQueueHighWarning.threshold=12", check=False)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("does not end in", p.stderr)

            with open(rules_path, "w") as f:
                f.write(text.replace("alert: GuestMetricsStatusReporterDown", "alert: GuestMetricsSomethingNew"))
            p = helm("template", RELEASE, chart, check=False)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("has no alerts.GuestMetricsSomethingNew", p.stderr)

            os.remove(rules_path)
            p = helm("template", RELEASE, chart, check=False)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("must link to promrules", p.stderr)


class SingleSource(unittest.TestCase):
    def test_files_are_links_to_promrules(self):
        for rel, target in (("files/kubevirt-guest-metrics.rules.yaml", RULES),
                            ("files/dashboards/kubevirt-guest-metrics.json", DASHBOARD)):
            path = os.path.join(CHART, rel)
            self.assertTrue(os.path.islink(path), f"{rel} must be a symlink to promrules/, not a copy")
            self.assertFalse(os.path.isabs(os.readlink(path)), f"{rel} must be a relative link")
            self.assertEqual(os.path.realpath(path), os.path.realpath(target))
        linked = {os.path.relpath(p, CHART) for p in glob.glob(os.path.join(CHART, "files", "**", "*"), recursive=True)
                  if os.path.isfile(p)}
        self.assertEqual(linked, {"files/kubevirt-guest-metrics.rules.yaml", "files/dashboards/kubevirt-guest-metrics.json"})

    def test_packaged_chart_carries_the_contents(self):
        with tempfile.TemporaryDirectory() as tmp:
            helm("package", CHART, "--destination", tmp)
            (tgz,) = glob.glob(os.path.join(tmp, "*.tgz"))
            with tarfile.open(tgz) as t:
                names = t.getnames()
                for rel, source in (("files/kubevirt-guest-metrics.rules.yaml", RULES),
                                    ("files/dashboards/kubevirt-guest-metrics.json", DASHBOARD)):
                    member = t.getmember(f"kubevirt-guest-metrics/{rel}")
                    self.assertTrue(member.isfile(), f"{rel} is not a regular file in the package")
                    with open(source, "rb") as f:
                        self.assertEqual(t.extractfile(member).read(), f.read())
                self.assertFalse([n for n in names if "/ci/" in n], "ci/ scenarios are packaged")
            self.assertEqual(rule_groups(render(chart=tgz)), source_groups())


class PromtoolTests(unittest.TestCase):
    """promtool on what the chart ships (promrules/README.md: "Test what ships")."""

    def setUp(self):
        if not PROMTOOL:
            self.skipTest("no --promtool")

    def write_rules(self, docs, path):
        with open(path, "w") as f:
            yaml.safe_dump({"groups": rule_groups(docs)}, f, sort_keys=False)

    def test_promrules_unit_tests_pass_on_the_rendered_rules(self):
        tests = sorted(glob.glob(os.path.join(PROMTOOL_TESTS, "*_test.yaml")))
        self.assertTrue(tests, "no promtool tests in promrules/tests")
        with tempfile.TemporaryDirectory() as tmp:
            rules = os.path.join(tmp, "rendered.rules.yaml")
            self.write_rules(render(), rules)
            for test in tests:
                with open(test) as f:
                    text = f.read()
                # The same test file, pointed at the rendered groups; the
                # runbook URLs are the chart's.
                text = re.sub(r"(?m)^rule_files:\n(\s+- .*\n)+", "rule_files:\n  - rendered.rules.yaml\n", text)
                self.assertIn("rendered.rules.yaml", text, f"{test}: no rule_files to replace")
                text = re.sub(re.escape(SOURCE_RUNBOOK_BASE) + r"([A-Za-z]+)", lambda m: default_runbook(m.group(1)), text)
                copy_path = os.path.join(tmp, os.path.basename(test))
                with open(copy_path, "w") as f:
                    f.write(text)
                with self.subTest(test=os.path.basename(test)):
                    p = run([PROMTOOL, "test", "rules", os.path.basename(copy_path)], check=False, cwd=tmp)
                    self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_every_scenario_renders_valid_rules(self):
        with tempfile.TemporaryDirectory() as tmp:
            for f in [None, *scenario_files()]:
                docs = render(f)
                if not objects(docs, "PrometheusRule"):
                    continue
                with self.subTest(scenario=scenario_name(f) if f else "defaults"):
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


def main():
    global HELM, PROMTOOL, STATUS_REPORTER, GUEST_EXPORTER
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--helm")
    parser.add_argument("--promtool")
    parser.add_argument("--status-reporter")
    parser.add_argument("--guest-exporter")
    opts, rest = parser.parse_known_args()
    HELM = find_helm(opts.helm)
    if not HELM or not os.access(HELM, os.X_OK):
        sys.exit(f"test_chart.py: helm not found ({HELM or 'none'}); run scripts/install-helm.sh")
    PROMTOOL = opts.promtool
    STATUS_REPORTER, GUEST_EXPORTER = opts.status_reporter, opts.guest_exporter
    print(f"helm: {HELM} ({run([HELM, 'version', '--template', '{{.Version}}']).stdout.strip()})", flush=True)
    unittest.main(argv=[sys.argv[0], *rest], verbosity=2)


if __name__ == "__main__":
    main()
