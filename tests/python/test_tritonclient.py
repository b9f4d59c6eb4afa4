"""Interoperability: unchanged NVIDIA Triton clients (``tritonclient[http,grpc]``) against keel.

A session fixture registers every fixture model in a temporary KEEL_HOME with the keel CLI,
starts ``keel serve`` on two free loopback ports and stops it with SIGTERM at the end
(asserting a clean exit). Every test runs over both transports (tritonclient.http and
tritonclient.grpc) unless it is transport specific.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from keel_bin import free_ports, keel_bin  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "fixtures" / "models"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())["models"]
MODELS = sorted(EXPECTED)

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
TRANSPORTS = ["http", "grpc"]


# --------------------------------------------------------------------------- server fixture


class KeelServer:
    def __init__(self, http_port: int, grpc_port: int, proc: subprocess.Popen, log: Path):
        self.http_port = http_port
        self.grpc_port = grpc_port
        self.proc = proc
        self.log = log

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError as e:  # pragma: no cover - diagnostics only
            return f"<cannot read {self.log}: {e}>"

    def client(self, transport: str):
        if transport == "http":
            return httpclient.InferenceServerClient(url=self.http_url)
        return grpcclient.InferenceServerClient(url=self.grpc_url)


def _http_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/v2/health/ready", timeout=1
        ) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="session")
def keel(tmp_path_factory) -> KeelServer:
    binary = keel_bin()
    home = tmp_path_factory.mktemp("keel-home")
    env = {**os.environ, "KEEL_HOME": str(home), "NO_COLOR": "1"}
    for name in MODELS:
        push = subprocess.run(
            [str(binary), "--home", str(home), "--json", "model", "push", name,
             str(FIXTURES / f"{name}.onnx"), "--alias", "production"],
            env=env, capture_output=True, text=True, timeout=60,
        )
        assert push.returncode == 0, (
            f"keel model push {name} failed ({push.returncode}):\n"
            f"{push.stdout}\n{push.stderr}"
        )
        assert json.loads(push.stdout)["model"] == name

    http_port, grpc_port = free_ports(2)
    log = home / "serve.log"
    log_file = open(log, "wb")
    proc = subprocess.Popen(
        [str(binary), "--home", str(home), "serve",
         "--http-addr", f"127.0.0.1:{http_port}", "--grpc-addr", f"127.0.0.1:{grpc_port}"],
        env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
    )
    server = KeelServer(http_port, grpc_port, proc, log)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _http_ready(http_port):
            if proc.poll() is not None:
                pytest.fail(
                    f"keel serve exited with {proc.returncode} before becoming ready; "
                    f"log:\n{server.log_text()}", pytrace=False,
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"keel serve not ready after {READY_TIMEOUT_S:.0f} s; "
                    f"log:\n{server.log_text()}", pytrace=False,
                )
            time.sleep(0.05)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                log_file.close()
                pytest.fail(
                    f"keel serve ignored SIGTERM for {STOP_TIMEOUT_S:.0f} s; "
                    f"log:\n{server.log_text()}", pytrace=False,
                )
        log_file.close()
    assert proc.returncode == 0, (
        f"keel serve exited with {proc.returncode} after SIGTERM; log:\n{server.log_text()}"
    )


@pytest.fixture(params=TRANSPORTS)
def transport(request) -> str:
    return request.param


@pytest.fixture
def client(keel, transport):
    c = keel.client(transport)
    yield c
    c.close()


# --------------------------------------------------------------------------- helpers


def _mod(transport: str):
    return httpclient if transport == "http" else grpcclient


def _rows(name: str, dtype=np.float32) -> np.ndarray:
    return np.asarray(EXPECTED[name]["rows"], dtype=dtype)


def _make_input(transport: str, name: str, data: np.ndarray, input_name: str | None = None,
                datatype: str | None = None, binary: bool = True):
    mod = _mod(transport)
    datatype = datatype or {np.float32: "FP32", np.float64: "FP64"}[data.dtype.type]
    inp = mod.InferInput(input_name or EXPECTED[name]["input_name"], list(data.shape), datatype)
    if transport == "http":
        inp.set_data_from_numpy(data, binary_data=binary)
    else:
        inp.set_data_from_numpy(data)
    return inp


def _requested(transport: str, names, binary: bool = True):
    mod = _mod(transport)
    if transport == "http":
        return [mod.InferRequestedOutput(n, binary_data=binary) for n in names]
    return [mod.InferRequestedOutput(n) for n in names]


def _output_meta(transport: str, result, out_name: str) -> tuple[str, list[int]]:
    out = result.get_output(out_name)
    assert out is not None, f"output {out_name!r} missing from the response"
    if transport == "http":
        return out["datatype"], [int(d) for d in out["shape"]]
    return out.datatype, [int(d) for d in out.shape]


def _output_names(transport: str, result) -> list[str]:
    resp = result.get_response()
    if transport == "http":
        return [o["name"] for o in resp["outputs"]]
    return [o.name for o in resp.outputs]


def _check_output(model: str, out_name: str, actual: np.ndarray) -> None:
    exp = EXPECTED[model]["outputs"][out_name]
    assert actual is not None, f"{model}: no data for output {out_name!r}"
    assert list(actual.shape) == exp["shape"], (model, out_name, actual.shape)
    want = np.asarray(exp["data"]).reshape(exp["shape"])
    if exp["datatype"] == "INT64":
        assert actual.dtype == np.int64, (model, out_name, actual.dtype)
        np.testing.assert_array_equal(actual, want, err_msg=f"{model}/{out_name}")
    else:
        assert exp["datatype"] == "FP32"
        assert actual.dtype == np.float32, (model, out_name, actual.dtype)
        if model.endswith("-reg"):  # regression values are ~100s
            np.testing.assert_allclose(actual, want, rtol=1e-6, atol=1e-5,
                                       err_msg=f"{model}/{out_name}")
        else:  # probabilities
            np.testing.assert_allclose(actual, want, rtol=0, atol=1e-5,
                                       err_msg=f"{model}/{out_name}")


def _check_result(transport: str, model: str, result, only: list[str] | None = None) -> None:
    expected_outputs = only or list(EXPECTED[model]["outputs"])
    assert sorted(_output_names(transport, result)) == sorted(expected_outputs)
    for out_name in expected_outputs:
        exp = EXPECTED[model]["outputs"][out_name]
        datatype, shape = _output_meta(transport, result, out_name)
        assert datatype == exp["datatype"], (model, out_name, datatype)
        assert shape == exp["shape"], (model, out_name, shape)
        _check_output(model, out_name, result.as_numpy(out_name))


def _infer_ok(transport: str, client, model: str = "bc-lr", **kwargs):
    result = client.infer(model, [_make_input(transport, model, _rows(model))], **kwargs)
    _check_result(transport, model, result)
    return result


def _assert_status(transport: str, exc: InferenceServerException, kind: str) -> None:
    """HTTP 404/400 and gRPC NOT_FOUND/INVALID_ARGUMENT, as Triton answers them."""
    want = {
        ("http", "not_found"): "404", ("http", "invalid"): "400",
        ("grpc", "not_found"): "StatusCode.NOT_FOUND",
        ("grpc", "invalid"): "StatusCode.INVALID_ARGUMENT",
    }[(transport, kind)]
    assert str(exc.status()) == want, (exc.status(), str(exc))


def _assert_server_up(transport: str, client) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    _infer_ok(transport, client, "iris-rf")


def _metadata(transport: str, client, model: str | None = None, **kw) -> dict:
    if model is None:
        return (client.get_server_metadata() if transport == "http"
                else client.get_server_metadata(as_json=True))
    return (client.get_model_metadata(model, **kw) if transport == "http"
            else client.get_model_metadata(model, as_json=True, **kw))


def _repository_index(transport: str, client) -> list[dict]:
    if transport == "http":
        return client.get_model_repository_index()
    return client.get_model_repository_index(as_json=True).get("models", [])


# --------------------------------------------------------------------------- server


def test_server_live_and_ready(client):
    assert client.is_server_live() is True
    assert client.is_server_ready() is True


def test_server_metadata(client, transport):
    meta = _metadata(transport, client)
    assert meta["name"] == "keel"
    assert meta.get("version"), meta
    assert {"model_repository", "binary_tensor_data"} <= set(meta["extensions"]), meta


# --------------------------------------------------------------------------- model metadata


@pytest.mark.parametrize("model", MODELS)
def test_model_ready_and_metadata(client, transport, model):
    exp = EXPECTED[model]
    assert client.is_model_ready(model) is True
    assert client.is_model_ready(model, model_version="1") is True

    meta = _metadata(transport, client, model)
    assert meta["name"] == model
    assert "1" in meta["versions"], meta
    assert len(meta["inputs"]) == 1, meta
    inp = meta["inputs"][0]
    assert inp["name"] == exp["input_name"]
    assert inp["datatype"] == "FP32"
    assert [int(d) for d in inp["shape"]] == [-1, exp["n_features"]]

    outputs = {o["name"]: o for o in meta["outputs"]}
    assert sorted(outputs) == sorted(exp["outputs"]), meta
    for out_name, out_exp in exp["outputs"].items():
        assert outputs[out_name]["datatype"] == out_exp["datatype"], (out_name, meta)
        shape = [int(d) for d in outputs[out_name]["shape"]]
        # the batch dimension is dynamic, the rest matches the expected output
        assert len(shape) == len(out_exp["shape"]), (out_name, shape)
        assert shape[0] in (-1, out_exp["shape"][0]), (out_name, shape)
        assert shape[1:] == out_exp["shape"][1:] or all(d == -1 for d in shape[1:]), (
            out_name, shape)


# --------------------------------------------------------------------------- inference


def _http_encodings():
    return [pytest.param(True, id="binary"), pytest.param(False, id="json")]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("binary", _http_encodings())
def test_infer_http(keel, model, binary):
    client = keel.client("http")
    try:
        exp = EXPECTED[model]
        inputs = [_make_input("http", model, _rows(model), binary=binary)]
        outputs = _requested("http", list(exp["outputs"]), binary=binary)
        result = client.infer(model, inputs, outputs=outputs)
        _check_result("http", model, result)
        for out in result.get_response()["outputs"]:
            params = out.get("parameters") or {}
            if binary:  # the data came in the binary section, not in JSON
                assert "data" not in out and params.get("binary_data_size", 0) > 0, out
            else:  # JSON outputs really are JSON
                assert "data" in out and "binary_data_size" not in params, out
        # no requested outputs at all: the client asks for every output in binary
        _check_result("http", model, client.infer(model, inputs))
    finally:
        client.close()


@pytest.mark.parametrize("model", MODELS)
def test_infer_grpc(keel, model):
    client = keel.client("grpc")
    try:
        inputs = [_make_input("grpc", model, _rows(model))]
        result = client.infer(model, inputs)
        _check_result("grpc", model, result)
        # with explicitly requested outputs too
        outputs = _requested("grpc", list(EXPECTED[model]["outputs"]))
        _check_result("grpc", model, client.infer(model, inputs, outputs=outputs))
    finally:
        client.close()


@pytest.mark.parametrize("model", ["bc-lr", "bc-lr-zipmap", "iris-rf"])
def test_infer_one_output_only(client, transport, model):
    outs = list(EXPECTED[model]["outputs"])
    for wanted in outs:
        result = client.infer(
            model, [_make_input(transport, model, _rows(model))],
            outputs=_requested(transport, [wanted]),
        )
        _check_result(transport, model, result, only=[wanted])
        for other in outs:
            if other != wanted:
                assert result.as_numpy(other) is None, (model, wanted, other)


def test_infer_single_row(client, transport):
    model = "bc-xgb"
    row = _rows(model)[3:4]
    result = client.infer(model, [_make_input(transport, model, row)])
    probs = result.as_numpy("probabilities")
    exp = EXPECTED[model]["outputs"]["probabilities"]
    want = np.asarray(exp["data"], dtype=np.float32).reshape(exp["shape"])[3:4]
    assert probs.shape == (1, 2)
    np.testing.assert_allclose(probs, want, rtol=0, atol=1e-5)


# --------------------------------------------------------------------------- versions


def test_infer_model_version(client, transport):
    _infer_ok(transport, client, "bc-rf", model_version="1")
    meta = _metadata(transport, client, "bc-rf", model_version="1")
    assert meta["name"] == "bc-rf"


def test_infer_unknown_version(client, transport):
    model = "bc-rf"
    assert client.is_model_ready(model, model_version="99") is False
    with pytest.raises(InferenceServerException) as info:
        client.infer(model, [_make_input(transport, model, _rows(model))], model_version="99")
    assert "99" in str(info.value), str(info.value)
    _assert_status(transport, info.value, "not_found")
    _assert_server_up(transport, client)


# --------------------------------------------------------------------------- repository


def test_repository_index(client, transport):
    index = _repository_index(transport, client)
    by_name = {m["name"]: m for m in index}
    assert sorted(by_name) == MODELS, index
    for name, entry in by_name.items():
        assert entry.get("state") == "READY", entry
        assert str(entry.get("version")) == "1", entry


# one model per transport so the two runs cannot disturb each other
UNLOAD_MODEL = {"http": "diabetes-rf-reg", "grpc": "bc-gb"}


def test_unload_and_load(client, transport):
    model = UNLOAD_MODEL[transport]
    _infer_ok(transport, client, model)
    try:
        client.unload_model(model)
        assert client.is_model_ready(model) is False
        with pytest.raises(InferenceServerException) as info:
            client.infer(model, [_make_input(transport, model, _rows(model))])
        assert model in str(info.value), str(info.value)
        # still listed (it is registered), but not READY (Triton says UNAVAILABLE)
        entry = {m["name"]: m for m in _repository_index(transport, client)}.get(model)
        assert entry is not None and entry.get("state") == "UNAVAILABLE", entry
        # the other models are unaffected
        _assert_server_up(transport, client)
    finally:
        client.load_model(model)
    assert client.is_model_ready(model) is True
    _infer_ok(transport, client, model)
    entry = {m["name"]: m for m in _repository_index(transport, client)}[model]
    assert entry["state"] == "READY", entry


def test_load_unknown_model_fails(client, transport):
    with pytest.raises(InferenceServerException) as info:
        client.load_model("no-such-model")
    assert "no-such-model" in str(info.value), str(info.value)
    _assert_status(transport, info.value, "not_found")
    _assert_server_up(transport, client)


# --------------------------------------------------------------------------- errors


def _bad_infer(transport: str, client, model: str, **input_kw) -> InferenceServerException:
    """Run a bad request with each input encoding of the transport; return the last error."""
    encodings = [True, False] if transport == "http" else [True]
    messages = set()
    for binary in encodings:
        with pytest.raises(InferenceServerException) as info:
            client.infer(model, [_make_input(transport, model, binary=binary, **input_kw)])
        messages.add(info.value.message())
    # the same mistake gets the same explanation whatever the encoding
    assert len(messages) == 1, messages
    return info.value


def test_error_unknown_model(client, transport):
    with pytest.raises(InferenceServerException) as info:
        client.infer("no-such-model", [_make_input(transport, "bc-lr", _rows("bc-lr"))])
    assert "no-such-model" in str(info.value), str(info.value)
    _assert_status(transport, info.value, "not_found")
    assert client.is_model_ready("no-such-model") is False
    with pytest.raises(InferenceServerException) as info:
        _metadata(transport, client, "no-such-model")
    assert "no-such-model" in str(info.value), str(info.value)
    _assert_server_up(transport, client)


def test_error_wrong_input_name(client, transport):
    model = "bc-lr"
    exc = _bad_infer(transport, client, model, data=_rows(model), input_name="features")
    msg = str(exc)
    # names both the wrong input and the one the model has
    assert "features" in msg and EXPECTED[model]["input_name"] in msg, msg
    _assert_status(transport, exc, "invalid")
    _assert_server_up(transport, client)


def test_error_wrong_datatype(client, transport):
    model = "bc-lr"
    exc = _bad_infer(transport, client, model, data=_rows(model, np.float64))
    msg = str(exc)
    assert "FP64" in msg and "FP32" in msg, msg
    _assert_status(transport, exc, "invalid")
    _assert_server_up(transport, client)


def test_error_wrong_shape(client, transport):
    model = "bc-lr"
    n = EXPECTED[model]["n_features"]
    rows = np.hstack([_rows(model), np.ones((8, 1), dtype=np.float32)])
    assert rows.shape == (8, n + 1)
    exc = _bad_infer(transport, client, model, data=rows)
    msg = str(exc)
    assert str(n + 1) in msg and str(n) in msg, msg
    _assert_status(transport, exc, "invalid")
    _assert_server_up(transport, client)


def test_error_unimplemented_grpc_is_clean(keel):
    """RPCs keel does not implement answer UNIMPLEMENTED; the client reports it cleanly."""
    client = keel.client("grpc")
    try:
        with pytest.raises(InferenceServerException) as info:
            client.get_model_config("bc-lr")
        assert "UNIMPLEMENTED" in (info.value.status() or ""), info.value
        _assert_server_up("grpc", client)
    finally:
        client.close()


# --------------------------------------------------------------------------- concurrency


def test_concurrent_http(keel):
    """200 requests from 8 threads (one tritonclient.http client each) all succeed."""
    n_requests, n_threads = 200, 8
    per_thread = n_requests // n_threads
    start = threading.Barrier(n_threads)
    done: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(t: int) -> None:
        try:
            # the HTTP client is not thread safe: one per thread, created in the thread
            client = keel.client("http")
            try:
                start.wait(timeout=10)
                for i in range(per_thread):
                    model = MODELS[(t * per_thread + i) % len(MODELS)]
                    result = client.infer(model, [_make_input("http", model, _rows(model))])
                    _check_result("http", model, result)
                    with lock:
                        done.append(model)
            finally:
                client.close()
        except BaseException as e:  # reported below
            with lock:
                errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not any(th.is_alive() for th in threads), "worker threads hung"
    assert not errors, errors[:3]
    assert len(done) == n_requests
    assert set(done) == set(MODELS)
    with keel.client("http") as c:
        assert c.is_server_ready()
