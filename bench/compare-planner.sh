#!/usr/bin/env bash
# The planner bench at another revision and at this checkout, run alternately in one
# session, so a before/after is measured on the same machine in the same state.
#
#   bench/compare-planner.sh REV [ROUNDS] [FILTER]   (defaults: 3 rounds, "fleet")
#
# Builds `cargo bench -p capstan --bench planner` (default features: the planner needs
# no cloud SDK) for REV in a git worktree and for the working tree, each in its own
# target dir under /var/tmp (cargo must not reuse one checkout's build for another),
# then runs the two binaries in turn ROUNDS times with criterion's FILTER and prints
# each measurement.
set -euo pipefail
cd "$(dirname "$0")/.."

rev=${1:?usage: bench/compare-planner.sh REV [ROUNDS] [FILTER]}
rounds=${2:-3}
filter=${3:-fleet}
short=$(git rev-parse --short "$rev")
old_tree=/var/tmp/capstan-compare-$short
old_target=/var/tmp/capstan-compare-target-$short
new_target=/var/tmp/capstan-compare-target-head

if [ ! -d "$old_tree" ]; then
  git worktree add --detach "$old_tree" "$rev" >/dev/null
fi
trap 'git worktree remove --force "$old_tree" 2>/dev/null || true' EXIT

bench_binary() { # dir target → path of the built planner bench
  (cd "$1" && CARGO_TARGET_DIR="$2" cargo bench -p capstan --bench planner --no-run \
    --message-format=json 2>/dev/null) |
    sed -n 's/.*"executable":"\([^"]*planner-[^"]*\)".*/\1/p' | tail -n1
}
old_bin=$(bench_binary "$old_tree" "$old_target")
new_bin=$(bench_binary "$PWD" "$new_target")
[ -x "$old_bin" ] && [ -x "$new_bin" ] || { echo "compare-planner: a build failed" >&2; exit 1; }

for round in $(seq "$rounds"); do
  for side in "$short:$old_bin" "HEAD:$new_bin"; do
    echo "== round $round, ${side%%:*}"
    "${side#*:}" --bench "$filter" 2>&1 | grep -E "^plan|time:|fleet bench"
  done
done
