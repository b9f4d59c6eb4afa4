"""The keel binary the interoperability tests drive: ``KEEL_BIN``, else ``target/debug/keel``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def keel_bin() -> Path:
    env = os.environ.get("KEEL_BIN")
    path = Path(env) if env else REPO_ROOT / "target" / "debug" / "keel"
    if not path.is_file():
        pytest.fail(f"keel binary not found at {path}: run `cargo build -p keel`", pytrace=False)
    return path
