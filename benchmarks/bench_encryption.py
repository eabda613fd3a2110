"""Encrypted vs plain artifact repository: upload and download throughput of one large model file.

Measures in one run, interleaved (``--rounds`` rounds):
- upload (``log_artifact``) and download (``download_artifacts``) of a ``--size`` file through
  MLflow's plain ``file://`` repository and through ``guard+file://`` (Tink streaming AEAD);
- the raw Tink streaming-AEAD encrypt and decrypt rate in memory (the crypto ceiling).

Target: encrypted ≥ 0.8× plain throughput. Usage: ``python benchmarks/bench_encryption.py
[--size 1GB] [--rounds 3]``. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common


def _size(text: str) -> int:
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9}
    for u, m in units.items():
        if text.upper().endswith(u):
            return int(float(text[: -len(u)]) * m)
    return int(text)


def main() -> int:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", default="1GB")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    size = _size(args.size)

    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    from mlflow_guard.encryption import envelope
    from mlflow_guard.encryption.kek import ENV_KEK, LocalKeysetKEK

    work = Path(tempfile.mkdtemp(prefix="bench-enc-"))
    try:
        kek_path = work / "kek.json"
        kek = LocalKeysetKEK.generate(kek_path)
        os.environ[ENV_KEK] = str(kek_path)
        src = work / "model.bin"
        _common.write_file(src, size, os.urandom(1 << 20))
        res: dict[str, list[float]] = {
            k: [] for k in ("up-plain", "up-enc", "down-plain", "down-enc")
        }
        for r in range(args.rounds):
            for kind in ("plain", "enc"):
                store = work / f"store-{kind}-{r}"
                uri = f"file://{store}" if kind == "plain" else f"guard+file://{store}"
                repo = get_artifact_repository(uri)
                res[f"up-{kind}"].append(
                    _common.timed(lambda repo=repo: repo.log_artifact(str(src)))
                )
                dst = work / f"dl-{kind}-{r}"
                dst.mkdir()
                res[f"down-{kind}"].append(
                    _common.timed(
                        lambda repo=repo, dst=dst: repo.download_artifacts("model.bin", str(dst))
                    )
                )
                shutil.rmtree(store)
                shutil.rmtree(dst)
        # Raw Tink rate in memory over 256 MB (the ceiling of the encrypting repository).
        raw_n = min(size, 256 * 10**6)
        plain = io.BytesIO(os.urandom(1 << 20) * (raw_n >> 20))
        sink = io.BytesIO()
        t0 = time.perf_counter()
        envelope.encrypt_stream(plain, sink, kek)
        enc_s = time.perf_counter() - t0
        sink.seek(0)
        t0 = time.perf_counter()
        n = sum(len(c) for c in envelope.iter_decrypted(sink, kek))
        dec_s = time.perf_counter() - t0
        assert n == (raw_n >> 20) << 20
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {k: _common.median(v) for k, v in res.items()}
    rows = [
        [
            "upload (log_artifact)",
            _common.rate(size, med["up-plain"]),
            _common.rate(size, med["up-enc"]),
            f"{med['up-plain'] / med['up-enc']:.2f}×",
        ],
        [
            "download (download_artifacts)",
            _common.rate(size, med["down-plain"]),
            _common.rate(size, med["down-enc"]),
            f"{med['down-plain'] / med['down-enc']:.2f}×",
        ],
    ]
    print(_common.machine_note(shared=_common.load() > 1.0))
    print(f"\nfile: {size / 1e9:.2f} GB, {args.rounds} interleaved rounds, medians\n")
    print(
        _common.table(
            [
                "operation",
                "plain file://",
                "guard+file:// (encrypted)",
                "encrypted / plain throughput",
            ],
            rows,
        )
    )
    print(
        f"\nraw Tink AES256-GCM-HKDF-1MB in memory: encrypt {_common.rate(raw_n, enc_s)}, "
        f"decrypt {_common.rate(raw_n, dec_s)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
