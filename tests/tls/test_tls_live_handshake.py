"""Live TLS handshakes against the real guard server and the real ``mlflow-guard serve``.

Both run with ``--tls-cert/--tls-key/--tls-client-ca`` (mutual TLS), certificates made here
with ``cryptography``: a CA, a server certificate for 127.0.0.1, a client certificate from that
CA and one from another CA. Plain ``ssl`` clients check what ``test_tls.py`` (a hello-world
uvicorn app, certificate validity) and ``test_guard_server_tls.py`` (server-only TLS with the
MLflow client) do not: protocol versions, client certificates at the handshake, plain HTTP to
the mutual-TLS port.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mlflow_guard.core import oms
from tests.conftest import KeyRing
from tests.server._server import Server, free_port, start_guard
from tests.serving.conftest import save_model

pytestmark = pytest.mark.slow

OLD = {"TLSv1.0": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1}
MODERN = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
REQUEST = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


# ---------------------------------------------------------------- certificates (cryptography)


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


def _write(d: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Issued:
    (d / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / f"{name}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Issued(d / f"{name}.pem", d / f"{name}.key")


def _builder(
    subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


class _CA:
    def __init__(self, d: Path, name: str) -> None:
        self.d, self.key = d, ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            _builder(name, self.name, self.key)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.files = _write(d, name, self.cert, self.key)

    def issue(self, name: str, *, server: bool) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        b = (
            _builder(name, self.name, key)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if server:
            b = b.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return _write(self.d, name, b.sign(self.key, hashes.SHA256()), key)


@dataclass(frozen=True)
class PKI:
    ca: Path
    server: Issued
    client: Issued
    stranger: Issued  # a client certificate from another CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    d = tmp_path_factory.mktemp("pki")
    ca, other = _CA(d, "guard-test-ca"), _CA(d, "other-ca")
    return PKI(
        ca.files.cert,
        ca.issue("server", server=True),
        ca.issue("client", server=False),
        other.issue("stranger", server=False),
    )


# ---------------------------------------------------------------- the two real servers


def _tls_opts(pki: PKI) -> list[str]:
    return [
        "--tls-cert",
        str(pki.server.cert),
        "--tls-key",
        str(pki.server.key),
        "--tls-client-ca",
        str(pki.ca),
    ]


def _wait_https(url: str, pki: PKI, proc: subprocess.Popen[bytes], log: Path) -> None:
    s = requests.Session()
    s.trust_env = False
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            raise RuntimeError(log.read_text()[-4000:])
        try:
            r = s.get(url, verify=str(pki.ca), cert=(str(pki.client.cert), str(pki.client.key)))
            if r.status_code == 200:
                return
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.3)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _guard_server(root: Path, pki: PKI) -> Iterator[int]:
    server: Server = start_guard(root, wait=False, workers=1, server_opts=tuple(_tls_opts(pki)))
    try:
        port = int(server.url.rsplit(":", 1)[1])
        _wait_https(f"https://127.0.0.1:{port}/health", pki, server.proc, server.log)
        yield port
    finally:
        server.stop()


def _serve(root: Path, pki: PKI, keyring: KeyRing) -> Iterator[int]:
    model = save_model(root / "model")
    oms.sign_model(model, keyring["model"].signer)
    policy = root / "guard.yaml"
    pub = str(keyring["model"].public)
    policy.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "keys": [{"id": "ci", "public_key": pub, "purposes": ["model"]}],
                "storage": {"database_uri": f"sqlite:///{root}/guard.db"},
            }
        )
    )
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow_guard.cli", "serve", str(model), "--policy", str(policy)]
    cmd += ["--port", str(port), "--unsigned-responses", *_tls_opts(pki)]
    log = root / "serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_https(f"https://127.0.0.1:{port}/ping", pki, proc, log)
        yield port
    finally:
        _stop(proc)


@pytest.fixture(scope="module", params=["mlflow-guard server", "mlflow-guard serve"])
def port(
    request: pytest.FixtureRequest,
    pki: PKI,
    keyring: KeyRing,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[int]:
    root = tmp_path_factory.mktemp(request.param.replace(" ", "-"))
    if request.param == "mlflow-guard server":
        yield from _guard_server(root, pki)
    else:
        yield from _serve(root, pki, keyring)


# ---------------------------------------------------------------- clients


def _client(
    pki: PKI, version: ssl.TLSVersion, cert: Issued | None, *, legacy: bool = False
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(pki.ca))
    ctx.minimum_version = ctx.maximum_version = version
    if legacy:
        ctx.set_ciphers("ALL:@SECLEVEL=0")  # let this OpenSSL offer TLS 1.0/1.1 at all
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
    return ctx


def _exchange(port: int, ctx: ssl.SSLContext) -> tuple[str | None, bytes]:
    """Handshake, send one request, read the answer: (negotiated version, bytes received)."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=15) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s,
    ):
        s.sendall(REQUEST)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return s.version(), data


def _refusal(port: int, ctx: ssl.SSLContext) -> tuple[str, str]:
    """How the server refused ``ctx``: (stage, reason); fails the test on any HTTP answer.

    Stage ``handshake``: the TLS handshake itself failed. Stage ``after-handshake``: under TLS
    1.3 the server checks the client certificate after the client's side of the handshake
    finished, so the refusal arrives with the first read. The reason is the TLS alert, or
    ``UNEXPECTED_EOF_WHILE_READING``/``closed``/``reset`` when the server drops the connection
    without flushing its alert (uvicorn's asyncio transport does that).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=15) as raw:
        try:
            s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        except ssl.SSLError as e:
            return "handshake", str(e.reason)
        with s:
            data = b""
            try:
                s.sendall(REQUEST)
                while chunk := s.recv(65536):
                    data += chunk
            except ssl.SSLError as e:
                if not data:
                    return "after-handshake", str(e.reason)
            except (ConnectionResetError, BrokenPipeError):
                if not data:
                    return "after-handshake", "reset"
            if data:
                pytest.fail(f"the server answered: {data[:200]!r}")
            return "after-handshake", "closed"


DROPPED = {"UNEXPECTED_EOF_WHILE_READING", "closed", "reset"}


def _openssl_offers(version: ssl.TLSVersion, pki: PKI) -> bool:
    """Whether this machine's OpenSSL still negotiates ``version`` with itself (any settings)."""
    srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        srv.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        srv.set_ciphers("ALL:@SECLEVEL=0")
        srv.load_cert_chain(str(pki.server.cert), str(pki.server.key))
    except (ValueError, ssl.SSLError):
        return False
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        conn, _ = listener.accept()
        try:
            with srv.wrap_socket(conn, server_side=True) as s:
                s.recv(1)
        except (ssl.SSLError, OSError):
            pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        with (
            socket.create_connection(listener.getsockname(), timeout=10) as raw,
            _client(pki, version, None, legacy=True).wrap_socket(
                raw, server_hostname="127.0.0.1"
            ) as s,
        ):
            s.sendall(b"x")
            return s.version() is not None
    except (ssl.SSLError, OSError, ValueError):
        return False
    finally:
        t.join(10)
        listener.close()


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("name", list(MODERN))
def test_tls_1_2_and_1_3_with_a_client_certificate_work(port: int, pki: PKI, name: str) -> None:
    version, data = _exchange(port, _client(pki, MODERN[name], pki.client))
    assert version == name
    assert data.startswith(b"HTTP/1.1 200"), data[:200]


@pytest.mark.parametrize("name", list(OLD))
def test_tls_1_0_and_1_1_are_refused(port: int, pki: PKI, name: str) -> None:
    if not _openssl_offers(OLD[name], pki):
        pytest.skip(f"this machine's OpenSSL ({ssl.OPENSSL_VERSION}) cannot negotiate {name}")
    stage, reason = _refusal(port, _client(pki, OLD[name], pki.client, legacy=True))
    assert stage == "handshake"
    assert reason in {"TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL"} | DROPPED
    # The version is the reason: the same client and ciphers on TLS 1.2 are served.
    ctx = _client(pki, MODERN["TLSv1.2"], pki.client, legacy=True)
    assert _exchange(port, ctx)[1].startswith(b"HTTP/1.1 200")


def _assert_refused_for_its_certificate(
    port: int, pki: PKI, name: str, cert: Issued | None, alert: str
) -> None:
    stage, reason = _refusal(port, _client(pki, MODERN[name], cert))
    # TLS 1.2 asks for the certificate inside the handshake; TLS 1.3 after the client finished.
    assert stage == ("handshake" if name == "TLSv1.2" else "after-handshake")
    assert reason in {alert} | DROPPED
    # The certificate is the reason: the same client with the right certificate is served,
    # and the server is unharmed by the refusal.
    assert _exchange(port, _client(pki, MODERN[name], pki.client))[1].startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("name", list(MODERN))
def test_client_without_a_certificate_is_refused(port: int, pki: PKI, name: str) -> None:
    alert = (
        "SSLV3_ALERT_HANDSHAKE_FAILURE"
        if name == "TLSv1.2"
        else ("TLSV13_ALERT_CERTIFICATE_REQUIRED")
    )
    _assert_refused_for_its_certificate(port, pki, name, None, alert)


@pytest.mark.parametrize("name", list(MODERN))
def test_client_certificate_from_another_ca_is_refused(port: int, pki: PKI, name: str) -> None:
    _assert_refused_for_its_certificate(port, pki, name, pki.stranger, "TLSV1_ALERT_UNKNOWN_CA")


def test_plain_http_to_the_tls_port_gets_no_mlflow_answer(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(REQUEST)
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    assert not data.startswith(b"HTTP/"), data[:200]
    assert b"mlflow" not in data.lower()
