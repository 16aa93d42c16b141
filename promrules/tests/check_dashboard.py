#!/usr/bin/env python3
"""Checks the Grafana dashboard, and optionally the rule file, against a real Prometheus.

1. Structure of the dashboard JSON: a unique uid and unique panel ids; a
   `datasource` template variable of type prometheus; every non-row panel and
   every target (and every query variable) uses `${datasource}`; every target
   has an expr; every Grafana variable an expr uses is defined.
2. Starts the `prometheus` binary on 127.0.0.1 (free port, empty scrape config,
   temporary TSDB) and sends every dashboard expression, with Grafana variables
   replaced by valid values, to /api/v1/query. Any error (a parse error above
   all) fails with the expression and Prometheus' message.
3. With --rules FILE: Prometheus loads that rule file as is (a load failure
   fails the test), every rule expression it reports is queried the same way,
   every rule must evaluate without error, and every recording-rule name the
   dashboard uses (a name with a colon) must be recorded by that file.

Prometheus is always stopped and the temporary directory removed, also on
failure or SIGTERM; Prometheus also dies with this process if it is killed.

Usage: check_dashboard.py DASHBOARD.json [--rules RULES.yaml] [--prometheus PATH]
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

READY_TIMEOUT_S = 20
RULES_EVAL_TIMEOUT_S = 15
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}

# Values that Grafana would put in place of its built-in variables.
BUILTINS = {
    "__rate_interval": "2m",
    "__interval": "30s",
    "__interval_ms": "30000",
    "__range": "6h",
    "__range_s": "21600",
    "__range_ms": "21600000",
}
# What a multi-value query variable renders to inside a regex matcher.
QUERY_VARIABLE_VALUE = "(demo|prod)"

VARIABLE_RE = re.compile(
    r"\$\{([A-Za-z_]\w*)(?::[^}]*)?\}"  # ${var} or ${var:format}
    r"|\$([A-Za-z_]\w*)"  # $var ($1 in label_replace is not a variable)
    r"|\[\[([A-Za-z_]\w*)(?::[^\]]*)?\]\]"  # [[var]] (deprecated)
)
LABEL_VALUES_RE = re.compile(r"^\s*label_values\((.*),\s*[A-Za-z_]\w*\s*\)\s*$", re.S)
RECORDED_NAME_RE = re.compile(r"\b[A-Za-z_]\w*:[A-Za-z_:][\w:]*")


class CheckError(Exception):
    pass


# --- dashboard structure -------------------------------------------------------


def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def check_structure(dash):
    """Returns (errors, [(where, expr)]) for every PromQL expression in the dashboard."""
    errors = []
    exprs = []
    if not dash.get("uid"):
        errors.append("dashboard has no uid")
    if not isinstance(dash.get("schemaVersion"), int):
        errors.append("dashboard has no integer schemaVersion")

    variables = dash.get("templating", {}).get("list", [])
    names = [v.get("name") for v in variables]
    if len(names) != len(set(names)):
        errors.append(f"duplicate template variable names: {names}")
    ds_vars = [v for v in variables if v.get("name") == "datasource"]
    if not ds_vars or ds_vars[0].get("type") != "datasource" or ds_vars[0].get("query") != "prometheus":
        errors.append("no template variable `datasource` of type datasource with query prometheus")
    for v in variables:
        if v.get("type") != "query":
            continue
        where = f"variable ${v.get('name')}"
        if v.get("datasource") != DATASOURCE_REF:
            errors.append(f"{where}: datasource is {v.get('datasource')!r}, want {DATASOURCE_REF!r}")
        query = v.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        if not query:
            errors.append(f"{where}: no query")
            continue
        m = LABEL_VALUES_RE.match(query)
        # label_values(selector, label) is Grafana's; the selector is PromQL.
        exprs.append((where, m.group(1) if m else query))

    ids = []
    for p in all_panels(dash.get("panels", [])):
        ids.append(p.get("id"))
        where = f"panel {p.get('id')} {p.get('title')!r}"
        grid = p.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in ("x", "y", "w", "h")) or grid["x"] + grid["w"] > 24:
            errors.append(f"{where}: bad gridPos {grid!r}")
        if p.get("type") == "row":
            continue
        if p.get("datasource") != DATASOURCE_REF:
            errors.append(f"{where}: datasource is {p.get('datasource')!r}, want {DATASOURCE_REF!r}")
        targets = p.get("targets") or []
        if not targets:
            errors.append(f"{where}: no targets")
        refids = [t.get("refId") for t in targets]
        if len(refids) != len(set(refids)):
            errors.append(f"{where}: duplicate refIds {refids}")
        for t in targets:
            twhere = f"{where} target {t.get('refId')}"
            if t.get("datasource", DATASOURCE_REF) != DATASOURCE_REF:
                errors.append(f"{twhere}: datasource is {t.get('datasource')!r}, want {DATASOURCE_REF!r}")
            expr = t.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                errors.append(f"{twhere}: no expr")
                continue
            exprs.append((twhere, expr))

    if None in ids or len(ids) != len(set(ids)):
        errors.append(f"panel ids missing or not unique: {ids}")
    return errors, exprs, {v.get("name"): v.get("type") for v in variables}


def substitute(expr, variables):
    """Replaces Grafana variables; raises CheckError for an unknown one."""

    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in BUILTINS:
            return BUILTINS[name]
        kind = variables.get(name)
        if kind in ("query", "custom"):
            return QUERY_VARIABLE_VALUE
        if kind is None:
            raise CheckError(f"unknown Grafana variable ${name}")
        raise CheckError(f"variable ${name} of type {kind} has no place in an expression")

    return VARIABLE_RE.sub(repl, expr)


# --- Prometheus ------------------------------------------------------------------


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent():
    """preexec_fn: the kernel kills Prometheus if this script is killed (SIGKILL by a test timeout)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def http_json(url, data=None, timeout=5):
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    try:
        with urllib.request.urlopen(url, data=body, timeout=timeout) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:  # 400/422 carry Prometheus' JSON error
        try:
            return json.load(e)
        except ValueError:
            return {"status": "error", "error": f"HTTP {e.code}"}


class Prometheus:
    def __init__(self, binary, workdir, rules):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(workdir, "prometheus.log")
        config = os.path.join(workdir, "prometheus.yml")
        with open(config, "w") as f:
            # No scrape configs; rules (if any) evaluated every second.
            f.write("global:\n  evaluation_interval: 1s\nscrape_configs: []\n")
            if rules:
                f.write(f"rule_files:\n  - {json.dumps(os.path.abspath(rules))}\n")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={os.path.join(workdir, 'data')}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )

    def log_text(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CheckError(f"prometheus exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                with urllib.request.urlopen(self.base + "/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, socket.timeout):
                pass
            time.sleep(0.1)
        raise CheckError(f"prometheus not ready after {READY_TIMEOUT_S} s:\n{self.log_text()}")

    def query(self, expr):
        """Returns None if Prometheus accepts and evaluates expr, else its error message."""
        r = http_json(self.base + "/api/v1/query", {"query": expr})
        if r.get("status") == "success":
            return None
        return f"{r.get('errorType', '')}: {r.get('error', r)}"

    def rules(self):
        return http_json(self.base + "/api/v1/rules")["data"]["groups"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def evaluated_rules(prom):
    """Waits until every loaded rule has been evaluated once; returns the groups."""
    deadline = time.monotonic() + RULES_EVAL_TIMEOUT_S
    while True:
        groups = prom.rules()
        if all(r.get("health") != "unknown" for g in groups for r in g["rules"]):
            return groups
        if time.monotonic() > deadline:
            raise CheckError(f"rules not evaluated after {RULES_EVAL_TIMEOUT_S} s")
        time.sleep(0.2)


# --- main ------------------------------------------------------------------------


def run(args):
    with open(args.dashboard) as f:
        dash = json.load(f)
    errors, exprs, variables = check_structure(dash)

    queries = []
    for where, expr in exprs:
        try:
            queries.append((where, expr, substitute(expr, variables)))
        except CheckError as e:
            errors.append(f"{where}: {e}\n    {expr}")

    with tempfile.TemporaryDirectory(prefix="check-dashboard-") as workdir:
        prom = Prometheus(args.prometheus, workdir, args.rules)
        try:
            prom.wait_ready()
            for where, expr, query in queries:
                err = prom.query(query)
                if err:
                    errors.append(f"{where}: Prometheus rejects\n    {query}\n    {err}")

            n_rules = 0
            if args.rules:
                groups = evaluated_rules(prom)
                if not groups:
                    errors.append(f"{args.rules}: Prometheus loaded no rule groups")
                recorded = set()
                for g in groups:
                    for r in g["rules"]:
                        n_rules += 1
                        where = f"rule {r['name']} (group {g['name']})"
                        if r["type"] == "recording":
                            recorded.add(r["name"])
                        if r.get("health") == "err":
                            errors.append(f"{where}: evaluation failed: {r.get('lastError')}")
                        err = prom.query(r["query"])
                        if err:
                            errors.append(f"{where}: Prometheus rejects\n    {r['query']}\n    {err}")
                for where, expr, _ in queries:
                    for name in RECORDED_NAME_RE.findall(expr):
                        if name not in recorded:
                            errors.append(f"{where}: {name} is not recorded by {args.rules}")
        finally:
            prom.stop()

    if errors:
        print(f"{args.dashboard}: {len(errors)} problem(s):", file=sys.stderr)
        for e in errors:
            print(f"  - {e}", file=sys.stderr)
        return 1
    print(f"{args.dashboard}: OK ({len(queries)} dashboard expressions"
          + (f", {n_rules} rules from {args.rules}" if args.rules else "") + ")")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dashboard")
    parser.add_argument("--rules", help="rule file to load into Prometheus and check as well")
    parser.add_argument("--prometheus", default="prometheus", help="prometheus binary")
    args = parser.parse_args()

    # SIGTERM (e.g. from a test runner) unwinds through the finally blocks.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return run(args)
    except CheckError as e:
        print(f"{args.dashboard}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
