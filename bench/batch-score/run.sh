#!/usr/bin/env bash
# Batch scoring at scale: `keel batch score` of N rows x 30 FP32 features with the fixture models
# (bc-lr, the logistic regression; bc-rf, the random forest), against the anchor named by issue
# 20, "the obvious Python job" on the same rows: pyarrow reads the same Parquet files in batches,
# onnxruntime `session.run` per batch, pyarrow writes the outputs (key, label, probabilities) to
# Parquet. Wall time and peak RSS of each from /usr/bin/time -v; ratios keel / anchor.
#
#   bench/batch-score/run.sh                     # N=10000000, builds keel (bench-lake) first
#   N=1000000 SKIP_BUILD=1 KEEL_BIN=target/debug/keel bench/batch-score/run.sh
#   MODELS="bc-lr" N=2000000 bench/batch-score/run.sh
#
# The input is generated once per N into bench/results/batch-score-data-N/ (git-ignored) and
# ingested into a fresh keel home as the lake table `rows`; the anchor reads that table's own
# Parquet data files, so both jobs read the same bytes. Results go to
# bench/results/batch-score-<UTC timestamp>/ (summary.md and the raw outputs).
# Needs the dev venv (scripts/python-env dev: pyarrow, onnxruntime, numpy) and /usr/bin/time.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
N="${N:-10000000}"
MODELS="${MODELS:-bc-lr bc-rf}"
BATCH_ROWS="${BATCH_ROWS:-65536}"
PY="${PYTHON:-$repo/.venv/bin/python}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/../target-bench}"
PROFILE="${PROFILE:-bench-lake}"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    cargo build --profile "$PROFILE" -p keel --manifest-path "$repo/Cargo.toml"
fi
KEEL="${KEEL_BIN:-$CARGO_TARGET_DIR/$PROFILE/keel}"
[ -x "$KEEL" ] || { echo "no keel binary at $KEEL (build it, or set KEEL_BIN)" >&2; exit 2; }
[ -x "$PY" ] || { echo "no python at $PY (run scripts/python-env dev, or set PYTHON)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt install time)" >&2; exit 2; }

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out="$repo/bench/results/batch-score-$stamp"
data="$repo/bench/results/batch-score-data-$N"
mkdir -p "$out" "$data"
home="$(mktemp -d)"
trap 'rm -rf "$home"' EXIT
k() { "$KEEL" --home "$home" "$@"; }
export KEEL_LOG=warn KEEL_AUTHOR=bench
# The same library keel loads: onnxruntime's wheel in the venv (keel finds it there too).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"

{
    echo "date: $(date -u +%FT%TZ)"
    echo "host: $(uname -srm), $(nproc) cores"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    if [ -n "${KEEL_BIN:-}" ]; then echo "keel: $KEEL (given by KEEL_BIN)"; else echo "keel: $KEEL (profile $PROFILE)"; fi
    echo "N: $N, keel --batch-rows: default; anchor batch: $BATCH_ROWS rows"
    "$PY" -c 'import onnxruntime, pyarrow; print("onnxruntime", onnxruntime.__version__, "pyarrow", pyarrow.__version__)'
} | tee "$out/env.txt"

if [ ! -f "$data/rows.parquet" ]; then
    echo "generating $N rows x 30 FP32 features into $data/rows.parquet"
    "$PY" "$here/gen.py" "$N" "$data/rows.parquet"
fi
k data ingest --table rows "$data/rows.parquet" >/dev/null
for m in $MODELS; do
    k model push "$m" "$repo/fixtures/models/$m.onnx" >/dev/null
done
parquet_files=("$home"/lake/rows/*.parquet)
[ -f "${parquet_files[0]}" ] || { echo "the lake table's Parquet files are not under $home/lake/rows" >&2; exit 1; }

measure() { # name, command...: wall seconds and peak RSS into $out/NAME.time
    local name="$1"; shift
    /usr/bin/time -v -o "$out/$name.time" "$@" > "$out/$name.out" 2> "$out/$name.err" || {
        echo "$name failed:" >&2; tail -20 "$out/$name.err" >&2; exit 1; }
}
wall() { awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$1"; }
rss_mib() { awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$1"; }

{
    echo "| model | job | wall (s) | rows/s | ratio keel/anchor (rows/s) | peak RSS (MiB) |"
    echo "|---|---|---|---|---|---|"
} > "$out/summary.md"
for m in $MODELS; do
    echo "== $m: anchor (pyarrow + onnxruntime + pyarrow)"
    measure "$m-anchor" "$PY" "$here/anchor.py" "$repo/fixtures/models/$m.onnx" "$out/$m-anchor.parquet" "$BATCH_ROWS" "${parquet_files[@]}"
    echo "== $m: keel batch score"
    measure "$m-keel" "$KEEL" --home "$home" --json batch score "$m" --from rows --into "scores_${m//-/_}" --keep customer_id
    rows=$(grep -o '"rows": *[0-9]*' "$out/$m-keel.out" | head -1 | grep -o '[0-9]*$')
    [ "$rows" = "$N" ] || { echo "keel scored $rows rows, expected $N" >&2; exit 1; }
    a=$(wall "$out/$m-anchor.time"); b=$(wall "$out/$m-keel.time")
    python3 - "$m" "$N" "$a" "$b" "$(rss_mib "$out/$m-anchor.time")" "$(rss_mib "$out/$m-keel.time")" >> "$out/summary.md" <<'PY'
import sys
m, n, a, b, ra, rb = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6]
print(f"| {m} | anchor: pyarrow + onnxruntime | {a:.1f} | {n / a:,.0f} | 1 | {ra} |")
print(f"| {m} | keel batch score | {b:.1f} | {n / b:,.0f} | {a / b:.2f} | {rb} |")
PY
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/env.txt"
cat "$out/summary.md"
echo "results in $out"
