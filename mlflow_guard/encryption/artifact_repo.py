"""Artifact repository plugin ``guard+<scheme>://…``: encrypts on upload, decrypts on download.

Registered for ``guard+file``, ``guard+s3``, ``guard+gs``, ``guard+wasbs``, ``guard+hdfs``,
``guard+mlflow-artifacts``, ``guard+http`` and ``guard+https``: the part after ``guard+`` is the
inner repository MLflow already knows, which only ever sees ciphertext. The key-encryption key
comes from ``$MLFLOW_GUARD_KEK_KEYSET``. Plaintext found where ciphertext is expected is refused
unless ``$MLFLOW_GUARD_ALLOW_PLAINTEXT_ARTIFACTS=true`` (legacy migration only).

Used on a client, artifacts are encrypted before they leave the machine; used as the server's
``--artifacts-destination``, the proxied store holds only ciphertext and the server decrypts for
callers the guard authorized.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import shutil
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

from mlflow.store.artifact.artifact_repo import ArtifactRepository
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from mlflow_guard.core.errors import GuardError, PolicyError, UnsafePath
from mlflow_guard.encryption import envelope
from mlflow_guard.encryption.kek import KeyEncryptionKey, LocalKeysetKEK

_logger = logging.getLogger(__name__)
PREFIX = "guard+"
ENV_ALLOW_PLAINTEXT = "MLFLOW_GUARD_ALLOW_PLAINTEXT_ARTIFACTS"


_OWNER_ID = re.compile(r"^(?:m-|tr-)?[0-9a-f]{32}$")


def location(artifact_uri: str, path: str) -> str:
    """The location a stored artifact is bound to (associated data of its ciphertext).

    The file's path from the run (or logged model, trace) id on, ``RUN_ID/artifacts/REL``,
    so ciphertext copied to another run or another file does not decrypt, while moving the
    whole store (another bucket, prefix or host) keeps it readable. Paths outside MLflow's
    layout are bound in full (scheme and host excluded).
    """
    base = urllib.parse.urlparse(inner_uri(artifact_uri)).path
    full = posixpath.normpath(posixpath.join("/", base, path))
    parts = [p for p in full.split("/") if p]
    for i in range(len(parts) - 1):
        if parts[i + 1] == "artifacts" and _OWNER_ID.match(parts[i]):
            return "/".join(parts[i:])
    return "/".join(parts)


def inner_uri(artifact_uri: str) -> str:
    """Strip the ``guard+`` prefix.

    Raises:
        PolicyError: the URI does not start with ``guard+``.
    """
    if not artifact_uri.startswith(PREFIX):
        raise PolicyError(f"{artifact_uri!r} is not a guard+ artifact URI")
    return artifact_uri[len(PREFIX) :]


class GuardArtifactRepository(ArtifactRepository):
    """Wraps another artifact repository with envelope encryption."""

    def __init__(
        self, artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None
    ) -> None:
        super().__init__(artifact_uri, tracking_uri=tracking_uri, registry_uri=registry_uri)
        self._inner = get_artifact_repository(
            inner_uri(artifact_uri), tracking_uri=tracking_uri, registry_uri=registry_uri
        )
        self._kek: KeyEncryptionKey | None = None

    def _key(self) -> KeyEncryptionKey:
        if self._kek is None:
            self._kek = LocalKeysetKEK.from_env()
        return self._kek

    def log_artifact(self, local_file: str, artifact_path: str | None = None) -> None:
        """Encrypt one file, then hand the ciphertext to the inner repository."""
        kek = self._key()
        with tempfile.TemporaryDirectory(prefix="mlflow-guard-enc-") as tmp:
            name = Path(local_file).name
            enc = Path(tmp) / name
            at = location(self.artifact_uri, posixpath.join(artifact_path or "", name))
            envelope.encrypt_file(local_file, enc, kek, location=at)
            self._inner.log_artifact(str(enc), artifact_path)  # type: ignore[no-untyped-call]

    def log_artifacts(self, local_dir: str, artifact_path: str | None = None) -> None:
        """Encrypt a directory tree file by file, then upload the ciphertext tree."""
        kek = self._key()
        src = Path(local_dir)
        with tempfile.TemporaryDirectory(prefix="mlflow-guard-enc-") as tmp:
            root = Path(tmp)
            for dirpath, _dirs, files in os.walk(src):
                rel = Path(dirpath).relative_to(src)
                (root / rel).mkdir(parents=True, exist_ok=True)
                for name in files:
                    p = Path(dirpath) / name
                    if p.is_symlink():  # never follow a link out of the folder, never drop it
                        raise UnsafePath(
                            f"refusing to upload symlink {p}",
                            hint="copy the target into the folder instead of linking it",
                        )
                    rel_path = posixpath.join(artifact_path or "", *rel.parts, name)
                    at = location(self.artifact_uri, rel_path)
                    envelope.encrypt_file(p, root / rel / name, kek, location=at)
            self._inner.log_artifacts(str(root), artifact_path)  # type: ignore[no-untyped-call]

    def list_artifacts(self, path: str | None = None) -> list[Any]:
        """Listing of the inner repository (sizes are ciphertext sizes)."""
        return list(self._inner.list_artifacts(path))

    def _download_file(self, remote_file_path: str, local_path: str) -> None:
        direct = self._inner.get_local_path(remote_file_path)
        if direct is not None:  # a local inner store: decrypt in place, no ciphertext copy
            self._decrypt(Path(direct), local_path, remote_file_path)
            return
        with tempfile.TemporaryDirectory(prefix="mlflow-guard-dec-") as tmp:
            enc = Path(tmp) / "ciphertext"
            self._inner._download_file(remote_file_path, str(enc))  # type: ignore[no-untyped-call]
            self._decrypt(enc, local_path, remote_file_path)

    def _decrypt(self, enc: Path, local_path: str, name: str) -> None:
        if not envelope.is_encrypted(enc) and os.environ.get(ENV_ALLOW_PLAINTEXT) == "true":
            shutil.copyfile(enc, local_path)
            return
        try:
            at = location(self.artifact_uri, name)
            envelope.decrypt_file(enc, local_path, self._key(), location=at)
        except GuardError as e:
            # MLflow's runs:/ resolver swallows download errors; say why here too.
            _logger.error("mlflow-guard refused %s: %s", name, e.diagnostics())
            raise

    def delete_artifacts(self, artifact_path: str | None = None) -> None:
        """Delete in the inner repository."""
        self._inner.delete_artifacts(artifact_path)  # type: ignore[no-untyped-call]
