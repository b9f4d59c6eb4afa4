#!/usr/bin/env bash
# The weekly campaign at scale: batch decide of N customers with a contextual policy, every
# decision durably logged (fdatasync), then feedback ingest of N rewards; peak RSS of each from
# /usr/bin/time -v. The anchor, measured in the same run on the same rows: `keel data export`
# of the customer table to Parquet (the lake read and a file write, no decision).
#
#   bench/campaign/run.sh                 # N=1000000, builds keel in release first
#   N=200000 SKIP_BUILD=1 bench/campaign/run.sh
#
# Results go to bench/results/campaign-<UTC timestamp>/ (git-ignored): summary.md and the raw
# outputs. Needs python3 (to write the input files) and /usr/bin/time.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
N="${N:-1000000}"
BATCH_ROWS="${BATCH_ROWS:-16384}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/../target-bench}"
PROFILE="${PROFILE:-bench-lake}"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    cargo build --profile "$PROFILE" -p keel --manifest-path "$repo/Cargo.toml"
fi
KEEL="${KEEL_BIN:-$CARGO_TARGET_DIR/$PROFILE/keel}"
[ -x "$KEEL" ] || { echo "no keel binary at $KEEL (build it, or set KEEL_BIN)" >&2; exit 2; }

out="$repo/bench/results/campaign-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
home="$(mktemp -d)"
trap 'rm -rf "$home"' EXIT
k() { "$KEEL" --home "$home" "$@"; }
export KEEL_LOG=warn KEEL_AUTHOR=bench

{
    echo "date: $(date -u +%FT%TZ)"
    echo "host: $(uname -srm), $(nproc) cores"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    if [ -n "${KEEL_BIN:-}" ]; then echo "keel: $KEEL (given by KEEL_BIN)"; else echo "keel: $KEEL (profile $PROFILE)"; fi
    echo "N: $N, batch rows: $BATCH_ROWS"
} > "$out/env.txt"

python3 - "$N" "$home/customers.csv" <<'PY'
import sys, random
n, path = int(sys.argv[1]), sys.argv[2]
rng = random.Random(7)
segments = ["new", "loyal", "lapsed"]
with open(path, "w") as f:
    f.write("customer_id,age,segment,spend\n")
    for i in range(n):
        f.write(f"c{i},{rng.randint(18, 80)},{segments[rng.randrange(3)]},{rng.random() * 200:.2f}\n")
PY

cat > "$home/promo.json" <<'JSON'
{
  "variants": [{"name": "none"}, {"name": "discount"}, {"name": "free_dessert"}, {"name": "double_points"}],
  "policy": {"type": "lin_ucb", "alpha": 1.0, "floor": 0.05},
  "context": [
    {"name": "age", "type": "numeric"},
    {"name": "spend", "type": "numeric"},
    {"name": "segment", "type": "categorical", "levels": ["new", "loyal", "lapsed"]}
  ],
  "control": {"variant": "none", "share": 0.1},
  "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 604800},
  "seed": 3
}
JSON
k deployment apply promo -f "$home/promo.json" > /dev/null
k --json data ingest "$home/customers.csv" --table customers > "$out/ingest.json"

timed() { # name, command...
    local name="$1"; shift
    /usr/bin/time -v -o "$out/$name.time" "$@" > "$out/$name.json"
    local rss wall
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$out/$name.time")
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$out/$name.time")
    echo "$name: wall $wall, peak RSS $((rss / 1024)) MiB" | tee -a "$out/summary.md"
}

echo "# campaign bench, N=$N ($(cat /proc/loadavg | cut -d' ' -f1-3) load before)" > "$out/summary.md"
timed export "$KEEL" --home "$home" --json data export customers --format parquet "$home/anchor.parquet"
timed decide "$KEEL" --home "$home" --json batch decide promo --from customers --unit-column customer_id --into sends --batch-rows "$BATCH_ROWS"
k --json data export sends --format csv "$home/sends.csv" > /dev/null
# Rewards: every decision, converted with probability 0.05.
python3 - "$home/sends.csv" "$home/rewards.csv" <<'PY'
import sys, csv, random
rng = random.Random(5)
with open(sys.argv[1]) as src, open(sys.argv[2], "w") as dst:
    rows = csv.DictReader(src)
    dst.write("decision_id,converted\n")
    for r in rows:
        dst.write(f"{r['decision_id']},{1 if rng.random() < 0.05 else 0}\n")
PY
timed feedback "$KEEL" --home "$home" --json feedback ingest promo --from "$home/rewards.csv" --decision-column decision_id --reward-column converted --batch-rows "$BATCH_ROWS"

python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
ex = json.load(open(f"{out}/export.json"))
de = json.load(open(f"{out}/decide.json"))
fb = json.load(open(f"{out}/feedback.json"))
def wall(name):
    for line in open(f"{out}/{name}.time"):
        if "Elapsed (wall clock)" in line:
            t = line.rsplit(": ", 1)[1].strip().split(":")
            return sum(float(x) * 60 ** i for i, x in enumerate(reversed(t)))
anchor = ex["rows"] / wall("export")
lines = [
    f"anchor (data export to Parquet): {anchor:,.0f} rows/s end to end",
    f"batch decide: {de['decided']:,} decided, {de['rows_per_second']:,.0f} rows/s in the job, "
    f"{de['rows'] / wall('decide'):,.0f} rows/s end to end (process), ratio to anchor {de['rows'] / wall('decide') / anchor:.2f}",
    f"feedback ingest: {fb['counted']:,} counted, {fb['rows_per_second']:,.0f} rows/s in the job, "
    f"{fb['rows'] / wall('feedback'):,.0f} rows/s end to end (process), ratio to anchor {fb['rows'] / wall('feedback') / anchor:.2f}",
]
with open(f"{out}/summary.md", "a") as f:
    f.write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/env.txt"
echo "results in $out"
