#!/usr/bin/env bash
# The learner study: every keel contextual learner (a grid of settings, with and without
# discounting) and Vowpal Wabbit's `--cb_explore_adf` with `--squarecb` and with `--bag 5`, on
# the same e-mail worlds drawn from 5 seeds, online, one customer per round; then the same with
# the promotions' appeal drifting half-way. Prints the tables bench/README.md quotes
# ("Contextual learners").
#   SEEDS (default 1,2,3,4,5), CUSTOMERS (default 100000), DRIFT_AT (default 50000),
#   SKIP_VW=1 to run keel's learners only.
# keel's learners run in process (crates/keel-bandit/examples/learners.rs); VW runs from its PyPI
# package in a scratch venv (bench/experiments/.venv, gitignored) on worlds the example writes out.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
seeds=${SEEDS:-1,2,3,4,5}
customers=${CUSTOMERS:-100000}
drift_at=${DRIFT_AT:-50000}
cargo build -q --release -p keel-bandit --example learners
bin="$root/target/release/examples/learners"
out="$root/bench/results/learners-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
venv="$here/.venv"
if [ "${SKIP_VW:-0}" != 1 ]; then
  if ! "$venv/bin/python" -c 'import vowpalwabbit, numpy' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'vowpalwabbit==9.11.*' numpy
  fi
  "$venv/bin/python" -c 'import vowpalwabbit, sys; print("vowpalwabbit", vowpalwabbit.__version__ if hasattr(vowpalwabbit, "__version__") else "?", file=sys.stderr)' || true
fi

vw_runs() { # $1 = drift position or -, $2 = output file
  [ "${SKIP_VW:-0}" = 1 ] && return 0
  local drift=$1 file=$2 seed csv
  for seed in ${seeds//,/ }; do
    csv="$out/world-$seed-$drift.csv"
    if [ "$drift" = - ]; then "$bin" dump "$seed" "$customers" > "$csv"; else "$bin" dump "$seed" "$customers" "$drift" > "$csv"; fi
    "$venv/bin/python" "$here/vw_study.py" "$csv" "$seed" "$drift" "vw squarecb" "--cb_explore_adf --squarecb -q sa" >> "$file"
    "$venv/bin/python" "$here/vw_study.py" "$csv" "$seed" "$drift" "vw bag 5" "--cb_explore_adf --bag 5 -q sa" >> "$file"
    rm -f "$csv"
  done
}

echo "== stationary worlds: seeds $seeds, $customers customers each" >&2
vw_runs - "$out/vw.jsonl" &
vw=$!
"$bin" run "$seeds" "$customers" > "$out/keel.jsonl"
wait $vw
echo "== drifting appeal at customer $drift_at" >&2
vw_runs "$drift_at" "$out/vw-drift.jsonl" &
vw=$!
"$bin" run "$seeds" "$customers" "$drift_at" > "$out/keel-drift.jsonl"
wait $vw
python3 "$here/learners_table.py" "$out"
echo "results in $out" >&2
