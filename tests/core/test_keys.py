"""Keys: generation, files on disk, passphrases, key ids, sign/verify per algorithm."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mlflow_guard.core import errors, keys
from tests.conftest import PASSPHRASE, KeyRing


def _spki_der(pub: keys.PublicKey) -> bytes:
    return pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize("algorithm", list(keys.Algorithm))
def test_write_keypair_mode_and_key_id(algorithm: keys.Algorithm, tmp_path: Path) -> None:
    key = keys.generate(algorithm)
    priv, pub = keys.write_keypair(tmp_path / "new" / "dir", "k", key)
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert priv.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pub.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    loaded = keys.load_public_key(pub)
    assert keys.key_id(loaded) == hashlib.sha256(_spki_der(key.public_key())).hexdigest()
    assert keys.oms_hint(loaded) == hashlib.sha256(pub.read_bytes()).hexdigest()
    assert keys.algorithm_name(loaded) == algorithm.value


def test_write_keypair_refuses_overwrite(tmp_path: Path) -> None:
    priv, pub = keys.write_keypair(tmp_path, "k", keys.generate())
    before = (priv.read_bytes(), pub.read_bytes())
    with pytest.raises(errors.KeyMaterialError, match="exists already; refusing to overwrite"):
        keys.write_keypair(tmp_path, "k", keys.generate())
    pub.unlink()  # even a lone private key is never replaced
    with pytest.raises(errors.KeyMaterialError, match="refusing to overwrite"):
        keys.write_keypair(tmp_path, "k", keys.generate())
    assert priv.read_bytes() == before[0]
    assert not pub.exists()


def test_passphrase_round_trip_and_errors(keyring: KeyRing) -> None:
    pair = keyring.get("enc", passphrase=PASSPHRASE)
    assert b"ENCRYPTED PRIVATE KEY" in pair.private.read_bytes()
    loaded = keys.load_private_key(pair.private, PASSPHRASE.encode())
    assert keys.key_id(loaded.public_key()) == pair.key_id
    with pytest.raises(errors.KeyMaterialError, match="wrong passphrase") as info:
        keys.load_private_key(pair.private, b"wrong")
    assert info.value.exit_code == 2
    assert PASSPHRASE not in info.value.diagnostics()
    with pytest.raises(errors.KeyMaterialError, match="is encrypted and no passphrase was given"):
        keys.load_private_key(pair.private)
    plain = keyring["model"]
    with pytest.raises(errors.KeyMaterialError, match="is not encrypted but a passphrase"):
        keys.load_private_key(plain.private, b"x")


def test_empty_passphrase_refused() -> None:
    with pytest.raises(errors.KeyMaterialError, match="passphrase is empty"):
        keys.private_pem(keys.generate(), b"")


@pytest.mark.parametrize("algorithm", list(keys.Algorithm))
def test_sign_verify(algorithm: keys.Algorithm) -> None:
    signer = keys.Signer(keys.generate(algorithm))
    verifier = keys.Verifier(signer.public_key)
    sig = signer.sign(b"payload")
    verifier.verify(b"payload", sig)
    with pytest.raises(errors.SignatureInvalid, match="does not verify with key"):
        verifier.verify(b"payloaD", sig)
    other = keys.Verifier(keys.generate(algorithm).public_key())
    with pytest.raises(errors.SignatureInvalid):
        other.verify(b"payload", sig)
    assert verifier.key_id == signer.key_id


def test_p384_loads_and_verifies(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    priv, pub = keys.write_keypair(tmp_path, "p384", key)
    signer = keys.Signer(keys.load_private_key(priv))
    keys.Verifier(keys.load_public_key(pub)).verify(b"m", signer.sign(b"m"))


def test_unsupported_and_malformed_keys(tmp_path: Path) -> None:
    rsa_pub = tmp_path / "rsa.pub"
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_pub.write_bytes(
        rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(errors.KeyMaterialError, match="unsupported key type"):
        keys.load_public_key(rsa_pub)
    p192 = tmp_path / "p192.key"
    p192.write_bytes(
        ec.generate_private_key(ec.SECP192R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(errors.KeyMaterialError, match="unsupported elliptic curve"):
        keys.load_private_key(p192)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key\n")
    with pytest.raises(errors.KeyMaterialError, match="is not a PEM private key"):
        keys.load_private_key(junk)
    with pytest.raises(errors.KeyMaterialError, match="is not a PEM public key"):
        keys.load_public_key(junk)
    with pytest.raises(errors.KeyMaterialError, match="cannot read private key"):
        keys.load_private_key(tmp_path / "missing.key")
    with pytest.raises(errors.KeyMaterialError, match="cannot read public key"):
        keys.load_public_key(tmp_path / "missing.pub")


def test_public_key_is_not_a_private_key(keyring: KeyRing) -> None:
    with pytest.raises(errors.KeyMaterialError, match="is not a PEM private key"):
        keys.load_private_key(keyring["model"].public)


def test_key_files_must_be_small_regular_files(tmp_path: Path) -> None:
    with pytest.raises(errors.KeyMaterialError, match="not a regular file"):
        keys.load_public_key("/dev/zero")
    fifo = tmp_path / "k.key"
    os.mkfifo(fifo)
    with pytest.raises(errors.KeyMaterialError, match="not a regular file"):
        keys.load_private_key(fifo)  # and does not block
    big = tmp_path / "big.pub"
    big.write_bytes(b"A" * (keys.MAX_KEY_FILE_BYTES + 1))
    with pytest.raises(errors.KeyMaterialError, match="larger than"):
        keys.load_public_key(big)
