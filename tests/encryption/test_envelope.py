"""Envelope encryption container: round trips, tampering, wrong keys, rotation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlflow_guard.core.errors import KeyMaterialError
from mlflow_guard.encryption import envelope
from mlflow_guard.encryption.envelope import DecryptionError
from mlflow_guard.encryption.kek import ENV_KEK, LocalKeysetKEK

SEG = 1024 * 1024


@pytest.fixture
def kek(tmp_path: Path) -> LocalKeysetKEK:
    return LocalKeysetKEK.generate(tmp_path / "kek.json")


def _plain(tmp_path: Path, size: int, name: str = "plain.bin") -> Path:
    p = tmp_path / name
    p.write_bytes(os.urandom(size))
    return p


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, 3 * SEG + 12345])
def test_round_trip(tmp_path: Path, kek: LocalKeysetKEK, size: int) -> None:
    plain = _plain(tmp_path, size)
    enc, dec = tmp_path / "c.bin", tmp_path / "d.bin"
    assert envelope.encrypt_file(plain, enc, kek) == size
    assert envelope.is_encrypted(enc)
    data = enc.read_bytes()
    if size >= 16:
        assert plain.read_bytes()[:16] not in data
    assert envelope.decrypt_file(enc, dec, kek) == size
    assert dec.read_bytes() == plain.read_bytes()


def test_keyset_file_is_private_and_never_overwritten(tmp_path: Path, kek: LocalKeysetKEK) -> None:
    assert (tmp_path / "kek.json").stat().st_mode & 0o777 == 0o600
    before = (tmp_path / "kek.json").read_bytes()
    with pytest.raises(KeyMaterialError, match="refusing to overwrite"):
        LocalKeysetKEK.generate(tmp_path / "kek.json")
    assert (tmp_path / "kek.json").read_bytes() == before


def _tamper(tmp_path: Path, kek: LocalKeysetKEK, mutate: object) -> tuple[Path, Path]:
    plain = _plain(tmp_path, 3 * SEG)
    enc = tmp_path / "c.bin"
    envelope.encrypt_file(plain, enc, kek)
    data = bytearray(enc.read_bytes())
    assert callable(mutate)
    enc.write_bytes(bytes(mutate(data)))
    return enc, tmp_path / "out.bin"


def _flip(data: bytearray) -> bytearray:
    data[len(data) // 2] ^= 0x01
    return data


def _truncate(data: bytearray) -> bytearray:
    return data[: len(data) - SEG]


def _reorder(data: bytearray) -> bytearray:
    hdr = len(data) - 3 * SEG - 200
    a, b = hdr + SEG // 2, hdr + SEG + SEG // 2
    data[a : a + 4096], data[b : b + 4096] = data[b : b + 4096], data[a : a + 4096]
    return data


def _cut_tail(data: bytearray) -> bytearray:
    return data[:-1]


@pytest.mark.parametrize("mutate", [_flip, _truncate, _reorder, _cut_tail])
def test_tampered_ciphertext_fails_and_gives_no_plaintext(
    tmp_path: Path, kek: LocalKeysetKEK, mutate: object
) -> None:
    enc, out = _tamper(tmp_path, kek, mutate)
    with pytest.raises(DecryptionError, match="failed authentication"):
        envelope.decrypt_file(enc, out, kek)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_wrong_kek_is_refused(tmp_path: Path, kek: LocalKeysetKEK) -> None:
    plain = _plain(tmp_path, 1000)
    envelope.encrypt_file(plain, tmp_path / "c.bin", kek)
    other = LocalKeysetKEK.generate(tmp_path / "other.json")
    with pytest.raises(KeyMaterialError, match="does not hold"):
        envelope.decrypt_file(tmp_path / "c.bin", tmp_path / "d.bin", other)
    assert not (tmp_path / "d.bin").exists()


def test_header_naming_unknown_key(tmp_path: Path, kek: LocalKeysetKEK) -> None:
    plain = _plain(tmp_path, 1000)
    enc = tmp_path / "c.bin"
    envelope.encrypt_file(plain, enc, kek)
    with enc.open("rb") as f:
        header = envelope.read_header(f)
        rest = f.read()
    forged = envelope.Header(header.alg, header.kek_key_id ^ 0x5A5A, header.wrapped_dek)
    enc.write_bytes(forged.encode() + rest)
    with pytest.raises(KeyMaterialError, match=str(header.kek_key_id ^ 0x5A5A)):
        envelope.decrypt_file(enc, tmp_path / "d.bin", kek)


def test_plaintext_where_ciphertext_expected(tmp_path: Path, kek: LocalKeysetKEK) -> None:
    plain = _plain(tmp_path, 1000)
    with pytest.raises(DecryptionError, match="not an mlflow-guard encrypted artifact"):
        envelope.decrypt_file(plain, tmp_path / "d.bin", kek)


def test_missing_kek_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_KEK, raising=False)
    with pytest.raises(KeyMaterialError, match="not set"):
        LocalKeysetKEK.from_env()
    monkeypatch.setenv(ENV_KEK, str(tmp_path / "nope.json"))
    with pytest.raises(KeyMaterialError, match="cannot read KEK keyset"):
        LocalKeysetKEK.from_env()
    (tmp_path / "bad.json").write_text("{not a keyset")
    with pytest.raises(KeyMaterialError, match="not a Tink keyset"):
        LocalKeysetKEK(tmp_path / "bad.json")


def test_rotation_interrupted_halfway_keeps_everything_readable(
    tmp_path: Path, kek: LocalKeysetKEK
) -> None:
    files = []
    for i in range(4):
        plain = _plain(tmp_path, 5000 + i, f"p{i}.bin")
        enc = tmp_path / f"c{i}.bin"
        envelope.encrypt_file(plain, enc, kek)
        files.append((plain, enc))
    old = kek.primary_id
    new = kek.add_primary()
    for _, enc in files[:2]:
        assert envelope.rewrap(enc, kek)
    reloaded = LocalKeysetKEK(tmp_path / "kek.json")
    assert reloaded.key_ids == {old, new}
    for i, (plain, enc) in enumerate(files):
        out = tmp_path / f"d{i}.bin"
        envelope.decrypt_file(enc, out, reloaded)
        assert out.read_bytes() == plain.read_bytes()
    for _, enc in files[2:]:
        assert envelope.rewrap(enc, reloaded)
    assert not envelope.rewrap(files[0][1], reloaded)
    reloaded.retire({old})
    final = LocalKeysetKEK(tmp_path / "kek.json")
    assert final.key_ids == {new}
    for i, (plain, enc) in enumerate(files):
        with enc.open("rb") as f:
            assert envelope.read_header(f).kek_key_id == new
        envelope.decrypt_file(enc, tmp_path / f"e{i}.bin", final)
        assert (tmp_path / f"e{i}.bin").read_bytes() == plain.read_bytes()
