#!/usr/bin/env bash
# What draining costs: nyc_taxi (examples/taxi.toml, 1,000 per node, 3 min of
# provisioning delay) through `capstan simulate --drain-time` 0m, 2m and 10m, the
# configured policy and the reactive-only one at the same target (`--compare`).
# A node chosen to leave is billed while it drains and serves nothing new; a rise
# takes draining nodes back first. Prints docs/performance.md's table, from the
# release binary:
#
#   bench/drain.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
cargo build --release --locked -p capstan >&2
bin=${CARGO_TARGET_DIR:-$repo/target}/release/capstan
taxi=$repo/testdata/nab/data/realKnownCause/nyc_taxi.csv

echo "| drain | policy node-hours | policy under-provisioned min | reactive-only node-hours | reactive-only under-provisioned min |"
echo "|---|---|---|---|---|"
for d in 0m 2m 10m; do
  "$bin" simulate --config examples/taxi.toml --pool taxi --trace "$taxi" \
    --demand-per-node 1000 --provisioning-delay 3m --drain-time "$d" --compare --json |
    python3 -c '
import json, sys
d = json.load(sys.stdin)
p, r = d["policy"], d["reactive"]
cells = [sys.argv[1], format(p["node_hours"], ",.0f"), format(p["underprovisioned_minutes"], ","),
         format(r["node_hours"], ",.0f"), format(r["underprovisioned_minutes"], ",")]
print("| " + " | ".join(cells) + " |")
' "$d"
done
