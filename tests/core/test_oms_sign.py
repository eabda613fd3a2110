"""Signing: what goes into the manifest, and bad input that must leave nothing behind."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from mlflow_guard.core import errors, hashing, keys, oms
from mlflow_guard.core.trust import TrustStore
from tests.conftest import DEFAULT_FILES, PASSPHRASE, KeyPair, KeyRing, ModelFactory, snapshot


def _statement(sig: Path) -> dict[str, object]:
    bundle = json.loads(sig.read_bytes())
    out: dict[str, object] = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    return out


def _resource_names(sig: Path) -> list[str]:
    pred = _statement(sig)["predicate"]
    assert isinstance(pred, dict)
    return [r["name"] for r in pred["resources"]]


def test_signature_excluded_from_its_own_manifest(
    make_model: ModelFactory, model_key: KeyPair
) -> None:
    model = make_model()
    oms.sign_model(model, model_key.signer)
    oms.sign_model(model, model_key.signer)  # re-sign with model.sig present
    names = _resource_names(model / oms.SIGNATURE_FILE)
    assert oms.SIGNATURE_FILE not in names
    assert names == sorted(names, key=hashing.resource_sort_key)
    assert "model.pkl" in names
    assert len(names) == 5
    oms.verify_model(model, TrustStore.single(model_key.signer.public_key))


def test_signature_elsewhere_and_git_paths(
    make_model: ModelFactory, model_key: KeyPair, tmp_path: Path
) -> None:
    model = make_model()
    (model / ".git").mkdir()
    (model / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (model / ".gitattributes").write_text("* binary\n")
    sig = tmp_path / "elsewhere.sig"
    res = oms.sign_model(model, model_key.signer, signature_path=sig)
    assert not (model / oms.SIGNATURE_FILE).exists()
    names = _resource_names(sig)
    assert not any(n.startswith(".git") for n in names)
    assert res.files == 5
    trust = TrustStore.single(model_key.signer.public_key)
    oms.verify_model(model, trust, signature_path=sig)
    (model / ".git" / "HEAD").write_text("changed\n")  # ignored as recorded in the signature
    oms.verify_model(model, trust, signature_path=sig)


def test_unrecorded_git_paths_are_not_ignored_on_verify(
    make_model: ModelFactory, model_key: KeyPair
) -> None:
    """A signature whose ignore_paths omit .git* must not let a new .gitignore slip in."""
    model = make_model()
    sig = model / oms.SIGNATURE_FILE
    files = hashing.list_files(model, ("model.sig",))
    ser = hashing.Serialization(ignore_paths=("model.sig",))
    bundle = oms.build_bundle(hashing.hash_entries(files, ser), ser, "model", model_key.signer)
    sig.write_text(json.dumps(bundle))
    trust = TrustStore.single(model_key.signer.public_key)
    oms.verify_model(model, trust)
    (model / ".gitignore").write_text("*.pkl\n")
    with pytest.raises(errors.ManifestMismatch) as info:
        oms.verify_model(model, trust)
    assert info.value.extra == [".gitignore"]


def test_ignore_paths_are_recorded_and_honoured(
    make_model: ModelFactory, model_key: KeyPair
) -> None:
    model = make_model()
    (model / "logs").mkdir()
    (model / "logs" / "train.log").write_text("epoch 1\n")
    oms.sign_model(model, model_key.signer, ignore_paths=["logs", "conda.yaml"])
    names = _resource_names(model / oms.SIGNATURE_FILE)
    assert "conda.yaml" not in names
    assert not any(n.startswith("logs") for n in names)
    pred = _statement(model / oms.SIGNATURE_FILE)["predicate"]
    assert isinstance(pred, dict)
    assert {"logs", "conda.yaml", "model.sig"} <= set(pred["serialization"]["ignore_paths"])
    (model / "logs" / "train.log").write_text("epoch 2\n")
    (model / "conda.yaml").write_text("changed\n")
    trust = TrustStore.single(model_key.signer.public_key)
    oms.verify_model(model, trust)
    (model / "model.pkl").write_bytes(b"evil")
    with pytest.raises(errors.ManifestMismatch, match="does not match"):
        oms.verify_model(model, trust)


@pytest.mark.parametrize("bad", ["../outside", "/etc", ".", ""])
def test_unsafe_ignore_paths_refused(
    bad: str, make_model: ModelFactory, model_key: KeyPair
) -> None:
    model = make_model()
    before = snapshot(model)
    with pytest.raises(errors.UsageError, match="must be relative to the model directory"):
        oms.sign_model(model, model_key.signer, ignore_paths=[bad])
    assert snapshot(model) == before


@pytest.mark.parametrize("kind", ["file", "dir", "dangling"])
def test_symlink_refused_on_sign_and_verify(
    kind: str, make_model: ModelFactory, model_key: KeyPair, tmp_path: Path
) -> None:
    model = make_model()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("never hash me")
    trust = TrustStore.single(model_key.signer.public_key)
    oms.sign_model(model, model_key.signer)
    link = model / "sub" / "link"
    target = {"file": outside / "secret", "dir": outside, "dangling": outside / "nope"}[kind]
    link.symlink_to(target)
    before = snapshot(model)
    with pytest.raises(errors.UnsafePath, match="refusing symlink sub/link"):
        oms.verify_model(model, trust)
    assert snapshot(model) == before
    (model / oms.SIGNATURE_FILE).unlink()
    before = snapshot(model)
    with pytest.raises(errors.UnsafePath, match="refusing symlink sub/link") as info:
        oms.sign_model(model, model_key.signer)
    assert "never followed" in info.value.hint
    assert snapshot(model) == before  # no model.sig, no temp file


def test_symlinked_model_root_refused(
    make_model: ModelFactory, model_key: KeyPair, tmp_path: Path
) -> None:
    model = make_model()
    oms.sign_model(model, model_key.signer)
    alias = tmp_path / "alias"
    alias.symlink_to(model, target_is_directory=True)
    with pytest.raises(errors.UsageError, match="is not a directory"):
        oms.verify_model(alias, TrustStore.single(model_key.signer.public_key))
    with pytest.raises(errors.UsageError, match="is not a directory"):
        oms.sign_model(alias, model_key.signer)


def test_fifo_refused(make_model: ModelFactory, model_key: KeyPair) -> None:
    model = make_model()
    os.mkfifo(model / "pipe")
    with pytest.raises(errors.UnsafePath, match="special file pipe"):
        oms.sign_model(model, model_key.signer)
    assert not (model / oms.SIGNATURE_FILE).exists()


def test_wrong_passphrase_signs_nothing(keyring: KeyRing, make_model: ModelFactory) -> None:
    pair = keyring.get("locked", passphrase=PASSPHRASE)
    model = make_model()
    before = snapshot(model)
    with pytest.raises(errors.KeyMaterialError, match="wrong passphrase"):
        keys.load_private_key(pair.private, b"not it")
    assert snapshot(model) == before


def test_allow_symlinks_signature_refused(make_model: ModelFactory, model_key: KeyPair) -> None:
    model = make_model()
    ser = hashing.Serialization(allow_symlinks=True, ignore_paths=("model.sig",))
    res = hashing.hash_entries(hashing.list_files(model, ser.ignore_paths), ser)
    (model / oms.SIGNATURE_FILE).write_text(
        json.dumps(oms.build_bundle(res, ser, "model", model_key.signer))
    )
    with pytest.raises(errors.SignatureInvalid, match="allows symlinks"):
        oms.verify_model(model, TrustStore.single(model_key.signer.public_key))


def test_sign_result_and_ed25519(keyring: KeyRing, make_model: ModelFactory) -> None:
    pair = keyring.get("ed", keys.Algorithm.ED25519)
    model = make_model()
    res = oms.sign_model(model, pair.signer, method="shards", shard_size=1000)
    assert res.key_id == pair.key_id
    assert res.files == 5
    assert res.bytes == sum(len(v) for v in DEFAULT_FILES.values())
    out = oms.verify_model(model, TrustStore.single(pair.signer.public_key))
    assert out.root_digest == res.root_digest
    assert out.serialization.method == "shards"
    assert out.serialization.shard_size == 1000


def test_signature_file_is_world_readable(make_model: ModelFactory, model_key: KeyPair) -> None:
    """model.sig is public: a serving user other than the signer must be able to read it."""
    model = make_model()
    oms.sign_model(model, model_key.signer)
    assert stat.S_IMODE((model / oms.SIGNATURE_FILE).stat().st_mode) == 0o644
    assert not [p for p in model.iterdir() if p.name.endswith(".tmp")]


def test_signature_must_be_a_regular_file(
    make_model: ModelFactory, model_key: KeyPair, tmp_path: Path
) -> None:
    model = make_model()
    trust = TrustStore.single(model_key.signer.public_key)
    real = tmp_path / "real.sig"
    oms.sign_model(model, model_key.signer, signature_path=real)
    sig = model / oms.SIGNATURE_FILE
    sig.symlink_to(real)  # a valid signature, but reached through a link inside the model
    with pytest.raises(errors.UnsafePath, match=r"refusing symlink model\.sig"):
        oms.verify_model(model, trust)
    sig.unlink()
    assert oms.verify_model(model, trust, signature_path=real).files == 5
    os.mkfifo(sig)
    with pytest.raises(errors.SignatureInvalid, match="is not a regular file"):
        oms.verify_model(model, trust)  # and does not block on the FIFO
    with pytest.raises(errors.SignatureInvalid, match="is not a regular file"):
        oms.verify_model(model, trust, signature_path="/dev/zero")
