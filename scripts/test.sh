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
#   cargo-deb                                             (crates.io) the Debian package
#                                                         (scripts/build-deb.sh installs it)
# The agent's end-to-end tests start the built binary on 127.0.0.1 with ephemeral
# ports and temp state dirs.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }

if ! need cargo; then
  echo "scripts/test.sh: cargo not found; install Rust with rustup (https://rustup.rs)" >&2
  exit 1
fi

apt_missing=()
need systemd-analyze || apt_missing+=(systemd)
need man || apt_missing+=(man-db)
need promtool || apt_missing+=(prometheus)
need python3 || apt_missing+=(python3 python3-pip)
if ((${#apt_missing[@]})); then
  echo "scripts/test.sh: installing ${apt_missing[*]} (Debian packages)" >&2
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${apt_missing[@]}"
fi
pip_missing=()
python3 -c 'import jsonschema' 2>/dev/null || pip_missing+=(jsonschema)
need kubernetes-validate || pip_missing+=(kubernetes-validate)
if ((${#pip_missing[@]})); then
  echo "scripts/test.sh: installing ${pip_missing[*]} (PyPI)" >&2
  python3 -m pip install --quiet --disable-pip-version-check "${pip_missing[@]}" ||
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "${pip_missing[@]}"
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
