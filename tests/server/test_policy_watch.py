"""The server's policy watcher: edits (a revoked key, a removed role) apply without a restart;
a policy that stops loading makes the server refuse everything until it loads again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlflow_guard.core import keys
from mlflow_guard.core.errors import KeyNotTrusted, PolicyError
from mlflow_guard.core.policy import Purpose, load_policy
from mlflow_guard.registry.enforce import RegistryGuard
from mlflow_guard.server.policy_watch import PolicyWatch

POLICY = """\
version: 1
keys:
  - {{id: ci, public_key: ci.pub, purposes: [model]}}
revoked: [{revoked}]
roles: {{data-scientist: [{scientists}]}}
access:
  - {{role: data-scientist, allow: [read, log], experiments: "*"}}
"""


def _write(path: Path, *, revoked: str = "", scientists: str = "alice") -> None:
    path.write_text(POLICY.format(revoked=revoked, scientists=scientists))
    st = path.stat()  # make the change visible even within one mtime tick
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


@pytest.fixture
def policy_file(tmp_path: Path) -> tuple[Path, keys.Signer]:
    signer = keys.Signer(keys.generate())
    (tmp_path / "ci.pub").write_bytes(keys.public_pem(signer.public_key))
    path = tmp_path / "guard.yaml"
    _write(path)
    return path, signer


def test_unchanged_files_keep_the_same_policy_object(policy_file: tuple[Path, keys.Signer]) -> None:
    path, _ = policy_file
    watch = PolicyWatch(load_policy(path), path)
    first = watch.refresh()
    assert watch.refresh() is first
    assert watch.generation == 0


def test_revoking_a_key_applies_at_the_next_refresh(policy_file: tuple[Path, keys.Signer]) -> None:
    path, signer = policy_file
    watch = PolicyWatch(load_policy(path), path)
    reg = RegistryGuard(lambda: watch.policy, "sqlite://")
    assert reg.trust.resolve(signer.key_id, Purpose.MODEL).name == "ci"

    _write(path, revoked=signer.key_id)
    watch.refresh()

    assert watch.generation == 1
    with pytest.raises(KeyNotTrusted, match="revoked"):
        reg.trust.resolve(signer.key_id, Purpose.MODEL)


def test_replacing_a_key_file_reloads(policy_file: tuple[Path, keys.Signer]) -> None:
    path, signer = policy_file
    watch = PolicyWatch(load_policy(path), path)
    other = keys.Signer(keys.generate())
    (path.parent / "ci.pub").write_bytes(keys.public_pem(other.public_key))
    watch.refresh()
    assert watch.generation == 1
    assert watch.trust.resolve(other.key_id, Purpose.MODEL).name == "ci"
    with pytest.raises(KeyNotTrusted):
        watch.trust.resolve(signer.key_id, Purpose.MODEL)


def test_a_policy_that_stops_loading_refuses_until_fixed(
    policy_file: tuple[Path, keys.Signer],
) -> None:
    path, _ = policy_file
    watch = PolicyWatch(load_policy(path), path)
    good = watch.policy
    path.write_text("version: 1\nroles: {data-scientist: [alice]\n")  # YAML error

    for _ in range(2):  # refused every time, not only at the first look
        with pytest.raises(PolicyError) as e:
            watch.refresh()
        assert "no longer loads; every request is refused" in e.value.summary
        assert "not valid YAML" in e.value.summary
        assert str(path) in e.value.hint
    assert watch.policy is good  # nothing half-applied

    _write(path, scientists="bob")
    assert watch.refresh().roles["data-scientist"] == ["bob"]
    assert watch.generation == 1


def test_a_missing_key_file_refuses(policy_file: tuple[Path, keys.Signer]) -> None:
    path, _ = policy_file
    watch = PolicyWatch(load_policy(path), path)
    (path.parent / "ci.pub").unlink()
    with pytest.raises(PolicyError) as e:
        watch.refresh()
    assert "no longer loads" in e.value.summary
    assert any("ci.pub" in d and "file not found" in d for d in e.value.details)


def test_a_fixed_policy_is_never_reloaded(policy_file: tuple[Path, keys.Signer]) -> None:
    path, _ = policy_file
    watch = PolicyWatch(load_policy(path))
    path.write_text("not: [valid")
    assert watch.refresh() is watch.policy


@pytest.mark.slow
def test_live_server_applies_policy_edits_without_restart(tmp_path: Path) -> None:
    """Two workers of a real server: a removed role denies at once; a broken file gives 503."""
    import requests

    from tests.server._server import ADMIN_PASSWORD, PASSWORDS, start_guard
    from tests.server.conftest import create_users

    server = start_guard(tmp_path, workers=2)
    policy = tmp_path / "guard.yaml"
    original = policy.read_text()
    alice = ("alice", PASSWORDS["alice"])

    def create(name: str) -> requests.Response:
        return requests.post(
            f"{server.url}/api/2.0/mlflow/experiments/create",
            json={"name": name},
            auth=alice,
            timeout=60,
        )

    def exists(name: str) -> bool:
        r = requests.get(
            f"{server.url}/api/2.0/mlflow/experiments/get-by-name",
            params={"experiment_name": name},
            auth=("admin", ADMIN_PASSWORD),
            timeout=60,
        )
        return r.status_code == 200

    try:
        create_users(server.url)
        assert create("alice-before").status_code == 200

        without_alice = original.replace("data-scientist: [alice]", "data-scientist: []")
        assert without_alice != original  # the fixture policy names alice
        policy.write_text(without_alice)
        for i in range(4):  # enough requests to reach both workers
            r = create(f"alice-after-{i}")
            assert r.status_code == 403, r.text
            assert "alice" in r.text
            assert not exists(f"alice-after-{i}")

        policy.write_text(original.replace("roles: {", "roles: {{"))  # YAML error
        for _ in range(4):
            r = requests.get(f"{server.url}/health", timeout=30)
            assert r.status_code == 503
            r = create("alice-broken")
            assert r.status_code == 503
            assert "no longer loads" in r.json()["message"]
            assert "not valid YAML" in r.json()["message"]
        policy.write_text(original)
        assert create("alice-fixed").status_code == 200
        assert not exists("alice-broken")
    finally:
        server.stop()


def test_a_key_file_that_is_not_a_key_refuses(policy_file: tuple[Path, keys.Signer]) -> None:
    path, _ = policy_file
    watch = PolicyWatch(load_policy(path), path)
    (path.parent / "ci.pub").write_bytes(b"-----BEGIN PUBLIC KEY-----\nnot a key\n")
    with pytest.raises(PolicyError) as e:
        watch.refresh()
    assert "no longer loads" in e.value.summary
    assert "ci.pub" in e.value.diagnostics()


def test_components_share_the_watchers_trust_store(policy_file: tuple[Path, keys.Signer]) -> None:
    """One trust store per reload: the registry guard uses the watcher's (built once), and a
    reload gives both the new one; a policy that is not the watcher's gets its own."""
    path, signer = policy_file
    watch = PolicyWatch(load_policy(path), path)
    reg = RegistryGuard(lambda: watch.policy, "sqlite://", watch.trust_for)
    assert reg.trust is watch.trust
    first = watch.trust

    _write(path, revoked=signer.key_id)
    watch.refresh()
    assert watch.trust is not first
    assert reg.trust is watch.trust
    with pytest.raises(KeyNotTrusted, match="revoked"):
        reg.trust.resolve(signer.key_id, Purpose.MODEL)

    other = load_policy(path)  # the same file, but not the watcher's policy object
    own = watch.trust_for(other)
    assert own is not watch.trust
    with pytest.raises(KeyNotTrusted, match="revoked"):  # built from that policy
        own.resolve(signer.key_id, Purpose.MODEL)
