"""Interoperability: prediction logs written by ``keel serve`` are read by the ``deltalake``
Python package, and the unchanged ``tritonclient.http`` client accepts responses that carry the
``prediction_id`` parameter (and exposes it), over HTTP and gRPC.

Starts its own ``keel serve`` (logging on, the default) in a temporary KEEL_HOME, sends requests
with tritonclient, stops the server with SIGTERM (which flushes the log), then reads
``$KEEL_HOME/lake/predictions_bc-lr`` with ``deltalake.DeltaTable``.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from deltalake import DeltaTable

from keel_bin import free_ports, keel_bin  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "fixtures" / "models"
ROW = json.loads((FIXTURES / "expected.json").read_text())["models"]["bc-lr"]["rows"][0]




def test_logged_predictions_read_by_deltalake(tmp_path: Path) -> None:
    binary, home = keel_bin(), tmp_path / "home"
    env = {**os.environ, "KEEL_HOME": str(home), "KEEL_AUTHOR": "pytest"}
    push = subprocess.run(
        [str(binary), "model", "push", "bc-lr", str(FIXTURES / "bc-lr.onnx"), "--alias", "production"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert push.returncode == 0, push.stderr
    http, grpc = free_ports(2)
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(
        [str(binary), "serve", "--http-addr", f"127.0.0.1:{http}", "--grpc-addr", f"127.0.0.1:{grpc}",
         "--log-flush-ms", "100"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.time() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.1)
        client = httpclient.InferenceServerClient(url=f"127.0.0.1:{http}")
        ids = []
        for i in range(5):
            x = np.array([ROW], dtype=np.float32)
            inp = httpclient.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x, binary_data=(i % 2 == 0))
            result = client.infer("bc-lr", [inp], request_id=f"r{i}")
            assert result.as_numpy("label").shape == (1,)
            ids.append(result.get_response()["parameters"]["prediction_id"])
        # Past a flush (100 ms), so the gRPC predictions are a second append to the table that
        # the first flush created.
        time.sleep(0.5)
        # The same over gRPC: the id is a response parameter there too.
        gclient = grpcclient.InferenceServerClient(url=f"127.0.0.1:{grpc}")
        for i in range(5, 8):
            x = np.array([ROW], dtype=np.float32)
            inp = grpcclient.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            result = gclient.infer("bc-lr", [inp], request_id=f"r{i}")
            assert result.as_numpy("label").shape == (1,)
            ids.append(result.get_response().parameters["prediction_id"].string_param)
        assert len(set(ids)) == 8 and all(ids)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, (tmp_path / "server.log").read_text()
        log.close()

    dt = DeltaTable(str(home / "lake" / "predictions_bc-lr"))
    assert dt.metadata().partition_columns == ["date"]
    assert dt.version() >= 1, "two appends at least: the table's creation, then appends to it"
    rows = dt.to_pyarrow_table().to_pylist()
    assert sorted(r["prediction_id"] for r in rows) == sorted(ids)
    assert sorted(r["request_id"] for r in rows) == [f"r{i}" for i in range(8)]
    for r in rows:
        assert r["model"] == "bc-lr" and r["version"] == 1 and r["row"] == 0
        # the partition value each file was written under is the row's own UTC day
        assert r["date"] == r["ts"].astimezone(datetime.timezone.utc).date()
        assert r["input_0"] == pytest.approx(ROW[0], rel=1e-6)
        assert 0.0 <= r["out_probabilities_1"] <= 1.0
        assert r["out_label"] in (0.0, 1.0)
