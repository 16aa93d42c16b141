# kubevirt-guest-metrics: one image, two binaries.
#   status-reporter  the Deployment (the default entrypoint)
#   guest-exporter   the sidecar in each virt-launcher pod; the injector sets
#                    command: ["/usr/local/bin/guest-exporter"]. It runs
#                    guest-exporter-flags, beside it, once at start to parse
#                    its flags (exporter/src/flags.h says why)
#
#   podman build -t kubevirt-guest-metrics --build-arg VERSION="$(cat VERSION)" .
#   (docker build works the same way)
#
# tests/image/build-image.sh builds this file offline and checks the result.

# ---------------------------------------------------------------------------
# Build stage: Debian's compilers and -dev packages (the "# build" list of
# scripts/install-deps.sh), a Release build of the two binaries and nothing else.
FROM docker.io/library/debian:bookworm-slim AS build

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      libvirt-dev prometheus-cpp-dev libcli11-dev libspdlog-dev doctest-dev \
      nlohmann-json3-dev libcurl4-openssl-dev libssl-dev libyaml-cpp-dev \
      libgnutls28-dev libboost-dev \
 && rm -rf /var/lib/apt/lists/*

# Only what the two binaries are built from, so that edits to docs, tests or
# rules keep the compile layer cached. (Tests are off: tests/ and promrules/
# are not configured.)
WORKDIR /src
COPY CMakeLists.txt VERSION ./
COPY common/ common/
COPY exporter/ exporter/
COPY status-reporter/ status-reporter/

# The build context has no .git, so CMake cannot ask git for the revision;
# REVISION is handed to the build as GM_REVISION in the environment.
ARG REVISION=unknown
RUN GM_REVISION="${REVISION}" cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DGM_BUILD_TESTS=OFF \
 && cmake --build /build --parallel "$(nproc)" --target guest-exporter guest-exporter-flags status-reporter \
 && install -D -m 0755 -s /build/exporter/guest-exporter /out/guest-exporter \
 && install -D -m 0755 -s /build/exporter/guest-exporter-flags /out/guest-exporter-flags \
 && install -D -m 0755 -s /build/status-reporter/status-reporter /out/status-reporter \
 && rm -rf /build

# ---------------------------------------------------------------------------
# Runtime stage: the two binaries and the shared libraries they link, from
# Debian's runtime packages (no compiler, no headers, no package lists).
FROM docker.io/library/debian:bookworm-slim

# libvirt0: libvirt.so.0 + libvirt-qemu.so.0 (guest-exporter)
# libcurl4: the OpenSSL libcurl (gm::kube's API client); guest-exporter's reports
#   use libcurl's GnuTLS build (libcurl3-gnutls), which libvirt0 already brings
# libssl3: status-reporter's HTTPS listener (Boost.Beast/Asio are header-only)
# libyaml-cpp0.7: status-reporter's kubeconfig parsing (gm::kube)
# libprometheus-cpp-core1.0: status-reporter
# libspdlog1.10, libfmt9: status-reporter and guest-exporter-flags (the
#   sidecar's flag parser, run once at its start; guest-exporter itself has
#   spdlog and fmt built in)
# Below, the ldd check fails the build if a binary needs a library that no
# package gave; /run/guest-exporter is the exporter's default socket directory,
# writable by 107 (the injector may mount an emptyDir over it).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libvirt0 libcurl4 libssl3 \
      libyaml-cpp0.7 libprometheus-cpp-core1.0 libspdlog1.10 libfmt9 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log

COPY --from=build /out/guest-exporter /out/guest-exporter-flags /out/status-reporter /usr/local/bin/
RUN if ldd /usr/local/bin/guest-exporter /usr/local/bin/guest-exporter-flags /usr/local/bin/status-reporter | grep 'not found'; then \
      echo 'runtime stage lacks a shared library (see above): add its Debian package' >&2; exit 1; \
    fi \
 && install -d -m 0755 -o 107 -g 107 /run/guest-exporter

# 107:107 is the qemu user and group of KubeVirt's non-root virt-launcher. The
# guest-exporter sidecar talks to the launcher pod's own libvirt socket
# (/var/run/libvirt/virtqemud-sock, created by virtqemud running as qemu and
# not open to other users), so it must run with that uid to connect.
# status-reporter needs no privilege and runs under the same non-root id. A
# numeric USER needs no /etc/passwd entry, and runAsNonRoot can verify it.
USER 107:107

# status-reporter: 8443 reports (HTTPS), 8080 /metrics, /healthz, /readyz.
# guest-exporter serves its own /metrics on a unix socket (and :9477 when
# enabled); its probes are exec probes (`guest-exporter probe`), so the image
# carries no HEALTHCHECK.
EXPOSE 8443 8080

ENTRYPOINT ["/usr/local/bin/status-reporter"]

# Last, so that a new version or revision does not redo the layers above.
ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE=https://github.com/kubevirt-guest-metrics/kubevirt-guest-metrics
ARG LICENSES=Apache-2.0
LABEL org.opencontainers.image.title="kubevirt-guest-metrics" \
      org.opencontainers.image.description="Guest load and overcommit ratios of KubeVirt VMs for Prometheus: status-reporter (default entrypoint) and the guest-exporter sidecar" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="${LICENSES}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
