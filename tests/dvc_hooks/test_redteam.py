"""Hostile DVC files, caches and workspaces against ``dvc-guard`` in real git (+ DVC) repos.

Each attack must end in exit 1 (violation) or 2 (malformed input) with a message naming the
file and field, and leave every file as it was.
"""

from __future__ import annotations

import hashlib
import json
import resource
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.dvc_hooks.conftest import BIN, ENV, Keys, init_repo, sh, tree_state

pytestmark = pytest.mark.slow

MD5 = "f69f5b72bc79a92dc70c63c9aa142e36"


def _cli(root: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``dvc-guard ARGS`` in a child capped at 2 GiB of address space (a bomb must not take
    the machine down while it is still unfixed)."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    return subprocess.run(
        [str(BIN / "dvc-guard"), *args],
        cwd=root,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=cap,
        check=False,
    )


@pytest.fixture
def git_repo(tmp_path: Path, dataset_keys: Keys) -> Path:
    """A git repository with guard.yaml and keys (DVC files are written by hand)."""
    return init_repo(tmp_path / "r", dataset_keys, dvc=False)


def _laughs(levels: int = 9, width: int = 9) -> tuple[str, str]:
    """YAML anchors nesting ``width ** levels`` strings, and an alias to the top one."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n", f"*l{levels - 1}"


@pytest.mark.parametrize(
    ("name", "body", "fragment"),
    [
        ("a.dvc", "outs: [BOMB]\n", "a.dvc: outs[0]: expected a mapping with a 'path'"),
        ("a.dvc", "outs:\n- {path: a, md5: BOMB}\n", "a.dvc: outs[0] (a): no valid md5"),
        ("a.dvc", f"outs:\n- {{path: a, md5: {MD5}, size: BOMB}}\n", "(a): size [["),
        ("a.dvc", f"outs:\n- {{path: a, md5: {MD5}, hash: BOMB}}\n", "unsupported hash kind"),
        ("dvc.lock", "schema: BOMB\nstages: {}\n", "dvc.lock: unsupported dvc.lock format"),
    ],
)
def test_yaml_alias_bomb_is_refused_quickly(
    git_repo: Path, name: str, body: str, fragment: str
) -> None:
    """Aliases are cheap to load (shared objects) but ``repr``/``str`` of one expands it:
    ~387 million strings here. The error must name the field without expanding the value."""
    anchors, alias = _laughs()
    (git_repo / name).write_text(anchors + body.replace("BOMB", alias))
    sh(["git", "add", name], git_repo)
    before = tree_state(git_repo)
    proc = _cli(git_repo, "verify", "--staged", timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert fragment in proc.stderr
    assert len(proc.stderr) < 4000
    assert tree_state(git_repo) == before


def test_duplicate_yaml_key_is_refused_like_dvc_does(git_repo: Path, dataset_keys: Keys) -> None:
    """DVC itself refuses a repeated key; PyYAML kept the last one, so a record DVC rejects
    (and whose first md5 DVC's error names) could still be signed and verified."""
    (git_repo / "t.csv").write_text("a,b\n1,2\n")
    real = hashlib.md5(b"a,b\n1,2\n").hexdigest()
    (git_repo / "t.csv.dvc").write_text(
        f"outs:\n- md5: {MD5}\n  md5: {real}\n  size: 8\n  hash: md5\n  path: t.csv\n"
    )
    sh(["git", "add", "t.csv.dvc"], git_repo)
    before = tree_state(git_repo)
    for args in (["sign", "t.csv.dvc", "--key", str(dataset_keys.key("data-ci"))], ["verify"]):
        proc = _cli(git_repo, *args)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "t.csv.dvc is not valid YAML" in proc.stderr
        assert "found duplicate key 'md5'" in proc.stderr
        assert "line 3" in proc.stderr
        assert tree_state(git_repo) == before


def _cached_listing(root: Path, items: list[dict[str, str]]) -> str:
    """Write a ``.dir`` listing into the (default) DVC cache; return its DVC md5."""
    data = json.dumps(items).encode()
    md5 = hashlib.md5(data).hexdigest()
    obj = root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / (md5[2:] + ".dir")
    obj.parent.mkdir(parents=True, exist_ok=True)
    obj.write_bytes(data)
    return md5 + ".dir"


def _dir_output(root: Path, items: list[dict[str, str]]) -> None:
    """tables/a.csv in the workspace, and tables.dvc naming a listing of ``items``."""
    (root / "tables").mkdir(exist_ok=True)
    (root / "tables" / "a.csv").write_bytes(CSV)
    md5 = _cached_listing(root, items)
    (root / "tables.dvc").write_text(
        f"outs:\n- md5: {md5}\n  nfiles: {len(items)}\n  hash: md5\n  path: tables\n"
    )


CSV = b"f,label\n1,0\n2,1\n"
CSV_MD5 = hashlib.md5(CSV).hexdigest()


@pytest.mark.parametrize(
    ("items", "fragment"),
    [
        ([{"md5": CSV_MD5, "relpath": "a.csv"}, {"md5": CSV_MD5, "relpath": "../x"}], "'../x'"),
        ([{"md5": CSV_MD5, "relpath": "a.csv"}, {"md5": CSV_MD5, "relpath": "/etc/x"}], "/etc/x"),
        ([{"md5": MD5, "relpath": "a.csv"}, {"md5": CSV_MD5, "relpath": "a.csv"}], "twice"),
        ([{"md5": "../../etc/hostname", "relpath": "a.csv"}], "not an md5"),
        ([{"md5": CSV_MD5}], "relpath"),
    ],
    ids=["dotdot", "absolute", "duplicate", "md5-path", "no-relpath"],
)
def test_corrupt_dir_listing_is_refused_by_sign(
    git_repo: Path, dataset_keys: Keys, items: list[dict[str, str]], fragment: str
) -> None:
    """The listing's own md5 matches (an attacker writes both), so its entries must be
    checked: a duplicate relpath let the second md5 win; others must not reach a path."""
    _dir_output(git_repo, items)
    before = tree_state(git_repo)
    proc = _cli(git_repo, "sign", "tables.dvc", "--key", str(dataset_keys.key("data-ci")))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "is not a valid .dir listing of tables" in proc.stderr
    assert fragment in proc.stderr
    assert tree_state(git_repo) == before


def test_listing_md5_cannot_point_validate_outside_the_cache(
    tmp_path: Path, dataset_keys: Keys
) -> None:
    """The previous version of a file in a directory output is read from the cache by its
    listed md5; ``..`` + an absolute path made that read any file on the machine."""
    rule = "  validate:\n    - {path: tables/a.csv, label_column: label, max_label_shift: 0.05}\n"
    root = init_repo(tmp_path / "r", dataset_keys, dvc=False, validate=rule)
    secret = tmp_path / "secret.csv"
    secret.write_text("f,label\n7,secret-label\n")
    _dir_output(root, [{"md5": ".." + str(secret), "relpath": "a.csv"}])
    sh(["git", "add", "tables.dvc"], root)
    sh(["git", "commit", "-q", "-m", "crafted listing"], root)
    before = tree_state(root)
    proc = _cli(root, "validate", "tables/a.csv")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "is not a valid .dir listing of tables" in proc.stderr
    assert "not an md5" in proc.stderr
    assert "secret-label" not in proc.stdout + proc.stderr
    assert tree_state(root) == before


def test_output_through_a_symlinked_folder_is_refused(
    git_repo: Path, dataset_keys: Keys, tmp_path: Path
) -> None:
    """Signed data, then its folder swapped for a symlink to a folder outside the repository
    (same bytes today, the attacker's tomorrow): the hooks read only inside the repository."""
    key = str(dataset_keys.key("data-ci"))
    folder = git_repo / "link"
    (folder / "imgs").mkdir(parents=True)
    (folder / "t.csv").write_bytes(CSV)
    (folder / "imgs" / "0.bin").write_bytes(b"\0" * 10)
    (git_repo / "t.dvc").write_text(
        f"outs:\n- md5: {CSV_MD5}\n  size: {len(CSV)}\n  hash: md5\n  path: link/t.csv\n"
    )
    # a legacy directory record: signing needs no listing in the cache
    (git_repo / "imgs.dvc").write_text(f"outs:\n- md5: {MD5}.dir\n  path: link/imgs\n")
    assert _cli(git_repo, "sign", "--key", key).returncode == 0
    sh(["git", "add", "t.dvc", "t.dvc.sig", "imgs.dvc", "imgs.dvc.sig"], git_repo)
    assert _cli(git_repo, "verify", "--staged").returncode == 0
    outside = tmp_path / "outside"
    shutil.copytree(folder, outside)
    shutil.rmtree(folder)
    folder.symlink_to(outside, target_is_directory=True)
    before = tree_state(git_repo)
    for args in (["verify", "--staged"], ["verify", "--cache"], ["sign", "t.dvc", "--key", key]):
        proc = _cli(git_repo, *args)
        assert proc.returncode == 1, (args, proc.stdout + proc.stderr)
        assert "link/t.csv: 'link' is a symbolic link" in proc.stderr
        if args[0] == "verify":
            assert "link/imgs: 'link' is a symbolic link" in proc.stderr
        assert tree_state(git_repo) == before


@pytest.mark.parametrize(
    ("record", "fragment"),
    [
        (f'outs:\n- {{md5: {MD5}, hash: md5, path: "t\\0.csv"}}\n', "a NUL character"),
        (
            "outs:\n- path: d\n  hash: md5\n  files:\n"
            f"  - {{relpath: a, md5: {MD5}, size: 3, cloud: {{s3: {{etag: x}}}}}}\n",
            "cloud-versioned",
        ),
    ],
    ids=["nul", "cloud-versioned"],
)
def test_unusable_output_records_are_configuration_errors(
    git_repo: Path, dataset_keys: Keys, record: str, fragment: str
) -> None:
    """A NUL in a path was an internal error (exit 3); a cloud-versioned ``files:`` record was
    reported as a missing md5 with the advice to run `dvc commit`."""
    (git_repo / "t.dvc").write_text(record)
    before = tree_state(git_repo)
    proc = _cli(git_repo, "sign", "t.dvc", "--key", str(dataset_keys.key("data-ci")))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "t.dvc: outs[0]" in proc.stderr
    assert fragment in proc.stderr
    assert tree_state(git_repo) == before


def test_python_object_tag_is_not_constructed(git_repo: Path) -> None:
    """Already denied (safe loader); kept because one unsafe ``yaml.load`` would run code."""
    pwned = git_repo / "pwned"
    (git_repo / "t.dvc").write_text(
        f"outs:\n- path: !!python/object/apply:os.system ['touch {pwned}']\n  md5: {MD5}\n"
    )
    sh(["git", "add", "t.dvc"], git_repo)
    before = tree_state(git_repo)
    proc = _cli(git_repo, "verify", "--staged")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "t.dvc is not valid YAML" in proc.stderr
    assert "python/object/apply:os.system" in proc.stderr
    assert not pwned.exists()
    assert tree_state(git_repo) == before


def test_hints_name_odd_paths_so_a_shell_runs_them(tmp_path: Path, dataset_keys: Keys) -> None:
    """A dataset named with a space, a dollar sign and a leading dash: the commands the hints
    suggest, pasted into a shell, sign exactly that file (quoted, after ``--``)."""
    import re

    root = init_repo(tmp_path / "r", dataset_keys)
    name = "-odd $HOME name.csv"
    (root / name).write_text("a,label\n1,0\n2,1\n")
    sh(["dvc", "add", "-q", "--", name], root)
    proc = _cli(root, "verify")
    assert proc.returncode == 1, proc.stderr
    assert f"{name}.dvc is not signed" in proc.stderr
    sign = re.search(r"`(dvc-guard sign [^`]+)`", proc.stderr)
    assert sign is not None, proc.stderr
    assert sign.group(1) == "dvc-guard sign --key KEY -- '-odd $HOME name.csv.dvc'"
    command = sign.group(1).replace("KEY", str(dataset_keys.key("data-ci")))
    env = {**ENV, "PATH": f"{BIN}:{ENV['PATH']}"}
    signed = subprocess.run(
        ["bash", "-c", command], cwd=root, env=env, capture_output=True, text=True, check=False
    )
    assert signed.returncode == 0, signed.stderr
    add = signed.stdout.strip().splitlines()[-1].removeprefix("Next step: ")
    assert add == "git add -- '-odd $HOME name.csv.dvc' '-odd $HOME name.csv.dvc.sig'"
    sh(["bash", "-c", add], root)
    staged = sh(["git", "diff", "--cached", "--name-only", "-z"], root).stdout.split("\0")
    assert {f"{name}.dvc", f"{name}.dvc.sig"} <= set(staged)
    assert _cli(root, "verify").returncode == 0
