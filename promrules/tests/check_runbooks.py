#!/usr/bin/env python3
"""Checks that the runbooks and the alerts of the rule file agree.

For every alert in the rule file:
  - runbooks/<AlertName>.md exists, its title is `# <AlertName>`, and its only
    level-2 headings are Meaning, Impact, Diagnosis, Mitigation, in that order;
  - the runbook states the alert's `severity: ...`, and its `for: ...` (or
    "no `for`" when the alert has none);
  - runbook_url leads to a runbook that exists: for the alerts KubeVirt ships
    itself with a runbook on its site (kubevirt/monitoring docs/runbooks),
    https://kubevirt.io/monitoring/runbooks/<AlertName>; for this project's
    own, runbooks/<AlertName>.md of this repository (it has no public site;
    the Helm chart ships the runbooks and links them itself);
  - runbooks/README.md has a row linking the runbook, with the same severity
    and `for` (– when none).
And every runbook belongs to an alert.

The rule file is read line by line (no YAML library in the standard library):
it relies on `- alert:` / `- record:` starting each rule, and on `for:`,
`severity:` and `runbook_url:` being plain one-line scalars, as they are.

Usage: check_runbooks.py RULES.yaml RUNBOOK_DIR
"""

import os
import re
import sys

RUNBOOK_BASE_URL = "https://kubevirt.io/monitoring/runbooks/"
# The alerts of the rule file that KubeVirt's runbook site has.
ON_KUBEVIRT_SITE = {"GuestVCPUQueueHighWarning", "GuestVCPUQueueHighCritical"}


def want_url(name):
    return RUNBOOK_BASE_URL + name if name in ON_KUBEVIRT_SITE else f"runbooks/{name}.md"
SECTIONS = ["Meaning", "Impact", "Diagnosis", "Mitigation"]

RULE_START_RE = re.compile(r"^\s*-\s+(alert|record):\s*(\S+)\s*$")
FIELD_RE = re.compile(r"^\s*(for|severity|runbook_url):\s*['\"]?([^'\"\s]+)['\"]?\s*$")
README_ROW_RE = re.compile(r"^\|\s*\[([^\]]+)\]\(([^)]+)\)\s*\|\s*([^|]*?)\s*\|\s*([^|]*?)\s*\|")


def parse_alerts(path):
    alerts = {}
    current = None
    with open(path) as f:
        for line in f:
            if line.lstrip().startswith("#"):
                continue
            m = RULE_START_RE.match(line)
            if m:
                current = None
                if m.group(1) == "alert":
                    current = alerts.setdefault(m.group(2), {"for": None, "severity": None, "runbook_url": None})
                continue
            m = FIELD_RE.match(line)
            if m and current is not None:
                current[m.group(1)] = m.group(2)
    return alerts


def check_runbook(name, alert, path):
    errors = []
    if not os.path.exists(path):
        return [f"{name}: no runbook {path}"]
    with open(path) as f:
        text = f.read()
    lines = text.splitlines()
    title = next((l for l in lines if l.strip()), "")
    if title.rstrip() != f"# {name}":
        errors.append(f"{path}: title is {title!r}, want '# {name}'")
    headings = [l[3:].strip() for l in lines if l.startswith("## ")]
    if headings != SECTIONS:
        errors.append(f"{path}: level-2 headings are {headings}, want {SECTIONS}")
    if alert["severity"] is None:
        errors.append(f"{name}: alert has no severity label")
    elif f"`severity: {alert['severity']}`" not in text:
        errors.append(f"{path}: does not state `severity: {alert['severity']}`")
    if alert["for"] is None:
        if "no `for`" not in text:
            errors.append(f"{path}: the alert has no `for`; the runbook does not say so (\"no `for`\")")
    elif f"`for: {alert['for']}`" not in text:
        errors.append(f"{path}: does not state `for: {alert['for']}`")
    return errors


def check_readme(alerts, path):
    errors = []
    if not os.path.exists(path):
        return [f"no runbook index {path}"]
    rows = {}
    with open(path) as f:
        for line in f:
            m = README_ROW_RE.match(line)
            if m:
                rows[m.group(1)] = m.groups()[1:]
    for name, alert in alerts.items():
        if name not in rows:
            errors.append(f"{path}: no row for {name}")
            continue
        link, severity, for_ = rows[name]
        if link != f"{name}.md":
            errors.append(f"{path}: {name} links {link}, want {name}.md")
        if severity != alert["severity"]:
            errors.append(f"{path}: {name} severity {severity!r}, the alert has {alert['severity']!r}")
        if for_ != (alert["for"] or "–"):
            errors.append(f"{path}: {name} for {for_!r}, the alert has {alert['for'] or '–'!r}")
    for name in rows.keys() - alerts.keys():
        errors.append(f"{path}: row for {name}, which is no alert")
    return errors


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    rules, runbook_dir = sys.argv[1], sys.argv[2]
    alerts = parse_alerts(rules)
    errors = [] if alerts else [f"{rules}: no alerts found"]

    for name, alert in alerts.items():
        url = alert["runbook_url"]
        if url != want_url(name):
            errors.append(f"{name}: runbook_url is {url!r}, want {want_url(name)!r}")
        errors += check_runbook(name, alert, os.path.join(runbook_dir, f"{name}.md"))

    errors += check_readme(alerts, os.path.join(runbook_dir, "README.md"))
    for entry in sorted(os.listdir(runbook_dir)):
        if entry.endswith(".md") and entry != "README.md" and entry[:-3] not in alerts:
            errors.append(f"{runbook_dir}/{entry}: no alert {entry[:-3]} in {rules}")

    if errors:
        print(f"{len(errors)} problem(s):", file=sys.stderr)
        for e in errors:
            print(f"  - {e}", file=sys.stderr)
        return 1
    print(f"OK: {len(alerts)} alerts, each with a runbook ({', '.join(sorted(alerts))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
