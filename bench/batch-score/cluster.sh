#!/usr/bin/env bash
# The distributed engine's overhead: `keel batch score` of N rows x 30 FP32 features with the
# logistic regression fixture, in process (the anchor) and on a Ballista cluster on loopback
# (`keel cluster scheduler` + two `keel cluster executor`, `--engine ballista://...`), same
# binary, same input table, same run. Wall time of each job from /usr/bin/time -v; the ratio
# cluster / in-process; the two output tables compared row for row (every column but
# scored_at).
#
#   bench/batch-score/cluster.sh                    # N=1000000, builds keel (bench-lake, --features cluster)
#   N=200000 SKIP_BUILD=1 KEEL_BIN=target/debug/keel bench/batch-score/cluster.sh
#
# Input: generated once per N by gen.py into bench/results/batch-score-data-N/ (shared with
# run.sh). Results: bench/results/batch-score-cluster-<UTC>/summary.md. Needs the dev venv
# (scripts/python-env dev) for gen.py, and /usr/bin/time.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
N="${N:-1000000}"
MODEL="${MODEL:-bc-lr}"
PY="${PYTHON:-$repo/.venv/bin/python}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/../target-bench}"
PROFILE="${PROFILE:-bench-lake}"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    cargo build --profile "$PROFILE" -p keel --features cluster --manifest-path "$repo/Cargo.toml"
fi
KEEL="${KEEL_BIN:-$CARGO_TARGET_DIR/$PROFILE/keel}"
[ -x "$KEEL" ] || { echo "no keel binary at $KEEL (build it, or set KEEL_BIN)" >&2; exit 2; }
[ -x "$PY" ] || { echo "no python at $PY (run scripts/python-env dev, or set PYTHON)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt install time)" >&2; exit 2; }

stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out="$repo/bench/results/batch-score-cluster-$stamp"
data="$repo/bench/results/batch-score-data-$N"
mkdir -p "$out" "$data"
home="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$home"
}
trap cleanup EXIT
k() { "$KEEL" --home "$home" "$@"; }
export KEEL_LOG=warn KEEL_AUTHOR=bench

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # port, pid
    for _ in $(seq 1 600); do
        kill -0 "$2" 2>/dev/null || { echo "process $2 exited before listening on $1" >&2; exit 1; }
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on $1 after 60 s" >&2; exit 1
}

{
    echo "date: $(date -u +%FT%TZ)"
    echo "host: $(uname -srm), $(nproc) cores"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    if [ -n "${KEEL_BIN:-}" ]; then echo "keel: $KEEL (given by KEEL_BIN)"; else echo "keel: $KEEL (profile $PROFILE)"; fi
    echo "N: $N, model: $MODEL, keel --batch-rows: default; cluster: 1 scheduler + 2 executors on loopback"
} | tee "$out/env.txt"

if [ ! -f "$data/rows.parquet" ]; then
    echo "generating $N rows x 30 FP32 features into $data/rows.parquet"
    "$PY" "$here/gen.py" "$N" "$data/rows.parquet"
fi
k data ingest --table rows "$data/rows.parquet" >/dev/null
k model push "$MODEL" "$repo/fixtures/models/$MODEL.onnx" >/dev/null

sched=$(free_port)
k cluster scheduler --bind "127.0.0.1:$sched" > "$out/scheduler.log" 2>&1 &
pids+=($!)
wait_port "$sched" "${pids[-1]}"
for e in 1 2; do
    flight=$(free_port); grpc=$(free_port)
    k cluster executor --scheduler "127.0.0.1:$sched" --bind "127.0.0.1:$flight" --grpc-port "$grpc" \
        > "$out/executor-$e.log" 2>&1 &
    pids+=($!)
    wait_port "$flight" "${pids[-1]}"
done

measure() { # name, command...: wall seconds and peak RSS into $out/NAME.time
    local name="$1"; shift
    /usr/bin/time -v -o "$out/$name.time" "$@" > "$out/$name.out" 2> "$out/$name.err" || {
        echo "$name failed:" >&2; tail -20 "$out/$name.err" >&2; exit 1; }
}
wall() { awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$1"; }

echo "== in process"
measure in-process "$KEEL" --home "$home" --json batch score "$MODEL" --from rows --into scores_local --keep customer_id
echo "== on the cluster"
measure cluster "$KEEL" --home "$home" --json batch score "$MODEL" --from rows --into scores_cluster --keep customer_id \
    --engine "ballista://127.0.0.1:$sched"
for job in in-process cluster; do
    rows=$(grep -o '"rows": *[0-9]*' "$out/$job.out" | head -1 | grep -o '[0-9]*$')
    [ "$rows" = "$N" ] || { echo "$job scored $rows rows, expected $N" >&2; exit 1; }
done
# Row for row: no row of one table is missing from the other (every column but scored_at).
cols="customer_id, label, probabilities_0, probabilities_1, model, model_version, run_id"
diff=$(k --json data sql "SELECT COUNT(*) AS n FROM (SELECT $cols FROM scores_local EXCEPT ALL SELECT $cols FROM scores_cluster) d" \
    | grep -o '"n": *[0-9]*' | grep -o '[0-9]*$')
diff2=$(k --json data sql "SELECT COUNT(*) AS n FROM (SELECT $cols FROM scores_cluster EXCEPT ALL SELECT $cols FROM scores_local) d" \
    | grep -o '"n": *[0-9]*' | grep -o '[0-9]*$')
[ "$diff" = 0 ] && [ "$diff2" = 0 ] || { echo "the tables differ: $diff / $diff2 rows" >&2; exit 1; }

a=$(wall "$out/in-process.time"); b=$(wall "$out/cluster.time")
python3 - "$MODEL" "$N" "$a" "$b" > "$out/summary.md" <<'PY'
import sys
m, n, a, b = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
print("| model | job | wall (s) | rows/s | time ratio (cluster / in-process) |")
print("|---|---|---|---|---|")
print(f"| {m} | in process | {a:.1f} | {n / a:,.0f} | 1 |")
print(f"| {m} | Ballista, 1 scheduler + 2 executors on loopback | {b:.1f} | {n / b:,.0f} | {b / a:.2f} |")
print()
print("identical rows: yes (EXCEPT ALL both ways, every column but scored_at)")
PY
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/env.txt"
cat "$out/summary.md"
echo "results in $out"
