"""Two OS processes with several threads each append to one database: the chain stays linear."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_guard.cli import main as cli
from mlflow_guard.core import audit
from mlflow_guard.store import GuardStore
from tests.store.test_store import sql

HAMMER = Path(__file__).with_name("_hammer.py")
THREADS, PER = 4, 40


def _run_writers(uri: str, n: int) -> list[int]:
    procs = [
        subprocess.Popen(
            [sys.executable, str(HAMMER), uri, f"w{k}", str(THREADS), str(PER)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(n)
    ]
    seqs: list[int] = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        seqs += [int(x) for x in out.split()]
    return seqs


@pytest.mark.slow
def test_concurrent_writers_never_fork_or_duplicate(db_uri: str) -> None:
    seqs = _run_writers(db_uri, 2)  # both processes also race on migrate()
    total = 2 * THREADS * PER
    assert sorted(seqs) == list(range(1, total + 1)), "duplicate or missing sequence numbers"
    store = GuardStore(db_uri)
    rows = list(store.iter_audit())
    assert [r.seq for r in rows] == list(range(1, total + 1))
    assert len({r.prev_hash for r in rows}) == total, "two entries link to the same parent: fork"
    report = audit.verify_chain(rows, head=store.head())
    assert report.ok, report.problem
    assert sql(db_uri, "SELECT count(*) FROM guard_alembic_version") == [(1,)]
    assert cli(["audit", "verify", "--database-uri", db_uri]) == 0
    store.dispose()
