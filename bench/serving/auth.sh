#!/usr/bin/env bash
# The cost of authentication (and TLS) on keel's inference throughput, side by side:
#   A = keel serve --auth off                 (plain HTTP, no credential sent)
#   B = keel serve --auth required            (plain HTTP, an infer-scoped API token in every request)
#   C = keel serve --auth required + --tls-*  (HTTPS, self-signed certificate, same token)
#   D = B with --token-cache-ms 3600000       (optional: the token verified once per server, to
#                                              isolate the cost of re-verifying it every second)
# Same binary, same model (fixtures/models/bc-lr.onnx, one row of 30 FP32 features), same load
# (wrk -t2 -c64), a fresh server per phase, configurations alternating round by round
# (A B C A B C ...) so a drift of the machine weighs on all of them alike.
# usage: bench/serving/auth.sh          (from anywhere; see bench/README.md)
# Environment (all optional):
#   DURATION=15        seconds per measured phase      ROUNDS=3   rounds (each runs every config once)
#   WARMUP=5           seconds of unreported load (same wrk settings) before each phase
#   CONFIGS="A B C"    which configurations, in round order ("A B" skips TLS; "A B D" adds D)
#   CARGO_TARGET_DIR=../target-bench (beside the repository); SKIP_BUILD=1 reuses its release/keel
#   KEEL_ORT_LIB       libonnxruntime (default: the repository's .venv)
#   KEEL_SERVE_ARGS="--workers 1 --no-log-predictions"   `keel serve` flags for every config (one
#                      serving thread leaves wrk a core on a 2-core machine, see bench/README.md;
#                      no prediction logging, which the default build has not got anyway)
#   KEEL_HTTP_PORT=18280 (gRPC on the next port)
#   QUIET_THRESH=0.35 QUIET_MAXWAIT=120   wait (bounded) for the machine to be quiet before
#                      round 1 (QUIET_MAXWAIT=0 skips); every phase records the other load anyway
# Output: bench/results/auth-<UTC>/ (results.tsv, table.md, env.txt, wrk outputs, server logs)
# and the Markdown table on stdout. Exit status 3 when any phase saw a non-2xx or socket error.
# The token lives only in the scratch folder (removed at exit) and in wrk's environment.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DURATION=${DURATION:-15}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-5}
CONFIGS=${CONFIGS:-"A B C"}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/../target-bench}
KEEL_SERVE_ARGS=${KEEL_SERVE_ARGS---workers 1 --no-log-predictions}
PORT=${KEEL_HTTP_PORT:-18280}
GRPC_PORT=$((PORT + 1))
QUIET_THRESH=${QUIET_THRESH:-0.35}
QUIET_MAXWAIT=${QUIET_MAXWAIT:-120}
LUA=$HERE/v2_infer_strict.lua
TS=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/results/auth-$TS
WORK=$(mktemp -d /tmp/keel-auth-bench.XXXXXX)
chmod 700 "$WORK"
mkdir -p "$OUT"
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
for c in $CONFIGS; do
  case $c in A | B | C | D) ;; *) echo "unknown config $c in CONFIGS (use A, B, C, D)" >&2; exit 2 ;; esac
done

SERVER_PGID=""
cleanup() {
  if [[ -n $SERVER_PGID ]]; then
    kill -TERM -- "-$SERVER_PGID" 2> /dev/null || true
    sleep 1
    kill -KILL -- "-$SERVER_PGID" 2> /dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
port_free() { ! ss -ltnH "sport = :$1" | grep -q .; }

# ---------------------------------------------------------------- build, model, token, cert
KEEL=$CARGO_TARGET_DIR/release/keel
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "building keel release into $CARGO_TARGET_DIR (minutes on 2 cores)"
  (cd "$ROOT" && cargo build --release -p keel --no-default-features) > "$OUT/keel_build.log" 2>&1 \
    || { tail -30 "$OUT/keel_build.log" >&2
         echo "keel build failed; SKIP_BUILD=1 reuses $KEEL" >&2
         exit 1; }
fi
[[ -x $KEEL ]] || { echo "no keel binary at $KEEL (run without SKIP_BUILD=1 to build it)" >&2; exit 1; }
if [[ -z ${KEEL_ORT_LIB:-} ]]; then
  KEEL_ORT_LIB=$(ls "$ROOT"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2> /dev/null | head -1 || true)
  [[ -n $KEEL_ORT_LIB ]] || { echo "no onnxruntime in $ROOT/.venv: set KEEL_ORT_LIB to a libonnxruntime.so" >&2; exit 1; }
fi
export KEEL_ORT_LIB KEEL_AUTHOR=bench KEEL_LOG=${KEEL_LOG:-warn}

KH=$WORK/home
"$KEEL" --home "$KH" model push bc-lr "$ROOT/fixtures/models/bc-lr.onnx" --alias production > "$OUT/push.log" 2>&1 \
  || { cat "$OUT/push.log" >&2; exit 1; }
# an infer-scoped token for the bench's principal; its secret stays in $WORK
"$KEEL" --home "$KH" --json access token create bench --scope infer > "$WORK/token.json" 2> "$OUT/token.err" \
  || { cat "$OUT/token.err" >&2; exit 1; }
TOKEN=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$WORK/token.json")
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d.pop("token"); print(json.dumps(d))' "$WORK/token.json" > "$OUT/token_public.json"
printf 'Authorization: Bearer %s\n' "$TOKEN" > "$WORK/auth_header"   # for curl -H @file (not on a command line)

BODY=$OUT/request.json
python3 - "$ROOT/fixtures/models/expected.json" > "$BODY" << 'PY'
import json, sys
row = json.load(open(sys.argv[1]))["models"]["bc-lr"]["rows"][0]
print(json.dumps({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": row}]}))
PY

if [[ " $CONFIGS " == *" C "* ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=localhost" -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" > "$OUT/openssl.log" 2>&1 \
    || { cat "$OUT/openssl.log" >&2; exit 1; }
fi

CLK_TCK=$(getconf CLK_TCK)
NPROC=$(nproc)
{
  echo "date_utc=$TS"; echo "host=$(hostname)"; echo "kernel=$(uname -r)"
  echo "cpu=$(lscpu | sed -n 's/^Model name: *//p')"; echo "nproc=$NPROC"
  echo "keel_git=$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- crates Cargo.toml Cargo.lock || echo '+uncommitted')"
  echo "skip_build=${SKIP_BUILD:-0}"; echo "keel_binary=$KEEL ($(stat -c %y "$KEEL"))"
  echo "keel_ort_lib=$KEEL_ORT_LIB"; echo "keel_serve_args=$KEEL_SERVE_ARGS"
  echo "wrk=$(wrk -v 2>&1 | head -1)"; echo "openssl=$(openssl version)"
  echo "duration_s=$DURATION warmup_s=$WARMUP rounds=$ROUNDS configs=$CONFIGS"
  echo "load: wrk -t2 -c64 -d${DURATION}s --timeout 5s --latency -s v2_infer_strict.lua, bc-lr, body request.json"
  echo "A: --auth off, http, no credential"
  echo "B: --auth required, http, Authorization: Bearer <infer-scoped token> (token cache: keel's default, 1000 ms)"
  echo "C: --auth required, https (self-signed P-256 certificate), same token"
  echo "D: as B with --token-cache-ms 3600000"
  echo "uptime_at_start=$(uptime)"
} > "$OUT/env.txt"

# ---------------------------------------------------------------- one phase
busy_ticks() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }
group_ticks() {  # utime + stime of every process in group $1
  local s=0 p t
  for p in $(pgrep -g "$1" 2> /dev/null || true); do
    t=$(awk '{print $14 + $15}' "/proc/$p/stat" 2> /dev/null || echo 0)
    s=$((s + t))
  done
  echo "$s"
}
quiet_gate() {
  local t0 a b cores
  t0=$(date +%s)
  while :; do
    a=$(busy_ticks); sleep 5; b=$(busy_ticks)
    cores=$(python3 -c "print(round(($b - $a) / 5 / $CLK_TCK, 2))")
    if python3 -c "import sys; sys.exit(0 if $cores < $QUIET_THRESH else 1)"; then
      echo "quiet: busy_cores=$cores"; return
    fi
    if (($(date +%s) - t0 > QUIET_MAXWAIT)); then
      echo "NOT quiet after ${QUIET_MAXWAIT}s: busy_cores=$cores (proceeding)"; return
    fi
    sleep 10
  done
}

status=0
run_phase() {  # config round
  local cfg=$1 round=$2 scheme=http flags=(--auth off) auth="" curl_tls=() tag
  tag=${cfg}_$round
  case $cfg in
    B) flags=(--auth required); auth="Bearer $TOKEN" ;;
    D) flags=(--auth required --token-cache-ms 3600000); auth="Bearer $TOKEN" ;;
    C) flags=(--auth required --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem")
       auth="Bearer $TOKEN"; scheme=https; curl_tls=(--cacert "$WORK/cert.pem") ;;
  esac
  port_free "$PORT" && port_free "$GRPC_PORT" || { echo "port $PORT or $GRPC_PORT busy" >&2; exit 1; }
  # shellcheck disable=SC2086
  setsid "$KEEL" --home "$KH" serve --http-addr "127.0.0.1:$PORT" --grpc-addr "127.0.0.1:$GRPC_PORT" \
    "${flags[@]}" $KEEL_SERVE_ARGS > "$OUT/server_$tag.log" 2>&1 &
  SERVER_PGID=$!
  local base="$scheme://127.0.0.1:$PORT" ready=0
  for _ in $(seq 1 300); do
    curl -sf "${curl_tls[@]}" "$base/v2/health/ready" > /dev/null 2>&1 && { ready=1; break; }
    kill -0 "$SERVER_PGID" 2> /dev/null || break
    sleep 0.1
  done
  ((ready)) || { echo "keel ($cfg) did not become ready:" >&2; tail -20 "$OUT/server_$tag.log" >&2; exit 1; }
  local url="$base/v2/models/bc-lr/infer" code
  # the configuration is what it claims: without a credential, A answers 200 and B, C 401;
  # with the token, B and C answer 200
  code=$(curl -sS "${curl_tls[@]}" -o /dev/null -w '%{http_code}' -XPOST -H 'Content-Type: application/json' \
    --data-binary @"$BODY" "$url")
  local want=200
  [[ $cfg == A ]] || want=401
  [[ $code == "$want" ]] || { echo "config $cfg: request without a credential got HTTP $code, expected $want" >&2; exit 1; }
  if [[ $cfg != A ]]; then
    code=$(curl -sS "${curl_tls[@]}" -o "$OUT/sample_$tag.json" -w '%{http_code}' -XPOST -H @"$WORK/auth_header" \
      -H 'Content-Type: application/json' --data-binary @"$BODY" "$url")
    [[ $code == 200 ]] || { echo "config $cfg: request with the token got HTTP $code: $(head -c 300 "$OUT/sample_$tag.json")" >&2; exit 1; }
  fi
  if ((WARMUP > 0)); then
    AUTH=$auth BODY=$BODY timeout $((WARMUP + 30)) wrk -t2 -c64 -d"${WARMUP}s" --timeout 5s -s "$LUA" "$url" \
      > "$OUT/warmup_$tag.txt" 2>&1 || { echo "warm-up $tag INVALID: $(tail -2 "$OUT/warmup_$tag.txt")" >&2; status=3; }
  fi
  local load cpu0 busy0 cpu1 busy1 rc=0
  load=$(cut -d' ' -f1 /proc/loadavg)
  cpu0=$(group_ticks "$SERVER_PGID"); busy0=$(busy_ticks)
  AUTH=$auth BODY=$BODY /usr/bin/time -f "%U %S" -o "$OUT/wrk_$tag.time" \
    timeout $((DURATION + 40)) wrk -t2 -c64 -d"${DURATION}s" --timeout 5s --latency -s "$LUA" "$url" \
    > "$OUT/wrk_$tag.txt" 2> "$OUT/wrk_$tag.err" || rc=$?
  cpu1=$(group_ticks "$SERVER_PGID"); busy1=$(busy_ticks)
  kill -TERM -- "-$SERVER_PGID" 2> /dev/null || true
  wait "$SERVER_PGID" 2> /dev/null || true
  SERVER_PGID=""
  local line valid=yes
  line=$(grep '^RESULT' "$OUT/wrk_$tag.txt" || echo "RESULT missing")
  if ((rc != 0)); then
    echo "INVALID $tag (wrk exit $rc): $(cat "$OUT/wrk_$tag.err")" >&2
    valid=no; status=3
  fi
  # server CPU per request, and the other load: the machine's busy CPU minus keel's and wrk's
  python3 - "$cfg" "$round" "$valid" "$load" "$((cpu1 - cpu0))" "$((busy1 - busy0))" "$CLK_TCK" \
    "$(cat "$OUT/wrk_$tag.time" | tail -1)" "$line" << 'PY' | tee -a "$OUT/results.tsv" >&2
import sys
cfg, rnd, valid, load, cpu, busy, tck, wrk_cpu, line = sys.argv[1:10]
kv = dict(p.split("=", 1) for p in line.split()[1:] if "=" in p)
dur = float(kv.get("duration_s", "nan")); req = float(kv.get("requests", "nan"))
cpu_s, busy_s = int(cpu) / int(tck), int(busy) / int(tck)
wrk_s = sum(float(x) for x in wrk_cpu.split()) if wrk_cpu.strip() else float("nan")
print("\t".join([cfg, rnd, valid, kv.get("rps", "nan"), kv.get("p50_ms", "nan"), kv.get("p99_ms", "nan"),
                 f"{cpu_s * 1e6 / req:.2f}", f"{cpu_s / dur:.2f}", f"{wrk_s / dur:.2f}",
                 f"{(busy_s - cpu_s - wrk_s) / dur:.2f}", load]))
PY
}

printf 'config\tround\tvalid\treq_per_s\tp50_ms\tp99_ms\tkeel_cpu_us_per_req\tkeel_cores\twrk_cores\tother_cores\tloadavg1\n' > "$OUT/results.tsv"
if ((QUIET_MAXWAIT > 0)); then
  log "quiet gate (below $QUIET_THRESH busy cores, at most ${QUIET_MAXWAIT}s)"
  quiet_gate | tee "$OUT/quiet_gate.txt" >&2
fi
log "results in $OUT; $ROUNDS rounds of: $CONFIGS, ${DURATION}s each after ${WARMUP}s of warm-up"
for round in $(seq 1 "$ROUNDS"); do
  for cfg in $CONFIGS; do
    log "round $round config $cfg"
    run_phase "$cfg" "$round"
  done
done
echo "uptime_at_end=$(uptime)" >> "$OUT/env.txt"

# ---------------------------------------------------------------- table
python3 - "$OUT" << 'PY' | tee "$OUT/table.md"
import csv, statistics, sys
out = sys.argv[1]
rows = list(csv.DictReader(open(f"{out}/results.tsv"), delimiter="\t"))
env = dict(l.rstrip("\n").split("=", 1) for l in open(f"{out}/env.txt") if "=" in l)
names = {"A": "A: auth off", "B": "B: auth required, token", "C": "C: auth required, token, TLS",
         "D": "D: as B, token cached 1 h"}
cfgs = [c for c in "ABCD" if any(r["config"] == c for r in rows)]
f = lambda r, k: float(r[k])
print(f"Run auth-{env['date_utc']}: keel {env['keel_git']}, {env['cpu']}, {env['nproc']} cores; "
      f"`keel serve {env['keel_serve_args']}`, bc-lr one row; wrk -t2 -c64, {env['duration_s'].split()[0]} s per phase "
      f"after a warm-up; configs alternate every round\n")
print("| round | config | req/s | p50 ms | p99 ms | keel CPU us/req | other load (cores) | load avg (1 min) | valid |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['round']} | {r['config']} | {f(r, 'req_per_s'):,.0f} | {r['p50_ms']} | {r['p99_ms']} | "
          f"{r['keel_cpu_us_per_req']} | {r['other_cores']} | {r['loadavg1']} | {r['valid']} |")
med = {c: {k: statistics.median(f(r, k) for r in rows if r["config"] == c)
           for k in ("req_per_s", "p50_ms", "p99_ms", "keel_cpu_us_per_req")} for c in cfgs}
print()
print("| config | median req/s | vs A | per-round ratio to A | median p50 ms | median p99 ms | median keel CPU us/req |")
print("|---|---|---|---|---|---|---|")
for c in cfgs:
    ratio = per_round = "-"
    if c != "A" and "A" in med:
        ratio = f"{med[c]['req_per_s'] / med['A']['req_per_s']:.3f}"
        a = {r["round"]: f(r, "req_per_s") for r in rows if r["config"] == "A"}
        per_round = ", ".join(f"{f(r, 'req_per_s') / a[r['round']]:.3f}" for r in rows if r["config"] == c and r["round"] in a)
    m = med[c]
    print(f"| {names[c]} | {m['req_per_s']:,.0f} | {ratio} | {per_round} | {m['p50_ms']:.3f} | {m['p99_ms']:.3f} | "
          f"{m['keel_cpu_us_per_req']:.2f} |")
if "A" in med and "B" in med:
    ratio = med["B"]["req_per_s"] / med["A"]["req_per_s"]
    verdict = "met" if ratio >= 0.95 else "MISSED"
    print(f"\nTarget (issue 18): auth on within 5% of auth off at c=64: B/A = {ratio:.3f} "
          f"({100 * (ratio - 1):+.1f}%): {verdict}")
invalid = sum(r["valid"] != "yes" for r in rows)
if invalid:
    print(f"\n{invalid} phase(s) INVALID (a non-2xx or socket error): see wrk_*.err")
PY
log "results in $OUT"
exit $status
