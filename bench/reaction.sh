#!/usr/bin/env bash
# Reaction time: a workload metric steps up 3× and the time until moto's Auto Scaling
# Group has the new desired capacity (the agent's SetDesiredCapacity), median over the
# steps. Needs moto_server and boto3 (scripts/test-deps.sh installs moto[server]).
#
#   bench/reaction.sh [STEPS] [INTERVAL_SECONDS]      (default 10 steps, 5 s)
#
# Goal: the median at most one interval plus 1 s. See bench/reaction.py.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-10}
interval=${2:-5}
command -v moto_server >/dev/null || {
  echo "bench/reaction.sh: needs moto_server (scripts/test-deps.sh installs it)" >&2
  exit 1
}
# The shipped build (every feature), as the .deb and the image have it.
bin=$(scripts/build-release.sh --quiet | tail -n1)
exec python3 bench/reaction.py "$bin" "$steps" "$interval"
