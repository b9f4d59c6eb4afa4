#!/usr/bin/env bash
# The one wrk driver used for BOTH servers (keel, and MLServer via the kit's run_mlserver.sh,
# whose scratch copy gets this file as its run_wrk.sh). Same interface as the kit's run_wrk.sh:
#   wrk_phases.sh HOST:PORT MODEL_NAME OUTDIR [DURATION_S] [CONCURRENCIES]
# Environment:
#   DURATION      seconds per phase when the 4th argument is absent (default 20)
#   CONCS         concurrencies when the 5th argument is absent (default "1 8 64")
#   WRK_THREADS_HIGH  wrk threads for c >= 64 (default 2); c < 64 uses -t1
#   WARMUP        seconds of unreported c=8 warmup (default 5; 0 skips it)
#   BODY          request body (default: request_1row.json beside this script)
#   LUA           wrk script (default: v2_infer_strict.lua beside this script)
# Writes per phase: wrk_cC.txt (wrk output), wrk_cC.time (client CPU), summary.txt
# ("c=C RESULT ..."), timeline.txt ("== EPOCH start|end c=C", as the kit's cpu_per_phase.py
# reads it). Exits 3 if any phase saw a non-2xx response or a socket error.
set -euo pipefail
HP=$1; MODEL=$2; OUT=$3
DUR=${4:-${DURATION:-20}}; DUR=${DUR%s}
CONCS=${5:-${CONCS:-"1 8 64"}}
case "$HP" in 127.0.0.1:*|localhost:*) ;; *) echo "refusing non-loopback target $HP" >&2; exit 2;; esac
HERE=$(cd "$(dirname "$0")" && pwd)
export BODY=${BODY:-$HERE/request_1row.json}
LUA=${LUA:-$HERE/v2_infer_strict.lua}
HIGH_T=${WRK_THREADS_HIGH:-2}
WARMUP=${WARMUP:-5}
URL="http://$HP/v2/models/$MODEL/infer"
mkdir -p "$OUT"
threads_for() { if (( $1 >= 64 )); then echo "$HIGH_T"; else echo 1; fi; }

for i in $(seq 1 60); do curl -sf "http://$HP/v2/health/ready" >/dev/null && break; sleep 1; done
curl -sf "http://$HP/v2/models/$MODEL/ready" >/dev/null || { echo "model $MODEL not ready on $HP" >&2; exit 1; }
code=$(curl -sS -o "$OUT/sample_response.json" -w '%{http_code}' -XPOST -H 'Content-Type: application/json' \
  "$URL" --data-binary @"$BODY")
echo "sample response ($code): $(head -c 400 "$OUT/sample_response.json")"
[[ $code == 2?? ]] || { echo "INVALID: sample request got HTTP $code" >&2; exit 3; }
{ echo "body=$BODY"; echo "lua=$LUA"; echo "duration_s=$DUR"; echo "concurrencies=$CONCS";
  for c in $CONCS; do echo "wrk_c$c=wrk -t$(threads_for "$c") -c$c -d${DUR}s --timeout 5s --latency -s $(basename "$LUA") $URL"; done; } > "$OUT/wrk_settings.txt"

status=0
if (( WARMUP > 0 )); then
  timeout $((WARMUP + 30)) wrk -t1 -c8 -d"${WARMUP}s" --timeout 5s -s "$LUA" "$URL" > "$OUT/warmup.txt" 2>&1 \
    || { echo "warmup FAILED: $(tail -2 "$OUT/warmup.txt")" >&2; status=3; }
fi
for c in $CONCS; do
  t=$(threads_for "$c")
  echo "== $(date +%s.%N) start c=$c" | tee -a "$OUT/timeline.txt"
  rc=0
  /usr/bin/time -f "wrk_client_cpu_s user=%U sys=%S maxrss_kB=%M" -o "$OUT/wrk_c$c.time" \
    timeout $((DUR + 40)) wrk -t"$t" -c"$c" -d"${DUR}s" --timeout 5s --latency -s "$LUA" "$URL" \
    > "$OUT/wrk_c$c.txt" 2> "$OUT/wrk_c$c.err" || rc=$?
  echo "== $(date +%s.%N) end c=$c" | tee -a "$OUT/timeline.txt"
  line=$(grep '^RESULT' "$OUT/wrk_c$c.txt" || echo "RESULT missing")
  if (( rc != 0 )); then
    echo "INVALID c=$c (wrk exit $rc): $(cat "$OUT/wrk_c$c.err")" >&2
    line="$line INVALID(wrk_exit=$rc)"; status=3
  fi
  echo "c=$c threads=$t $line" | tee -a "$OUT/summary.txt"
done
exit $status
