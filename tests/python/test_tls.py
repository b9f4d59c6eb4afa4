"""TLS interoperability: unchanged ``tritonclient`` (http with ``ssl=True``, grpc with
``ssl=True, root_certificates=...``) against ``keel serve --tls-cert --tls-key``.

The test issues its own CA and server certificates (``cryptography``), registers two fixture
models with the keel CLI, starts the real binary with TLS on two free loopback ports, runs
inferences over https and over gRPC with TLS and compares them with the onnxruntime outputs in
``fixtures/models/expected.json``. It then replaces the certificate files and sends SIGHUP:
new connections get the new certificate while the process keeps serving; a bad replacement
keeps the old one. The flags' mistakes (one without the other, a file that is not PEM) are
refused before anything starts, naming what is wrong.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tritonclient.utils import InferenceServerException

from keel_bin import free_ports, keel_bin  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "fixtures" / "models"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())["models"]
MODELS = ["bc-lr", "iris-rf"]

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
RELOAD_TIMEOUT_S = 20.0


# --------------------------------------------------------------------------- certificates


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class Ca:
    """A certificate authority the clients trust; issues server certificates for loopback."""

    def __init__(self, cn: str = "keel test CA"):
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(_name(cn))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, serial: int) -> tuple[bytes, bytes, bytes]:
        """(certificate PEM, key PEM, certificate DER) for 127.0.0.1 and localhost."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"keel test server {serial}"))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.DNSName("localhost"),
                ]),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return (cert.public_bytes(serialization.Encoding.PEM), key_pem,
                cert.public_bytes(serialization.Encoding.DER))


def _replace(path: Path, data: bytes) -> None:
    """Replaces ``path`` by a rename, so the server never reads half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- server fixture


class TlsServer:
    def __init__(self, http_port, grpc_port, proc, log, ca_file, cert, key, ca):
        self.http_port = http_port
        self.grpc_port = grpc_port
        self.proc = proc
        self.log = log
        self.ca_file = ca_file
        self.cert = cert
        self.key = key
        self.ca = ca

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

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def served(self, port: int, alpn: str) -> bytes:
        """The DER certificate a new connection to ``port`` is served (verified)."""
        ctx = self.context()
        ctx.set_alpn_protocols([alpn])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.selected_alpn_protocol() == alpn
                return tls.getpeercert(binary_form=True)


def _ready(port: int, ctx: ssl.SSLContext) -> bool:
    try:
        with urllib.request.urlopen(
            f"https://127.0.0.1:{port}/v2/health/ready", timeout=1, context=ctx
        ) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _keel(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "KEEL_HOME": str(home), "NO_COLOR": "1"}
    return subprocess.run([str(keel_bin()), "--home", str(home), *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def keel(tmp_path_factory) -> TlsServer:
    home = tmp_path_factory.mktemp("keel-tls-home")
    for name in MODELS:
        push = _keel(home, "--json", "model", "push", name, str(FIXTURES / f"{name}.onnx"),
                     "--alias", "production")
        assert push.returncode == 0, f"keel model push {name}:\n{push.stdout}\n{push.stderr}"

    ca = Ca()
    certs = tmp_path_factory.mktemp("certs")
    ca_file = certs / "ca.pem"
    ca_file.write_bytes(ca.pem())
    cert_pem, key_pem, _ = ca.issue(1)
    cert, key = certs / "server.crt", certs / "server.key"
    _replace(cert, cert_pem)
    _replace(key, key_pem)

    http_port, grpc_port = free_ports(2)
    log = home / "serve.log"
    log_file = open(log, "wb")
    env = {**os.environ, "KEEL_HOME": str(home), "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [str(keel_bin()), "--home", str(home), "serve",
         "--http-addr", f"127.0.0.1:{http_port}", "--grpc-addr", f"127.0.0.1:{grpc_port}",
         "--tls-cert", str(cert), "--tls-key", str(key)],
        env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
    )
    server = TlsServer(http_port, grpc_port, proc, log, ca_file, cert, key, ca)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _ready(http_port, server.context()):
            if proc.poll() is not None:
                pytest.fail(f"keel serve exited with {proc.returncode}; log:\n{server.log_text()}",
                            pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"keel serve not ready over https after {READY_TIMEOUT_S:.0f} s; "
                            f"log:\n{server.log_text()}", pytrace=False)
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
    assert proc.returncode == 0, (
        f"keel serve exited with {proc.returncode} after SIGTERM; log:\n{server.log_text()}"
    )
    assert "https://" in server.log_text(), server.log_text()


# --------------------------------------------------------------------------- checks


def _rows(name: str) -> np.ndarray:
    return np.asarray(EXPECTED[name]["rows"], dtype=np.float32)


def _check(model: str, result) -> None:
    for out_name, exp in EXPECTED[model]["outputs"].items():
        actual = result.as_numpy(out_name)
        assert actual is not None, f"{model}: no output {out_name!r}"
        want = np.asarray(exp["data"]).reshape(exp["shape"])
        if exp["datatype"] == "INT64":
            np.testing.assert_array_equal(actual, want, err_msg=f"{model}/{out_name}")
        else:
            np.testing.assert_allclose(actual, want, rtol=1e-6, atol=1e-5,
                                       err_msg=f"{model}/{out_name}")


def _http_client(server: TlsServer, **kw) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(
        url=server.http_url, ssl=True, ssl_options={"ca_certs": str(server.ca_file)}, **kw
    )


def _grpc_client(server: TlsServer) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(
        url=server.grpc_url, ssl=True, root_certificates=str(server.ca_file)
    )


@pytest.mark.parametrize("model", MODELS)
def test_http_inference_over_https(keel, model):
    client = _http_client(keel)
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        data = _rows(model)
        inp = httpclient.InferInput(EXPECTED[model]["input_name"], list(data.shape), "FP32")
        inp.set_data_from_numpy(data, binary_data=True)
        outputs = [httpclient.InferRequestedOutput(n, binary_data=True)
                   for n in EXPECTED[model]["outputs"]]
        _check(model, client.infer(model, [inp], outputs=outputs))
    finally:
        client.close()


@pytest.mark.parametrize("model", MODELS)
def test_grpc_inference_over_tls(keel, model):
    client = _grpc_client(keel)
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.get_model_metadata(model).name == model
        data = _rows(model)
        inp = grpcclient.InferInput(EXPECTED[model]["input_name"], list(data.shape), "FP32")
        inp.set_data_from_numpy(data)
        _check(model, client.infer(model, [inp]))
    finally:
        client.close()


def test_clients_that_do_not_trust_the_certificate_or_speak_plain_are_refused(keel):
    # The default trust store does not know the test's CA.
    untrusting = httpclient.InferenceServerClient(url=keel.http_url, ssl=True,
                                                  connection_timeout=5, network_timeout=5)
    try:
        with pytest.raises((ssl.SSLError, InferenceServerException, OSError)):
            untrusting.is_server_live()
    finally:
        untrusting.close()
    # Plain HTTP and plain gRPC on the TLS ports.
    with pytest.raises(urllib.error.HTTPError) as plain_http:
        urllib.request.urlopen(f"http://{keel.http_url}/v2/health/live", timeout=5)
    assert plain_http.value.code == 400
    assert "use https://" in json.loads(plain_http.value.read())["error"]
    plain = grpcclient.InferenceServerClient(url=keel.grpc_url)
    try:
        with pytest.raises(InferenceServerException):
            plain.is_server_live(client_timeout=5)
    finally:
        plain.close()
    # And the server serves on.
    client = _http_client(keel)
    try:
        assert client.is_server_live()
    finally:
        client.close()


def _until_served(server: TlsServer, want: bytes, what: str) -> None:
    deadline = time.monotonic() + RELOAD_TIMEOUT_S
    while True:
        if server.served(server.grpc_port, "h2") == want:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: the new certificate was never served; log:\n{server.log_text()}",
                        pytrace=False)
        time.sleep(0.1)


def test_sighup_reloads_the_certificate_and_a_bad_one_is_refused(keel):
    # An https connection opened before the reload, kept alive across it.
    before = _http_client(keel)
    assert before.is_server_live()

    cert_pem, key_pem, der = keel.ca.issue(2)
    _replace(keel.cert, cert_pem)
    _replace(keel.key, key_pem)
    keel.proc.send_signal(signal.SIGHUP)
    _until_served(keel, der, "SIGHUP")
    assert keel.served(keel.http_port, "http/1.1") == der
    assert keel.proc.poll() is None, "keel serve stopped"
    assert before.is_server_live()
    before.close()

    # A certificate with someone else's key: refused, the previous one still served, and the
    # warning names the file without printing the key.
    other_cert, _, _ = keel.ca.issue(3)
    _, other_key, _ = keel.ca.issue(4)
    _replace(keel.cert, other_cert)
    _replace(keel.key, other_key)
    keel.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + RELOAD_TIMEOUT_S
    while "does not belong to the certificate" not in keel.log_text():
        if time.monotonic() > deadline:
            pytest.fail(f"no warning for a mismatched key; log:\n{keel.log_text()}", pytrace=False)
        time.sleep(0.1)
    log = keel.log_text()
    assert str(keel.key) in log, log
    key_body = b"".join(l for l in other_key.splitlines() if not l.startswith(b"-----"))
    assert key_body[:16].decode() not in log
    assert keel.served(keel.grpc_port, "h2") == der
    assert keel.served(keel.http_port, "http/1.1") == der

    # Both outcomes are counted for alerting.
    with urllib.request.urlopen(f"https://{keel.http_url}/metrics", timeout=5,
                                context=keel.context()) as r:
        metrics = r.read().decode()
    for result in ("ok", "error"):
        line = f'keel_tls_reloads_total{{result="{result}"}}'
        assert line in metrics, metrics

    # Inference still works over both transports with the certificate in service.
    test_grpc_inference_over_tls(keel, "bc-lr")
    test_http_inference_over_https(keel, "bc-lr")


# --------------------------------------------------------------------------- flag mistakes


def test_tls_cert_without_key_is_a_cli_error(tmp_path):
    cert = tmp_path / "server.crt"
    cert.write_bytes(Ca().issue(5)[0])
    r = _keel(tmp_path / "home", "serve", "--tls-cert", str(cert))
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "--tls-key" in r.stderr, r.stderr
    r = _keel(tmp_path / "home", "serve", "--tls-key", str(cert))
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "--tls-cert" in r.stderr, r.stderr


def test_unusable_tls_files_stop_the_start_naming_the_file(tmp_path):
    cert_pem, key_pem, _ = Ca().issue(6)
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    cert.write_bytes(cert_pem)
    key.write_bytes(b"this is not a key\n")
    http_port, grpc_port = free_ports(2)
    args = ["serve", "--http-addr", f"127.0.0.1:{http_port}",
            "--grpc-addr", f"127.0.0.1:{grpc_port}", "--no-log-predictions"]
    r = _keel(tmp_path / "home", *args, "--tls-cert", str(cert), "--tls-key", str(key))
    assert r.returncode != 0, (r.stdout, r.stderr)
    assert str(key) in r.stderr and "private key" in r.stderr, r.stderr
    # Swapped: the message says so.
    key.write_bytes(key_pem)
    r = _keel(tmp_path / "home", *args, "--tls-cert", str(key), "--tls-key", str(cert))
    assert r.returncode != 0, (r.stdout, r.stderr)
    assert "swapped" in r.stderr, r.stderr
    assert key_pem.decode().splitlines()[1] not in r.stderr
