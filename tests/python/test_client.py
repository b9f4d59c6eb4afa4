"""The Python client (``python/keel-client``, installed in the dev venv) against a live
``keel serve --auth required``: inference with numpy in and out (equal to the fixtures'
onnxruntime answers), decide and feedback single and batched (a bad item reported at its
index, the others recorded, the report counting them), the registry (push of a file with its
hash, alias moves recorded with the token's principal, versions listed), and the server's
refusals raised as typed exceptions carrying its message.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from keel_bin import free_ports, keel_bin
from keel_client import (
    AuthenticationError,
    Client,
    ConflictError,
    Decision,
    FeedbackResult,
    InvalidRequestError,
    ItemError,
    NotFoundError,
    PermissionDeniedError,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "fixtures" / "models"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())["models"]["bc-lr"]


class Server:
    """``keel serve --auth required`` over a temporary workspace with ``bc-lr`` at
    ``@production`` and a deployment ``promo``; tokens for a service (infer, decide, view,
    registry) and a dashboard (view)."""

    def __init__(self, tmp: Path) -> None:
        self.binary = keel_bin()
        self.env = {**os.environ, "KEEL_HOME": str(tmp / "home"), "KEEL_AUTHOR": "pytest", "KEEL_LOG": "warn"}
        self.tmp = tmp
        self.cli("model", "push", "bc-lr", str(FIXTURES / "bc-lr.onnx"), "--alias", "production")
        spec = {
            "variants": [{"name": "a"}, {"name": "b"}],
            "policy": {"type": "thompson_beta"},
            "context": [{"type": "numeric", "name": "age"}],
            "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 3600},
            "metrics": [{"name": "revenue", "kind": "continuous", "min": 0, "max": 1000}],
            "seed": 1,
        }
        (tmp / "promo.json").write_text(json.dumps(spec))
        self.cli("deployment", "apply", "promo", "-f", str(tmp / "promo.json"))
        self.service = self.token("ci-service", "infer decide view registry")
        self.viewer = self.token("dashboard", "view")
        http, grpc = free_ports(2)
        self.url = f"http://127.0.0.1:{http}"
        self.log = open(tmp / "server.log", "w")
        self.proc = subprocess.Popen(
            [str(self.binary), "serve", "--http-addr", f"127.0.0.1:{http}", "--grpc-addr", f"127.0.0.1:{grpc}",
             "--auth", "required"],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                self.stop()
                pytest.fail((tmp / "server.log").read_text())
            time.sleep(0.1)

    def cli(self, *args: str) -> str:
        done = subprocess.run([str(self.binary), *args], env=self.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def token(self, name: str, scopes: str) -> str:
        return json.loads(self.cli("--json", "access", "token", "create", name, "--scope", scopes))["token"]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self.log.close()
        assert code == 0, (self.tmp / "server.log").read_text()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("client"))
    yield s
    s.stop()


@pytest.fixture()
def keel(server: Server) -> Iterator[Client]:
    with Client(server.url, token=server.service) as c:
        yield c


def test_infer_takes_and_returns_numpy_arrays_equal_to_onnxruntime(keel: Client) -> None:
    x = np.array(EXPECTED["rows"], dtype=np.float32)
    out = keel.infer("bc-lr", {"input": x})
    expected = EXPECTED["outputs"]
    assert out["label"].dtype == np.int64
    assert out["label"].tolist() == expected["label"]["data"]
    assert out["probabilities"].shape == tuple(expected["probabilities"]["shape"])
    np.testing.assert_allclose(out["probabilities"].reshape(-1), expected["probabilities"]["data"], atol=1e-5)
    # One array for a one-input model: named from the model's metadata; a pinned version.
    same = keel.infer("bc-lr", x, version=1, outputs=["label"])
    assert list(same) == ["label"] and same["label"].tolist() == expected["label"]["data"]
    with pytest.raises(InvalidRequestError) as bad:
        keel.infer("bc-lr", {"input": x[:, :5]})
    assert "shape" in bad.value.message or "30" in bad.value.message


def test_decide_and_feedback_single_and_batched(keel: Client) -> None:
    one = keel.decide("promo", unit_id="solo", context={"age": 40})
    assert isinstance(one, Decision) and one.variant in ("a", "b") and 0 < one.propensity <= 1
    assert keel.feedback("promo", one.decision_id, 1.0) == FeedbackResult(one.decision_id, True)
    assert keel.feedback("promo", one.decision_id, 1.0).counted is False
    # Another declared metric, later and on its own: counted once, a different value refused.
    assert keel.feedback("promo", one.decision_id, metrics={"revenue": 12.5}).counted is True
    assert keel.feedback("promo", one.decision_id, metrics={"revenue": 12.5}).counted is False
    with pytest.raises(ConflictError):
        keel.feedback("promo", one.decision_id, metrics={"revenue": 99.0})
    with pytest.raises(ValueError):
        keel.feedback("promo", one.decision_id)

    items = [{"unit_id": f"u{i}", "context": {"age": i}} for i in range(100)]
    items[13] = {"unit_id": "u13", "context": {"age": "thirteen"}}
    results = keel.decide_batch("promo", items)
    assert len(results) == 100
    bad = results[13]
    assert isinstance(bad, ItemError) and bad.index == 13 and "age" in bad.message, bad
    decisions = [r for r in results if isinstance(r, Decision)]
    assert len(decisions) == 99
    # Only b for this unit: propensity 1 over the eligible set.
    pinned = keel.decide_batch("promo", [{"unit_id": "pin", "eligible": ["b"], "context": {"age": 1}}])[0]
    assert isinstance(pinned, Decision) and pinned.variant == "b" and pinned.propensity == 1.0

    events = [(d.decision_id, float(i % 2)) for i, d in enumerate(decisions)]
    # A UUIDv7 of now that no decision has: a fixed id would fall out of the attribution window.
    now_ms = f"{int(time.time() * 1000):012x}"
    events.insert(5, (f"{now_ms[:8]}-{now_ms[8:]}-7000-8000-000000000000", 1.0))
    fed = keel.feedback_batch("promo", events)
    assert len(fed) == 100
    assert isinstance(fed[5], ItemError) and fed[5].index == 5 and fed[5].code == "unknown_decision", fed[5]
    assert all(isinstance(f, FeedbackResult) and f.counted for i, f in enumerate(fed) if i != 5)

    report = keel.report("promo")
    decided = sum(v["exposures"] for v in report["variants"])
    rewarded = sum(v["rewards"] for v in report["variants"])
    assert decided == 101, report
    assert rewarded == 100, report
    # The breakdown by a context feature, on the decision metric named explicitly.
    by_age = keel.report("promo", segment_by="age", outcome="reward")["segments"]
    assert by_age["feature"] == "age" and by_age["outcome"] == "reward", by_age
    assert sum(g["rewards"] for g in by_age["segments"]) == rewarded, by_age
    on_revenue = keel.report("promo", segment_by="age", outcome="revenue")["segments"]
    assert (on_revenue["outcome"], on_revenue["rewards"]) == ("revenue", 1), on_revenue
    with pytest.raises(InvalidRequestError) as unknown:
        keel.report("promo", segment_by="age", outcome="refunds")
    assert "net" in unknown.value.message and "refunds" in unknown.value.message


def test_the_registry_push_streams_a_file_with_its_hash_and_aliases_record_who(
    keel: Client, server: Server, tmp_path: Path
) -> None:
    pushed = keel.push_model(
        "churn", FIXTURES / "bc-rf.onnx", description="forest", metrics={"auc": 0.97}, aliases=["staging"]
    )
    assert pushed["version"] == 1 and pushed["author"] == "ci-service", pushed
    assert pushed["content_hash"].startswith("sha256:") and pushed["metrics"] == {"auc": 0.97}
    assert pushed["signature"]["inputs"][0]["name"] == "input", pushed
    assert keel.push_model("churn", FIXTURES / "bc-lr.onnx")["version"] == 2
    with pytest.raises(ConflictError):
        keel.push_model("churn", FIXTURES / "bc-lr.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a model")
    with pytest.raises(InvalidRequestError) as refused:
        keel.push_model("churn", junk)
    assert refused.value.code == "invalid_artifact" and "ONNX" in refused.value.message

    assert [v["version"] for v in keel.list_versions("churn")] == [1, 2]
    assert keel.get_version("churn", "@staging")["version"] == 1
    moved = keel.set_alias("churn", "production", 2, reason="lr is calibrated")
    assert moved["version"] == 2 and moved["updated_by"] == "ci-service"
    keel.delete_alias("churn", "staging")
    aliases = keel.aliases("churn")
    assert [a["alias"] for a in aliases["aliases"]] == ["production"]
    history = [(e["alias"], e["to_version"], e["by"], e["reason"]) for e in aliases["history"]]
    assert ("production", 2, "ci-service", "lr is calibrated") in history, history
    assert ("staging", None, "ci-service", None) in history, history
    assert "churn" in [m["name"] for m in keel.list_models()]


def test_refusals_are_typed_exceptions_with_the_servers_message(server: Server) -> None:
    with Client(server.url) as anonymous, pytest.raises(AuthenticationError) as e:
        anonymous.list_models()
    assert e.value.status == 401 and "keel access token create" in e.value.message
    with Client(server.url, token=server.viewer) as viewer:
        assert [m["name"] for m in viewer.list_models()][:1] == ["bc-lr"]
        with pytest.raises(PermissionDeniedError) as e:
            viewer.push_model("x", FIXTURES / "bc-lr.onnx")
        assert e.value.status == 403 and "registry" in e.value.message
        with pytest.raises(PermissionDeniedError):
            viewer.decide_batch("promo", [{"unit_id": "u"}])
    with Client(server.url, token=server.service) as keel:
        with pytest.raises(NotFoundError) as e:
            keel.decide("no-such-deployment", unit_id="u")
        assert e.value.code == "unknown_deployment" and "no-such-deployment" in e.value.message
        with pytest.raises(NotFoundError):
            keel.set_alias("bc-lr", "production", 99)


def test_a_held_alias_move_is_approved_by_another_token(server: Server) -> None:
    """With an approvals policy naming the alias, the client's move comes back pending; the
    requester may not approve it; another token does, and the alias moves."""
    declared = server.tmp / "declared"
    declared.mkdir()
    (declared / "policy.json").write_text(json.dumps({"approvals": {"aliases": ["guarded"]}}))
    server.cli("apply", str(declared), "--yes")
    approver = server.token("approver", "registry view")
    with Client(server.url, token=server.service) as ci, Client(server.url, token=approver) as other:
        held = ci.set_alias("bc-lr", "guarded", 1, reason="ship it")
        assert held["status"] == "pending", held
        change = held["change"]["id"]
        assert [c["id"] for c in other.pending_changes()] == [change]
        with pytest.raises(PermissionDeniedError, match="another person"):
            ci.approve_change(change)
        with pytest.raises(NotFoundError):
            other.get_version("bc-lr", "@guarded")
        done = other.approve_change(change)
        assert (done["status"], done["decided_by"]) == ("approved", "approver")
        assert other.get_version("bc-lr", "@guarded")["version"] == 1
        removal = ci.delete_alias("bc-lr", "guarded", reason="retire")
        assert removal is not None and removal["status"] == "pending"
        rejected = other.reject_change(removal["change"]["id"], "keep it")
        assert (rejected["status"], rejected["note"]) == ("rejected", "keep it")
        assert other.pending_changes() == []
        assert other.get_version("bc-lr", "@guarded")["version"] == 1
