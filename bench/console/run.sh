#!/usr/bin/env bash
# Console page load times from a warm `keel serve` holding DECISIONS logged decisions, and the
# plan/apply round trip of a folder of 20 deployments (bench/console/pages.py; figures and
# method in bench/README.md, "console/").
#
#   bench/console/run.sh
#
# Env: KEEL_BIN (default target/release/keel if built, else target/debug/keel), DECISIONS
# (1000000), BATCH (5000 per decide:batch call), RUNS (5 timed loads per page), PYTHON (default
# .venv/bin/python: `scripts/python-env dev`), KEEL_CHROMIUM (/usr/bin/chromium:
# scripts/ensure-chromium), KEEP_HOME=1 keeps the scratch home.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
if [[ -z "${KEEL_BIN:-}" ]]; then
  if [[ -x "$TARGET/release/keel" ]]; then KEEL_BIN="$TARGET/release/keel"; else KEEL_BIN="$TARGET/debug/keel"; fi
fi
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$KEEL_BIN" ]] || { echo "no keel binary at $KEEL_BIN: cargo build -p keel (--release)" >&2; exit 1; }
"$PYTHON" -c 'import playwright, requests' 2>/dev/null || { echo "playwright/requests not importable by $PYTHON: scripts/python-env dev" >&2; exit 1; }

# The cargo profile is the name of the folder the binary was built into (debug, release, bench-lake).
PROFILE=$(basename "$(dirname "$KEEL_BIN")")
echo "keel: $KEEL_BIN ($PROFILE), commit $(git -C "$ROOT" rev-parse --short HEAD)"
echo "machine: $(nproc) cores, $(uname -sr), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
exec "$PYTHON" "$ROOT/bench/console/pages.py" --bin "$KEEL_BIN" --decisions "${DECISIONS:-1000000}" \
  --batch "${BATCH:-5000}" --runs "${RUNS:-5}"
