#!/usr/bin/env bash
# Experiments benchmark: the e-mail promotion scenario through a live keel server over HTTP,
# plus decide+feedback in process. Prints the figures the experiments issue names.
#   CUSTOMERS (default 200000), CONCURRENCY (default 64), BATCH (feedback batch, default 1),
#   POLICIES (default uniform,best_single,thompson,contextual), NO_FSYNC=1 to skip fsync.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
scripts/python-env runtime >/dev/null
cargo build -q --release -p keel --no-default-features   # serving and experiments only: no Delta Lake
bin="$root/target/release/keel"
out="$root/bench/results/experiments-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
home=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
fsync_flag=""
[ "${NO_FSYNC:-0}" = 1 ] && fsync_flag="--no-fsync"
KEEL_LOG=warn "$bin" --home "$home" serve --http-addr "127.0.0.1:$port" --grpc-addr "127.0.0.1:$((port + 1))" $fsync_flag \
  2> "$out/server.log" &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$home"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null && break; sleep 0.1; done

echo "== e-mail promotions over HTTP (${CUSTOMERS:-200000} customers, concurrency ${CONCURRENCY:-64}, feedback batch ${BATCH:-1})"
"$bin" --json simulate email --url "http://127.0.0.1:$port" --customers "${CUSTOMERS:-200000}" \
  --concurrency "${CONCURRENCY:-64}" --batch "${BATCH:-1}" \
  --policies "${POLICIES:-uniform,best_single,thompson,contextual}" > "$out/simulate.json"
python3 - "$out/simulate.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
best_name, best_rate = r["best_single"]
print(f"expected rates: uniform {r['uniform_rate']:.4f}, best single ({best_name}) {best_rate:.4f}, oracle {r['oracle_rate']:.4f}")
print(f"{'policy':<14}{'rate':>8}{'vs uniform':>12}{'vs best':>10}{'regret/1k':>11}{'decisions/s':>13}")
for p in r["results"]:
    print(f"{p['policy']:<14}{p['expected_rate']:>8.4f}{p['lift_over_uniform']*100:>+11.1f}%{p['lift_over_best_single']*100:>+9.1f}%{p['regret_per_1000']:>11.2f}{p['decisions_per_second']:>13.0f}")
res = {p["policy"]: p for p in r["results"]}
if "contextual" in res:
    c = res["contextual"]
    print(f"target contextual >= +45% vs uniform: {c['lift_over_uniform']*100:+.1f}%  {'PASS' if c['lift_over_uniform'] >= 0.45 else 'FAIL'}")
    print(f"target contextual >= +20% vs best single: {c['lift_over_best_single']*100:+.1f}%  {'PASS' if c['lift_over_best_single'] >= 0.20 else 'FAIL'}")
if "thompson" in res:
    t = res["thompson"]["expected_rate"] / best_rate
    print(f"target thompson >= 95% of best single: {t*100:.1f}%  {'PASS' if t >= 0.95 else 'FAIL'}")
peak = max(p["decisions_per_second"] for p in r["results"])
print(f"decisions per second over HTTP with feedback flowing (best policy run): {peak:.0f}")
PY
kill $server; wait $server 2>/dev/null || true
echo
echo "== decide + feedback in process (one thread)"
cargo bench -q -p keel-experiments --bench engine 2>/dev/null | tee "$out/engine.txt"
echo "results in $out"
