"""Interoperability: the ``deltalake`` Python package (delta-rs' Python binding, not our code)
reads a table written by ``keel data ingest`` unchanged.

The fixture runs the real ``keel`` binary (``KEEL_BIN``, default ``target/debug/keel``) twice on
one table partitioned by ``region``: version 0 = 3 rows (region eu, us) from CSV, version 1 = 2
rows (region eu, apac) from JSON lines. Nothing is skipped on a local folder: a missing binary
or package fails the test.

The same table is also written to an S3 bucket (``keel --lake s3://keel-interop/lake``, moto's S3
server on loopback) and read back by ``deltalake`` with the standard S3 storage options; those
tests are skipped, saying why, only when moto is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from keel_bin import free_ports, keel_bin  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]

V0_CSV = "id,region,amount,label\n1,eu,10.5,a\n2,us,20.25,b\n3,eu,30.0,c\n"
V1_JSONL = (
    '{"id":4,"region":"eu","amount":1.5,"label":"d"}\n'
    '{"id":5,"region":"apac","amount":2.5,"label":"e"}\n'
)




def _write_sales(scratch: Path, lake_args: list[str], env: dict[str, str]) -> None:
    """``keel data ingest`` twice into the table ``sales``: versions 0 and 1, 5 rows."""
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "v0.csv").write_text(V0_CSV)
    (scratch / "v1.jsonl").write_text(V1_JSONL)
    base = [str(keel_bin()), "--home", str(scratch / "home"), *lake_args, "--json", "data", "ingest"]
    env = {**env, "KEEL_AUTHOR": "pytest"}
    versions, rows = [], 0
    for name in ("v0.csv", "v1.jsonl"):
        done = subprocess.run(
            [*base, str(scratch / name), "--table", "sales", "--partition-by", "region"],
            capture_output=True, text=True, timeout=120, env=env,
        )
        assert done.returncode == 0, f"keel data ingest {name} failed:\n{done.stdout}\n{done.stderr}"
        report = json.loads(done.stdout)
        versions.append(report["version"])
        rows += report["rows"]
    assert (versions, rows) == ([0, 1], 5)


@pytest.fixture(scope="module")
def table_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scratch = tmp_path_factory.mktemp("lake")
    _write_sales(scratch, [], dict(os.environ))
    return scratch / "home" / "lake" / "sales"


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


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    if importlib.util.find_spec("moto") is None:
        pytest.skip("moto is not installed (scripts/python-env dev installs it)")
    (port,) = free_ports(1)
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
def s3_table(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    uri = "s3://keel-interop/lake/sales"
    env = {**os.environ, **S3_KEYS, "AWS_ENDPOINT_URL": moto_endpoint}
    _write_sales(tmp_path_factory.mktemp("s3lake"), ["--lake", "s3://keel-interop/lake"], env)
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
