#!/usr/bin/env bash
# Builds the Debian package: target/debian/capstan_<version>_<arch>.deb
# (cargo-deb is installed on first use), with the AWS provider (and aws-sdk-ec2: about
# 9 minutes and 8 GB of peak memory on 2 cores), the etcd and Kubernetes coordinators and
# mutual TLS for reports
# (the etcd feature needs protoc: Debian protobuf-compiler, see scripts/test-deps.sh).
#
#   scripts/build-deb.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo deb --version >/dev/null 2>&1; then
  echo "scripts/build-deb.sh: installing cargo-deb" >&2
  cargo install cargo-deb --locked --quiet
fi
cargo deb -p capstan --locked --features etcd,kubernetes,tls,nvml,aws,aws-ec2,azure,gke "$@"
