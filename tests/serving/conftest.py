"""Fixtures for the serving guard: a real signed sklearn model, a policy, tokens, one server.

The model is a real scikit-learn classifier saved by MLflow (three iris classes, pyfunc output
``predict_proba``) and signed with ``oms.sign_model``. One ``mlflow-guard serve`` process per
session runs over TLS (certificates from ``trustme``) with a response-signing key, output
hardening (top-2, rounded to 2 decimals) and a small prediction budget.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from mlflow_guard.core import keys, oms
from mlflow_guard.store import GuardStore
from tests.conftest import KeyPair, KeyRing

BUDGET = 40


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Setup:
    """Signed model, policy, guard database and tokens."""

    root: Path
    model_dir: Path
    policy: Path
    database_uri: str
    response_key: KeyPair
    tokens: dict[str, str]


def save_model(dst: Path) -> Path:
    """Train a small iris classifier and save it with MLflow (pyfunc returns probabilities)."""
    import mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(x, y)
    mlflow.sklearn.save_model(
        model, str(dst), pyfunc_predict_fn="predict_proba", pip_requirements=["scikit-learn"]
    )
    return dst


@pytest.fixture(scope="session")
def setup(tmp_path_factory: pytest.TempPathFactory, keyring: KeyRing) -> Setup:
    """A signed model, its policy (trusting the model key), a guard DB with two tokens."""
    root = tmp_path_factory.mktemp("serving")
    model_dir = save_model(root / "model")
    oms.sign_model(model_dir, keyring["model"].signer)
    db = f"sqlite:///{root}/guard.db"
    policy = root / "guard.yaml"
    policy.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "keys": [
                    {
                        "id": "ci",
                        "public_key": str(keyring["model"].public),
                        "purposes": ["model"],
                    }
                ],
                "storage": {"database_uri": db},
            }
        )
    )
    store = GuardStore(db)
    store.migrate()
    tokens = {u: store.create_token(u, None)[1] for u in ("alice", "bob", "carol")}
    store.dispose()
    return Setup(root, model_dir, policy, db, keyring.get("serving-response"), tokens)


@dataclass
class ServeProcess:
    """A running ``mlflow-guard serve``."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    ca: Path | None

    def stop(self) -> None:
        """Terminate the process group."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def session(self, token: str | None) -> requests.Session:
        """A requests session (trusting the test CA) with ``Authorization: Bearer token``."""
        s = requests.Session()
        s.trust_env = False  # $REQUESTS_CA_BUNDLE would override the test CA
        if self.ca is not None:
            s.verify = str(self.ca)
        if token is not None:
            s.headers["Authorization"] = f"Bearer {token}"
        return s


def start_serve(
    model: Path, policy: Path, args: list[str], log: Path, *, tls_ca: Path | None = None
) -> ServeProcess:
    """Start ``mlflow-guard serve`` and wait until ``/ping`` answers (or the process exits)."""
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow_guard.cli", "serve", str(model), "--policy", str(policy)]
    cmd += ["--port", str(port), *args]
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    scheme = "https" if tls_ca is not None else "http"
    server = ServeProcess(f"{scheme}://127.0.0.1:{port}", proc, log, tls_ca)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited {proc.returncode}:\n{log.read_text()}")
        try:
            if server.session(None).get(server.url + "/ping", timeout=2).status_code == 200:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"serve did not start:\n{log.read_text()}")


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Server certificate and key for 127.0.0.1 and the CA that issued them (trustme)."""
    import trustme

    ca = trustme.CA()
    root = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    out = {"ca": root / "ca.pem", "cert": root / "cert.pem", "key": root / "key.pem"}
    ca.cert_pem.write_to_path(str(out["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(out["cert"]))
    cert.private_key_pem.write_to_path(str(out["key"]))
    return out


@pytest.fixture(scope="session")
def server(setup: Setup, tls_material: dict[str, Path]) -> Iterator[ServeProcess]:
    """One real guarded server (TLS, signed responses, top-2 rounded, budget of 40 rows)."""
    proc = start_serve(
        setup.model_dir,
        setup.policy,
        [
            "--signing-key",
            str(setup.response_key.private),
            "--top-k",
            "2",
            "--round",
            "2",
            "--budget",
            str(BUDGET),
            "--tls-cert",
            str(tls_material["cert"]),
            "--tls-key",
            str(tls_material["key"]),
        ],
        setup.root / "serve.log",
        tls_ca=tls_material["ca"],
    )
    try:
        yield proc
    finally:
        proc.stop()


def public_key(pair: KeyPair) -> keys.PublicKey:
    """The public key of a test key pair."""
    return pair.key.public_key()
