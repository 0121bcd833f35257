#!/usr/bin/env bash
# Runs Capstan's whole test suite, after installing what the tests need.
#
#   scripts/test.sh
#
# The tests need the Rust toolchain (rust-toolchain.toml), loopback networking, and
# these real tools, installed here when missing (Debian packages and PyPI):
#   systemd-analyze, systemd-sysusers, systemd-tmpfiles  (systemd)  the unit's checks
#   man                                                   (man-db)   `verify` opens man:capstan(1)
#   promtool                                              (prometheus) alert rules and /metrics
#   python3 with jsonschema                               (PyPI)     the config schema
#   kubernetes-validate                                   (PyPI)     the Kubernetes manifests
#   moto_server                                           (PyPI moto[server]) the AWS tests' EC2 and Auto Scaling
#   etcd                                                  (etcd-server) the cluster tests' real etcd
#   protoc                                                (protobuf-compiler) building the `etcd` feature
#   cargo-deb                                             (crates.io) the Debian package
#                                                         (scripts/build-deb.sh installs it)
# scripts/test-deps.sh installs them.
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
