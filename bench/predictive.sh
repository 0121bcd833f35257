#!/usr/bin/env bash
# Does the forecast pay? docs/performance.md's tables for issue 25, from the release
# binary:
#
#   bench/predictive.sh [OUT_DIR]        (default: a temporary directory, kept)
#
# 1. nyc_taxi (examples/taxi.toml, 1,000 per node) at 3, 10 and 15 min of provisioning
#    delay, and each realAWSCloudwatch series at 3 and 10 min: `capstan tune --json`,
#    the cheapest forecast-and-scale candidate within the SLO against the cheapest
#    reactive-only one (ratio of node-hours).
# 2. Each realAWSCloudwatch series' best forecast-and-scale policy run in
#    `predictive.mode = "auto"`: `capstan simulate --compare --json`, auto against the
#    cheapest reactive-only policy with no more saturated minutes.
# Prints markdown tables; the JSON of every run stays in OUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
out=${1:-$(mktemp -d)}
mkdir -p "$out"
cargo build --release --locked -p capstan >&2
bin=${CARGO_TARGET_DIR:-$repo/target}/release/capstan
taxi=$repo/testdata/nab/data/realKnownCause/nyc_taxi.csv
aws=$repo/testdata/nab/data/realAWSCloudwatch

for d in 3m 10m 15m; do
  "$bin" tune --config examples/taxi.toml --pool taxi --trace "$taxi" \
    --demand-per-node 1000 --provisioning-delay "$d" --json >"$out/tune-nyc_taxi-$d.json"
done
for f in "$aws"/*.csv; do
  for d in 3m 10m; do
    "$bin" tune --config examples/taxi.toml --pool taxi --trace "$f" \
      --provisioning-delay "$d" --json >"$out/tune-$(basename "$f" .csv)-$d.json"
  done
done

# The best forecast-and-scale policy of a tune run: target, behavior, horizon, and the
# per-node demand at that target (tune's default: the peak needs 80 % of max, at the
# config's target of 60).
best() {
  python3 - "$1" "$2" <<'PY'
import csv, json, sys
run, trace = sys.argv[1:3]
r = json.load(open(run))
c = [x for x in r["candidates"]
     if x["policy"]["predictive_mode"] == "forecast-and-scale" and x["meets_slo"]]
c.sort(key=lambda x: (x["metrics"]["cost"], x["metrics"]["node_hours"]))
p = c[0]["policy"]
peak = max(float(row["value"]) for row in csv.DictReader(open(trace)) if row["value"])
print(p["target_value"], p["behavior"], p["horizon_minutes"],
      peak / (0.8 * 60) * p["target_value"] / 60)
PY
}

for f in "$aws"/*.csv; do
  n=$(basename "$f" .csv)
  for d in 3m 10m; do
    read -r target behavior horizon per_node < <(best "$out/tune-$n-$d.json" "$f")
    sed -e "s/value = 60/value = $target/" \
      -e "s/behavior = \"balanced\"/behavior = \"$behavior\"/" \
      -e "s/mode = \"forecast-and-scale\", horizon = \"30m\"/mode = \"auto\", horizon = \"${horizon}m\"/" \
      examples/taxi.toml >"$out/auto-$n-$d.toml"
    "$bin" simulate --config "$out/auto-$n-$d.toml" --pool taxi --trace "$f" \
      --demand-per-node "$per_node" --provisioning-delay "$d" --compare --json \
      >"$out/auto-$n-$d.json"
  done
done

python3 - "$out" <<'PY'
import glob, json, os, sys
out = sys.argv[1]

def arms(path):
    r = json.load(open(path))
    best = {}
    for arm in ("off", "forecast-and-scale"):
        c = [x for x in r["candidates"] if x["policy"]["predictive_mode"] == arm and x["meets_slo"]]
        c.sort(key=lambda x: (x["metrics"]["cost"], x["metrics"]["node_hours"]))
        best[arm] = c[0]["metrics"]["node_hours"] if c else None
    return r["slo_minutes"], best["off"], best["forecast-and-scale"]

def cell(o, p):
    return f"{o:,.0f} | {p:,.0f} | {p / o:.3f}" if o and p else "- | - | -"

print("| trace | delay | SLO (saturated min) | best reactive node-h | best forecast node-h | ratio |")
print("|---|---|---|---|---|---|")
names = sorted({os.path.basename(f)[5:].rsplit("-", 1)[0] for f in glob.glob(f"{out}/tune-*.json")})
for n in names:
    for d in ("3m", "10m", "15m"):
        path = f"{out}/tune-{n}-{d}.json"
        if os.path.exists(path):
            slo, o, p = arms(path)
            print(f"| {n} | {d} | {slo} | {cell(o, p)} |")
print()
print("| series | delay | auto's saturated min | best reactive node-h at that SLO | auto node-h | ratio |")
print("|---|---|---|---|---|---|")
for n in names:
    for d in ("3m", "10m"):
        path = f"{out}/auto-{n}-{d}.json"
        if os.path.exists(path):
            s = json.load(open(path))["same_slo"]
            p, b = s["policy"]["metrics"], s["best_reactive"]
            o = b["metrics"]["node_hours"] if b else None
            print(f"| {n} | {d} | {p['underprovisioned_minutes']} | {cell(o, p['node_hours'])} |")
print(f"\n(JSON in {out})")
PY
