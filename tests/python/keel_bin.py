"""What the interoperability tests share: the keel binary they drive (``KEEL_BIN``, else
``target/debug/keel``) and free loopback ports for the servers they start."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def keel_bin() -> Path:
    env = os.environ.get("KEEL_BIN")
    path = Path(env) if env else REPO_ROOT / "target" / "debug" / "keel"
    if not path.is_file():
        pytest.fail(
            f"keel binary not found at {path}: run `cargo build -p keel` (or set KEEL_BIN)",
            pytrace=False,
        )
    return path


def free_ports(n: int = 1) -> list[int]:
    """``n`` distinct free loopback ports (all sockets are held at once, so none repeats)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
