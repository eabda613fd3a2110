"""Fixtures for feedback tests: keys generated per session, a policy written per test."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlflow_guard.core import keys
from mlflow_guard.core.policy import Policy, load_policy
from mlflow_guard.feedback import FeedbackSigner
from mlflow_guard.feedback.destinations import FileDestination, FileQuarantineSink
from mlflow_guard.feedback.ingest import Ingestor
from mlflow_guard.feedback.quarantine import QuarantineFile
from mlflow_guard.feedback.store import FeedbackStore

NOW = 1_800_000_000.0
HMAC_ENV = "GUARD_TEST_WEB_SECRET"
HMAC_SECRET = b"0123456789abcdef-web-secret"


@dataclass
class Keys:
    ed: keys.PrivateKey
    ec: keys.PrivateKey
    other: keys.PrivateKey
    admin_ds: keys.PrivateKey


@pytest.fixture(scope="session")
def kp() -> Keys:
    return Keys(
        ed=keys.generate(keys.Algorithm.ED25519),
        ec=keys.generate(keys.Algorithm.ECDSA_P256),
        other=keys.generate(keys.Algorithm.ED25519),
        admin_ds=keys.generate(keys.Algorithm.ECDSA_P256),
    )


@dataclass
class Env:
    root: Path
    policy_path: Path
    policy: Policy
    kp: Keys
    checkout: FeedbackSigner
    mobile: FeedbackSigner
    web: FeedbackSigner
    into: Path
    qfile: QuarantineFile
    db: str

    def store(self) -> FeedbackStore:
        return FeedbackStore(self.db)

    def ingestor(self, now: float = NOW, policy: Policy | None = None) -> Ingestor:
        return Ingestor(
            policy or self.policy,
            self.store(),
            FileDestination(self.into),
            FileQuarantineSink(self.qfile),
            clock=lambda: now,
        )

    def line(self, signer: FeedbackSigner, label: str = "ok", ts: float = NOW, **kw: Any) -> bytes:
        return signer.sign_line({"label": label, "prediction": "p-1"}, timestamp=int(ts), **kw)


def write_policy(root: Path, kp: Keys, feedback: dict[str, Any] | None = None) -> Path:
    kdir = root / "keys"
    kdir.mkdir(exist_ok=True)
    for name, k in (("checkout", kp.ed), ("mobile", kp.ec), ("data", kp.admin_ds)):
        (kdir / f"{name}.pub").write_bytes(keys.public_pem(k.public_key()))
    fb: dict[str, Any] = {
        "sources": ["checkout", "mobile"],
        "hmac_sources": [{"id": "web", "secret_env": HMAC_ENV}],
        "tolerance": "300s",
        "clock_skew": "30s",
        "datasets": ["data/feedback.jsonl"],
    }
    fb.update(feedback or {})
    head = textwrap.dedent("""\
        version: 1
        keys:
          - {id: checkout, public_key: keys/checkout.pub, purposes: [feedback]}
          - {id: mobile, public_key: keys/mobile.pub, purposes: [feedback]}
          - {id: data, public_key: keys/data.pub, purposes: [dataset]}
        roles: {platform: [root-admin], reviewer: [bob]}
        access:
          - {role: platform, allow: [read, admin], experiments: "*", models: "*"}
          - {role: reviewer, allow: [read, approve], models: "*"}
        """)
    path = root / "guard.yaml"
    path.write_text(head + yaml.safe_dump({"feedback": fb}))
    return path


@pytest.fixture
def make_env(tmp_path: Path, kp: Keys, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Env]:
    monkeypatch.setenv(HMAC_ENV, HMAC_SECRET.decode())
    monkeypatch.delenv("MLFLOW_GUARD_DATABASE_URI", raising=False)

    def make(feedback: dict[str, Any] | None = None, db: str | None = None) -> Env:
        path = write_policy(tmp_path, kp, feedback)
        return Env(
            root=tmp_path,
            policy_path=path,
            policy=load_policy(path),
            kp=kp,
            checkout=FeedbackSigner("checkout", kp.ed),
            mobile=FeedbackSigner("mobile", kp.ec),
            web=FeedbackSigner("web", HMAC_SECRET),
            into=tmp_path / "data" / "feedback.jsonl",
            qfile=QuarantineFile(tmp_path / "data" / "feedback.quarantine.jsonl"),
            db=db or f"sqlite:///{tmp_path / 'guard.db'}",
        )

    return make


@pytest.fixture
def env(make_env: Callable[..., Env]) -> Env:
    return make_env()
