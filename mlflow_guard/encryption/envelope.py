"""The encrypted-artifact container: a small header naming the wrapping key, then Tink ciphertext.

Layout: ``MAGIC`` (16 bytes) · header length (4 bytes, big endian) · header JSON
(``alg``, ``kek_key_id``, ``wrapped_dek``: a Tink *encrypted keyset* in base64, and
``bound: true`` when the ciphertext is bound to its location) · Tink streaming AEAD ciphertext
(AES256-GCM-HKDF, 1 MiB segments; every segment authenticated, truncation and reordering
detected). A bound ciphertext authenticates ``MAGIC || 0x00 || location`` as associated data, so
the same bytes moved or copied to another artifact path (another run, another file) fail
authentication; the location itself is not stored, the reader supplies where it read from.
Decryption writes to a temporary file and renames only after the whole stream authenticated,
so a caller never receives partial plaintext.
"""

from __future__ import annotations

import base64
import io
import json
import os
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mlflow_guard.core.errors import KeyMaterialError, VerificationError
from mlflow_guard.encryption.kek import KeyEncryptionKey

MAGIC = b"MLFLOWGUARDENC1\n"
ALG = "AES256_GCM_HKDF_1MB"
_STREAM_AD = MAGIC
_DEK_AD = b"mlflow-guard/dek/v1"
_MAX_HEADER = 64 * 1024
CHUNK = 1024 * 1024


class DecryptionError(VerificationError):
    """Ciphertext failed authentication, or the container is malformed: no plaintext is given."""


@dataclass(frozen=True)
class Header:
    """The container header."""

    alg: str
    kek_key_id: int
    wrapped_dek: bytes
    bound: bool = False

    def encode(self) -> bytes:
        """MAGIC + length + JSON."""
        doc: dict[str, object] = {
            "alg": self.alg,
            "kek_key_id": self.kek_key_id,
            "wrapped_dek": base64.b64encode(self.wrapped_dek).decode("ascii"),
        }
        if self.bound:
            doc["bound"] = True
        body = json.dumps(doc, sort_keys=True).encode("utf-8")
        return MAGIC + struct.pack(">I", len(body)) + body


class _NoClose(io.RawIOBase):
    """Tink closes the stream it writes to; keep the caller's file open."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        return self._inner.write(b)

    def close(self) -> None:
        self._inner.flush()
        super().close()


def read_header(src: BinaryIO, *, source: str = "artifact") -> Header:
    """Read and check the header; leaves ``src`` at the start of the ciphertext.

    Raises:
        DecryptionError: not an mlflow-guard encrypted artifact, or a malformed header.
    """
    magic = src.read(len(MAGIC))
    if magic != MAGIC:
        raise DecryptionError(
            f"{source} is not an mlflow-guard encrypted artifact (plaintext where ciphertext "
            "is expected)",
            hint="re-upload it through the encrypting artifact store, or allow legacy "
            "plaintext explicitly",
        )
    raw_len = src.read(4)
    if len(raw_len) != 4:
        raise DecryptionError(f"{source}: truncated header")
    (n,) = struct.unpack(">I", raw_len)
    if n > _MAX_HEADER:
        raise DecryptionError(f"{source}: header of {n} bytes exceeds {_MAX_HEADER}")
    try:
        doc = json.loads(src.read(n))
        header = Header(
            str(doc["alg"]),
            int(doc["kek_key_id"]),
            base64.b64decode(doc["wrapped_dek"], validate=True),
            doc.get("bound", False) is True,
        )
    except (ValueError, KeyError, TypeError) as e:
        raise DecryptionError(f"{source}: malformed header", details=[str(e)]) from e
    if header.alg != ALG:
        raise DecryptionError(
            f"{source}: unsupported algorithm {header.alg!r}", details=[f"expected {ALG}"]
        )
    return header


def is_encrypted(path: str | os.PathLike[str]) -> bool:
    """Whether a file starts with the container magic."""
    with open(path, "rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def _dek_primitive(header: Header, kek: KeyEncryptionKey, source: str) -> object:
    import tink
    from tink import proto_keyset_format, streaming_aead

    if header.kek_key_id not in kek.key_ids:
        raise KeyMaterialError(
            f"{source} was encrypted under KEK key {header.kek_key_id}, which the configured "
            f"KEK does not hold (it has {sorted(kek.key_ids)})",
            hint="configure the KEK keyset this artifact was written with",
        )
    try:
        handle = proto_keyset_format.parse_encrypted(header.wrapped_dek, kek.aead(), _DEK_AD)
    except tink.TinkError as e:
        raise DecryptionError(f"{source}: the data key does not unwrap with the KEK") from e
    return handle.primitive(streaming_aead.StreamingAead)


def _stream_ad(location: str | None) -> bytes:
    if location is None:
        return _STREAM_AD
    return _STREAM_AD + b"\x00" + location.encode("utf-8")


def encrypt_stream(
    src: BinaryIO, dst: BinaryIO, kek: KeyEncryptionKey, *, location: str | None = None
) -> int:
    """Encrypt ``src`` into ``dst`` under a fresh data key; returns plaintext bytes read.

    With ``location`` the ciphertext is bound to it: it decrypts only when read as ``location``.
    """
    import tink
    from tink import proto_keyset_format, streaming_aead

    dek = tink.new_keyset_handle(streaming_aead.streaming_aead_key_templates.AES256_GCM_HKDF_1MB)
    wrapped = proto_keyset_format.serialize_encrypted(dek, kek.aead(), _DEK_AD)
    dst.write(Header(ALG, kek.primary_id, wrapped, location is not None).encode())
    total = 0
    prim = dek.primitive(streaming_aead.StreamingAead)
    with prim.new_encrypting_stream(_NoClose(dst), _stream_ad(location)) as enc:
        while chunk := src.read(CHUNK):
            enc.write(chunk)
            total += len(chunk)
    return total


def iter_decrypted(
    src: BinaryIO,
    kek: KeyEncryptionKey,
    *,
    source: str = "artifact",
    location: str | None = None,
) -> Iterator[bytes]:
    """Yield authenticated plaintext chunks (for hashing without writing plaintext to disk).

    ``location`` is where the ciphertext was read from; a bound ciphertext (header
    ``bound: true``) authenticates only there. Unbound (older) ciphertexts ignore it.
    A consumer must treat the data as untrusted until the iterator finished without error.
    """
    import tink

    header = read_header(src, source=source)
    if header.bound and location is None:
        raise DecryptionError(
            f"{source} is bound to its artifact location, and none was given to check it",
            hint="read it through the guard+ artifact repository",
        )
    prim = _dek_primitive(header, kek, source)
    ad = _stream_ad(location if header.bound else None)
    try:
        with prim.new_decrypting_stream(src, ad) as dec:  # type: ignore[attr-defined]
            while chunk := dec.read(CHUNK):
                yield chunk
    except tink.TinkError as e:
        raise DecryptionError(
            f"{source}: ciphertext failed authentication (truncated, reordered or modified"
            + (", or moved here from another artifact path" if header.bound else "")
            + ")",
            hint="the stored artifact was tampered with or corrupted; restore it from a "
            "trusted copy",
        ) from e


def encrypt_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    kek: KeyEncryptionKey,
    *,
    location: str | None = None,
) -> int:
    """Encrypt one file to another path (atomic); bound to ``location`` when given."""
    d = Path(dst)
    fd, tmp = tempfile.mkstemp(dir=d.parent, prefix=f".{d.name}.", suffix=".enc")
    try:
        with open(src, "rb") as fi, os.fdopen(fd, "wb") as fo:
            n = encrypt_stream(fi, fo, kek, location=location)
        os.replace(tmp, d)
        return n
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def decrypt_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    kek: KeyEncryptionKey,
    *,
    location: str | None = None,
) -> int:
    """Decrypt one file; ``dst`` appears only if the whole ciphertext authenticated."""
    d = Path(dst)
    d.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d.parent, prefix=f".{d.name}.", suffix=".part")
    total = 0
    try:
        with open(src, "rb") as fi, os.fdopen(fd, "wb") as fo:
            for chunk in iter_decrypted(fi, kek, source=str(src), location=location):
                fo.write(chunk)
                total += len(chunk)
        os.replace(tmp, d)
        return total
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def wrapping_key_id(wrapped_dek: bytes) -> int | None:
    """The KEK key that actually wrapped a data key, read from the wrapped keyset itself.

    ``wrapped_dek`` is a Tink ``EncryptedKeyset``; its ``encrypted_keyset`` field is a Tink AEAD
    ciphertext whose output prefix is ``0x01`` followed by the 4-byte id of the key that made it.
    Unlike the header's ``kek_key_id``, this cannot be changed without the data key failing to
    unwrap (Tink only tries the key the prefix names). ``None``: no Tink prefix, or unparsable.
    """
    from tink.proto import tink_pb2

    ek = tink_pb2.EncryptedKeyset()
    try:
        ek.ParseFromString(wrapped_dek)
    except Exception:  # protobuf's DecodeError (protobuf ships no type stubs here)
        return None
    ct = bytes(ek.encrypted_keyset)
    if len(ct) < 5 or ct[0] != 0x01:
        return None
    return int.from_bytes(ct[1:5], "big")


@dataclass(frozen=True)
class WrapInfo:
    """Which KEK key a file claims and which one actually wrapped its data key."""

    path: str
    header_key_id: int
    actual_key_id: int | None

    @property
    def header_lies(self) -> bool:
        """The header names another key than the one in the wrapped data key's Tink prefix."""
        return self.actual_key_id != self.header_key_id


def inspect(path: str | os.PathLike[str]) -> WrapInfo:
    """Read a container's header and the real wrapping key id (no KEK needed).

    Raises:
        DecryptionError: not a container, or a malformed header.
    """
    with open(path, "rb") as f:
        header = read_header(f, source=str(path))
    return WrapInfo(str(path), header.kek_key_id, wrapping_key_id(header.wrapped_dek))


def _unwrap(header: Header, kek: KeyEncryptionKey, source: str) -> object:
    """Unwrap by what the wrapped keyset says, never by the header's ``kek_key_id``."""
    import tink
    from tink import proto_keyset_format

    actual = wrapping_key_id(header.wrapped_dek)
    if actual is None or actual not in kek.key_ids:
        raise DecryptionError(
            f"{source}: the data key is wrapped by "
            + (f"KEK key {actual}" if actual is not None else "no recognisable KEK key")
            + f", which the configured KEK does not hold (it has {sorted(kek.key_ids)})",
            hint="configure the KEK keyset this artifact was written with, or restore the "
            "file from a trusted copy",
        )
    try:
        return proto_keyset_format.parse_encrypted(header.wrapped_dek, kek.aead(), _DEK_AD)
    except tink.TinkError as e:
        raise DecryptionError(
            f"{source}: the data key does not unwrap with KEK key {actual}",
            hint="the wrapped data key was modified or the keyset is not the one it was "
            "written with; restore the file from a trusted copy",
        ) from e


def is_current(path: str | os.PathLike[str], kek: KeyEncryptionKey) -> bool:
    """Whether the file's data key is wrapped by the KEK's primary key and unwraps with it.

    Decided from the wrapped keyset (Tink output prefix) and an actual unwrap, not from the
    header. Raises :class:`DecryptionError` when the data key does not unwrap at all.
    """
    with open(path, "rb") as f:
        header = read_header(f, source=str(path))
    _unwrap(header, kek, str(path))
    return wrapping_key_id(header.wrapped_dek) == kek.primary_id


def rewrap(path: str | os.PathLike[str], kek: KeyEncryptionKey) -> bool:
    """Re-wrap a file's data key under the KEK's primary key, copying the ciphertext unchanged.

    Which key wraps the data key is read from the wrapped keyset's Tink prefix and proven by
    unwrapping it; the header's ``kek_key_id`` is never trusted for that (a writer of the store
    can edit it, and a file skipped on its word would be lost when the old key is retired). A
    header that names another key than the real one is rewritten with the truth.

    Atomic per file: an interrupted rotation leaves each file either old or new, both readable
    while the old KEK key is still in the keyset. Returns False if the file was already current
    (wrapped by the primary key, and the header says so).

    Raises:
        DecryptionError: the data key does not unwrap with any key of the KEK.
    """
    from tink import proto_keyset_format

    p = Path(path)
    with open(p, "rb") as f:
        header = read_header(f, source=str(p))
        handle = _unwrap(header, kek, str(p))
        actual = wrapping_key_id(header.wrapped_dek)
        if actual == kek.primary_id and header.kek_key_id == actual:
            return False
        wrapped = (
            header.wrapped_dek
            if actual == kek.primary_id
            else proto_keyset_format.serialize_encrypted(handle, kek.aead(), _DEK_AD)
        )
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".rewrap")
        try:
            with os.fdopen(fd, "wb") as fo:
                fo.write(Header(ALG, kek.primary_id, wrapped, header.bound).encode())
                while chunk := f.read(CHUNK):
                    fo.write(chunk)
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return True
