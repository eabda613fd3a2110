"""Format sniffing by magic bytes, and size-capped streaming decompression."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib
from typing import IO, Any

# (magic, format) checked in order against a file's first bytes.
MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),
    (b"\x93NUMPY", "npy"),
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"]\x00\x00", "lzma"),
    (b"\x04\x22\x4d\x18", "lz4"),
)
_CHUNK = 1 << 24
COMPRESSED = frozenset({"gzip", "bz2", "xz", "lzma", "lz4", "zlib"})


class ScanLimit(Exception):
    """A stream grew past the configured size cap (decompression bomb or huge member)."""


def sniff(head: bytes) -> str | None:
    """Name the container or compression format of ``head``, or ``'pickle'``, or ``None``."""
    for magic, fmt in MAGICS:
        if head.startswith(magic):
            return fmt
    if len(head) >= 2 and head[0] == 0x80 and head[1] <= 5:
        return "pickle"
    if len(head) >= 2 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0:
        return "zlib"
    return None


class CappedReader(io.RawIOBase):
    """A read-only stream that fails with :class:`ScanLimit` after ``cap`` bytes."""

    def __init__(self, inner: IO[bytes], cap: int) -> None:
        super().__init__()
        self._inner = inner
        self._cap = cap
        self.count = 0

    def readable(self) -> bool:
        return True

    def _account(self, data: bytes) -> bytes:
        self.count += len(data)
        if self.count > self._cap:
            raise ScanLimit(f"stream exceeds the {self._cap}-byte scan limit")
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = self._cap - self.count + 1
        if size <= _CHUNK:
            return self._account(self._inner.read(size))
        # a pickle can claim a multi-GB argument: read in chunks, never pre-allocate the claim
        parts, remaining = [], size
        while remaining > 0:
            part = self._account(self._inner.read(min(remaining, _CHUNK)))
            if not part:
                break
            parts.append(part)
            remaining -= len(part)
        return b"".join(parts)

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        limit = self._cap - self.count + 1
        if size is not None and size >= 0:
            limit = min(limit, size)
        return self._account(self._inner.readline(limit))

    def tell(self) -> int:
        return self.count


class _ZlibReader(io.RawIOBase):
    """Streaming reader of a raw zlib stream (joblib's ``zlib`` compressor)."""

    def __init__(self, inner: IO[bytes]) -> None:
        super().__init__()
        self._inner = inner
        self._d = zlib.decompressobj()
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            if self._d.eof:
                return 0
            data = self._d.unconsumed_tail or self._inner.read(1 << 16)
            if not data:
                raise EOFError("truncated zlib stream")
            self._buf = self._d.decompress(data, 1 << 20)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def decompressor(fmt: str, raw: IO[bytes]) -> IO[bytes]:
    """Open a streaming decompressor for ``fmt`` over ``raw``.

    Raises:
        ImportError: for lz4 when the optional ``lz4`` package is not installed.
    """
    if fmt == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if fmt == "bz2":
        return bz2.BZ2File(raw, mode="rb")
    if fmt == "xz":
        return lzma.LZMAFile(raw, mode="rb", format=lzma.FORMAT_XZ)
    if fmt == "lzma":
        return lzma.LZMAFile(raw, mode="rb", format=lzma.FORMAT_ALONE)
    if fmt == "lz4":
        import lz4.frame  # type: ignore[import-untyped,import-not-found,unused-ignore]

        return lz4.frame.LZ4FrameFile(raw, mode="rb")  # type: ignore[no-any-return]
    if fmt == "zlib":
        return io.BufferedReader(_ZlibReader(raw), 1 << 16)
    raise ValueError(f"not a compression format: {fmt}")
