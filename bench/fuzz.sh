#!/usr/bin/env bash
# Fuzzing the config loader and the report decoder (tests/fuzz.rs), at length.
#
#   bench/fuzz.sh [CASES]        (default 100000 per property)
#
# Four proptest properties, each over CASES cases: the config loader over arbitrary
# text and over mutated shipped configs, the report decoder (with the leader's checks)
# over arbitrary bytes and over mutated full reports. No case may panic, and every
# refusal must be a typed error that names its place (see tests/fuzz.rs). Built in
# release, so the cases go at the speed they run in the agent; each property prints
# its count and time. CI runs the same tests with 1,000 cases each.
set -euo pipefail
cd "$(dirname "$0")/.."

cases=${1:-100000}
CAPSTAN_FUZZ_CASES=$cases cargo test --release --locked -p capstan --test fuzz -- \
  --nocapture --test-threads 1 2>&1 |
  grep -oE "fuzz [a-z ]+, [a-z ]+: [0-9]+ cases in [0-9.]+s|test result.*|panicked.*|FAILED.*"
