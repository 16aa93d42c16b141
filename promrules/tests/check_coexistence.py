#!/usr/bin/env python3
"""Static checks of the rule files that each coexist_*_test.yaml loads together.

The promtool tests check what fires; this checks what promtool cannot see:
- no two rule groups record the same metric name (two groups writing one
  series interleave their samples, and each group's staleness markers end the
  other's series);
- an alert reads only names recorded by its own rule file (or raw metrics), so
  no alert of KubeVirt's is fed by this project's series and the other way
  round.
And the shipped files alone: the guest-load group records no name that any
KubeVirt release records, so it can be loaded beside every one of them.

Usage: check_coexistence.py TESTS_DIR     (python3, PyYAML)
"""

import glob
import os
import re
import sys

import yaml

# A metric name (or a label name or function: only names some file records count).
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def load(path):
    with open(path) as f:
        return yaml.safe_load(f) or {}


def check_case(test_path):
    errors = []
    here = os.path.dirname(test_path)
    files = [os.path.normpath(os.path.join(here, f)) for f in load(test_path)["rule_files"]]
    recorded_by = {}  # name -> [(file, group)]
    for f in files:
        for g in load(f).get("groups") or []:
            for r in g["rules"]:
                if "record" in r:
                    recorded_by.setdefault(r["record"], []).append((f, g["name"]))
    for name, where in sorted(recorded_by.items()):
        if len(where) > 1:
            errors.append(f"{test_path}: {name} is recorded by {len(where)} groups: {where}")
    for f in files:
        for g in load(f).get("groups") or []:
            for r in g["rules"]:
                if "alert" not in r:
                    continue
                for token in set(METRIC_NAME.findall(str(r["expr"]))):
                    owners = {w[0] for w in recorded_by.get(token, [])}
                    if owners and f not in owners:
                        errors.append(f"{test_path}: alert {r['alert']} of {f} reads {token}, recorded by {sorted(owners)}")
    return errors


def main():
    tests_dir = sys.argv[1]
    errors = []
    cases = sorted(glob.glob(os.path.join(tests_dir, "coexist_*_test.yaml")))
    if not cases:
        errors.append(f"{tests_dir}: no coexist_*_test.yaml")
    for case in cases:
        errors += check_case(case)
    kubevirt_names = set()
    for f in glob.glob(os.path.join(tests_dir, "kubevirt", "*.rules.yaml")):
        kubevirt_names |= {r["record"] for g in load(f)["groups"] for r in g["rules"] if "record" in r}
    if not kubevirt_names:
        errors.append(f"{tests_dir}/kubevirt: no KubeVirt rule files")
    shipped = os.path.join(tests_dir, "..", "kubevirt-guest-metrics.rules.yaml")
    for g in load(shipped)["groups"]:
        for r in g["rules"]:
            if r.get("record") in kubevirt_names:
                errors.append(f"{shipped}: group {g['name']} records {r['record']}, which KubeVirt records too")
    for e in errors:
        print(e, file=sys.stderr)
    print(f"check_coexistence: {len(cases)} cases, {len(kubevirt_names)} KubeVirt names, "
          f"{'FAILED' if errors else 'ok'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
