#!/usr/bin/env bash
# Runs Capstan's whole test suite, after installing what the tests need.
#
#   scripts/test.sh
#
# The tests need the Rust toolchain (rust-toolchain.toml), loopback networking, and
# real tools (etcd, Prometheus, promtool, node_exporter, moto_server, systemd's tools,
# man, protoc with the well-known protos, kubernetes-validate, hadolint, jsonschema):
# scripts/test-deps.sh installs what is missing and proves each one works.
# The agent's end-to-end tests start the built binary on 127.0.0.1 with ephemeral
# ports and temp state dirs.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/test-deps.sh

# Every feature, every crate, every test target (unit, integration, doc).
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-features --locked "$@" 2>&1 | tee "$log" || status=$?

# One closing line for the whole suite (cargo prints one per test binary, doc tests last).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
