#!/usr/bin/env bash
# keel vs MLServer: V2 REST load benchmark on the same models, one server after the other.
# usage: bench/serving/run.sh            (from anywhere; see bench/README.md)
# Environment (all optional):
#   DURATION=20          seconds per wrk phase (c=1, 8, 64), same for both servers
#   WRK_THREADS_HIGH=2   wrk threads at c=64 (c=1 and c=8 use -t1)
#   KIT_SRC=../shared/bench/serving   the shared MLServer kit (copied, never written)
#   BENCH_CACHE=/tmp/keel-bench-cache    where the kit's venv is kept, keyed by its lock file
#   CARGO_TARGET_DIR=../target-bench     keel release build; SKIP_BUILD=1 reuses the binary
#   KEEL_ORT_LIB=...     libonnxruntime for keel (default: the repository's .venv, else the kit venv's)
#   KEEL_SERVE_ARGS="--workers 1"   extra `keel serve` flags. One serving thread by default: wrk
#                        shares this 2-core machine, and with one thread per core (keel's own
#                        default) a preempted thread waits out a scheduler slice (bench/README.md:
#                        p99 at c=8 2.0-2.7 ms with 2 threads vs 0.31 ms with 1; c=64 +20% req/s).
#                        KEEL_SERVE_ARGS="" runs keel's defaults.
#   KEEL_HTTP_PORT=18080 KEEL_GRPC_PORT=18081   (MLServer uses the kit's fixed 8080-8082)
#   QUIET_THRESH=0.35 QUIET_MAXWAIT=240  quiet gate before each server (kit's wait_quiet.sh)
#   MLSERVER_BOTH=1      also run one MLServer serving both models (memory under load, c=64)
#   KEEP_SCRATCH=1       keep the scratch folder
# Output: bench/results/<UTC timestamp>/ (results.tsv, results.json, table.md, raw files) and
# the Markdown table on stdout. Exit status 3 when any wrk phase saw a non-2xx or socket error.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
KIT_SRC=${KIT_SRC:-$ROOT/../shared/bench/serving}
export DURATION=${DURATION:-20}
export WRK_THREADS_HIGH=${WRK_THREADS_HIGH:-2}
export CONCS="1 8 64"
CACHE=${BENCH_CACHE:-/tmp/keel-bench-cache}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/../target-bench}
KEEL_HTTP_PORT=${KEEL_HTTP_PORT:-18080}
KEEL_GRPC_PORT=${KEEL_GRPC_PORT:-18081}
KEEL_SERVE_ARGS=${KEEL_SERVE_ARGS---workers 1}
export THRESH=${QUIET_THRESH:-0.35} MAXWAIT=${QUIET_MAXWAIT:-240}
MLSERVER_BOTH=${MLSERVER_BOTH:-1}
TS=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/results/$TS
WORK=$(mktemp -d /tmp/keel-bench.XXXXXX)
KIT=$WORK/serving
mkdir -p "$OUT" "$CACHE"
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
# seconds a sampler may run: startup + warmups + phases, generously
SAMPLER_MAX=$((300 + 8 * DURATION))

KEEL_PGID=""; BOTH_PGID=""
cleanup() {
  for g in $KEEL_PGID $BOTH_PGID; do kill -TERM -- "-$g" 2>/dev/null || true; done
  # a kit MLServer left behind by an interrupted run_mlserver.sh: the group leading port 8080
  local pid
  pid=$(ss -ltnpH 'sport = :8080' 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)
  if [[ -n $pid ]] && grep -q "$KIT" "/proc/$pid/cmdline" 2>/dev/null; then
    kill -TERM -- "-$(ps -o pgid= "$pid" | tr -d ' ')" 2>/dev/null || true
  fi
  [[ ${KEEP_SCRATCH:-0} == 1 ]] || rm -rf "$WORK"
}
trap cleanup EXIT
port_free() { ! ss -ltnH "sport = :$1" | grep -q .; }
quiet_gate() { log "quiet gate ($1)"; "$KIT/wait_quiet.sh" | tee -a "$OUT/quiet_gates.txt" | sed "s/^/  /" >&2; sed -i "\$s/^/$1: /" "$OUT/quiet_gates.txt"; }

# ---------------------------------------------------------------- (a) kit, venv, models
log "scratch $WORK, results $OUT"
cp -r "$KIT_SRC" "$WORK/" && chmod -R u+w "$KIT"     # the shared kit is read-only
HASH=$(sha256sum "$KIT/requirements.lock.txt" | cut -c1-12)
export VENV=$CACHE/venv-$HASH
if [[ ! -f $VENV/.complete ]]; then
  log "creating kit venv $VENV (requirements hash $HASH)"
  rm -rf "$VENV"; python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -r "$KIT/requirements.lock.txt" > "$OUT/pip.log" 2>&1 \
    || { tail -20 "$OUT/pip.log" >&2; exit 1; }
  touch "$VENV/.complete"
else
  log "reusing kit venv $VENV"
fi
(cd "$KIT" && "$VENV/bin/python" train.py) > "$OUT/train.log" 2>&1 || { cat "$OUT/train.log" >&2; exit 1; }
# One wrk driver and one wrk script for both servers: the kit's run_mlserver.sh calls
# $HERE/run_wrk.sh, so its scratch copy gets ours (DURATION, -t2 at c=64, strict non-2xx check).
cp "$HERE/wrk_phases.sh" "$KIT/run_wrk.sh"; cp "$HERE/v2_infer_strict.lua" "$HERE/pss_sampler.py" "$KIT/"
chmod +x "$KIT/run_wrk.sh"
# run_mlserver.sh: sampler bound 200 s -> SAMPLER_MAX (DURATION > ~40 s would outlive 200 s);
# and a PSS sampler beside the kit's RSS sampler.
sed -i -e "s|\"\$RES/rss.tsv\" 200 0.25 &|\"\$RES/rss.tsv\" $SAMPLER_MAX 0.25 \&|" \
  -e "/^SAMP=\\\$!\$/a python3 \"\$HERE/pss_sampler.py\" \"\$SPID\" \"\$RES/pss.tsv\" $SAMPLER_MAX 1 \&" "$KIT/run_mlserver.sh"
grep -q "rss.tsv\" $SAMPLER_MAX 0.25" "$KIT/run_mlserver.sh" || { echo "could not patch run_mlserver.sh (kit changed?)" >&2; exit 1; }
grep -q pss_sampler "$KIT/run_mlserver.sh" || { echo "could not patch run_mlserver.sh (kit changed?)" >&2; exit 1; }
# MLServer 1.7.1 sometimes hangs on SIGTERM ("Waiting for background tasks to complete"), and
# the kit then waits for its sampler's time bound: SIGKILL the group after a 10 s grace.
sed -i -e 's|^wait "\$SAMP" \|\| true$|( sleep 10; kill -0 -- -"$SPID" 2>/dev/null \&\& echo "MLServer ignored SIGTERM for 10 s: SIGKILL" >\&2 \&\& kill -KILL -- -"$SPID" 2>/dev/null ) \& \nwait "$SAMP" \|\| true|' "$KIT/run_mlserver.sh"
grep -q 'sleep 10; kill -0' "$KIT/run_mlserver.sh" || { echo "could not patch run_mlserver.sh (kit changed?)" >&2; exit 1; }
cp "$KIT/run_mlserver.sh" "$OUT/run_mlserver.patched.sh"

# ---------------------------------------------------------------- (b) keel
KEEL=$CARGO_TARGET_DIR/release/keel
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "building keel release into $CARGO_TARGET_DIR (minutes on 2 cores)"
  (cd "$ROOT" && cargo build --release -p keel --no-default-features) > "$OUT/keel_build.log" 2>&1 \
    || { tail -30 "$OUT/keel_build.log" >&2
         echo "keel build failed (a workspace mid-edit by someone else?); SKIP_BUILD=1 reuses $CARGO_TARGET_DIR/release/keel" >&2
         exit 1; }
fi
[[ -x $KEEL ]] || { echo "no keel binary at $KEEL" >&2; exit 1; }
if [[ -z ${KEEL_ORT_LIB:-} ]]; then
  KEEL_ORT_LIB=$(ls "$ROOT"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -1 || true)
  [[ -n $KEEL_ORT_LIB ]] || KEEL_ORT_LIB=$(ls "$VENV"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -1)
fi
export KEEL_ORT_LIB KEEL_AUTHOR=bench
{
  echo "date_utc=$TS"; echo "host=$(hostname)"; echo "kernel=$(uname -r)"
  echo "cpu=$(lscpu | sed -n 's/^Model name: *//p')"; echo "nproc=$(nproc)"
  echo "mem_total=$(free -m | awk '/^Mem:/{print $2}') MB"
  # the work tree as the run starts (the binary is built from it unless SKIP_BUILD=1: see its time)
  echo "keel_git=$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- crates Cargo.toml Cargo.lock || echo '+uncommitted')"
  echo "skip_build=${SKIP_BUILD:-0}"; echo "keel_serve_args=$KEEL_SERVE_ARGS"
  echo "keel_binary=$KEEL ($(stat -c %y "$KEEL"))"; echo "keel_ort_lib=$KEEL_ORT_LIB"
  echo "mlserver=$("$VENV/bin/pip" show mlserver 2>/dev/null | sed -n 's/^Version: //p')"
  echo "kit_onnxruntime=$("$VENV/bin/python" -c 'import onnxruntime;print(onnxruntime.__version__)')"
  echo "wrk=$(wrk -v 2>&1 | head -1)"; echo "duration_s=$DURATION"; echo "wrk_threads_c64=$WRK_THREADS_HIGH"
  echo "models: kit train.py output (models/lr.onnx, rf.onnx for keel; models/{lr,rf}/model.joblib for MLServer)"
  sha256sum "$KIT"/models/*.onnx | sed 's|  .*/| |'
} > "$OUT/env.txt"

KH=$WORK/keel-home; KR=$OUT/keel; mkdir -p "$KR"
for m in lr rf; do
  "$KEEL" --home "$KH" model push "bc-$m" "$KIT/models/$m.onnx" --alias production >> "$KR/push.log" 2>&1 \
    || { cat "$KR/push.log" >&2; exit 1; }
done
port_free "$KEEL_HTTP_PORT" && port_free "$KEEL_GRPC_PORT" || { echo "keel ports busy" >&2; exit 1; }
quiet_gate keel
log "keel: serving bc-lr and bc-rf on 127.0.0.1:$KEEL_HTTP_PORT"
T0=$(date +%s.%N)
# shellcheck disable=SC2086
setsid "$KEEL" --home "$KH" serve --http-addr "127.0.0.1:$KEEL_HTTP_PORT" --grpc-addr "127.0.0.1:$KEEL_GRPC_PORT" $KEEL_SERVE_ARGS \
  > "$KR/server.log" 2>&1 &
KEEL_PGID=$!
python3 "$KIT/proc_sampler.py" "$KEEL_PGID" "$KR/rss.tsv" "$SAMPLER_MAX" 0.25 &
S1=$!
python3 "$HERE/pss_sampler.py" "$KEEL_PGID" "$KR/pss.tsv" "$SAMPLER_MAX" 1 &
S2=$!
for i in $(seq 1 300); do curl -sf "http://127.0.0.1:$KEEL_HTTP_PORT/v2/health/ready" >/dev/null && break; sleep 0.1; done
echo "ready_after_s=$(python3 -c "import time;print(round(time.time()-$T0,2))")" | tee "$KR/startup.txt" >&2
for m in lr rf; do
  BODY=$KIT/request_1row_onnx_input.json "$HERE/wrk_phases.sh" "127.0.0.1:$KEEL_HTTP_PORT" "bc-$m" "$KR/$m" >&2 || true
done
curl -s "http://127.0.0.1:$KEEL_HTTP_PORT/metrics" > "$KR/metrics.txt" || true
kill -TERM -- "-$KEEL_PGID" || true
wait "$S1" "$S2" || true
wait "$KEEL_PGID" 2>/dev/null || true
KEEL_PGID=""
for m in lr rf; do cp "$KR/rss.tsv" "$KR/$m/rss.tsv"; "$KIT/cpu_per_phase.py" "$KR/$m" > "$KR/$m/cpu_per_phase.txt" 2>&1 || true; done
log "keel done: $(tail -1 "$KR/rss.tsv")"

# ---------------------------------------------------------------- (c) MLServer (kit), one model per server
for m in lr rf; do
  for p in 8080 8081 8082; do port_free $p || { echo "port $p busy: MLServer cannot start" >&2; exit 1; }; done
  quiet_gate "mlserver_$m"
  log "MLServer: kit run_mlserver.sh $m"
  (cd "$KIT" && ./run_mlserver.sh "$m" "$OUT/mlserver_$m") >&2
  "$KIT/cpu_per_phase.py" "$OUT/mlserver_$m" > "$OUT/mlserver_$m/cpu_per_phase.txt" 2>&1 || true
  sleep 1
done

# MLServer serving BOTH models in one server (what keel does), for memory under load: c=64 only.
if [[ $MLSERVER_BOTH == 1 ]]; then
  for p in 8080 8081 8082; do port_free $p || { echo "port $p busy: MLServer cannot start" >&2; exit 1; }; done
  quiet_gate mlserver_both
  RB=$OUT/mlserver_both; mkdir -p "$RB"
  log "MLServer: one server with both models (mlserver start models/), c=64 on each"
  MLSERVER_HOST=127.0.0.1 setsid "$VENV/bin/mlserver" start "$KIT/models" > "$RB/server.log" 2>&1 &
  BOTH_PGID=$!
  python3 "$KIT/proc_sampler.py" "$BOTH_PGID" "$RB/rss.tsv" "$SAMPLER_MAX" 0.25 &
  S1=$!
  python3 "$HERE/pss_sampler.py" "$BOTH_PGID" "$RB/pss.tsv" "$SAMPLER_MAX" 1 &
  S2=$!
  for m in lr rf; do
    for i in $(seq 1 600); do curl -sf "http://127.0.0.1:8080/v2/models/bc-$m/ready" >/dev/null && break; sleep 0.1; done
  done
  for m in lr rf; do
    "$KIT/run_wrk.sh" 127.0.0.1:8080 "bc-$m" "$RB/$m" "$DURATION" 64 >&2 || true
  done
  kill -TERM -- "-$BOTH_PGID" || true
  ( sleep 10; kill -0 -- "-$BOTH_PGID" 2>/dev/null && echo "MLServer ignored SIGTERM for 10 s: SIGKILL" >&2 \
      && kill -KILL -- "-$BOTH_PGID" 2>/dev/null ) &
  wait "$S1" "$S2" || true
  sleep 2; kill -KILL -- "-$BOTH_PGID" 2>/dev/null || true
  BOTH_PGID=""
fi

# ---------------------------------------------------------------- (d) the model's own compute
quiet_gate onnx_floor
log "onnx_floor.py (onnxruntime per row)"
(cd "$KIT" && "$VENV/bin/python" onnx_floor.py) > "$OUT/onnx_floor.json" 2> "$OUT/onnx_floor.err"

# ---------------------------------------------------------------- (e) results
cp "$KIT/request_1row.json" "$KIT/request_1row_onnx_input.json" "$OUT/"
rc=0
python3 "$HERE/analyse.py" "$OUT" || rc=$?
log "results in $OUT"
exit $rc
