#!/usr/bin/env bash
# Instructions per fleet pass, counted by callgrind: a figure that this machine's noise
# does not move, so that growth with the fleet's size can be told from cache effects.
#
#   bench/count-planner.sh [SIZES] [FILTER] [BINARY]
#     SIZES   pool counts, default 1000,10000
#     FILTER  criterion filter, default "^plan a fleet" (both fleet cases)
#     BINARY  a built planner bench; default: build this checkout's
#               (`cargo bench -p capstan --bench planner --no-run`)
#
# Runs the bench under `valgrind --tool=callgrind`, collecting only inside
# `plan_fleet_with_groups` (one whole fleet pass), and prints, per size and case, the
# passes counted and the instructions per pass. Needs valgrind (Debian `valgrind`).
# A 10,000-pool run takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=${1:-1000,10000}
filter=${2:-^plan a fleet}
bin=${3:-}
command -v valgrind >/dev/null || { echo "count-planner: needs valgrind" >&2; exit 1; }
if [ -z "$bin" ]; then
  bin=$(cargo bench -p capstan --bench planner --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*planner-[^"]*\)".*/\1/p' | tail -n1)
fi
[ -x "$bin" ] || { echo "count-planner: no bench binary" >&2; exit 1; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
pass='capstan_brain::fleet::plan_fleet_with_groups'
IFS=, read -r -a each <<<"$sizes"
for n in "${each[@]}"; do
  # One criterion benchmark per run, so that each count is of one case.
  cases=$(PLANNER_SIZES=$n "$bin" --list 2>/dev/null | sed -n "s/^\(plan a fleet of $n pools [^:]*\): benchmark$/\1/p" |
    grep -E -- "$filter" || true)
  while IFS= read -r case; do
    [ -n "$case" ] || continue
    file="$out/$n-$(echo "$case" | tr -c 'a-z0-9' _).out"
    PLANNER_SIZES=$n valgrind --tool=callgrind --callgrind-out-file="$file" \
      --toggle-collect="$pass" "$bin" --bench "^$case\$" --profile-time 1 >/dev/null 2>&1
    # The calls to the pass that criterion's routine made (the bench's closure; the
    # probe's pass, made by fleet_pass_of itself, is left out) and the instructions
    # in them. A function's name is given once, at its id's first use.
    awk -v pass="$pass" -v name="$case" '
      /^c?fn=/ { id = $1; sub(/^c?fn=/, "", id); if (NF > 1) names[id] = $2 }
      /^fn=/ { caller = id }
      /^cfn=/ { callee = id }
      /^calls=/ {
        if (names[callee] == pass && names[caller] ~ /fleet_pass_of::\{\{closure\}\}/) {
          split($1, c, "="); calls += c[2]
          getline; cost += $2
        }
      }
      END {
        if (calls == 0) { print name ": no pass counted" > "/dev/stderr"; exit 1 }
        printf "%s: %d passes, %.2fM instructions per pass\n", name, calls, cost / calls / 1e6
      }' "$file"
  done <<<"$cases"
done
