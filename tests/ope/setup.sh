#!/usr/bin/env bash
# Creates tests/ope/.venv with obp 0.5.7 for crosscheck.py. Idempotent.
# obp 0.5.7 declares Python < 3.11: a Python 3.10 is used when one is found (PATH or pyenv),
# with the pins of requirements.txt; otherwise python3 with --ignore-requires-python.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import obp" 2>/dev/null; then
  echo "ok: $venv already has obp"; exit 0
fi
py=""
for cand in python3.10 "$(pyenv root 2>/dev/null)/versions/"3.10*/bin/python; do
  if [ -n "$cand" ] && "$cand" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
    py="$cand"; break
  fi
done
if [ -n "$py" ]; then
  "$py" -m venv "$venv"
  "$venv/bin/pip" install --quiet -r "$here/requirements.txt"
else
  echo "no Python 3.10 found; using python3 with --ignore-requires-python (pins not applied)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --ignore-requires-python obp==0.5.7 "matplotlib<3.9"
fi
"$venv/bin/python" -c "import obp; print('ok: obp', obp.__version__)"
