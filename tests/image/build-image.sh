#!/usr/bin/env bash
# image.build: builds the container image from the repository's Dockerfile with
# podman, offline but for Debian's package registry, and checks the result.
#
#   tests/image/build-image.sh [SOURCE_DIR [PROJECT_VERSION]]
#
# 1. Base image. The Dockerfile's FROM is docker.io/library/debian:bookworm-slim,
#    which no registry here serves. When podman's storage lacks it, a stand-in is
#    made with `debootstrap --variant=minbase bookworm` from the Debian mirror
#    this machine's apt uses, trimmed like Debian's official slim image, and
#    imported under that name. The rootfs tarball is cached in
#    ${XDG_CACHE_HOME:-$HOME/.cache}/kubevirt-guest-metrics/ (delete it to
#    refresh), so only the first run pays for debootstrap.
# 2. `podman build --pull=never --isolation=chroot` (podman's layer cache on),
#    tagged kubevirt-guest-metrics:test (GM_IMAGE_TAG overrides). apt inside
#    the build reaches Debian's registry through the host's network.
# 3. Checks: both binaries answer --help and --version inside the image (podman
#    run with runc and no network; if podman run cannot start containers here,
#    the image is mounted and the binaries run under chroot as 107:107
#    instead); the config has User 107:107, an exec-form Entrypoint, the OCI
#    labels and the reporter's ports; no compiler, cmake or -dev package in the
#    runtime image; its size is printed.
#
# Needs root (podman's storage and debootstrap) and podman, runc and debootstrap
# (scripts/install-deps.sh installs them). Exits non-zero with a message naming
# the failed check. Containers it starts are removed on every exit path.
set -euo pipefail

SRC=$(cd "${1:-$(dirname "$0")/../..}" && pwd)
PROJECT_VERSION=${2:-}
IMAGE=${GM_IMAGE_TAG:-kubevirt-guest-metrics:test}
BASE=docker.io/library/debian:bookworm-slim
CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/kubevirt-guest-metrics
BASE_TAR=$CACHE_DIR/debian-bookworm-minbase-rootfs.tar
# What makes `podman run` work on these machines (cgroups v1/hybrid, no
# crun, default ulimits podman cannot raise here).
RUN_OPTS=(--runtime runc --network=none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
EXPECTED_USER=107:107
EXPECTED_ENTRYPOINT='["/usr/local/bin/status-reporter"]'

START=$SECONDS
say() { echo "image.build: [$((SECONDS - START))s] $*"; }
fail() { echo "image.build: FAIL: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# Cleanup: every container this script creates carries this prefix.
PREFIX="gm-image-test-$$"
TMP=""
MOUNTED_CTR=""
cleanup() {
  local rc=$?
  set +e
  if [ -n "$MOUNTED_CTR" ]; then podman umount "$MOUNTED_CTR" >/dev/null 2>&1; fi
  local ids
  ids=$(podman ps -a -q --filter "name=^$PREFIX" 2>/dev/null)
  if [ -n "$ids" ]; then
    # shellcheck disable=SC2086
    podman rm -f $ids >/dev/null 2>&1
  fi
  if [ -n "$TMP" ] && [ -d "$TMP" ]; then
    # debootstrap mounts proc/sys inside the rootfs; never follow them.
    findmnt -rn -o TARGET | grep -F "$TMP/" | sort -r | while read -r m; do umount -l "$m"; done
    rm -rf --one-file-system "$TMP"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------
# Tools.
if ! command -v podman >/dev/null 2>&1; then
  fail "podman is not installed: run scripts/install-deps.sh (it installs podman, runc and debootstrap from Debian)"
fi
[ "$(id -u)" -eq 0 ] || fail "run as root: podman's system storage and debootstrap need it"
[ -f "$SRC/Dockerfile" ] || fail "no Dockerfile in $SRC"
if [ -z "$PROJECT_VERSION" ]; then
  PROJECT_VERSION=$(head -n1 "$SRC/VERSION" 2>/dev/null || true)
fi
[ -n "$PROJECT_VERSION" ] || fail "cannot tell the project version (give it as the second argument)"
driver=$(podman info --format '{{.Store.GraphDriverName}}' 2>&1) || fail "podman info failed: $driver"
say "podman $(podman version --format '{{.Client.Version}}'), storage driver $driver, image $IMAGE, version $PROJECT_VERSION"

# ---------------------------------------------------------------------------
# 1. The base image.

# Prints "URI SUITE" for every enabled deb entry of apt's sources, in both the
# one-line (.list) and the deb822 (.sources) formats.
apt_entries() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk '$1 == "deb" {
           i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
           print $i, $(i + 1) }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'function flush(   u, s, nu, ns, a, b) {
           if (types ~ /(^| )deb( |$)/ && tolower(enabled) != "no") {
             nu = split(uris, a, " "); ns = split(suites, b, " ")
             for (u = 1; u <= nu; u++) for (s = 1; s <= ns; s++) print a[u], b[s]
           }
           types = uris = suites = ""; enabled = "yes" }
         BEGIN { enabled = "yes" }
         /^[ \t]*#/ { next }
         /^[ \t]*$/ { flush(); next }
         { key = tolower($1); sub(/:$/, "", key); val = $0; sub(/^[^:]*:[ \t]*/, "", val)
           if (key == "types") types = val; else if (key == "uris") uris = val
           else if (key == "suites") suites = val; else if (key == "enabled") enabled = val }
         END { flush() }' "$f"
  done
}

make_base_tarball() {
  command -v debootstrap >/dev/null 2>&1 ||
    fail "debootstrap is not installed: run scripts/install-deps.sh"
  local entries mirror rootfs
  entries=$(apt_entries | awk '$2 ~ /^bookworm(-updates|-security|\/updates)?$/' | sort -u)
  mirror=${GM_DEBIAN_MIRROR:-$(echo "$entries" | awk '$2 == "bookworm" { print $1; exit }')}
  [ -n "$mirror" ] ||
    fail "no 'bookworm' entry in /etc/apt/sources.list(.d); set GM_DEBIAN_MIRROR to a Debian mirror URL"
  TMP=$(mktemp -d /var/tmp/gm-image-base.XXXXXX)
  rootfs=$TMP/rootfs
  say "debootstrap --variant=minbase bookworm from the mirror apt uses (takes about 2 minutes)"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$TMP/debootstrap.log" 2>&1 || {
    tail -n 20 "$TMP/debootstrap.log" >&2
    fail "debootstrap failed (log above)"
  }
  # Same package sources as this machine (bookworm, -updates, -security).
  rm -f "$rootfs/etc/apt/sources.list"
  echo "$entries" | awk 'NF == 2 { print "deb " $1 " " $2 " main" }' >"$rootfs/etc/apt/sources.list"
  # Trim it the way Debian's official -slim images are trimmed, so that sizes
  # measured here match a real build: no docs, man pages or locales, now or
  # in later installs; no package lists.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  rm -rf "$rootfs"/usr/share/{man,groff,info,lintian,linda}/* "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  mkdir -p "$CACHE_DIR"
  tar -C "$rootfs" --numeric-owner --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' \
    -cf "$BASE_TAR.tmp" .
  mv "$BASE_TAR.tmp" "$BASE_TAR"
  rm -rf --one-file-system "$TMP"
  TMP=""
}

if podman image exists "$BASE"; then
  say "base $BASE is in podman's storage"
else
  if [ -s "$BASE_TAR" ]; then
    say "base: cached rootfs $BASE_TAR"
  else
    make_base_tarball
  fi
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    --message "debootstrap --variant=minbase bookworm (stand-in for $BASE)" \
    "$BASE_TAR" "$BASE" >/dev/null || fail "podman import of $BASE_TAR failed"
  say "imported the rootfs as $BASE"
fi

# ---------------------------------------------------------------------------
# 2. The image.
old_id=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
say "podman build (layer cache on; a cold build installs the build packages and compiles both binaries)"
build_log=$(mktemp /tmp/gm-image-build.XXXXXX.log)
if ! podman build --pull=never --isolation=chroot --layers --force-rm \
    --build-arg VERSION="$PROJECT_VERSION" \
    --build-arg REVISION="$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    -t "$IMAGE" -f "$SRC/Dockerfile" "$SRC" >"$build_log" 2>&1; then
  tail -n 40 "$build_log" >&2
  fail "podman build failed (last lines above; full log: $build_log)"
fi
rm -f "$build_log"
new_id=$(podman image inspect --format '{{.Id}}' "$IMAGE")
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
  podman rmi "$old_id" >/dev/null 2>&1 || true   # the previous build, now untagged
fi
say "built $IMAGE (${new_id:0:12})"

# ---------------------------------------------------------------------------
# 3. Checks.
inspect() { podman image inspect --format "$1" "$IMAGE"; }

user=$(inspect '{{.Config.User}}')
[ "$user" = "$EXPECTED_USER" ] || fail "image User is '$user', want $EXPECTED_USER"
entrypoint=$(inspect '{{json .Config.Entrypoint}}')
[ "$entrypoint" = "$EXPECTED_ENTRYPOINT" ] ||
  fail "image Entrypoint is $entrypoint, want exec form $EXPECTED_ENTRYPOINT"
for l in title description source licenses version; do
  v=$(inspect "{{index .Config.Labels \"org.opencontainers.image.$l\"}}")
  if [ -z "$v" ] || [ "$v" = "<no value>" ]; then fail "label org.opencontainers.image.$l is missing"; fi
done
v=$(inspect '{{index .Config.Labels "org.opencontainers.image.version"}}')
[ "$v" = "$PROJECT_VERSION" ] || fail "label org.opencontainers.image.version is '$v', want $PROJECT_VERSION"
ports=$(inspect '{{json .Config.ExposedPorts}}')
for p in 8443/tcp 8080/tcp; do
  [[ $ports == *"\"$p\""* ]] || fail "port $p is not exposed (ExposedPorts: $ports)"
done
health=$(inspect '{{json .HealthCheck}}' 2>/dev/null || echo null)
[ "$health" = "null" ] || [ -z "$health" ] || fail "image has a HEALTHCHECK ($health)"
say "config: User $user, Entrypoint $entrypoint, OCI labels, ports $ports, no healthcheck"

# How commands run inside the image: `podman run`, or, where podman cannot
# start containers, chroot into the mounted image as the image's user.
# GM_IMAGE_RUN_MODE=chroot forces the fallback (to test it).
n=0
mode=${GM_IMAGE_RUN_MODE:-run}
if [ "$mode" = run ] &&
   ! out=$(podman run --rm --name "$PREFIX-probe" "${RUN_OPTS[@]}" --entrypoint /bin/true "$IMAGE" 2>&1); then
  echo "$out" >&2
  say "podman run does not work here (above); falling back to podman create + mount + chroot"
  mode=chroot
fi
if [ "$mode" = chroot ]; then
  CHROOT=$(command -v chroot) || fail "no chroot on this machine for the fallback"
  MOUNTED_CTR=$(podman create --name "$PREFIX-mount" "$IMAGE")
  MNT=$(podman mount "$MOUNTED_CTR")
fi
# in_image ENTRYPOINT ARGS... (ENTRYPOINT "" = the image's own)
in_image() {
  local ep=$1
  shift
  n=$((n + 1))
  if [ "$mode" = run ]; then
    if [ -n "$ep" ]; then
      podman run --rm --name "$PREFIX-$n" "${RUN_OPTS[@]}" --entrypoint "$ep" "$IMAGE" "$@"
    else
      podman run --rm --name "$PREFIX-$n" "${RUN_OPTS[@]}" "$IMAGE" "$@"
    fi
  else
    [ -n "$ep" ] || ep=$(inspect '{{index .Config.Entrypoint 0}}')
    env -i PATH=/usr/local/bin:/usr/bin:/bin "$CHROOT" --userspec="$EXPECTED_USER" "$MNT" "$ep" "$@"
  fi
}

# expect_help WHAT ENTRYPOINT FLAG...: --help exits 0 and lists every FLAG.
expect_help() {
  local what=$1 ep=$2 out rc=0
  shift 2
  out=$(in_image "$ep" --help 2>&1) || rc=$?
  [ $rc -eq 0 ] || { echo "$out" >&2; fail "$what --help exited $rc in the image"; }
  for f in "$@"; do
    grep -q -e "$f" <<<"$out" || { echo "$out" >&2; fail "$what --help does not mention $f"; }
  done
  out=$(in_image "$ep" --version 2>&1) || { echo "$out" >&2; fail "$what --version failed in the image"; }
  [[ $out == *"$PROJECT_VERSION"* ]] || fail "$what --version says '$out', want $PROJECT_VERSION"
  say "$what: --help lists $*; --version: $out"
}

expect_help "status-reporter (default entrypoint)" "" \
  --https-address --metrics-address --tls-cert-file --tls-key-file --namespace
expect_help guest-exporter /usr/local/bin/guest-exporter \
  --libvirt-uri --socket --listen-address --reporter-url probe

# shellcheck disable=SC2016  # expanded inside the image
ids=$(in_image /bin/sh -c 'echo "$(id -u):$(id -g)"') || fail "cannot run /bin/sh in the image"
[ "$ids" = "$EXPECTED_USER" ] || fail "processes in the image run as $ids, want $EXPECTED_USER"

# Runtime stage only: no toolchain, no build system, no headers.
# shellcheck disable=SC2016  # expanded inside the image
leftovers=$(in_image /bin/sh -c '
  for f in /usr/bin/g++ /usr/bin/gcc /usr/bin/c++ /usr/bin/cc /usr/bin/cmake /usr/bin/make \
           /usr/bin/ld /usr/include/libvirt /usr/include/prometheus /build /src; do
    [ -e "$f" ] && echo "$f"
  done
  dpkg-query -W -f "\${Package}\n" | grep -E -- "-dev$|^(cmake|make|binutils)$|^(gcc|g\+\+|cpp)(-[0-9]+)?$"
  true') || fail "cannot list the image's files"
[ -z "$leftovers" ] || fail "the runtime image holds build tools: $(tr '\n' ' ' <<<"$leftovers")"
missing=$(in_image /bin/sh -c 'ldd /usr/local/bin/guest-exporter /usr/local/bin/guest-exporter-flags /usr/local/bin/status-reporter | grep "not found"; true')
[ -z "$missing" ] || fail "shared libraries missing in the image: $missing"
say "runtime image: no compiler, cmake or -dev package; every shared library resolves; ran via $mode"

size=$(inspect '{{.Size}}')
base_size=$(podman image inspect --format '{{.Size}}' "$BASE")
say "image size $((size / 1024 / 1024)) MiB ($size bytes; base $BASE $((base_size / 1024 / 1024)) MiB)"
say "PASS ($((SECONDS - START)) s)"
