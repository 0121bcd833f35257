#!/usr/bin/env bash
# Targeted scale-in, decision to instance gone: ten rounds on moto_server with real
# etcd, two agents per round (one per instance of a fresh Auto Scaling Group), a 2 s
# drain command; the time from the pass that chose the node to moto no longer listing
# its instance. The agents are the shipped build (every feature); the harness is the
# test `scale_in_decision_to_instance_gone_with_a_2s_drain` in tests/aws.rs.
# Needs moto_server and etcd (scripts/test-deps.sh installs them).
#
#   bench/scale_in.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(scripts/build-release.sh --quiet | tail -n1)
CAPSTAN_BENCH_BIN=$bin cargo test --locked --all-features -p capstan --test aws \
  scale_in_decision_to_instance_gone -- --ignored --nocapture 2>&1 | grep -E "decision to instance gone|test result"
