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
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v protoc >/dev/null 2>&1; then
  echo "scripts/build-release.sh: protoc not found; install Debian protobuf-compiler and libprotobuf-dev (scripts/test-deps.sh does)" >&2
  exit 1
fi
cargo build --release --locked -p capstan --features full "$@"
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
bin="$target/release/capstan"
"$bin" --version
echo "$bin"
