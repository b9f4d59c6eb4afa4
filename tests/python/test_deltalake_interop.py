"""Interoperability: the ``deltalake`` Python package (delta-rs' Python binding, not our code)
reads a table written by keel-lake unchanged.

``crates/keel-lake/examples/write_table.rs`` writes a partitioned table with two versions:
version 0 = 3 rows (region eu, us) from CSV, version 1 = 2 rows (region eu, apac) from JSON lines.
The example is built and run with ``cargo run -q -p keel-lake --example write_table -- PATH``
(honours ``CARGO_TARGET_DIR``). Nothing is skipped on a local folder: a missing tool or package
fails the test.

The same table is also written to an S3 bucket (``s3://keel-interop/lake/sales`` on moto's S3
server on loopback) and read back by ``deltalake`` with the standard S3 storage options; those
tests are skipped, saying why, only when moto is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 1800


@pytest.fixture(scope="module")
def table_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lake") / "sales"
    done = subprocess.run(
        ["cargo", "run", "-q", "-p", "keel-lake", "--example", "write_table", "--", str(path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
    )
    assert done.returncode == 0, f"write_table failed:\n{done.stdout}\n{done.stderr}"
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"versions": [0, 1], "rows": 5}
    return path


def test_latest_version_schema_and_rows(table_path: Path) -> None:
    dt = DeltaTable(str(table_path))
    assert dt.version() == 1
    assert dt.metadata().partition_columns == ["region"]
    table = dt.to_pyarrow_table()
    assert table.num_rows == 5
    types = {f.name: f.type for f in table.schema}
    assert types == {"id": pa.int64(), "region": pa.string(), "amount": pa.float64(), "label": pa.string()}
    rows = sorted(table.to_pylist(), key=lambda r: r["id"])
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["region"] for r in rows] == ["eu", "us", "eu", "eu", "apac"]
    assert [r["amount"] for r in rows] == [10.5, 20.25, 30.0, 1.5, 2.5]
    assert [r["label"] for r in rows] == ["a", "b", "c", "d", "e"]


def test_partition_values_on_disk_and_in_the_log(table_path: Path) -> None:
    dt = DeltaTable(str(table_path))
    dirs = sorted(p.name for p in table_path.iterdir() if p.is_dir() and p.name != "_delta_log")
    assert dirs == ["region=apac", "region=eu", "region=us"]
    actions = pa.table(dt.get_add_actions(flatten=True))
    regions = sorted(set(actions.column("partition.region").to_pylist()))
    assert regions == ["apac", "eu", "us"]


def test_time_travel_to_version_zero(table_path: Path) -> None:
    dt = DeltaTable(str(table_path))
    dt.load_as_version(0)
    assert dt.version() == 0
    table = dt.to_pyarrow_table()
    assert table.num_rows == 3
    assert sorted(table.column("id").to_pylist()) == [1, 2, 3]
    assert sorted(set(table.column("region").to_pylist())) == ["eu", "us"]
    history = DeltaTable(str(table_path)).history()
    assert [h["version"] for h in history] == [1, 0]
    assert all(h["operation"] == "WRITE" for h in history)


# --- the same table in an S3 bucket (moto's S3 server on loopback) ---------------------------

S3_KEYS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_REGION": "us-east-1",
    "AWS_ALLOW_HTTP": "true",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    if importlib.util.find_spec("moto") is None:
        pytest.skip("moto is not installed (scripts/python-env dev installs it)")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                # S3 CreateBucket is a PUT on the bucket path.
                request = urllib.request.Request(f"{endpoint}/keel-interop", method="PUT")
                with urllib.request.urlopen(request, timeout=5) as response:
                    assert response.status == 200
                break
            except OSError:
                assert time.monotonic() < deadline, "moto did not start within 30 s"
                time.sleep(0.1)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def s3_table(moto_endpoint: str) -> tuple[str, dict[str, str]]:
    uri = "s3://keel-interop/lake/sales"
    env = {**os.environ, **S3_KEYS, "AWS_ENDPOINT_URL": moto_endpoint}
    done = subprocess.run(
        ["cargo", "run", "-q", "-p", "keel-lake", "--example", "write_table", "--", uri],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        env=env,
    )
    assert done.returncode == 0, f"write_table failed:\n{done.stdout}\n{done.stderr}"
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"versions": [0, 1], "rows": 5}
    # What any S3 client of deltalake passes: endpoint, keys, region, plain http on loopback.
    # Reading needs no locking provider or unsafe-rename option (those are for writers).
    options = {**S3_KEYS, "AWS_ENDPOINT_URL": moto_endpoint}
    return uri, options


def test_s3_latest_version_partitions_and_rows(s3_table: tuple[str, dict[str, str]]) -> None:
    uri, options = s3_table
    dt = DeltaTable(uri, storage_options=options)
    assert dt.version() == 1
    assert dt.metadata().partition_columns == ["region"]
    table = dt.to_pyarrow_table()
    rows = sorted(table.to_pylist(), key=lambda r: r["id"])
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["region"] for r in rows] == ["eu", "us", "eu", "eu", "apac"]
    assert [r["amount"] for r in rows] == [10.5, 20.25, 30.0, 1.5, 2.5]
    actions = pa.table(dt.get_add_actions(flatten=True))
    assert sorted(set(actions.column("partition.region").to_pylist())) == ["apac", "eu", "us"]
    assert all(p.startswith("region=") for p in actions.column("path").to_pylist())


def test_s3_time_travel_and_history(s3_table: tuple[str, dict[str, str]]) -> None:
    uri, options = s3_table
    dt = DeltaTable(uri, storage_options=options, version=0)
    assert dt.version() == 0
    assert sorted(dt.to_pyarrow_table().column("id").to_pylist()) == [1, 2, 3]
    history = DeltaTable(uri, storage_options=options).history()
    assert [h["version"] for h in history] == [1, 0]
    assert all(h["operation"] == "WRITE" for h in history)
