"""Helper run as a separate OS process: migrate, then append from several threads at once.

Usage: python _hammer.py URI WRITER_NAME THREADS APPENDS_PER_THREAD
Prints the sequence numbers it was given, one per line.
"""

from __future__ import annotations

import sys
import threading

from mlflow_guard.core.audit import AuditEvent
from mlflow_guard.store import GuardStore


def main() -> None:
    uri, name, threads, per = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    store = GuardStore(uri)
    store.migrate()
    seqs: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        start.wait()
        for i in range(per):
            e = store.append_audit(
                AuditEvent(
                    user=name,
                    action="log",
                    resource=f"run:{t}-{i}",
                    outcome="allow",
                    request_id=f"{name}-{t}-{i}",
                )
            )
            with lock:
                seqs.append(e.seq)

    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    print("\n".join(map(str, seqs)))


if __name__ == "__main__":
    main()
