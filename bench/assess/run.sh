#!/usr/bin/env bash
# Profile benchmark: keel-assess `profile` vs pandas `describe(include="all")` vs DuckDB `SUMMARIZE`
# on the same 1,000,000 x 20 Parquet file (the shared drift kit's ref.parquet), in the same run.
#
#   bench/assess/run.sh            # RUNS=3 rounds, tools interleaved, medians reported
#
# Each measurement is its own process under /usr/bin/time -v (wall clock of the whole process,
# interpreter start and imports included, and peak RSS). Results: bench/results/assess-<UTC>/.
# Env: KIT_SRC (../shared/bench/drift beside the repository, copied, never written), BENCH_DATA (/tmp/keel-bench-assess:
# the generated data, reused), BENCH_VENV (/tmp/keel-bench-cache/assess-venv, keyed by the sha256
# of requirements-bench.txt), ROWS (1000000), RUNS (3), CARGO_TARGET_DIR (../target-assess-bench beside the repository:
# the release build, kept apart from everyday debug builds), SKIP_BUILD=1 reuses the example binary.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
KIT_SRC=${KIT_SRC:-$ROOT/../shared/bench/drift}
DATA=${BENCH_DATA:-/tmp/keel-bench-assess}
VENV=${BENCH_VENV:-/tmp/keel-bench-cache/assess-venv}
ROWS=${ROWS:-1000000}
RUNS=${RUNS:-3}
OUT="$ROOT/bench/results/assess-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$DATA" "$OUT"

want=$(sha256sum "$HERE/requirements-bench.txt" | cut -d' ' -f1)
if [[ ! -x "$VENV/bin/python" || "$(cat "$VENV/.req.sha256" 2>/dev/null)" != "$want" ]]; then
  echo "== creating the bench venv in $VENV"
  rm -rf "$VENV" && python3 -m venv "$VENV"
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/pip" install -q -r "$HERE/requirements-bench.txt"
  echo "$want" > "$VENV/.req.sha256"
fi
PY="$VENV/bin/python"

FILE="$DATA/ref.parquet"
if [[ ! -f "$FILE" ]]; then
  echo "== generating $ROWS x 20 rows with the shared kit's gen_data.py"
  rm -rf "$DATA/kit" && cp -r "$KIT_SRC" "$DATA/kit" && chmod -R u+w "$DATA/kit"
  "$PY" "$DATA/kit/gen_data.py" "$DATA" "$ROWS" > /dev/null
fi

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/../target-assess-bench}
TARGET_DIR=$CARGO_TARGET_DIR
BIN="$TARGET_DIR/release/examples/profile_bench"
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  echo "== building the keel-assess example (release; arrow + parquet only, no deltalake)"
  (cd "$ROOT" && cargo build --release -p keel-assess --example profile_bench)
fi

{ echo "date: $(date -u +%FT%TZ)"; echo "host: $(uname -srm), $(nproc) cores"; echo "file: $FILE ($(du -h "$FILE" | cut -f1))";
  "$PY" -c 'import pandas, duckdb, pyarrow, sys; print("python", sys.version.split()[0], "pandas", pandas.__version__, "duckdb", duckdb.__version__, "pyarrow", pyarrow.__version__)';
  echo "load: $(cat /proc/loadavg)"; } | tee "$OUT/env.txt"

echo -e "tool\trun\twall_s\tmax_rss_mib" > "$OUT/runs.tsv"
measure() {
  local name=$1 run=$2; shift 2
  /usr/bin/time -v "$@" > "$OUT/${name}_$run.out" 2> "$OUT/${name}_$run.time" || { echo "$name failed: see $OUT/${name}_$run.time" >&2; exit 1; }
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$OUT/${name}_$run.time")
  rss=$(awk '/Maximum resident/ {printf "%.0f", $NF/1024}' "$OUT/${name}_$run.time")
  echo -e "$name\t$run\t$wall\t$rss" | tee -a "$OUT/runs.tsv"
}
for run in $(seq 1 "$RUNS"); do
  measure keel "$run" "$BIN" "$FILE"
  measure pandas "$run" "$PY" "$HERE/pandas_describe.py" "$FILE"
  measure duckdb "$run" "$PY" "$HERE/duckdb_summarize.py" "$FILE"
done

"$PY" - "$OUT/runs.tsv" <<'PYEOF' | tee "$OUT/table.md"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
med = {}
for tool in ("keel", "pandas", "duckdb"):
    r = [x for x in rows if x["tool"] == tool]
    med[tool] = (statistics.median(float(x["wall_s"]) for x in r), max(int(x["max_rss_mib"]) for x in r),
                 min(float(x["wall_s"]) for x in r), max(float(x["wall_s"]) for x in r))
print("| tool | wall (median of %d) | min-max | peak RSS (max) | keel faster by |" % (len(rows) // 3))
print("|---|---|---|---|---|")
for tool, (w, rss, lo, hi) in med.items():
    ratio = "-" if tool == "keel" else "%.1fx" % (w / med["keel"][0])
    print(f"| {tool} | {w:.2f} s | {lo:.2f}-{hi:.2f} s | {rss} MiB | {ratio} |")
PYEOF
echo "results in $OUT"
