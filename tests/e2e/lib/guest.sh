# shellcheck shell=bash
# Shared by the end-to-end test (run-guest.sh) and the demo (scripts/run-demo.sh):
# the small test guest -- Debian's kernel + a busybox initramfs holding the
# project's agent (agent/gm-agent.c), 1 vCPU, 256 MiB, TCG -- booted by a
# private *session* libvirtd run as an unprivileged user on a socket in a temp
# dir (the shape of a non-root virt-launcher pod).
#
# Source it, then call, in order:
#   guest_preflight        skip()s (the caller's) when QEMU, libvirt's QEMU
#                          driver or the guest's ingredients are missing
#   guest_prepare          the cached kernel + initramfs (apt-get download of
#                          linux-image-amd64 the first time); sets KDIR KVER GUEST
#   guest_rundir           the run dir RUN (short path), URI, the daemon's config
#   guest_start_libvirtd   sets LIBVIRTD_PID, LIBVIRT_VERSION
#   guest_create           boots DOMAIN; sets t_create
#   guest_wait_agent S     waits up to S s for guest-ping; sets agent_s
# and guest_stop from the caller's cleanup (destroys the domain, stops the
# daemon, makes sure QEMU is gone). V and agent talk to the daemon.
#
# The caller defines log, skip (the reason; must not return) and fail (must
# not return), and sets DOMAIN (<namespace>_<vmi-name>, KubeVirt's form)
# before guest_rundir. CACHE_TMP names a half-built cache entry that the
# caller's cleanup removes.

GUEST_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd) # tests/e2e
GUEST_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/kubevirt-guest-metrics/e2e"
GUEST_MODULES=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_console)
LIBVIRTD_PID="" URI="" RUN="" CACHE_TMP="" DOMAIN=${DOMAIN:-}
CACHE=$GUEST_CACHE
MODULES=("${GUEST_MODULES[@]}")

V() { timeout 30 virsh -q -c "$URI" "$@"; }
agent() { V qemu-agent-command "$DOMAIN" --timeout 10 "$1"; }

alive() { # a process that exists and is not a zombie
  local s
  s=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
  [ "${s%% *}" != Z ]
}
stop_pid() { # TERM, up to 10 s, then KILL; always reaped
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
  for _ in $(seq 100); do
    alive "$pid" || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
}

need() { command -v "$1" >/dev/null 2>&1 || skip "$1 not found ($2)"; }

# What booting the guest needs; sets QEMU_DRIVER BUSYBOX RUN_UID RUN_GID AS_USER.
guest_preflight() {
  need qemu-system-x86_64 "install Debian's qemu-system-x86"
  need libvirtd "install Debian's libvirt-daemon"
  need virsh "install Debian's libvirt-clients"
  need gcc "install build-essential"
  need curl "install curl"
  need dpkg-deb "a Debian system is needed for the kernel package"
  need xz "install xz-utils"
  need gzip "install gzip"
  need setpriv "install util-linux"
  need flock "install util-linux"
  local libc_a
  QEMU_DRIVER=$(ls /usr/lib/*/libvirt/connection-driver/libvirt_driver_qemu.so \
    /usr/lib64/libvirt/connection-driver/libvirt_driver_qemu.so 2>/dev/null | head -n1 || true)
  [ -n "$QEMU_DRIVER" ] || skip "libvirt's QEMU driver is missing (install libvirt-daemon-driver-qemu)"
  BUSYBOX=$(command -v busybox || true)
  [ -n "$BUSYBOX" ] || skip "busybox not found (install busybox-static)"
  if LC_ALL=C ldd "$BUSYBOX" >/dev/null 2>&1; then
    skip "$BUSYBOX is dynamically linked (install busybox-static, not busybox)"
  fi
  libc_a=$(gcc -print-file-name=libc.a)
  [ -f "$libc_a" ] || skip "no static libc for the agent (install libc6-dev)"
  # Can QEMU run at all (TCG, no KVM)? Start a paused machine and quit it.
  if ! printf '{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n' |
    timeout 30 qemu-system-x86_64 -machine pc,accel=tcg -display none -nodefaults \
      -no-user-config -S -qmp stdio >/dev/null 2>&1; then
    skip "qemu-system-x86_64 cannot start a TCG machine here"
  fi

  # Every process the test starts dies with it (--pdeathsig), even if the test
  # itself is killed; as root, they run as an unprivileged user (session mode).
  if [ "$(id -u)" -eq 0 ]; then
    RUN_UID=$(id -u nobody 2>/dev/null) || skip "user nobody is missing"
    RUN_GID=$(id -g nobody)
    AS_USER=(setpriv --pdeathsig KILL --reuid="$RUN_UID" --regid="$RUN_GID" --clear-groups)
  else
    RUN_UID=$(id -u)
    RUN_GID=$(id -g)
    AS_USER=(setpriv --pdeathsig KILL)
  fi
}

kernel_dir() { # the newest cached, complete kernel extraction
  local d
  for d in $(ls -d "$CACHE"/kernel/*/ 2>/dev/null | sort -rV); do
    [ -f "$d/complete" ] && { echo "${d%/}"; return 0; }
  done
  return 1
}

extract_kernel() { # $1: a linux-image-*.deb
  local deb=$1 tmp kver m f
  tmp=$(mktemp -d "$CACHE/extract.XXXXXX")
  CACHE_TMP=$tmp
  log "extracting vmlinuz and virtio modules from $(basename "$deb")"
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" --wildcards \
    './boot/vmlinuz-*' './lib/modules/*/kernel/drivers/virtio/*' \
    './lib/modules/*/kernel/drivers/char/virtio_console.ko*' ||
    { rm -rf "$tmp"; fail "cannot extract $deb"; }
  kver=$(ls "$tmp/lib/modules" | head -n1)
  [ -n "$kver" ] && [ -f "$tmp/boot/vmlinuz-$kver" ] ||
    { rm -rf "$tmp"; fail "$deb holds no vmlinuz matching its modules"; }
  rm -rf "$CACHE/kernel/$kver"
  mkdir -p "$CACHE/kernel/$kver/modules"
  cp "$tmp/boot/vmlinuz-$kver" "$CACHE/kernel/$kver/vmlinuz"
  for m in "${MODULES[@]}"; do
    f=$(find "$tmp/lib/modules/$kver" -name "$m.ko" -o -name "$m.ko.xz" | head -n1)
    if [ -z "$f" ]; then
      log "module $m not in the package (built into the kernel?)"
    elif [ "${f%.xz}" != "$f" ]; then
      xz -dc "$f" >"$CACHE/kernel/$kver/modules/$m.ko"
    else
      cp "$f" "$CACHE/kernel/$kver/modules/$m.ko"
    fi
  done
  [ -f "$CACHE/kernel/$kver/modules/virtio_console.ko" ] ||
    log "warning: no virtio_console.ko; assuming it is built in"
  touch "$CACHE/kernel/$kver/complete"
  rm -rf "$tmp"
  CACHE_TMP=""
}

# The guest, built once and cached under $GUEST_CACHE (kernel, agent,
# initramfs); sets KDIR KVER GUEST and keeps the cache lock (fd 9) until
# guest_rundir has copied what it needs.
guest_prepare() {
  local pkg key root
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.lock"
  flock -w 300 9 || fail "another run holds $CACHE/.lock"
  if [ -n "${GM_E2E_KERNEL_DEB:-}" ]; then
    extract_kernel "$GM_E2E_KERNEL_DEB"
  elif ! kernel_dir >/dev/null; then
    need apt-get "the kernel comes from Debian's linux-image-amd64"
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
      awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    [ -n "$pkg" ] || skip "apt does not know linux-image-amd64 (run apt-get update)"
    mkdir -p "$CACHE/debs"
    log "downloading $pkg (apt-get download)"
    (cd "$CACHE/debs" && timeout 300 apt-get download -q "$pkg" >/dev/null 2>&1) ||
      skip "cannot download $pkg from Debian's registry"
    extract_kernel "$(ls "$CACHE"/debs/"$pkg"_*.deb | head -n1)"
    rm -f "$CACHE"/debs/*.deb # 70 MB; the extraction (~10 MB) is what is kept
  fi
  KDIR=$(kernel_dir) || fail "no kernel in $CACHE/kernel"
  KVER=$(basename "$KDIR")

  # Agent + initramfs, rebuilt when an input changes.
  key=$( (cat "$GUEST_LIB/agent/gm-agent.c" "$GUEST_LIB/guest/init"; sha256sum "$BUSYBOX" "$KDIR"/modules/* 2>/dev/null || true; gcc --version) |
    sha256sum | cut -c1-16)
  GUEST="$CACHE/guest/$key"
  if [ ! -f "$GUEST/initrd.img" ]; then
    log "building gm-agent (gcc -static -Os) and the initramfs for $KVER"
    rm -rf "$CACHE/guest"
    mkdir -p "$GUEST"
    gcc -static -Os -Wall -Wextra -o "$GUEST/gm-agent" "$GUEST_LIB/agent/gm-agent.c" ||
      fail "cannot build the agent"
    strip "$GUEST/gm-agent" 2>/dev/null || true
    root=$(mktemp -d "$CACHE/root.XXXXXX")
    CACHE_TMP=$root
    mkdir -p "$root"/{bin,dev,proc,sys,tmp,lib/modules}
    cp "$BUSYBOX" "$root/bin/busybox"
    cp "$GUEST/gm-agent" "$root/bin/gm-agent"
    cp "$GUEST_LIB/guest/init" "$root/init"
    chmod 755 "$root/init" "$root/bin/busybox" "$root/bin/gm-agent"
    cp "$KDIR"/modules/*.ko "$root/lib/modules/" 2>/dev/null || true
    (cd "$root" && find . | "$BUSYBOX" cpio -o -H newc 2>/dev/null | gzip -9) >"$GUEST/initrd.tmp" ||
      { rm -rf "$root"; fail "cannot pack the initramfs"; }
    mv "$GUEST/initrd.tmp" "$GUEST/initrd.img"
    rm -rf "$root"
    CACHE_TMP=""
  fi
}

# The run dir. Short path on purpose: the agent socket libvirt makes lives at
# CONFIG/libvirt/qemu/channel/target/domain-1-NAME/org.qemu.guest_agent.0 and
# unix socket paths end at 107 bytes. Everything the unprivileged daemon and
# QEMU touch lives in $RUN/d; the caller adds its own directories next to it.
guest_rundir() {
  [ -n "$DOMAIN" ] || fail "guest_rundir: DOMAIN is not set"
  RUN=$(mktemp -d /tmp/gme2e.XXXXXX)
  chmod 755 "$RUN"
  URI="qemu+unix:///session?socket=$RUN/d/sock/libvirt-sock"
  mkdir -p "$RUN/d"/{config/libvirt,cache,sock,home,drivers}
  cp "$KDIR/vmlinuz" "$RUN/d/vmlinuz"
  cp "$GUEST/initrd.img" "$RUN/d/initrd.img"
  flock -u 9 # the cached guest is copied: another run may rebuild it now
  exec 9>&-
  ln -s "$QEMU_DRIVER" "$RUN/d/drivers/"
  cat >"$RUN/d/config/libvirt/libvirtd.conf" <<EOF
unix_sock_dir = "$RUN/d/sock"
EOF
  # qemu.conf of a session daemon: no security driver, QEMU's stdio to a plain
  # file (no virtlogd). No user/group/cgroup settings: session mode has none.
  cat >"$RUN/d/config/libvirt/qemu.conf" <<'EOF'
security_driver = "none"
stdio_handler = "file"
EOF
  sed -e "s#@NAME@#$DOMAIN#" -e "s#@KERNEL@#$RUN/d/vmlinuz#" -e "s#@INITRD@#$RUN/d/initrd.img#" \
    -e "s#@CONSOLE@#$RUN/d/console.log#" "$GUEST_LIB/guest/domain.xml.in" >"$RUN/domain.xml"
  chmod 644 "$RUN/d/vmlinuz" "$RUN/d/initrd.img"
}

# The private session libvirtd, as RUN_UID; sets LIBVIRTD_PID, LIBVIRT_VERSION.
guest_start_libvirtd() {
  local t
  chown -R "$RUN_UID:$RUN_GID" "$RUN/d"
  log "starting libvirtd (session mode, uid $RUN_UID, QEMU driver only)"
  t=$SECONDS
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$RUN/d/home" \
    XDG_CONFIG_HOME="$RUN/d/config" XDG_CACHE_HOME="$RUN/d/cache" XDG_RUNTIME_DIR="$RUN/d/sock" \
    LIBVIRT_DRIVER_DIR="$RUN/d/drivers" \
    "${AS_USER[@]}" libvirtd --config "$RUN/d/config/libvirt/libvirtd.conf" \
    >"$RUN/d/libvirtd.log" 2>&1 </dev/null &
  LIBVIRTD_PID=$!
  for _ in $(seq 100); do
    [ -S "$RUN/d/sock/libvirt-sock" ] && V uri >/dev/null 2>&1 && break
    alive "$LIBVIRTD_PID" || fail "libvirtd exited"
    sleep 0.1
  done
  V uri >/dev/null || fail "libvirtd does not answer on $RUN/d/sock/libvirt-sock"
  # The daemon's libvirt decides which load path the exporter can take.
  LIBVIRT_VERSION=$(libvirtd --version 2>/dev/null | awk '{print $NF; exit}' || true)
  log "libvirtd answers after $((SECONDS - t)) s (libvirt ${LIBVIRT_VERSION:-?})"
}

# Boots the guest; sets t_create.
guest_create() {
  local out
  t_create=$SECONDS
  if ! out=$(V create "$RUN/domain.xml" 2>&1); then
    # The QEMU preflight passed, so a failure here is ours, unless libvirt's
    # driver says it finds no usable emulator for a TCG domain.
    if grep -qi "no guest options available\|does not support virt type\|cannot find suitable emulator" <<<"$out"; then
      skip "libvirt's QEMU driver cannot run a TCG domain here: $out"
    fi
    fail "virsh create failed: $out"
  fi
  log "domain $DOMAIN started in $((SECONDS - t_create)) s (TCG, 1 vCPU, 256 MiB)"
}

# Waits up to $1 s after create for the agent to answer guest-ping; sets agent_s.
guest_wait_agent() {
  local limit=$1
  agent_s=""
  while [ $((SECONDS - t_create)) -lt "$limit" ]; do
    if agent '{"execute":"guest-ping"}' >/dev/null 2>&1; then
      agent_s=$((SECONDS - t_create))
      break
    fi
    sleep 0.5
  done
  [ -n "$agent_s" ] || fail "the guest agent did not answer guest-ping within $limit s of create"
  log "agent answers guest-ping ${agent_s} s after create; $(grep -m1 'modules loaded' "$RUN/d/console.log" | tr -d '\r' || true)"
}

# From the caller's cleanup (set +e there): the domain, the daemon, and QEMU,
# which outlives its daemon. Leaves $RUN for the caller to remove.
guest_stop() {
  local pidfile qpid
  if [ -n "$LIBVIRTD_PID" ]; then
    timeout 20 virsh -q -c "$URI" destroy "$DOMAIN" >/dev/null 2>&1 || true
    stop_pid "$LIBVIRTD_PID"
    LIBVIRTD_PID=""
  fi
  pidfile="$RUN/d/sock/libvirt/qemu/run/$DOMAIN.pid"
  if [ -n "$RUN" ] && [ -f "$pidfile" ]; then
    qpid=$(cat "$pidfile" 2>/dev/null)
    if [ -n "$qpid" ] && grep -q "guest=$DOMAIN" "/proc/$qpid/cmdline" 2>/dev/null; then
      kill -9 "$qpid" 2>/dev/null
    fi
  fi
  [ -n "$CACHE_TMP" ] && rm -rf "$CACHE_TMP" # an interrupted guest build
  CACHE_TMP=""
  return 0
}
