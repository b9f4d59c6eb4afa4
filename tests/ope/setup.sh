#!/usr/bin/env bash
# Creates the Python environment of crosscheck.py. Idempotent.
#
#   bash tests/ope/setup.sh        tests/ope/.venv: obp 0.5.7 with all its requirements (torch
#                                  included), a Python 3.10 (PATH or pyenv) with the pins of
#                                  requirements.txt; else python3 with --ignore-requires-python
#   bash tests/ope/setup.sh --ci   tests/ope/.venv-ci: python3 (3.11), requirements-ci.txt, then
#                                  obp 0.5.7 with --no-deps (no torch): what scripts/test runs,
#                                  about 40 s the first time, nothing when its stamp matches
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if [ "${1:-}" = "--ci" ]; then
  venv="$here/.venv-ci"
  want="$(cat "$here/requirements-ci.txt" | sha256sum | cut -d' ' -f1) obp==0.5.7"
  stamp="$venv/.keel-ci.stamp"
  if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "ok: $venv up to date"; exit 0
  fi
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --only-binary :all: -r "$here/requirements-ci.txt"
  # obp 0.5.7 is published as a source package only; it ships the Open Bandit Dataset sample
  # (all, men, women) under obp/dataset/obd.
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --ignore-requires-python obp==0.5.7
  echo "$want" > "$stamp"
  echo "ok: $venv (obp 0.5.7 without torch)"
  exit 0
fi

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
