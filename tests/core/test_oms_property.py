"""Property: sign, flip one byte anywhere in the model, verify must fail naming that file."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlflow_guard.core import errors, oms
from mlflow_guard.core.trust import TrustStore
from tests.conftest import KeyPair

_NAMES = st.from_regex(r"[a-z]{1,6}(/[a-z]{1,6}){0,2}\.(bin|pkl|txt)", fullmatch=True)
_MODELS = st.dictionaries(_NAMES, st.binary(min_size=1, max_size=300), min_size=1, max_size=5)


def _no_prefix_clash(files: dict[str, bytes]) -> bool:
    """A file name must not also be a folder of another file (``a.bin`` vs ``a.bin/x``)."""
    names = set(files)
    return not any(n.startswith(f"{m}/") for n in names for m in names)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    files=_MODELS.filter(_no_prefix_clash),
    pick=st.integers(min_value=0),
    offset=st.integers(min_value=0),
    mask=st.integers(min_value=1, max_value=255),
    layout=st.sampled_from(
        [("files", "sha256"), ("files", "blake3"), ("shards", "sha256"), ("shards", "blake3")]
    ),
)
def test_flip_one_byte_fails_naming_the_file(
    model_key: KeyPair,
    files: dict[str, bytes],
    pick: int,
    offset: int,
    mask: int,
    layout: tuple[str, str],
) -> None:
    method, hash_type = layout
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "model"
        for rel, data in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        oms.sign_model(
            root,
            model_key.signer,
            hash_type=hash_type,  # type: ignore[arg-type]
            method=method,  # type: ignore[arg-type]
            shard_size=64,
        )
        trust = TrustStore.single(model_key.signer.public_key)
        oms.verify_model(root, trust)  # control: the untouched model verifies
        name = sorted(files)[pick % len(files)]
        data = bytearray(files[name])
        data[offset % len(data)] ^= mask
        (root / name).write_bytes(bytes(data))
        sig_before = (root / oms.SIGNATURE_FILE).read_bytes()
        with pytest.raises(errors.ManifestMismatch) as info:
            oms.verify_model(root, trust)
        assert info.value.changed == [name]
        assert info.value.missing == []
        assert info.value.extra == []
        assert f"changed: {name}" in info.value.diagnostics()
        assert (root / oms.SIGNATURE_FILE).read_bytes() == sig_before


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(offset=st.integers(min_value=0), mask=st.integers(min_value=1, max_value=255))
def test_flip_one_byte_of_the_signature_never_passes_or_crashes(
    model_key: KeyPair, offset: int, mask: int
) -> None:
    """Any one-byte change to model.sig is refused with a VerificationError, never a crash.

    The only change allowed to pass is one that leaves the JSON document itself the same
    (one whitespace character swapped for another).
    """
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "model"
        root.mkdir()
        (root / "w.bin").write_bytes(b"weights" * 10)
        oms.sign_model(root, model_key.signer)
        sig = root / oms.SIGNATURE_FILE
        original = sig.read_bytes()
        data = bytearray(original)
        data[offset % len(data)] ^= mask
        sig.write_bytes(bytes(data))
        trust = TrustStore.single(model_key.signer.public_key)
        try:
            oms.verify_model(root, trust)
        except errors.VerificationError:
            return
        assert json.loads(bytes(data)) == json.loads(original)
