#!/usr/bin/env python3
"""clang-tidy, as .clang-tidy configures it, over every project translation unit.

Usage: clang-tidy.py BUILD_DIR [-j N] [--no-cache] [FILE...]

Reads BUILD_DIR/compile_commands.json, keeps the files under the source tree
(not the build tree's generated sources, not system or third-party code),
runs clang-tidy on them in parallel and fails with every finding printed.

A clean result is cached under a hash of what clang-tidy would see: the
preprocessed TU with its comments (so a NOLINT or a header change counts), the
compile command, every .clang-tidy that applies to the file (the root one and
any in its folders, such as tests/.clang-tidy) and the clang-tidy version. The
source and build directories are replaced by placeholders before hashing, so a
fresh clone of the same code hits the cache too (as ccache does for the
compiler). The cache lives in $GM_CLANG_TIDY_CACHE, else
${XDG_CACHE_HOME:-~/.cache}/kubevirt-guest-metrics/clang-tidy. Preprocessing
costs about 1/20 of a clang-tidy run, so an unchanged
tree is checked in seconds and a one-file change re-checks only the TUs that
include it. Findings are never cached: they are printed on every run.
"""
import argparse
import concurrent.futures
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

SOURCE = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))


def arguments(entry):
  if "arguments" in entry:
    return list(entry["arguments"])
  return shlex.split(entry["command"])


def preprocess_command(args):
  """The compile command turned into `-E -C` to stdout, without depfile output."""
  out = []
  skip = False
  for a in args:
    if skip:
      skip = False
      continue
    if a in ("-o", "-MF", "-MT", "-MQ"):
      skip = True
      continue
    if a in ("-c", "-MD", "-MMD") or a.startswith("-o"):
      continue
    out.append(a)
  return out + ["-E", "-C", "-o", "-"]


def path_free(data, build):
  """`data` with the build and source directories replaced by placeholders
  (build first: it may sit inside the source tree)."""
  return data.replace(build.encode(), b"@BUILD@").replace(SOURCE.encode(), b"@SOURCE@")


def configs(path):
  """Every .clang-tidy from SOURCE down to the file's folder, root first, each
  as its relative path and text: what clang-tidy reads for it (a nested one
  inherits or replaces the parent's)."""
  found = []
  d = os.path.dirname(path)
  while True:
    name = os.path.join(d, ".clang-tidy")
    if os.path.exists(name):
      with open(name, "rb") as f:
        found.insert(0, os.path.relpath(name, SOURCE).encode() + b"\0" + f.read())
    if d == SOURCE or not d.startswith(SOURCE + os.sep):
      return b"".join(found)
    d = os.path.dirname(d)


def cache_key(entry, args, salt, build):
  pre = subprocess.run(preprocess_command(args), cwd=entry["directory"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL)
  if pre.returncode != 0:
    return None  # let clang-tidy report the error
  h = hashlib.sha256(salt)
  h.update(configs(entry["file"]))
  h.update(path_free(" ".join(args).encode(), build))
  h.update(path_free(pre.stdout, build))
  return h.hexdigest()


def cache_directory():
  explicit = os.environ.get("GM_CLANG_TIDY_CACHE")
  if explicit:
    return explicit
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "kubevirt-guest-metrics", "clang-tidy")


def check(entry, build, tidy, cache_dir, salt):
  """Returns (file, seconds, cached, findings-or-None)."""
  start = time.monotonic()
  args = arguments(entry)
  key = cache_key(entry, args, salt, build) if cache_dir else None
  stamp = os.path.join(cache_dir, key) if key else None
  if stamp and os.path.exists(stamp):
    return entry["file"], time.monotonic() - start, True, None
  # No timeout of its own: ctest's bounds the whole run, and a loaded machine
  # can take many minutes over one Boost.Beast TU.
  run = subprocess.run([tidy, "-p", build, "--quiet", entry["file"]], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
  text = run.stdout.decode(errors="replace")
  if run.returncode != 0:
    # Drop clang-tidy's "N warnings generated." chatter; keep the findings.
    lines = [l for l in text.splitlines() if not l.endswith(" generated.")]
    return entry["file"], time.monotonic() - start, False, "\n".join(lines) or text
  if stamp:
    with open(stamp, "w") as f:
      f.write(entry["file"] + "\n")
  return entry["file"], time.monotonic() - start, False, None


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("build")
  p.add_argument("files", nargs="*", help="only these sources (default: every project TU)")
  p.add_argument("-j", type=int, default=os.cpu_count() or 2)
  p.add_argument("--no-cache", action="store_true")
  opts = p.parse_intermixed_args()

  build = os.path.realpath(opts.build)
  tidy = shutil.which(os.environ.get("CLANG_TIDY", "clang-tidy"))
  if not tidy:
    print("FAIL: clang-tidy is not installed (scripts/install-deps.sh installs it)")
    return 1
  db = os.path.join(build, "compile_commands.json")
  if not os.path.exists(db):
    print(f"FAIL: {db} is missing (CMAKE_EXPORT_COMPILE_COMMANDS is on in CMakeLists.txt)")
    return 1
  with open(db) as f:
    entries = json.load(f)
  wanted = {os.path.realpath(x): i for i, x in enumerate(opts.files)}
  tus, seen = [], set()
  for e in entries:
    path = os.path.realpath(os.path.join(e["directory"], e["file"]))
    # Project sources only: generated files live in a build tree (which may sit
    # inside the source tree), everything else outside SOURCE is not ours.
    if not path.startswith(SOURCE + os.sep) or path.startswith(build + os.sep):
      continue
    if os.path.relpath(path, SOURCE).split(os.sep)[0].startswith("build"):
      continue  # another build tree (build-asan/, ...) inside the checkout
    if wanted and path not in wanted or path in seen:
      continue
    seen.add(path)
    tus.append(dict(e, file=path))
  if wanted:
    tus.sort(key=lambda e: wanted[e["file"]])  # in the order given
  if not tus:
    print(f"FAIL: no project sources in {db}")
    return 1

  salt = subprocess.run([tidy, "--version"], stdout=subprocess.PIPE).stdout
  cache_dir = None
  if not opts.no_cache:
    cache_dir = cache_directory()
    os.makedirs(cache_dir, exist_ok=True)

  start = time.monotonic()
  failed, cached = [], 0
  with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, opts.j)) as pool:
    jobs = [pool.submit(check, e, build, tidy, cache_dir, salt) for e in tus]
    for job in concurrent.futures.as_completed(jobs):
      path, secs, hit, findings = job.result()
      cached += hit
      if findings is not None:
        failed.append(path)
        print(f"--- {os.path.relpath(path, SOURCE)} ({secs:.0f} s)\n{findings}", flush=True)
  wall = time.monotonic() - start
  summary = (f"{len(tus)} translation units, {cached} unchanged since a clean run, "
             f"{wall:.0f} s wall with -j{opts.j}")
  if failed:
    print(f"FAIL: clang-tidy findings in {len(failed)} of {summary}:")
    for path in sorted(failed):
      print("  " + os.path.relpath(path, SOURCE))
    print("Fix each finding, or silence it at the line with NOLINT(check) and a reason.")
    return 1
  print(f"clang-tidy clean: {summary}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
