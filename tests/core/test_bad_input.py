"""The bad-input table of issue 2, run through every verifier path.

One table of tampering cases (:data:`CASES`), each run against:

- the library (``load_policy`` → ``TrustStore`` → ``oms.verify_model``),
- the CLI (``mlflow-guard verify ... --json``, in process through the real argument parser and
  exception boundary),
- the OpenSSF reference verifier ``model_signing`` 1.1.1 (Python API and CLI) where the case
  applies to it (it has no policy, so trust-policy cases do not).

Every case asserts the error class, the message, the exit code (and ``--json`` fields), and that
nothing under the model directory or the policy folder changed. :data:`SIGN_CASES` does the same
for ``sign`` (library and CLI): a refused signing writes no file.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mlflow_guard.cli import run as cli_run
from mlflow_guard.core import dsse, errors, oms
from mlflow_guard.core.policy import load_policy
from mlflow_guard.core.trust import TrustStore
from tests.conftest import (
    PASSPHRASE,
    PASSPHRASE_ENV,
    KeyPair,
    KeyRing,
    ModelFactory,
    PolicyWriter,
    snapshot,
)


@dataclass
class Env:
    """What a case may change: the signed model, its signature and the trust input."""

    model: Path
    other_model: Path
    keyring: KeyRing
    write_policy: PolicyWriter
    policy: Path | None = None
    public_key: Path | None = None

    @property
    def sig(self) -> Path:
        return self.model / oms.SIGNATURE_FILE

    @property
    def model_key(self) -> KeyPair:
        return self.keyring["model"]


@dataclass(frozen=True)
class Case:
    """One row of the table.

    Attributes:
        id: test id.
        mutate: changes the environment after a valid signature was made.
        error: the GuardError subclass every mlflow-guard verifier must raise.
        message: substring(s) the diagnostics must contain.
        files: for ManifestMismatch, the expected (removed, added, changed) lists.
        model_signing: whether the reference verifier is expected to reject it too.
    """

    id: str
    mutate: Callable[[Env], None]
    error: type[errors.GuardError]
    message: tuple[str, ...]
    files: tuple[list[str], list[str], list[str]] | None = None
    model_signing: bool = False
    exit_code: int = field(default=1)


def _statement(sig: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    bundle = json.loads(sig.read_bytes())
    return bundle, json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))


def resign(
    env: Env, change: Callable[[dict[str, Any]], None], signer: KeyPair | None = None
) -> None:
    """Change the signed statement and sign it again (validly) with the model key."""
    bundle, st = _statement(env.sig)
    change(st)
    payload = json.dumps(st, indent=2).encode()
    envelope = dsse.sign(payload, dsse.INTOTO_PAYLOAD_TYPE, (signer or env.model_key).signer)
    bundle["dsseEnvelope"] = envelope.to_json()
    bundle["dsseEnvelope"]["signatures"][0]["keyid"] = ""
    env.sig.write_text(json.dumps(bundle, indent=2))


def _edit_bundle(env: Env, change: Callable[[dict[str, Any]], None]) -> None:
    bundle = json.loads(env.sig.read_bytes())
    change(bundle)
    env.sig.write_text(json.dumps(bundle, indent=2))


def _flip(path: Path, offset: int = 10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _policy(env: Env, purposes: list[str], **kw: Any) -> None:
    env.policy = env.write_policy({"ci": (env.model_key, purposes)}, **kw)


def _two_subjects(st: dict[str, Any]) -> None:
    st["subject"].append({"name": "other", "digest": {"sha256": "00" * 32}})


def _payload_unsigned_change(env: Env) -> None:
    """Change one resource digest and the root consistently, without re-signing."""
    bundle, st = _statement(env.sig)
    res = st["predicate"]["resources"]
    res[0]["digest"] = "ab" * 32
    import hashlib

    root = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in res)).hexdigest()
    st["subject"][0]["digest"]["sha256"] = root
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(st).encode()).decode()
    env.sig.write_text(json.dumps(bundle))


def _forged_hint(env: Env) -> None:
    """Attacker signs with their own key but names the trusted key in the hint."""
    hint = json.loads(env.sig.read_bytes())["verificationMaterial"]["publicKey"]["hint"]
    resign(env, lambda st: None, signer=env.keyring.get("attacker"))
    _edit_bundle(env, lambda b: b["verificationMaterial"]["publicKey"].update(hint=hint))


def _symlink(env: Env) -> None:
    (env.model / "link.bin").symlink_to(env.model / "model.pkl")


CASES: list[Case] = [
    Case(
        "file-added",
        lambda e: (e.model / "extra.bin").write_bytes(b"new"),
        errors.ManifestMismatch,
        ("does not match its signature", "added: extra.bin"),
        files=([], ["extra.bin"], []),
        model_signing=True,
    ),
    Case(
        "file-removed",
        lambda e: (e.model / "sub/deeper/notes.txt").unlink(),
        errors.ManifestMismatch,
        ("removed: sub/deeper/notes.txt",),
        files=(["sub/deeper/notes.txt"], [], []),
        model_signing=True,
    ),
    Case(
        "file-modified",
        lambda e: _flip(e.model / "model.pkl"),
        errors.ManifestMismatch,
        ("changed: model.pkl",),
        files=([], [], ["model.pkl"]),
        model_signing=True,
    ),
    Case(
        "file-renamed",
        lambda e: (e.model / "conda.yaml").rename(e.model / "conda.yml"),
        errors.ManifestMismatch,
        ("removed: conda.yaml", "added: conda.yml"),
        files=(["conda.yaml"], ["conda.yml"], []),
        model_signing=True,
    ),
    Case(
        "sig-swapped-from-other-model",
        lambda e: shutil.copyfile(e.other_model / oms.SIGNATURE_FILE, e.sig),
        errors.ManifestMismatch,
        ("does not match its signature", "changed: model.pkl", "removed: other.bin"),
        files=(
            ["other.bin"],
            ["MLmodel", "conda.yaml", "sub/deeper/notes.txt", "sub/weights.bin"],
            ["model.pkl"],
        ),
        model_signing=True,
    ),
    Case(
        "sig-truncated",
        lambda e: e.sig.write_bytes(e.sig.read_bytes()[: len(e.sig.read_bytes()) // 2]),
        errors.SignatureInvalid,
        ("is not valid JSON", "truncated"),
        model_signing=True,
    ),
    Case(
        "sig-not-json",
        lambda e: e.sig.write_bytes(b"\x89PNG not a signature"),
        errors.SignatureInvalid,
        ("is not valid JSON",),
        model_signing=True,
    ),
    Case(
        "sig-empty",
        lambda e: e.sig.write_bytes(b""),
        errors.SignatureInvalid,
        ("model.sig is empty",),
        model_signing=True,
    ),
    Case(
        "sig-missing",
        lambda e: e.sig.unlink(),
        errors.SignatureInvalid,
        ("is not signed", "model.sig not found"),
        model_signing=True,
    ),
    Case(
        "wrong-media-type",
        lambda e: _edit_bundle(
            e, lambda b: b.update(mediaType="application/vnd.dev.sigstore.bundle.v0.1+json")
        ),
        errors.SignatureInvalid,
        ("unsupported bundle mediaType", "v0.1+json", "expected"),
    ),
    Case(
        "media-type-not-sigstore",
        lambda e: _edit_bundle(e, lambda b: b.update(mediaType="application/json")),
        errors.SignatureInvalid,
        ("not a Sigstore bundle v0.3", "mediaType"),
        model_signing=True,
    ),
    Case(
        "wrong-predicate-type",
        lambda e: resign(e, lambda st: st.update(predicateType="https://slsa.dev/provenance/v1")),
        errors.SignatureInvalid,
        ("wrong predicate type", "https://slsa.dev/provenance/v1", oms.PREDICATE_TYPE),
        model_signing=True,
    ),
    Case(
        "two-subjects",
        lambda e: resign(e, _two_subjects),
        errors.SignatureInvalid,
        ("expected exactly one subject", "found 2"),
        model_signing=True,
    ),
    Case(
        "payload-changed-not-resigned",
        _payload_unsigned_change,
        errors.SignatureInvalid,
        ("signature does not verify",),
        model_signing=True,
    ),
    Case(
        "forged-key-hint",
        _forged_hint,
        errors.SignatureInvalid,
        ("signature does not verify",),
        model_signing=True,
    ),
    Case(
        "wrong-public-key",
        lambda e: setattr(e, "public_key", e.keyring.get("attacker").public),
        errors.KeyNotTrusted,
        ("is not in the trust store",),
        model_signing=True,
    ),
    Case(
        "untrusted-key",
        lambda e: setattr(
            e, "policy", e.write_policy({"other": (e.keyring.get("attacker"), ["model"])})
        ),
        errors.KeyNotTrusted,
        ("is not in the trust store", "add its public key to the policy"),
    ),
    Case(
        "expired-key",
        lambda e: _policy(e, ["model"], not_after={"ci": datetime.now(UTC) - timedelta(days=1)}),
        errors.KeyNotTrusted,
        ("key ci", "expired at"),
    ),
    Case(
        "revoked-by-policy-id",
        lambda e: _policy(e, ["model"], revoked=["ci"]),
        errors.KeyNotTrusted,
        ("key ci", "is revoked"),
    ),
    Case(
        "revoked-by-key-id",
        lambda e: _policy(e, ["model"], revoked=[e.model_key.key_id]),
        errors.KeyNotTrusted,
        ("key ci", "is revoked"),
    ),
    Case(
        "revoked-by-key-id-uppercase",
        lambda e: _policy(e, ["model"], revoked=[e.model_key.key_id.upper()]),
        errors.KeyNotTrusted,
        ("is revoked",),
    ),
    Case(
        "wrong-purpose",
        lambda e: _policy(e, ["dataset", "approval"]),
        errors.KeyNotTrusted,
        ("trusted for [approval, dataset]", "not for 'model'"),
    ),
    Case(
        "policy-unknown-field",
        lambda e: setattr(
            e,
            "policy",
            e.write_policy(raw={"version": 1, "keys": [], "revokd": []}),
        ),
        errors.PolicyError,
        ("invalid policy", "guard.yaml: revokd: unknown field"),
        exit_code=2,
    ),
    Case(
        "policy-wrong-type",
        lambda e: setattr(
            e,
            "policy",
            e.write_policy(
                raw={
                    "version": 1,
                    "keys": [{"id": "ci", "public_key": "k.pub", "purposes": "model"}],
                }
            ),
        ),
        errors.PolicyError,
        ("guard.yaml: keys[0].purposes:", "list"),
        exit_code=2,
    ),
    Case(
        "policy-missing-key-file",
        lambda e: setattr(
            e,
            "policy",
            e.write_policy(
                raw={
                    "version": 1,
                    "keys": [{"id": "ci", "public_key": "nope.pub", "purposes": ["model"]}],
                }
            ),
        ),
        errors.PolicyError,
        ("keys[0].public_key: file not found", "nope.pub"),
        exit_code=2,
    ),
    Case(
        "symlink-in-model",
        _symlink,
        errors.UnsafePath,
        ("refusing symlink link.bin",),
        model_signing=True,
    ),
]


@dataclass(frozen=True)
class Outcome:
    error: str
    exit_code: int
    text: str
    payload: dict[str, Any]


def verify_library(env: Env) -> Outcome | None:
    try:
        if env.public_key is not None:
            from mlflow_guard.core import keys

            trust = TrustStore.single(keys.load_public_key(env.public_key))
        else:
            assert env.policy is not None
            trust = TrustStore.from_policy(load_policy(env.policy))
        oms.verify_model(env.model, trust)
    except errors.GuardError as e:
        return Outcome(type(e).__name__, e.exit_code, e.diagnostics(), e.to_json())
    return None


def verify_cli(env: Env, capsys: pytest.CaptureFixture[str]) -> Outcome | None:
    trust = (
        ["--public-key", str(env.public_key)] if env.public_key else ["--policy", str(env.policy)]
    )
    capsys.readouterr()
    code = cli_run(["verify", str(env.model), *trust, "--json"])
    out = json.loads(capsys.readouterr().out)
    if code == 0:
        assert out["ok"] is True
        return None
    assert out["ok"] is False
    assert out["exit_code"] == code
    text = "\n".join([out["summary"], *out["details"], out["hint"]])
    return Outcome(out["error"], code, text, out)


@pytest.fixture
def env(
    keyring: KeyRing, make_model: ModelFactory, write_policy: PolicyWriter, model_key: KeyPair
) -> Env:
    model = make_model()
    other = make_model("other", files={"model.pkl": b"other weights", "other.bin": b"x"})
    oms.sign_model(model, model_key.signer)
    oms.sign_model(other, model_key.signer)
    e = Env(model, other, keyring, write_policy)
    _policy(e, ["model"])
    return e


def _check(case: Case, got: Outcome | None) -> None:
    assert got is not None, f"{case.id}: verification passed but must fail"
    assert got.error == case.error.__name__, got.text
    assert got.exit_code == case.exit_code
    for m in case.message:
        assert m in got.text, f"{m!r} not in:\n{got.text}"
    if case.files is not None:
        removed, added, changed = case.files
        assert (got.payload["removed"], got.payload["added"], got.payload["changed"]) == (
            removed,
            added,
            changed,
        )


def _frozen(env: Env) -> tuple[dict[str, bytes], dict[str, bytes] | None]:
    return snapshot(env.model), snapshot(env.policy.parent) if env.policy else None


def test_valid_signature_passes_every_path(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """The baseline: without tampering every verifier path accepts (so failures mean something)."""
    assert verify_library(env) is None
    assert verify_cli(env, capsys) is None
    env.public_key = env.model_key.public
    assert verify_library(env) is None
    assert verify_cli(env, capsys) is None


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_library_rejects(case: Case, env: Env) -> None:
    case.mutate(env)
    before = _frozen(env)
    got = verify_library(env)
    _check(case, got)
    assert _frozen(env) == before, "a failed verify changed files"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cli_rejects(case: Case, env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    case.mutate(env)
    before = _frozen(env)
    got = verify_cli(env, capsys)
    _check(case, got)
    assert got is not None
    assert got.payload["summary"]
    assert _frozen(env) == before, "a failed verify changed files"


MS_CASES = [c for c in CASES if c.model_signing]


def _ms_public_key(env: Env) -> Path:
    return env.public_key or env.model_key.public


@pytest.mark.parametrize("case", MS_CASES, ids=[c.id for c in MS_CASES])
def test_model_signing_api_rejects(case: Case, env: Env) -> None:
    from model_signing import verifying

    case.mutate(env)
    before = _frozen(env)
    cfg = verifying.Config().use_elliptic_key_verifier(public_key=_ms_public_key(env))
    with pytest.raises(Exception) as info:  # the reference raises bare errors
        cfg.verify(env.model, env.sig)
    assert not isinstance(info.value, AssertionError)
    assert _frozen(env) == before


def ms_cli(env: Env, public_key: Path) -> tuple[int, str]:
    """The reference CLI (its click entry point, in process: same code, no interpreter start-up;
    tests/interop runs it as a real subprocess)."""
    from click.testing import CliRunner
    from model_signing._cli import main

    args = ["verify", "key", str(env.model), "--signature", str(env.sig)]
    result = CliRunner().invoke(main, [*args, "--public_key", str(public_key)])
    return result.exit_code, result.output


@pytest.mark.parametrize("case", MS_CASES, ids=[c.id for c in MS_CASES])
def test_model_signing_cli_rejects(case: Case, env: Env) -> None:
    case.mutate(env)
    before = _frozen(env)
    code, output = ms_cli(env, _ms_public_key(env))
    assert code != 0, output
    assert "Verification succeeded" not in output
    assert _frozen(env) == before


def test_model_signing_cli_accepts_baseline(env: Env) -> None:
    """Control for the table above: the untouched model verifies with the reference CLI."""
    code, output = ms_cli(env, env.model_key.public)
    assert code == 0, output
    assert "Verification succeeded" in output


# --------------------------------------------------------------------------- signing side


@dataclass(frozen=True)
class SignCase:
    """Bad input to ``sign``: the error, its message and exit code; nothing may be written."""

    id: str
    key: str  # "locked", "public", "missing" or "model"
    passphrase: str | None
    prepare: Callable[[Path], None]
    error: type[errors.GuardError]
    message: str
    exit_code: int
    ignore: tuple[str, ...] = ()


SIGN_CASES = [
    SignCase(
        "wrong-passphrase",
        "locked",
        "wrong",
        lambda m: None,
        errors.KeyMaterialError,
        "wrong passphrase",
        2,
    ),
    SignCase(
        "missing-passphrase",
        "locked",
        None,
        lambda m: None,
        errors.KeyMaterialError,
        "is encrypted and no passphrase was given",
        2,
    ),
    SignCase(
        "public-key-as-private",
        "public",
        None,
        lambda m: None,
        errors.KeyMaterialError,
        "is not a PEM private key",
        2,
    ),
    SignCase(
        "missing-key-file",
        "missing",
        None,
        lambda m: None,
        errors.KeyMaterialError,
        "cannot read private key",
        2,
    ),
    SignCase(
        "symlink-in-model",
        "model",
        None,
        lambda m: (m / "sub" / "escape").symlink_to("/etc/hostname"),
        errors.UnsafePath,
        "refusing symlink sub/escape",
        1,
    ),
    SignCase(
        "ignore-path-escapes",
        "model",
        None,
        lambda m: None,
        errors.UsageError,
        "must be relative to the model directory",
        2,
        ignore=("../elsewhere",),
    ),
]


def _sign_key(case: SignCase, keyring: KeyRing, tmp_path: Path) -> Path:
    if case.key == "locked":
        return keyring.get("locked-table", passphrase=PASSPHRASE).private
    if case.key == "public":
        return keyring["model"].public
    if case.key == "missing":
        return tmp_path / "no-such.key"
    return keyring["model"].private


def sign_library(key: Path, passphrase: str | None, model: Path, ignore: tuple[str, ...]) -> None:
    from mlflow_guard.core import keys

    signer = keys.Signer(keys.load_private_key(key, passphrase.encode() if passphrase else None))
    oms.sign_model(model, signer, ignore_paths=ignore)


@pytest.mark.parametrize("case", SIGN_CASES, ids=[c.id for c in SIGN_CASES])
def test_sign_rejects_and_writes_nothing(
    case: SignCase,
    keyring: KeyRing,
    make_model: ModelFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = make_model()
    case.prepare(model)
    key = _sign_key(case, keyring, tmp_path)
    before = snapshot(model)
    with pytest.raises(case.error) as info:
        sign_library(key, case.passphrase, model, case.ignore)
    assert case.message in info.value.diagnostics()
    assert info.value.exit_code == case.exit_code
    assert snapshot(model) == before
    argv = ["sign", str(model), "--key", str(key), "--json"]
    for ig in case.ignore:
        argv += ["--ignore", ig]
    if case.passphrase is not None:
        monkeypatch.setenv(PASSPHRASE_ENV, case.passphrase)
        argv += ["--passphrase-env", PASSPHRASE_ENV]
    capsys.readouterr()
    code = cli_run(argv)
    out = json.loads(capsys.readouterr().out)
    assert code == case.exit_code
    assert (out["ok"], out["error"], out["exit_code"]) == (False, case.error.__name__, code)
    assert case.message in out["summary"] + "\n".join(out["details"])
    assert snapshot(model) == before, "a failed sign wrote or changed files"
