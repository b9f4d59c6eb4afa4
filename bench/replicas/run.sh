#!/usr/bin/env bash
# Replicas on PostgreSQL: durable decide+feedback pairs per second over HTTP, summed over two
# `keel serve` replicas on one PostgreSQL store (a fresh database, dropped at the end).
#   PG_URL (default postgres://postgres@127.0.0.1:5432/test: the server, and a database from
#   which to create the bench's own), CONNECTIONS (default 64), DURATION (default 10 s),
#   MODES (default "cross same": feedback on the other replica, or on the one that decided),
#   PROFILE (cargo profile, default release; dev for a check of the script), FEATURES (default
#   --no-default-features), CARGO_TARGET_DIR as usual.
# Anchor, in the same run: the same load against one replica on the embedded (SQLite) store,
# whose log is a local file.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
profile=${PROFILE:-release}
target=${CARGO_TARGET_DIR:-$root/target}
# Serving and experiments only, no Delta Lake (FEATURES=" " builds the default features).
cargo build -q --profile "$profile" -p keel ${FEATURES:---no-default-features}
cargo bench -q --profile "$profile" -p keel-experiments --bench http_load --no-run 2>/dev/null
bin="$target/$profile/keel"
[ "$profile" = dev ] && bin="$target/debug/keel"
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
  MODE=$1 CONNECTIONS=${CONNECTIONS:-64} DURATION=${DURATION:-10} \
    cargo bench -q --profile "$profile" -p keel-experiments --bench http_load -- promo "${@:2}" 2>/dev/null | tail -1
}
base=$((20000 + RANDOM % 20000))
echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), profile $profile, fsync on"

echo "== anchor: one replica, embedded store (file log)"
"$bin" --home "$home/solo" deployment apply promo -f "$home/spec.json" >/dev/null
serve "$home/solo" "" $((base + 10))
load same "http://127.0.0.1:$((base + 10))" | tee "$out/anchor.json"
kill "${servers[0]}"; wait "${servers[0]}" 2>/dev/null || true; servers=()

echo "== two replicas on PostgreSQL ($store)"
"$bin" --home "$home/a" --store "$store" deployment apply promo -f "$home/spec.json" >/dev/null
serve "$home/a" "$store" "$base"
serve "$home/b" "$store" $((base + 2))
for mode in ${MODES:-cross same}; do
  load "$mode" "http://127.0.0.1:$base" "http://127.0.0.1:$((base + 2))" | tee "$out/replicas-$mode.json"
done
# Both replicas answer the same report (converged) once the load stops.
sleep 1
ra=$(curl -s "http://127.0.0.1:$base/v1/deployments/promo/report" | python3 -c 'import json,sys; print([(v["name"], v["exposures"], v["rewards"]) for v in json.load(sys.stdin)["variants"]])')
rb=$(curl -s "http://127.0.0.1:$((base + 2))/v1/deployments/promo/report" | python3 -c 'import json,sys; print([(v["name"], v["exposures"], v["rewards"]) for v in json.load(sys.stdin)["variants"]])')
echo "replica a: $ra"
echo "replica b: $rb"
[ "$ra" = "$rb" ] && echo "reports agree" || echo "REPORTS DIFFER"
rows=$(psql "$store" -qtAc "SELECT COUNT(*) FROM deployment_log")
commits=$(curl -s "http://127.0.0.1:$base/metrics" "http://127.0.0.1:$((base + 2))/metrics" | awk '/^keel_deployment_log_commits_total/ {s += $NF} END {print s}')
echo "log rows: $rows, transactions (both replicas): $commits"
echo "results in $out"
