#!/usr/bin/env bash
# Replicas on PostgreSQL: durable decide+feedback pairs per second over HTTP, summed over two
# `keel serve` replicas on one PostgreSQL store (a fresh database, dropped at the end).
#   PG_URL (default postgres://postgres@127.0.0.1:5432/test: the server, and a database from
#   which to create the bench's own), CONNECTIONS (default 64), DURATION (default 10 s),
#   MODES (default "cross same": feedback on the other replica, or on the one that decided),
#   PROFILE (cargo profile, default release; dev for a check of the script), FEATURES (default
#   --no-default-features), CARGO_TARGET_DIR as usual; SKIP_BUILD=1 with KEEL_BIN and LOAD_BIN (the
#   built http_load bench binary) runs binaries built earlier, without cargo.
# Anchor, in the same run: the same load against one replica on the embedded (SQLite) store,
# whose log is a local file.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
profile=${PROFILE:-release}
target=${CARGO_TARGET_DIR:-$root/target}
if [ "${SKIP_BUILD:-0}" = 1 ]; then
  bin=${KEEL_BIN:?SKIP_BUILD=1 needs KEEL_BIN}
  load_bin=${LOAD_BIN:?SKIP_BUILD=1 needs LOAD_BIN (target/PROFILE/deps/http_load-HASH)}
else
  # Serving and experiments only, no Delta Lake (FEATURES=" " builds the default features).
  cargo build -q --profile "$profile" -p keel ${FEATURES:---no-default-features}
  cargo bench -q --profile "$profile" -p keel-experiments --bench http_load --no-run 2>/dev/null
  bin="$target/$profile/keel"
  [ "$profile" = dev ] && bin="$target/debug/keel"
  load_bin=""
fi
pg=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
db="keel_bench_$(date -u +%Y%m%dT%H%M%SZ | tr 'A-Z' 'a-z')"
psql "$pg" -qtAc "CREATE DATABASE $db"
store="${pg%/*}/$db"
out="$root/bench/results/replicas-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
home=$(mktemp -d)
servers=()
cleanup() {
  for s in "${servers[@]}"; do kill "$s" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$pg" -qtAc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
  rm -rf "$home"
}
trap cleanup EXIT
cat > "$home/spec.json" <<'JSON'
{"variants": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
 "policy": {"type": "thompson_beta"},
 "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 3600}, "seed": 1}
JSON
serve() { # home store ("": the embedded one) port -> starts a server, records its pid
  KEEL_LOG=warn "$bin" --home "$1" ${2:+--store "$2"} serve --http-addr "127.0.0.1:$3" --grpc-addr "127.0.0.1:$(($3 + 1))" \
    2>> "$out/server-$3.log" &
  servers+=($!)
  for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:$3/v2/health/ready" >/dev/null && return; sleep 0.1; done
  echo "server on $3 did not start" >&2; exit 1
}
load() { # mode url... -> JSON line
  export MODE=$1 CONNECTIONS=${CONNECTIONS:-64} DURATION=${DURATION:-10}
  if [ -n "$load_bin" ]; then
    "$load_bin" promo "${@:2}" --bench 2>/dev/null | tail -1
  else
    cargo bench -q --profile "$profile" -p keel-experiments --bench http_load -- promo "${@:2}" 2>/dev/null | tail -1
  fi
}
# Cumulative CPU ticks: "keel-servers postgres machine-busy machine-total" (what bounds the run).
cpu() {
  local k=0 p=0 f c d
  for d in "${servers[@]}"; do
    read -r -a f < "/proc/$d/stat" 2>/dev/null && k=$((k + f[13] + f[14]))
  done
  for d in /proc/[0-9]*; do
    c=$(cat "$d/comm" 2>/dev/null) || continue
    [ "$c" = postgres ] && read -r -a f < "$d/stat" 2>/dev/null && p=$((p + f[13] + f[14]))
  done
  read -r _ u n sy i w x y z _ < /proc/stat
  echo "$k $p $((u + n + sy + x + y + z)) $((u + n + sy + i + w + x + y + z))"
}
cpu_share() { # before after -> a line
  read -r k0 p0 b0 t0 <<< "$1"
  read -r k1 p1 b1 t1 <<< "$2"
  awk -v k=$((k1 - k0)) -v p=$((p1 - p0)) -v b=$((b1 - b0)) -v t=$((t1 - t0)) -v n="$(nproc)" \
    'BEGIN {printf "CPU over the load: machine %.0f%% busy (%d cores); keel servers %.2f cores, PostgreSQL %.2f cores, the rest (load generator, other) %.2f cores\n", 100 * b / t, n, n * k / t, n * p / t, n * (b - k - p) / t}'
}
base=$((20000 + RANDOM % 20000))
echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), profile $profile, fsync on"

echo "== anchor: one replica, embedded store (file log)"
"$bin" --home "$home/solo" deployment apply promo -f "$home/spec.json" >/dev/null
serve "$home/solo" "" $((base + 10))
before=$(cpu)
load same "http://127.0.0.1:$((base + 10))" | tee "$out/anchor.json"
cpu_share "$before" "$(cpu)" | tee -a "$out/cpu-anchor.txt"
kill "${servers[0]}"; wait "${servers[0]}" 2>/dev/null || true; servers=()

echo "== two replicas on PostgreSQL ($store)"
"$bin" --home "$home/a" --store "$store" deployment apply promo -f "$home/spec.json" >/dev/null
serve "$home/a" "$store" "$base"
serve "$home/b" "$store" $((base + 2))
for mode in ${MODES:-cross same}; do
  before=$(cpu)
  load "$mode" "http://127.0.0.1:$base" "http://127.0.0.1:$((base + 2))" | tee "$out/replicas-$mode.json"
  cpu_share "$before" "$(cpu)" | tee -a "$out/cpu-$mode.txt"
done
# Both replicas answer the same report (converged) once the load stops.
sleep 1
ra=$(curl -s "http://127.0.0.1:$base/v1/deployments/promo/report" | python3 -c 'import json,sys; print([(v["name"], v["exposures"], v["rewards"]) for v in json.load(sys.stdin)["variants"]])')
rb=$(curl -s "http://127.0.0.1:$((base + 2))/v1/deployments/promo/report" | python3 -c 'import json,sys; print([(v["name"], v["exposures"], v["rewards"]) for v in json.load(sys.stdin)["variants"]])')
echo "replica a: $ra"
echo "replica b: $rb"
[ "$ra" = "$rb" ] && echo "reports agree" || echo "REPORTS DIFFER"
rows=$(psql "$store" -qtAc "SELECT COUNT(*) FROM deployment_log")
metrics=$(curl -s "http://127.0.0.1:$base/metrics" "http://127.0.0.1:$((base + 2))/metrics")
commits=$(echo "$metrics" | awk '/^keel_deployment_log_commits_total/ {s += $NF} END {print s + 0}')
flushes=$(echo "$metrics" | awk '/^keel_deployment_log_flushes_total/ {s += $NF} END {print s + 0}')
echo "log rows: $rows, commits (both replicas): $commits, $(awk "BEGIN {printf \"%.1f\", $rows / ($commits > 0 ? $commits : 1)}") events per commit; WAL flushes asked for: $flushes"
echo "results in $out"
