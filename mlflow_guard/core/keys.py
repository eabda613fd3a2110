"""Key material: generation, PEM files, key ids, and the signer/verifier pair per algorithm.

Default algorithm is ECDSA P-256 with SHA-256 (what the OpenSSF ``model_signing`` verifier
accepts); Ed25519 is supported where interoperability does not require P-256. Signatures are
DER-encoded for ECDSA (as Sigstore bundles carry them) and raw 64 bytes for Ed25519.

Key id: hex sha256 of the public key's SubjectPublicKeyInfo DER. The OMS bundle ``hint`` is
what ``model_signing`` defines: hex sha256 of the SubjectPublicKeyInfo **PEM**.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from mlflow_guard.core.errors import KeyMaterialError, SignatureInvalid

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

_CURVE_HASH: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


MAX_KEY_FILE_BYTES = 1024 * 1024


def read_small_file(path: Path, limit: int = MAX_KEY_FILE_BYTES) -> bytes:
    """Read a configuration-sized regular file (a FIFO or device would block or never end).

    Raises:
        OSError: unreadable, not a regular file, or larger than ``limit`` bytes.
    """
    with open(path, "rb", opener=lambda f, fl: os.open(f, fl | os.O_NONBLOCK)) as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes")
    return data


class Algorithm(StrEnum):
    """Signature algorithms mlflow-guard generates."""

    ECDSA_P256 = "ecdsa-p256"
    ED25519 = "ed25519"


def generate(algorithm: Algorithm = Algorithm.ECDSA_P256) -> PrivateKey:
    """Generate a new private key."""
    if algorithm is Algorithm.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def algorithm_name(key: PublicKey | PrivateKey) -> str:
    """A short name for a key's algorithm (``ecdsa-p256``, ``ed25519``, ...)."""
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "ed25519"
    return {"secp256r1": "ecdsa-p256", "secp384r1": "ecdsa-p384", "secp521r1": "ecdsa-p521"}.get(
        key.curve.name, f"ecdsa-{key.curve.name}"
    )


def public_pem(key: PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM of a public key."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(key: PublicKey) -> str:
    """Key id: hex sha256 of the SubjectPublicKeyInfo DER."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def oms_hint(key: PublicKey) -> str:
    """The OMS / model_signing public-key hint: hex sha256 of the SubjectPublicKeyInfo PEM."""
    return hashlib.sha256(public_pem(key)).hexdigest()


def private_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM of a private key, encrypted when a passphrase is given.

    Raises:
        KeyMaterialError: the passphrase is empty (it would silently mean "not encrypted").
    """
    if passphrase is not None and not passphrase:
        raise KeyMaterialError(
            "the passphrase is empty", hint="give a non-empty passphrase, or none at all"
        )
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def _check_supported(key: object, path: Path) -> None:
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        if key.curve.name not in _CURVE_HASH:
            raise KeyMaterialError(
                f"{path}: unsupported elliptic curve {key.curve.name}",
                hint="use an ECDSA P-256/P-384/P-521 or Ed25519 key",
            )
        return
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return
    raise KeyMaterialError(
        f"{path}: unsupported key type {type(key).__name__}",
        hint="use an ECDSA P-256 or Ed25519 key (`mlflow-guard keys generate`)",
    )


def load_private_key(path: str | os.PathLike[str], passphrase: bytes | None = None) -> PrivateKey:
    """Load a PEM private key.

    Raises:
        KeyMaterialError: missing file, not a PEM key, wrong or missing passphrase,
            unsupported type.
    """
    p = Path(path)
    try:
        data = read_small_file(p)
    except OSError as e:
        raise KeyMaterialError(
            f"cannot read private key {p}: {e.strerror or e}",
            hint="check the path; generate one with `mlflow-guard keys generate`",
        ) from e
    try:
        key = serialization.load_pem_private_key(data, passphrase)
    except TypeError as e:
        if passphrase is None:
            raise KeyMaterialError(
                f"private key {p} is encrypted and no passphrase was given",
                hint="set the passphrase environment variable or answer the prompt",
            ) from e
        raise KeyMaterialError(
            f"private key {p} is not encrypted but a passphrase was given",
            hint="unset the passphrase",
        ) from e
    except ValueError as e:
        if passphrase is not None and b"ENCRYPTED" in data:
            raise KeyMaterialError(
                f"wrong passphrase for private key {p}",
                hint="check the passphrase environment variable",
            ) from e
        raise KeyMaterialError(
            f"{p} is not a PEM private key",
            details=[str(e)],
            hint="pass the private key file written by `mlflow-guard keys generate`",
        ) from e
    except UnsupportedAlgorithm as e:
        raise KeyMaterialError(f"{p}: unsupported key algorithm", hint="use ECDSA P-256") from e
    _check_supported(key, p)
    assert isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey)
    return key


def parse_public_key(data: bytes, *, source: str = "public key") -> PublicKey:
    """Parse a PEM public key from bytes.

    Raises:
        KeyMaterialError: not a PEM public key or an unsupported type.
    """
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise KeyMaterialError(
            f"{source} is not a PEM public key",
            details=[str(e)],
            hint="pass the .pub file written by `mlflow-guard keys generate`",
        ) from e
    _check_supported(key, Path(source))
    assert isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey)
    return key


def load_public_key(path: str | os.PathLike[str]) -> PublicKey:
    """Load a PEM public key file.

    Raises:
        KeyMaterialError: missing file, not a PEM public key or an unsupported type.
    """
    p = Path(path)
    try:
        data = read_small_file(p)
    except OSError as e:
        raise KeyMaterialError(
            f"cannot read public key {p}: {e.strerror or e}",
            hint="check the path in the policy (relative to the policy file) or --public-key",
        ) from e
    return parse_public_key(data, source=str(p))


@dataclass(frozen=True)
class Signer:
    """Signs bytes with a private key; knows its key id and OMS hint."""

    private_key: PrivateKey

    @property
    def public_key(self) -> PublicKey:
        """The matching public key."""
        return self.private_key.public_key()

    @property
    def key_id(self) -> str:
        """Hex sha256 of the public key's SubjectPublicKeyInfo DER."""
        return key_id(self.public_key)

    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` (ECDSA: DER signature with the curve's hash; Ed25519: raw)."""
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            return self.private_key.sign(data)
        algo = _CURVE_HASH[self.private_key.curve.name]()
        return self.private_key.sign(data, ec.ECDSA(algo))


@dataclass(frozen=True)
class Verifier:
    """Verifies signatures made by one public key."""

    public_key: PublicKey

    @property
    def key_id(self) -> str:
        """Hex sha256 of the public key's SubjectPublicKeyInfo DER."""
        return key_id(self.public_key)

    def primitive(self) -> Callable[[bytes, bytes], None]:
        """``check(signature, data)`` bound to this key, for hot loops over many signatures.

        The hash and ECDSA parameters are built once; the function raises
        ``cryptography.exceptions.InvalidSignature`` (not :class:`SignatureInvalid`).
        """
        pub = self.public_key
        if isinstance(pub, ed25519.Ed25519PublicKey):
            return pub.verify
        ecdsa = ec.ECDSA(_CURVE_HASH[pub.curve.name]())

        def check(signature: bytes, data: bytes) -> None:
            pub.verify(signature, data, ecdsa)

        return check

    def verify(self, data: bytes, signature: bytes) -> None:
        """Verify a signature over ``data``.

        Raises:
            SignatureInvalid: the signature does not verify with this key.
        """
        try:
            if isinstance(self.public_key, ed25519.Ed25519PublicKey):
                self.public_key.verify(signature, data)
            else:
                algo = _CURVE_HASH[self.public_key.curve.name]()
                self.public_key.verify(signature, data, ec.ECDSA(algo))
        except InvalidSignature as e:
            raise SignatureInvalid(
                f"signature does not verify with key {self.key_id[:16]}…",
                hint="the data was changed after signing, or it was signed with another key",
            ) from e


def write_keypair(
    out_dir: str | os.PathLike[str], name: str, key: PrivateKey, passphrase: bytes | None = None
) -> tuple[Path, Path]:
    """Write ``NAME.key`` (mode 0600) and ``NAME.pub`` into ``out_dir``; never overwrites.

    Raises:
        KeyMaterialError: a file of that name exists already, or the folder is not writable.
    """
    out = Path(out_dir)
    priv_path, pub_path = out / f"{name}.key", out / f"{name}.pub"
    for p in (priv_path, pub_path):
        if p.exists():
            raise KeyMaterialError(
                f"{p} exists already; refusing to overwrite a key",
                hint="choose another --name or --out folder, or remove the old key on purpose",
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(private_pem(key, passphrase))
        pub_path.write_bytes(public_pem(key.public_key()))
    except OSError as e:
        raise KeyMaterialError(f"cannot write key files in {out}: {e.strerror or e}") from e
    return priv_path, pub_path
