"""``deploy/grafana/keel.json`` names only metrics keel exports: every metric in every panel's
query (and in the template variables) is found in the ``/metrics`` output of a live ``keel
serve`` that has done the things the dashboard shows (inference, a refused and a shed request,
a deployment with an SLO and an alert rule deciding, the prediction log writing a batch).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, Set

from keel_bin import free_ports, keel_bin

REPO_ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "keel.json"
FIXTURES = REPO_ROOT / "fixtures" / "models"
ROW = json.loads((FIXTURES / "expected.json").read_text())["models"]["bc-lr"]["rows"][0]
METRIC = re.compile(r"\bkeel_[a-z0-9_]+\b")


def dashboard_metrics() -> Dict[str, str]:
    """Each metric the dashboard names, with the panel (or variable) that names it."""
    board = json.loads(DASHBOARD.read_text())
    found: Dict[str, str] = {}
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len(panels) >= 10, "the dashboard lost its panels"
    for panel in panels:
        exprs = [t["expr"] for t in panel["targets"]]
        assert exprs, f"panel {panel['title']!r} has no query"
        for expr in exprs:
            names = METRIC.findall(expr)
            assert names, f"panel {panel['title']!r}: {expr!r} names no keel metric"
            for name in names:
                found.setdefault(name, panel["title"])
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            for name in METRIC.findall(var["definition"]):
                found.setdefault(name, f"variable {var['name']}")
    return found


def exported(text: str) -> Set[str]:
    """The metric names (with _bucket/_sum/_count) of a Prometheus text exposition."""
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def post(url: str, body: object, token: str = "") -> int:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_every_metric_the_dashboard_names_is_exported(tmp_path: Path) -> None:
    wanted = dashboard_metrics()
    binary = keel_bin()
    env = {**os.environ, "KEEL_HOME": str(tmp_path / "home"), "KEEL_AUTHOR": "pytest", "KEEL_LOG": "error"}

    def cli(*args: str) -> str:
        done = subprocess.run([str(binary), *args], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    cli("model", "push", "bc-lr", str(FIXTURES / "bc-lr.onnx"), "--alias", "production")
    spec = {
        "variants": [{"name": "a"}, {"name": "b"}],
        "policy": {"type": "thompson_beta"},
        "slo": {"latency_ms": 50, "objective": 0.99, "window_seconds": 60},
        "alerts": [{"name": "burn", "condition": {"type": "slo_burn_rate", "above": 10}}],
    }
    (tmp_path / "promo.json").write_text(json.dumps(spec))
    cli("deployment", "apply", "promo", "-f", str(tmp_path / "promo.json"))
    token = json.loads(cli("--json", "access", "token", "create", "svc", "--scope", "infer decide metrics"))["token"]
    http, grpc = free_ports(2)
    base = f"http://127.0.0.1:{http}"
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(
        [str(binary), "serve", "--http-addr", f"127.0.0.1:{http}", "--grpc-addr", f"127.0.0.1:{grpc}",
         "--auth", "required", "--log-flush-ms", "100", "--max-in-flight-inference", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.time() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.1)
        infer = {"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": ROW}]}
        # Big enough (2,000 rows) that eight at once overlap in the server.
        heavy = {"inputs": [{"name": "input", "shape": [2000, 30], "datatype": "FP32", "data": ROW * 2000}]}
        bad = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": ROW[:3]}]}
        assert post(f"{base}/v2/models/bc-lr/infer", infer) == 401  # refused: no credential
        assert post(f"{base}/v2/models/bc-lr/infer", bad, token) == 400  # an error code
        for i in range(5):
            req = urllib.request.Request(f"{base}/v1/deployments/promo/decide", data=json.dumps({"unit_id": f"u{i}"}).encode(),
                                         headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, timeout=30) as r:
                decision = json.loads(r.read())
            # A reward per decision: keel_feedback_total is on the dashboard too.
            assert post(f"{base}/v1/deployments/promo/feedback", {"decision_id": decision["decision_id"], "reward": 1.0}, token) == 200

        missing: Set[str] = set(wanted)
        deadline = time.time() + 30
        while missing and time.time() < deadline:
            # Eight clients at once against an inference limit of one: some are shed (503).
            threads = [
                threading.Thread(target=post, args=(f"{base}/v2/models/bc-lr/infer", heavy, token))
                for _ in range(8)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            req = urllib.request.Request(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, timeout=10) as r:
                names = exported(r.read().decode())
            missing = {m for m in wanted if m not in names}
            time.sleep(0.3)
        assert not missing, {m: wanted[m] for m in sorted(missing)}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
