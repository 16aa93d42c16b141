# shellcheck shell=bash
# Sourced by the bench scripts: the one way they build what they measure,
# keep their results and stop what they started.
#
#   bench_build PREFIX TARGET BUILD_DIR [cmake -D options...]
#
# Configures BUILD_DIR as RelWithDebInfo (refusing a sanitized one: its
# figures would be meaningless), builds TARGET and sets build_type.

bench_build() {
  local prefix=$1 target=$2 dir=$3
  shift 3
  echo "$prefix: building $target (RelWithDebInfo) in $dir" >&2
  cmake -S "$repo" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
  local sanitize
  sanitize=$(sed -n 's/^GM_SANITIZE:STRING=//p' "$dir/CMakeCache.txt")
  if [ -n "$sanitize" ]; then
    echo "$prefix: $dir is configured with GM_SANITIZE=$sanitize; use an unsanitized build directory" >&2
    exit 1
  fi
  cmake --build "$dir" -j"$(nproc)" --target "$target" >&2
  build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$dir/CMakeCache.txt")
}

# Stops the processes in the global array `pids`, newest first, each given
# 5 s to exit before SIGKILL, and empties it.
stop_all() {
  local p i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[i]}" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  pids=()
}

# bench_workspace PREFIX: a temporary directory `tmp` and the results file
# `res` (KEY=VALUE lines, written by put); on exit every process in `pids` is
# stopped and `tmp` removed.
bench_workspace() {
  tmp=$(mktemp -d "/tmp/$1.XXXXXX")
  pids=()
  trap 'stop_all; rm -rf "$tmp"' EXIT
  trap 'exit 130' INT TERM
  res="$tmp/results"
  : >"$res"
}
put() { echo "$1=$2" >>"$res"; }

# Bounded wait: wait_for SECONDS COMMAND...
wait_for() {
  local n=$(($1 * 10))
  shift
  for _ in $(seq "$n"); do "$@" && return 0; sleep 0.1; done
  return 1
}
