"""Root fixtures: key pairs per purpose (generated once per session), policies, model dirs.

Private keys are generated here, in temporary folders, never committed. Fixtures return plain
paths so tests can hand them to the library, the CLI and ``model_signing`` alike.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlflow_guard.core import keys
from mlflow_guard.core.policy import Purpose

_MLFLOW_ENV = (
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
)
_URI_GLOBALS = (
    ("mlflow.tracking._tracking_service.utils", "_tracking_uri"),
    ("mlflow.tracking._model_registry.utils", "_registry_uri"),
)


@pytest.fixture(autouse=True, scope="module")
def _no_mlflow_state_leaks_across_modules() -> Iterator[None]:
    """MLflow's ``set_experiment`` exports ``MLFLOW_EXPERIMENT_ID`` to the process environment
    (for child processes); a test module that used one store must not leave that id, or the
    fluent API's active experiment, or a tracking/registry URI set with ``mlflow.set_*_uri``,
    to the next module, which may use another store."""
    before = {k: os.environ.get(k) for k in _MLFLOW_ENV}
    uris = {m: getattr(sys.modules[m], a, None) for m, a in _URI_GLOBALS if m in sys.modules}
    yield
    for k, v in before.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    fluent = sys.modules.get("mlflow.tracking.fluent")
    if fluent is not None:
        fluent._active_experiment_id = None  # type: ignore[attr-defined]
        while fluent.active_run() is not None:  # type: ignore[attr-defined]
            fluent.end_run()  # type: ignore[attr-defined]
    for m, a in _URI_GLOBALS:  # set_tracking_uri / set_registry_uri are process-global
        if m in sys.modules:
            setattr(sys.modules[m], a, uris.get(m))


PASSPHRASE = "correct horse battery staple"
PASSPHRASE_ENV = "MLFLOW_GUARD_TEST_PASSPHRASE"


@dataclass(frozen=True)
class KeyPair:
    """A generated key pair on disk."""

    name: str
    private: Path
    public: Path
    key: keys.PrivateKey

    @property
    def signer(self) -> keys.Signer:
        """Signer for the private key."""
        return keys.Signer(self.key)

    @property
    def key_id(self) -> str:
        """Hex sha256 of the public key DER."""
        return keys.key_id(self.key.public_key())


class KeyRing:
    """Session key pairs: one P-256 pair per purpose, plus extra named pairs on demand."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._pairs: dict[str, KeyPair] = {}

    def get(
        self,
        name: str,
        algorithm: keys.Algorithm = keys.Algorithm.ECDSA_P256,
        passphrase: str | None = None,
    ) -> KeyPair:
        """The pair called ``name`` (created on first use)."""
        if name not in self._pairs:
            key = keys.generate(algorithm)
            pw = passphrase.encode() if passphrase else None
            priv, pub = keys.write_keypair(self.root, name, key, pw)
            self._pairs[name] = KeyPair(name, priv, pub, key)
        return self._pairs[name]

    def __getitem__(self, purpose: str) -> KeyPair:
        return self.get(purpose)


@pytest.fixture(scope="session")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    """Key pairs generated per session: ``keyring['model']``, ``keyring.get('other')``."""
    ring = KeyRing(tmp_path_factory.mktemp("keys"))
    for p in Purpose:
        ring.get(p.value)
    return ring


@pytest.fixture(scope="session")
def model_key(keyring: KeyRing) -> KeyPair:
    """The session's P-256 key pair for purpose ``model``."""
    return keyring["model"]


PolicyWriter = Callable[..., Path]


@pytest.fixture
def write_policy(tmp_path: Path) -> PolicyWriter:
    """Write a ``guard.yaml`` and return its path.

    Call as ``write_policy({"ci": (pair, ["model"])}, revoked=[...], not_after={"ci": dt})``
    or ``write_policy(raw={...})`` for an arbitrary document (``raw_text=`` for bytes as-is).
    """
    counter = iter(range(1_000_000))

    def write(
        trusted: Mapping[str, tuple[KeyPair, list[str]]] | None = None,
        *,
        revoked: list[str] | None = None,
        not_after: Mapping[str, datetime] | None = None,
        raw: dict[str, Any] | None = None,
        raw_text: str | None = None,
        name: str | None = None,
    ) -> Path:
        folder = tmp_path / f"policy{next(counter)}"
        folder.mkdir()
        path = folder / (name or "guard.yaml")
        if raw_text is not None:
            path.write_text(raw_text)
            return path
        if raw is None:
            entries = []
            for kid, (pair, purposes) in (trusted or {}).items():
                entry: dict[str, Any] = {
                    "id": kid,
                    "public_key": str(pair.public),
                    "purposes": purposes,
                }
                if not_after and kid in not_after:
                    entry["not_after"] = not_after[kid].isoformat()
                entries.append(entry)
            raw = {"version": 1, "keys": entries, "revoked": revoked or []}
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    return write


ModelFactory = Callable[..., Path]

DEFAULT_FILES: dict[str, bytes] = {
    "MLmodel": b"artifact_path: model\nflavors: {}\n",
    "model.pkl": bytes(range(256)) * 8,
    "conda.yaml": b"name: demo\n",
    "sub/weights.bin": b"\x00\x01" * 1500,
    "sub/deeper/notes.txt": b"hello",
}


@pytest.fixture
def make_model(tmp_path: Path) -> ModelFactory:
    """Create a small model directory: ``make_model()`` or ``make_model("m2", files={...})``."""

    def make(name: str = "model", files: Mapping[str, bytes] | None = None) -> Path:
        root = tmp_path / name
        root.mkdir(parents=True)
        for rel, data in (DEFAULT_FILES if files is None else files).items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        return root

    return make


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (symlinks as their target text) — to assert nothing changed."""
    out: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames + [d for d in dirnames if Path(dirpath, d).is_symlink()]:
            p = Path(dirpath, n)
            rel = p.relative_to(root).as_posix()
            out[rel] = (b"->" + os.readlink(p).encode()) if p.is_symlink() else p.read_bytes()
    return out


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No ``$MLFLOW_GUARD_POLICY`` and a cwd without ``guard.yaml``; yields that cwd."""
    monkeypatch.delenv("MLFLOW_GUARD_POLICY", raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd
