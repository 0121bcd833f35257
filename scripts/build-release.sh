#!/usr/bin/env bash
# Builds the release binary as it ships: every feature (`--features full`: each cloud's
# provider, the etcd and Kubernetes coordinators, mutual TLS and NVML). The .deb
# (scripts/build-deb.sh) and the container image (Dockerfile) both build through this
# script, and the test suite runs it, so what the image builds is tested on the host.
#
#   scripts/build-release.sh [extra cargo build args]
#
# Needs protoc and the well-known protos (Debian protobuf-compiler libprotobuf-dev) for
# the etcd feature; scripts/test-deps.sh installs them on a development machine. About
# 15 minutes and 9 GB of peak memory on 2 cores when cold. Prints the binary's path and
# its `--version` (which lists the compiled features) last.
#
# Code layout. The full binary has about 20 MB of code, of which a running agent
# executes a few thousand functions; spread over the whole binary, they keep most of it
# resident (the kernel maps code around each page touched, in blocks of 64 KiB and up to
# the disk's readahead). So the build runs the agent once under valgrind's callgrind (a
# standalone agent on a dry-run pool, for CAPSTAN_LAYOUT_SECONDS, 45 by default), lists
# the functions it executed, and relinks with them placed together at the start of the
# code (LLD's --symbol-ordering-file, through agent/build.rs). The list is kept beside
# the binary (capstan.symbol-order) and reused by the next build, which relinks only when
# the agent executed more than a few functions the list lacks (after a code change, every
# name changes). Without valgrind, or with CAPSTAN_NO_LAYOUT=1, the binary is
# linked in the compiler's order: the same program, with a larger footprint
# (docs/performance.md).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v protoc >/dev/null 2>&1; then
  echo "scripts/build-release.sh: protoc not found; install Debian protobuf-compiler and libprotobuf-dev (scripts/test-deps.sh does)" >&2
  exit 1
fi
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
bin="$target/release/capstan"
order="$target/release/capstan.symbol-order"

build() {
  if [ -s "$order" ] && [ -z "${CAPSTAN_NO_LAYOUT:-}" ]; then
    CAPSTAN_SYMBOL_ORDER="$order" cargo build --release --locked -p capstan --features full "$@"
  else
    CAPSTAN_SYMBOL_ORDER="" cargo build --release --locked -p capstan --features full "$@"
  fi
}
build "$@"

# The functions a running agent executes, as the linker names them: it collects and
# plans every second, and is scraped and probed as Prometheus and a kubelet would.
profile() {
  local work port="" pid
  work=$(mktemp -d)
  # The embedded default (examples/standalone.toml: standalone, one dry-run pool on this
  # host's CPU), passing every second, on a port of its own.
  CAPSTAN_LOG=info CAPSTAN_AGENT__LISTEN=127.0.0.1:0 CAPSTAN_AGENT__INTERVAL=1s \
    CAPSTAN_AGENT__STATE_DIR="$work/state" \
    valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/callgrind.out" \
    "$bin" run >"$work/valgrind.log" 2>&1 &
  pid=$!
  local s path
  for ((s = 0; s < ${CAPSTAN_LAYOUT_SECONDS:-45}; s++)); do
    sleep 1
    # The port the agent took, from its "listening on http://127.0.0.1:PORT" line.
    [ -n "$port" ] || port=$(sed -nE 's|.*listening on http://127\.0\.0\.1:([0-9]+).*|\1|p' "$work/valgrind.log" | head -n1)
    [ -n "$port" ] || continue
    for path in healthz readyz metrics v1/status; do
      curl -sf -o /dev/null "http://127.0.0.1:$port/$path" || true
    done
    # OpenMetrics, as Prometheus asks for it.
    curl -sf -o /dev/null -H 'Accept: application/openmetrics-text; version=1.0.0' \
      "http://127.0.0.1:$port/metrics" || true
  done
  # SIGTERM: the agent stops cleanly and callgrind writes its profile.
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [ -s "$work/callgrind.out" ]; then
    # Names appear once, on the first fn= or cfn= line that mentions each function;
    # callgrind marks recursion levels with 'N, and names functions without a symbol
    # by their address, which moves with every link: those are left out.
    sed -nE 's/^c?fn=\([0-9]+\) (.+)$/\1/p' "$work/callgrind.out" |
      sed -E "s/'[0-9]+$//" | grep -Ev '^0x|[[:space:]]' | LC_ALL=C sort -u >"$work/order"
  fi
  if [ -s "$work/order" ] && [ "$(wc -l <"$work/order")" -gt 100 ]; then
    cat "$work/order"
  else
    echo "scripts/build-release.sh: profiling under callgrind failed; see below" >&2
    tail -n 5 "$work/valgrind.log" >&2 || true
  fi
  rm -rf "$work"
}

if [ -z "${CAPSTAN_NO_LAYOUT:-}" ]; then
  if command -v valgrind >/dev/null 2>&1; then
    new=$(profile)
    if [ -n "$new" ]; then
      # The layout keeps every function an earlier profile saw that this binary still
      # has, and adds what this run executed: runs differ a little (a timer fires or
      # not), so the union grows towards everything a node runs.
      merged=$(LC_ALL=C sort -u <(printf '%s\n' "$new") \
        <(LC_ALL=C comm -12 <(LC_ALL=C sort -u "$order" 2>/dev/null) \
          <(nm --defined-only "$bin" | awk '{print $3}' | LC_ALL=C sort -u)))
      # A few functions that a timer ran this time are not worth a relink (their
      # pages cost 64 KiB each); a rebuild's new names are.
      unplaced=$(LC_ALL=C comm -13 <(LC_ALL=C sort -u "$order" 2>/dev/null) <(printf '%s\n' "$merged") | wc -l)
      if [ "$unplaced" -gt 25 ]; then
        printf '%s\n' "$merged" >"$order"
        echo "scripts/build-release.sh: relinking with $(wc -l <"$order") executed functions placed together" >&2
        build "$@"
      fi
    fi
  else
    echo "scripts/build-release.sh: valgrind not found: linking without the code layout (install Debian valgrind)" >&2
  fi
fi
"$bin" --version
echo "$bin"
