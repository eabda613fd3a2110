"""Add ``--hash=sha256:…`` lines to ``requirements.lock`` (pip's hash-checking mode).

``requirements.lock`` is ``pip freeze --exclude-editable`` of ``.venv``: exact versions. This
tool asks the package index's JSON simple API (PEP 691) for every file of each pinned release
(all wheels for all platforms, and the sdist) and writes their sha256 digests under the pin, so
``pip install -r requirements.lock`` refuses any file whose bytes differ from what the index
published when the lock was made. Files in ``$PIP_FIND_LINKS`` folders that match a pin are
hashed and added too (a local wheel is what pip would pick first).

Run after regenerating the lock (maintainers only; needs the index, never run by tests)::

    .venv/bin/pip freeze --exclude-editable > requirements.lock
    .venv/bin/python scripts/lock_hashes.py requirements.lock
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import urllib.request
from pathlib import Path

INDEX = os.environ.get("LOCK_INDEX_URL", "https://pypi.org/simple")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _file_version(filename: str, name: str) -> str | None:
    """The version in a wheel or sdist file name of project ``name``, or ``None``."""
    stem = filename
    for ext in (".whl", ".tar.gz", ".zip", ".tar.bz2"):
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
            break
    else:
        return None
    prefix = re.sub(r"[-_.]+", "[-_.]+", re.escape(_normalize(name)).replace("\\-", "-"))
    m = re.match(rf"^(?i:{prefix})-([^-]+)", stem)
    return m.group(1) if m else None


def index_hashes(name: str, version: str) -> set[str]:
    """sha256 of every file of ``name==version`` on the index."""
    url = f"{INDEX}/{_normalize(name)}/"
    if not url.startswith("https://"):
        raise SystemExit(f"refusing a non-https index URL: {url}")
    req = urllib.request.Request(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"})  # noqa: S310
    with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 (checked https above)
        files = json.load(resp)["files"]
    out = set()
    for f in files:
        if _file_version(f["filename"], name) == version and "sha256" in f.get("hashes", {}):
            out.add(f["hashes"]["sha256"])
    return out


def local_hashes(name: str, version: str) -> set[str]:
    """sha256 of matching files in the ``$PIP_FIND_LINKS`` folders."""
    out = set()
    for folder in os.environ.get("PIP_FIND_LINKS", "").split():
        d = Path(folder)
        if not d.is_dir():
            continue
        for p in d.iterdir():
            v = _file_version(p.name, name)
            if v is not None and (v == version or v.split("+")[0] == version):
                out.add(hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def main() -> int:
    """Rewrite the lock file with hashes; exit 1 if a pin has no file on the index."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lock", type=Path)
    args = ap.parse_args()
    lines = [ln.strip() for ln in args.lock.read_text().splitlines()]
    pins = [ln for ln in lines if ln and not ln.startswith("#")]
    out = [
        "# Generated: pip freeze --exclude-editable, then scripts/lock_hashes.py (sha256 of every",
        "# file of each release on the index). pip installs it in hash-checking mode.",
    ]
    missing = []
    for pin in pins:
        m = _PIN.match(pin)
        if not m:
            print(f"not an exact pin: {pin!r}", file=sys.stderr)
            return 1
        name, version = m.groups()
        hashes = index_hashes(name, version) | local_hashes(name, version)
        if not hashes:
            missing.append(pin)
            continue
        out.append(f"{name}=={version} \\")
        ordered = sorted(hashes)
        out += [f"    --hash=sha256:{h}" + (" \\" if i < len(ordered) - 1 else "")
                for i, h in enumerate(ordered)]  # fmt: skip
    if missing:
        print("no files found on the index for: " + ", ".join(missing), file=sys.stderr)
        return 1
    args.lock.write_text("\n".join(out) + "\n")
    print(f"{len(pins)} pins hashed into {args.lock}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
