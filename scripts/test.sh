#!/usr/bin/env bash
# Runs Capstan's whole test suite, after installing what the tests need.
#
#   scripts/test.sh
#
# Today every test needs only the Rust toolchain (rust-toolchain.toml) and loopback
# networking: the agent's end-to-end tests start the built binary on 127.0.0.1 with
# ephemeral ports and temp state dirs. Tests that need real peers (moto, etcd,
# Prometheus tools) install them here as they land.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }

if ! need cargo; then
  echo "scripts/test.sh: cargo not found; install Rust with rustup (https://rustup.rs)" >&2
  exit 1
fi

# Every feature, every crate, every test target (unit, integration, doc).
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-features --locked "$@" 2>&1 | tee "$log" || status=$?

# One closing line for the whole suite (cargo prints one per test binary, doc tests last).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
