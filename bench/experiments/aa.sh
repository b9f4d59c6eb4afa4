#!/usr/bin/env bash
# A/A benchmark of the deployment report's statistics: EXPERIMENTS simulated experiments per
# scenario with no true difference, each read after every LOOK_EVERY decisions (LOOKS reads),
# with the report's own code (keel-experiments `lift::Lift::between`, `anytime::bernoulli_cs`,
# `stats::wilson`). Prints the share of experiments with a false positive at some read: for the
# anytime-valid confidence sequences and for the fixed-horizon intervals peeked at the same times.
#   EXPERIMENTS (default 10000), LOOK_EVERY (default 1000), LOOKS (default 100), SEED (default 1).
# The figures are shares of simulated experiments, not timings, so the debug profile is used.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
cargo build -q -p keel-experiments --example aa
out="$root/bench/results/aa-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
start=$(date +%s)
EXPERIMENTS="${EXPERIMENTS:-10000}" LOOK_EVERY="${LOOK_EVERY:-1000}" LOOKS="${LOOKS:-100}" SEED="${SEED:-1}" \
  "$root/target/debug/examples/aa" | tee "$out/aa.md"
echo "($(($(date +%s) - start)) s; results in ${out#"$root"/})"
