#!/usr/bin/env bash
# decide+feedback pairs/s through the Python client (bench/client/load.py) against a fresh
# `keel serve` on loopback: raw `requests` single calls (the anchor), the client's single
# calls, the client's batch calls. See bench/README.md ("client/").
#
#   bench/client/run.sh
#
# Env: KEEL_BIN (default target/release/keel if built, else target/debug/keel), DURATION (10 s
# per mode), BATCH (1000), NO_FSYNC=1 (acknowledge once the OS has the record), PYTHON
# (default .venv/bin/python, which `scripts/python-env dev` makes with keel-client installed),
# KEEL_SERVE_ARGS (more `keel serve` flags).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ -z "${KEEL_BIN:-}" ]]; then
  if [[ -x "$ROOT/target/release/keel" ]]; then KEEL_BIN="$ROOT/target/release/keel"; else KEEL_BIN="$ROOT/target/debug/keel"; fi
fi
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
DURATION="${DURATION:-10}"
BATCH="${BATCH:-1000}"
[[ -x "$KEEL_BIN" ]] || { echo "no keel binary at $KEEL_BIN: cargo build -p keel (--release)" >&2; exit 1; }
"$PYTHON" -c 'import keel_client' 2>/dev/null || { echo "keel_client not importable by $PYTHON: scripts/python-env dev" >&2; exit 1; }

HOME_DIR="$(mktemp -d)"
SERVER_PID=""
cleanup() { [[ -n "$SERVER_PID" ]] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null; rm -rf "$HOME_DIR"; }
trap cleanup EXIT
export KEEL_HOME="$HOME_DIR" KEEL_AUTHOR=bench KEEL_LOG=warn

cat > "$HOME_DIR/spec.json" <<'JSON'
{"variants": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
 "policy": {"type": "thompson_beta"},
 "context": [{"type": "numeric", "name": "x"}],
 "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 3600},
 "seed": 7}
JSON
"$KEEL_BIN" deployment apply promo -f "$HOME_DIR/spec.json" >/dev/null
TOKEN="$("$KEEL_BIN" --json access token create bench --scope decide | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["token"])')"
PORT="$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
GPORT="$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
FSYNC_FLAG=()
[[ "${NO_FSYNC:-0}" == 1 ]] && FSYNC_FLAG=(--no-fsync)
# shellcheck disable=SC2086
"$KEEL_BIN" serve --http-addr "127.0.0.1:$PORT" --grpc-addr "127.0.0.1:$GPORT" --auth required \
  "${FSYNC_FLAG[@]}" ${KEEL_SERVE_ARGS:-} >"$HOME_DIR/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$PORT/v2/health/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$PORT/v2/health/ready" >/dev/null || { cat "$HOME_DIR/server.log" >&2; exit 1; }

PROFILE=debug; [[ "$KEEL_BIN" == */release/* ]] && PROFILE=release
echo "keel: $KEEL_BIN ($PROFILE), fsync: $([[ "${NO_FSYNC:-0}" == 1 ]] && echo off || echo on), prediction log: on (default)"
echo "machine: $(nproc) cores, $(uname -sr), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$PYTHON" "$ROOT/bench/client/load.py" "http://127.0.0.1:$PORT" promo --token "$TOKEN" \
  --duration "$DURATION" --batch "$BATCH"
