"""Interoperability: the ``deltalake`` Python package (delta-rs' Python binding, not our code)
reads a table written by keel-lake unchanged.

``crates/keel-lake/examples/write_table.rs`` writes a partitioned table with two versions:
version 0 = 3 rows (region eu, us) from CSV, version 1 = 2 rows (region eu, apac) from JSON lines.
The example is built and run with ``cargo run -q -p keel-lake --example write_table -- PATH``
(honours ``CARGO_TARGET_DIR``). Nothing is skipped: a missing tool or package fails the test.
"""

from __future__ import annotations

import json
import subprocess
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
