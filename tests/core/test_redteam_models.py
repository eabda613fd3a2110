"""Red team: model signatures and verified loading against hostile bundles and artifact stores.

The loading tests use a real MLflow registry (``guard+sqlite`` in a temp dir) and real logged
sklearn models; the bundle tests mutate a real signature and run the real verifier. Each
refusal is asserted with its reason and with nothing loaded or changed.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import KeyPair, KeyRing, snapshot
from tests.plugins.conftest import artifact_dir, use_embedded_registry


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file for the module (MLflow's migrations take seconds)."""
    return tmp_path_factory.mktemp("redteam-models") / "mlflow.db"


@pytest.fixture
def registry(db: Path, keyring: KeyRing, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A guarded SQLite registry; models are signed at log time. Returns the policy path."""
    policy = tmp_path / "guard.yaml"
    policy.write_text(yaml.safe_dump({
        "version": 1,
        "keys": [{"id": "ci", "public_key": str(keyring["model"].public), "purposes": ["model"]}],
        "registry": {"require_signature": True, "scan_model_files": True},
    }))  # fmt: skip
    use_embedded_registry(monkeypatch, policy, db, signing_key=keyring["model"].private)
    return policy


def _log(name: str, labels: list[int]) -> Path:
    """Log and register a tiny classifier; return its artifact folder."""
    import mlflow
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    with mlflow.start_run():
        model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], labels)
        info = mlflow.sklearn.log_model(
            model, name="model", registered_model_name=name, pip_requirements=["scikit-learn"]
        )
    return artifact_dir(info.model_id)


def test_models_uri_serving_another_versions_artifacts_is_refused(registry: Path) -> None:
    """Rollback: version 2's artifacts replaced by version 1's (validly signed by the same key).

    The signature alone verifies; the registry recorded another root digest for version 2.
    """
    import mlflow

    import mlflow_guard
    from mlflow_guard.core.errors import VerificationError
    from mlflow_guard.lineage import base_models

    v1 = _log("rt-rollback", [0, 0, 1, 1])
    v2 = _log("rt-rollback", [1, 1, 0, 0])
    client = mlflow.MlflowClient()
    client.set_registered_model_alias("rt-rollback", "champion", "2")
    recorded = client.get_model_version("rt-rollback", "2").tags["mlflow_guard.root_sha256"]
    assert list(mlflow_guard.load_model("models:/rt-rollback/2").predict([[0.0]])) == [1]
    base_models.clear()

    shutil.rmtree(v2)
    shutil.copytree(v1, v2)
    for uri in ("models:/rt-rollback/2", "models:/rt-rollback@champion"):
        with pytest.raises(VerificationError, match="not the digest the registry recorded") as e:
            mlflow_guard.load_model(uri)
        assert "rt-rollback version 2" in e.value.summary
        assert recorded[:16] in e.value.summary
    assert base_models.recorded() == ()  # nothing was loaded or recorded as a base model


def test_models_uri_binding_is_reported(registry: Path) -> None:
    """A registered version's recorded digest is checked and reported; a run URI has none."""
    import mlflow

    from mlflow_guard import loading

    _log("rt-bound", [0, 0, 1, 1])
    mv = mlflow.MlflowClient().get_model_version("rt-bound", "1")
    verified = loading.download_and_verify("models:/rt-bound/1")
    assert verified.registered_digest == verified.root_digest
    assert verified.root_digest == mv.tags["mlflow_guard.root_sha256"]
    assert loading.download_and_verify(str(mv.source)).registered_digest is None


# -- bundles ---------------------------------------------------------------------------------


def _signed(
    make_model: Any, write_policy: Any, model_key: KeyPair
) -> tuple[Path, Any, dict[str, Any]]:
    from mlflow_guard.core import oms
    from mlflow_guard.core.policy import load_policy
    from mlflow_guard.core.trust import TrustStore

    root = make_model()
    oms.sign_model(root, model_key.signer)
    trust = TrustStore.from_policy(load_policy(write_policy({"ci": (model_key, ["model"])})))
    return root, trust, json.loads((root / "model.sig").read_bytes())


def test_bundle_with_key_and_certificate_is_ambiguous(
    make_model: Any, write_policy: Any, model_key: KeyPair
) -> None:
    """Sigstore's verification material is a oneof: a key *and* a certificate chain would let
    two verifiers check two different identities over the same file."""
    from mlflow_guard.core import oms
    from mlflow_guard.core.errors import SignatureInvalid

    root, trust, bundle = _signed(make_model, write_policy, model_key)
    bundle["verificationMaterial"]["x509CertificateChain"] = {
        "certificates": [{"rawBytes": "AA=="}]
    }
    (root / "model.sig").write_text(json.dumps(bundle))
    before = snapshot(root)
    with pytest.raises(SignatureInvalid, match="publicKey, x509CertificateChain") as e:
        oms.verify_model(root, trust)
    assert "exactly one" in e.value.summary
    assert snapshot(root) == before


def test_only_the_first_dsse_signature_counts(
    make_model: Any, write_policy: Any, model_key: KeyPair
) -> None:
    """A bad first signature is not rescued by a good second one (as in model_signing)."""
    from mlflow_guard.core import oms
    from mlflow_guard.core.errors import SignatureInvalid

    root, trust, bundle = _signed(make_model, write_policy, model_key)
    good = bundle["dsseEnvelope"]["signatures"][0]
    bad = {"sig": base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode(), "keyid": ""}
    bundle["dsseEnvelope"]["signatures"] = [bad, good]
    (root / "model.sig").write_text(json.dumps(bundle))
    with pytest.raises(SignatureInvalid, match="signature does not verify with key ci"):
        oms.verify_model(root, trust)


def test_copy_of_a_version_whose_artifacts_were_swapped_is_refused(registry: Path) -> None:
    """``copy_model_version`` of version 2 after its artifacts were replaced by version 1's.

    Both are validly signed by the same key, so the gate's signature check alone passes; the
    copy must carry the bytes version 2 was registered with, and nothing is created.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    v1 = _log("rt-copy-swap", [0, 0, 1, 1])
    v2 = _log("rt-copy-swap", [1, 1, 0, 0])
    client = mlflow.MlflowClient()
    recorded = client.get_model_version("rt-copy-swap", "2").tags["mlflow_guard.root_sha256"]
    ok = client.copy_model_version("models:/rt-copy-swap/2", "rt-copy-swap-ok")
    assert ok.tags["mlflow_guard.root_sha256"] == recorded  # an intact source copies

    shutil.rmtree(v2)
    shutil.copytree(v1, v2)
    with pytest.raises(MlflowException, match="not the ones that version was registered with") as e:
        client.copy_model_version("models:/rt-copy-swap/2", "rt-copy-swap-dst")
    assert recorded[:16] in str(e.value)
    assert not client.search_model_versions("name = 'rt-copy-swap-dst'")
    assert len(client.search_model_versions("name = 'rt-copy-swap-ok'")) == 1
