#!/usr/bin/env bash
# Builds the Debian package: target/debian/capstan_<version>_<arch>.deb, around the
# release binary that scripts/build-release.sh builds (every feature: the same build as
# the container image). cargo-deb is installed on first use.
#
#   scripts/build-deb.sh [extra cargo-deb args]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo deb --version >/dev/null 2>&1; then
  echo "scripts/build-deb.sh: installing cargo-deb" >&2
  cargo install cargo-deb --locked --quiet
fi
scripts/build-release.sh --quiet >&2
cargo deb -p capstan --locked --no-build "$@"
