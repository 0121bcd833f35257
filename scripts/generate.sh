#!/usr/bin/env bash
# Regenerates the files derived from the code: the man pages (capstan(1) and one per
# subcommand), the shell completions and
# the configuration's JSON Schema. tests/operations.rs fails when they are stale.
#
#   scripts/generate.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet -p capstan
bin="${CARGO_TARGET_DIR:-target}/debug/capstan"
mkdir -p packaging/man packaging/completions packaging/schema
rm -f packaging/man/*.1
"$bin" man --dir packaging/man
"$bin" completions bash > packaging/completions/capstan.bash
"$bin" completions zsh > packaging/completions/_capstan
"$bin" completions fish > packaging/completions/capstan.fish
"$bin" config-schema > packaging/schema/capstan.schema.json
scripts/prometheusrule.sh > packaging/kubernetes/components/monitoring/prometheusrule.yaml
echo "regenerated packaging/man, packaging/completions, packaging/schema and the PrometheusRule"
