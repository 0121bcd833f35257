#!/usr/bin/env bash
# The GPU check of issue 8, for a machine with an NVIDIA GPU and driver:
#   1. builds the release binary with NVML;
#   2. prints `capstan collect --once --json` and asserts that every GPU field is
#      present and plausible;
#   3. checks that a pool with a `gpu.utilization` target gets a decision from this
#      node's GPUs (`capstan plan --json`).
#
#   scripts/gpu-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked --features nvml
bin="${CARGO_TARGET_DIR:-target}/release/capstan"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat > "$work/gpu.toml" <<'TOML'
[agent]
pool = "gpu"
state_dir = "/tmp/capstan-gpu-check"

[[pool]]
name = "gpu"
provider = { type = "dry-run", initial = 2 }
min = 1
max = 16
targets = [{ metric = "gpu.utilization", value = 60 }, { metric = "gpu.memory_utilization", value = 80 }]
TOML

echo "== capstan collect --once --json"
"$bin" collect --once --json --config "$work/gpu.toml" | tee "$work/report.json"
echo "== capstan collect --once"
"$bin" collect --once --config "$work/gpu.toml"

python3 - "$work/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
gpus = r.get("gpus", [])
assert gpus, "no GPU in the report: is the NVIDIA driver loaded?"
def between(g, key, lo, hi):
    v = g.get(key)
    assert v is not None, f"GPU {g.get('index')}: {key} missing"
    assert lo <= v <= hi, f"GPU {g.get('index')}: {key} = {v}, outside [{lo}, {hi}]"
for g in gpus:
    assert g["uuid"].startswith("GPU-"), g["uuid"]
    assert g["name"], "no name"
    between(g, "utilization_percent", 0, 100)
    between(g, "memory_utilization_percent", 0, 100)
    between(g, "memory_total_bytes", 1 << 30, 1 << 40)
    between(g, "memory_used_bytes", 0, g["memory_total_bytes"])
    between(g, "temperature_celsius", 5, 110)
    between(g, "power_watts", 1, 2000)
    between(g, "power_limit_watts", 10, 2000)
    between(g, "sm_clock_mhz", 1, 5000)
    between(g, "memory_clock_mhz", 1, 20000)
    assert isinstance(g.get("throttle_reasons"), list), "throttle_reasons missing"
    # ECC is absent on consumer GPUs; where present it is a count.
    for k in ("ecc_corrected", "ecc_uncorrected"):
        assert g.get(k) is None or g[k] >= 0, k
    assert isinstance(g.get("xid_errors"), list), "xid_errors missing"
print(f"GPU fields present and plausible on {len(gpus)} GPU(s)")
PY

echo "== capstan plan --json (a gpu.utilization pool)"
"$bin" plan --config "$work/gpu.toml" --json | tee "$work/plan.json"
python3 - "$work/plan.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
pool = p["pools"][0]
kinds = [r["kind"] for r in pool["reasons"]]
metrics = [r.get("metric") for r in pool["reasons"] if r["kind"] == "target"]
assert "gpu.utilization" in metrics, f"no gpu.utilization reading in the decision: {pool['reasons']}"
assert pool.get("desired") is not None, pool
print(f"pool gpu: current {pool['current']}, desired {pool['desired']} ({', '.join(kinds)})")
PY
echo "GPU check passed"
