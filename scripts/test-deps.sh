#!/usr/bin/env bash
# Installs what Capstan's test suite and its all-feature build need, when missing
# (Debian packages and PyPI). scripts/test.sh and .ci/run call it; it is idempotent.
#
#   systemd-analyze, systemd-sysusers, systemd-tmpfiles  (systemd)  the unit's checks
#   man                                                   (man-db)   `verify` opens man:capstan(1)
#   promtool                                              (prometheus) alert rules and /metrics
#   etcd                                                  (etcd-server) the cluster tests' real etcd
#   prometheus, prometheus-node-exporter                  (Debian)   PromQL targets and [[scrape]] tests
#   protoc                                                (protobuf-compiler) building the `etcd` feature
#   python3 with jsonschema                               (PyPI)     the config schema
#   kubernetes-validate                                   (PyPI)     the Kubernetes manifests
#   moto_server                                           (PyPI moto[server]) the AWS tests' EC2 and Auto Scaling
#   cargo-deb                                             (crates.io) the Debian package
#                                                         (scripts/build-deb.sh installs it)
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }

if ! need cargo; then
  echo "scripts/test-deps.sh: cargo not found; install Rust with rustup (https://rustup.rs)" >&2
  exit 1
fi

apt_missing=()
need systemd-analyze || apt_missing+=(systemd)
need man || apt_missing+=(man-db)
need promtool || apt_missing+=(prometheus)
need etcd || apt_missing+=(etcd-server)
need prometheus-node-exporter || apt_missing+=(prometheus-node-exporter)
need prometheus || apt_missing+=(prometheus)
need protoc || apt_missing+=(protobuf-compiler)
need python3 || apt_missing+=(python3 python3-pip)
if ((${#apt_missing[@]})); then
  echo "scripts/test-deps.sh: installing ${apt_missing[*]} (Debian packages)" >&2
  sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${apt_missing[@]}"
fi
pip_missing=()
python3 -c 'import jsonschema' 2>/dev/null || pip_missing+=(jsonschema)
need kubernetes-validate || pip_missing+=(kubernetes-validate)
need moto_server || pip_missing+=("moto[server]")
if ((${#pip_missing[@]})); then
  echo "scripts/test-deps.sh: installing ${pip_missing[*]} (PyPI)" >&2
  python3 -m pip install --quiet --disable-pip-version-check "${pip_missing[@]}" ||
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "${pip_missing[@]}"
fi

