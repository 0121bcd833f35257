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
# 2. `predictive.mode = "auto"`: the same runs of the realAWSCloudwatch series with
#    `--auto` (one auto candidate per target value and behavior of the grid). The
#    cheapest auto candidate within the SLO against the cheapest reactive-only
#    candidate of the same grid with no more saturated minutes than it (is auto on or
#    under the reactive frontier where it runs?), and beside it the fixed-SLO ratio
#    (the cheapest of each within the SLO).
# Prints markdown tables; the JSON of every run stays in OUT_DIR. About 6 minutes on 2
# cores, most of it the auto candidates' backtests.
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
      --provisioning-delay "$d" --auto --json >"$out/tune-$(basename "$f" .csv)-$d.json"
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
print("| series | delay | auto policy | auto node-h | auto's saturated min | cheapest reactive with no more | ratio | fixed SLO: best auto / best reactive |")
print("|---|---|---|---|---|---|---|---|")
for n in names:
    for d in ("3m", "10m"):
        path = f"{out}/tune-{n}-{d}.json"
        if not os.path.exists(path):
            continue
        r = json.load(open(path))
        key = lambda x: (x["metrics"]["cost"], x["metrics"]["node_hours"])
        autos = sorted((x for x in r["candidates"] if x["policy"]["predictive_mode"] == "auto" and x["meets_slo"]), key=key)
        if not autos:
            continue
        a = autos[0]
        am, an = a["metrics"]["underprovisioned_minutes"], a["metrics"]["node_hours"]
        offs = sorted((x for x in r["candidates"] if x["policy"]["predictive_mode"] == "off"
                       and x["metrics"]["underprovisioned_minutes"] <= am), key=key)
        o = offs[0]["metrics"]["node_hours"] if offs else None
        _, best_off, _ = arms(path)
        p = a["policy"]
        ratio = f"{an / o:.3f}" if o else "-"
        fixed = f"{an / best_off:.3f}" if best_off else "-"
        print(f"| {n} | {d} | {p['target_value']:g}, {p['behavior']}, {p['horizon_minutes']} min | {an:,.0f} | {am} | {o:,.0f} | {ratio} | {fixed} |" if o else
              f"| {n} | {d} | {p['target_value']:g}, {p['behavior']}, {p['horizon_minutes']} min | {an:,.0f} | {am} | - | - | {fixed} |")
print(f"\n(JSON in {out})")
PY
