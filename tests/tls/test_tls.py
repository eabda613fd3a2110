"""TLS option checks and real uvicorn endpoints with certificates made by ``trustme``."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import trustme

from mlflow_guard import tls
from mlflow_guard.core.errors import PolicyError, UsageError

HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def material(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tls")
    out: dict[str, Path] = {}
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    out["ca"] = d / "ca.pem"
    good = ca.issue_cert("127.0.0.1", "localhost")
    good.cert_chain_pems[0].write_to_path(str(d / "good.pem"))
    good.private_key_pem.write_to_path(str(d / "good.key"))
    wrong = ca.issue_cert("other.example")
    wrong.cert_chain_pems[0].write_to_path(str(d / "wrong.pem"))
    wrong.private_key_pem.write_to_path(str(d / "wrong.key"))
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    expired = ca.issue_cert("127.0.0.1", not_before=past - dt.timedelta(days=30), not_after=past)
    expired.cert_chain_pems[0].write_to_path(str(d / "expired.pem"))
    expired.private_key_pem.write_to_path(str(d / "expired.key"))
    client = ca.issue_cert("ci-client@example.com")
    client.private_key_and_cert_chain_pem.write_to_path(str(d / "client.pem"))
    for k in ("good", "wrong", "expired"):
        out[f"{k}.pem"], out[f"{k}.key"] = d / f"{k}.pem", d / f"{k}.key"
    out["client"] = d / "client.pem"
    other = trustme.CA()
    other.cert_pem.write_to_path(str(d / "other-ca.pem"))
    out["other-ca"] = d / "other-ca.pem"
    return out


def _serve(config: tls.TLSConfig) -> Iterator[str]:
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "_hello_asgi:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        *tls.uvicorn_args(config),
    ]
    proc = subprocess.Popen(cmd, cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None:
                raise RuntimeError(proc.stdout.read().decode() if proc.stdout else "uvicorn died")
            time.sleep(0.1)
        yield f"https://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def good_server(material: dict[str, Path]) -> Iterator[str]:
    yield from _serve(tls.TLSConfig(material["good.pem"], material["good.key"]))


@pytest.fixture(scope="module")
def mtls_server(material: dict[str, Path]) -> Iterator[str]:
    yield from _serve(tls.TLSConfig(material["good.pem"], material["good.key"], material["ca"]))


def test_valid_certificate_works(good_server: str, material: dict[str, Path]) -> None:
    r = requests.get(good_server, verify=str(material["ca"]), timeout=10)
    assert r.status_code == 200
    assert r.text == "hello over tls"


def test_untrusted_ca_is_refused(good_server: str, material: dict[str, Path]) -> None:
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        requests.get(good_server, verify=str(material["other-ca"]), timeout=10)


def test_plain_http_to_tls_port_gets_nothing(good_server: str) -> None:
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(good_server.replace("https://", "http://"), timeout=10)


def test_wrong_host_is_refused(material: dict[str, Path]) -> None:
    for url in _serve(tls.TLSConfig(material["wrong.pem"], material["wrong.key"])):
        with pytest.raises(requests.exceptions.SSLError, match=r"match|mismatch"):
            requests.get(url, verify=str(material["ca"]), timeout=10)


def test_expired_certificate_is_refused(material: dict[str, Path]) -> None:
    for url in _serve(tls.TLSConfig(material["expired.pem"], material["expired.key"])):
        with pytest.raises(requests.exceptions.SSLError, match="expired"):
            requests.get(url, verify=str(material["ca"]), timeout=10)


def test_mutual_tls_requires_client_certificate(
    mtls_server: str, material: dict[str, Path]
) -> None:
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        requests.get(mtls_server, verify=str(material["ca"]), timeout=10)
    r = requests.get(
        mtls_server, verify=str(material["ca"]), cert=str(material["client"]), timeout=10
    )
    assert r.status_code == 200


def test_check_refuses_plain_http_off_loopback() -> None:
    with pytest.raises(PolicyError, match="refusing to serve plain HTTP on non-loopback"):
        tls.check("0.0.0.0", tls.TLSConfig(), insecure_http=False)
    warning = tls.check("0.0.0.0", tls.TLSConfig(), insecure_http=True)
    assert warning is not None
    assert "clear text" in warning
    assert tls.check("127.0.0.1", tls.TLSConfig(), insecure_http=False) is None
    assert tls.check("::1", tls.TLSConfig(), insecure_http=False) is None
    assert tls.check("localhost", tls.TLSConfig(), insecure_http=False) is None


def test_check_bad_material(material: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="go together"):
        tls.check("127.0.0.1", tls.TLSConfig(cert=material["good.pem"]), insecure_http=False)
    with pytest.raises(UsageError, match="needs --tls-cert"):
        tls.check("127.0.0.1", tls.TLSConfig(client_ca=material["ca"]), insecure_http=False)
    mismatched = tls.TLSConfig(material["good.pem"], material["wrong.key"])
    with pytest.raises(PolicyError, match="key values mismatch"):
        tls.check("0.0.0.0", mismatched, insecure_http=False)
    missing = tls.TLSConfig(tmp_path / "nope.pem", material["good.key"])
    with pytest.raises(PolicyError, match="cannot use TLS certificate"):
        tls.check("0.0.0.0", missing, insecure_http=False)
    ok = tls.TLSConfig(material["good.pem"], material["good.key"], material["ca"])
    assert tls.check("0.0.0.0", ok, insecure_http=False) is None
    assert "--ssl-cert-reqs" in tls.uvicorn_args(ok)
    assert "--cert-reqs" in tls.gunicorn_args(ok)
    assert tls.merge_opts("--timeout 5", ["--certfile", "a b"]) == "--timeout 5 --certfile 'a b'"
