"""End-to-end demo of mlflow-guard on embedded defaults.

Runs every stage in ``examples/demo_stages`` in order (``s10_signing``, ``s20_...``), each
building on the state the earlier ones left in a shared context: a work folder under
``./demo-output``, keys, a policy, a trained model. Run it with ``scripts/demo``.
"""

from __future__ import annotations

import importlib
import pkgutil
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from demo_stages import _ctx


def main() -> int:
    """Run all stages; exit 1 if any stage's expectation fails."""
    out = Path("demo-output").resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    ctx = _ctx.Context(root=out)
    import demo_stages

    stages = sorted(i.name for i in pkgutil.iter_modules(demo_stages.__path__) if i.name[0] == "s")
    only = sys.argv[1:]
    t0 = time.perf_counter()
    try:
        for name in stages:
            if only and not any(o in name for o in only):
                continue
            mod = importlib.import_module(f"demo_stages.{name}")
            _ctx.banner(mod.TITLE)
            mod.run(ctx)
    except _ctx.DemoFailure as e:
        print(f"\nDEMO FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        ctx.close()
    print(f"\nDemo finished in {time.perf_counter() - t0:.1f}s; files in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
