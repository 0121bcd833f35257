#!/usr/bin/env bash
# The agent's footprint beside Prometheus node_exporter, on this machine, in one run.
#
#   bench/footprint.sh [SECONDS]        (default 120)
#
# Runs, side by side for the same time:
#   - capstan (the release build that ships: scripts/build-release.sh, every feature;
#     standalone, one dry-run pool, interval 1 s: it collects
#     this host and plans every second, as `capstan run` does on a node);
#   - node_exporter (Debian prometheus-node-exporter, its default collectors), scraped
#     every second by this script, as a Prometheus with scrape_interval 1s would.
# Each process's resident memory (VmRSS sampled every second: peak and the median after
# a 10 s warm-up; VmHWM as the kernel's peak) and CPU time (utime + stime from
# /proc/PID/stat) are read from /proc. CPU per collection is the CPU time after the
# warm-up divided by the collections after it (capstan: capstan_collection_duration_
# seconds_count, and each of its passes also plans; node_exporter: scrapes). Latency
# of one collection: capstan's own histogram (mean), node_exporter's scrape as curl
# times it (median). Goal: capstan at or under half of node_exporter on memory and on
# CPU per collection.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-120}
warmup=10
command -v prometheus-node-exporter >/dev/null || {
  echo "bench/footprint.sh: needs prometheus-node-exporter (scripts/test-deps.sh installs it)" >&2
  exit 1
}
# The shipped build (the .deb's and the image's): every feature.
bin=$(scripts/build-release.sh --quiet | tail -n1)
"$bin" --version

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cap_port=$(free_port)
ne_port=$(free_port)

cat >"$work/capstan.toml" <<EOF
[agent]
listen = "127.0.0.1:$cap_port"
interval = "1s"
state_dir = "$work/state"

[[pool]]
name = "local"
provider = { type = "dry-run", initial = 2 }
min = 1
max = 10
targets = [{ metric = "cpu.utilization", value = 70 }]
EOF

CAPSTAN_LOG=warn "$bin" run --config "$work/capstan.toml" >"$work/capstan.log" 2>&1 &
cap_pid=$!
pids+=("$cap_pid")
prometheus-node-exporter --web.listen-address="127.0.0.1:$ne_port" >"$work/ne.log" 2>&1 &
ne_pid=$!
pids+=("$ne_pid")

for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$cap_port/healthz" >/dev/null 2>&1 &&
    curl -sf "http://127.0.0.1:$ne_port/metrics" >/dev/null 2>&1 && break
  sleep 0.1
done

tck=$(getconf CLK_TCK)
cpu() { awk -v t="$tck" '{ printf "%.4f", ($14 + $15) / t }' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
collections() {
  curl -sf "http://127.0.0.1:$cap_port/metrics" |
    awk '/^capstan_collection_duration_seconds_(count|sum) / { print $2 }' | paste -sd' '
}

scrape() { curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$ne_port/metrics"; }

: >"$work/cap_rss" >"$work/ne_rss" >"$work/ne_lat"
scrapes=0
for ((s = 1; s <= duration; s++)); do
  if ((s == warmup)); then
    cap_cpu0=$(cpu "$cap_pid")
    ne_cpu0=$(cpu "$ne_pid")
    read -r cap_sum0 cap_n0 <<<"$(collections)"
    scrapes=0
  fi
  scrape >>"$work/ne_lat"
  scrapes=$((scrapes + 1))
  if ((s >= warmup)); then
    rss_kb "$cap_pid" >>"$work/cap_rss"
    rss_kb "$ne_pid" >>"$work/ne_rss"
  fi
  sleep 1
done
cap_cpu1=$(cpu "$cap_pid")
ne_cpu1=$(cpu "$ne_pid")
read -r cap_sum1 cap_n1 <<<"$(collections)"

median() { sort -n "$1" | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
max() { sort -n "$1" | tail -1; }

tail -n +"$warmup" "$work/ne_lat" >"$work/ne_lat_steady"
python3 - "$duration" "$warmup" \
  "$(median "$work/cap_rss")" "$(max "$work/cap_rss")" "$(hwm_kb "$cap_pid")" \
  "$(median "$work/ne_rss")" "$(max "$work/ne_rss")" "$(hwm_kb "$ne_pid")" \
  "$cap_cpu0" "$cap_cpu1" "$cap_n0" "$cap_n1" "$cap_sum0" "$cap_sum1" \
  "$ne_cpu0" "$ne_cpu1" "$scrapes" "$(median "$work/ne_lat_steady")" <<'EOF'
import sys
a = sys.argv[1:]
duration, warmup = int(a[0]), int(a[1])
cap_rss, cap_rss_max, cap_hwm, ne_rss, ne_rss_max, ne_hwm = (int(x) / 1024 for x in a[2:8])
cap_cpu = float(a[9]) - float(a[8])
cap_n = float(a[11]) - float(a[10])
cap_lat = (float(a[13]) - float(a[12])) / cap_n
ne_cpu = float(a[15]) - float(a[14])
ne_n = int(a[16])
ne_lat = float(a[17])
cap_per = cap_cpu / cap_n * 1000
ne_per = ne_cpu / ne_n * 1000
print(f"footprint over {duration} s ({warmup} s warm-up excluded), 1 s interval, this machine")
print(f"{'':34} {'capstan':>12} {'node_exporter':>14} {'ratio':>7}")
print(f"{'RSS steady (median), MiB':34} {cap_rss:12.1f} {ne_rss:14.1f} {cap_rss / ne_rss:7.2f}")
print(f"{'RSS peak (sampled), MiB':34} {cap_rss_max:12.1f} {ne_rss_max:14.1f} {cap_rss_max / ne_rss_max:7.2f}")
print(f"{'RSS peak (VmHWM), MiB':34} {cap_hwm:12.1f} {ne_hwm:14.1f} {cap_hwm / ne_hwm:7.2f}")
print(f"{'CPU per collection, ms':34} {cap_per:12.2f} {ne_per:14.2f} {cap_per / ne_per:7.2f}")
print(f"{'collections measured':34} {cap_n:12.0f} {ne_n:14d}")
print(f"{'one collection (latency), ms':34} {cap_lat * 1000:12.2f} {ne_lat * 1000:14.2f} {cap_lat / ne_lat:7.2f}")
ok = cap_rss / ne_rss <= 0.5 and cap_per / ne_per <= 0.5
print("goal (memory and CPU per collection at or under half of node_exporter's):", "met" if ok else "NOT met")
EOF
