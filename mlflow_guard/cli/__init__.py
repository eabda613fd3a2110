"""The ``mlflow-guard`` command line.

Subcommands live in modules named ``cmd_<name>.py`` in this package; each defines ``NAME``,
``HELP`` and ``register(parser)``, which sets ``func`` (``args -> int``) on the parser. There is
one exception boundary, here: a :class:`GuardError` prints its diagnostics (or JSON with
``--json``) and exits with its code; anything else exits 3.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import pkgutil
import sys
from collections.abc import Sequence

from mlflow_guard.core.errors import EXIT_INTERNAL, EXIT_USAGE, GuardError

PROG = "mlflow-guard"


class _UsageExit(SystemExit):
    """A command-line usage error (already printed on stderr); exit code 2."""

    def __init__(self, message: str, prog: str) -> None:
        super().__init__(EXIT_USAGE)
        self.message = message
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\nNext step: run `{self.prog} --help`\n")
        raise _UsageExit(message, self.prog)


def build_parser(
    prog: str = PROG, package: str = __name__, only: str | None = None
) -> argparse.ArgumentParser:
    """Build the parser from the ``cmd_*`` modules of ``package``.

    With ``only`` (a subcommand name whose module is ``cmd_<only>``), only that subcommand's
    module is imported: a command pays for its own imports, not for every other command's.
    """
    parser = _Parser(
        prog=prog,
        description="mlflow-guard: lineage, signing and access control for MLflow and DVC.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    names: list[str]
    if only is not None:
        names = [f"cmd_{only.replace('-', '_')}"]
    else:
        pkg = importlib.import_module(package)
        names = sorted(
            i.name for i in pkgutil.iter_modules(pkg.__path__) if i.name.startswith("cmd_")
        )
    for name in names:
        mod = importlib.import_module(f"{package}.{name}")
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.register(p)
    return parser


def _single_command(argv: Sequence[str], package: str) -> str | None:
    if not argv or argv[0].startswith("-"):
        return None
    try:
        spec = importlib.util.find_spec(f"{package}.cmd_{argv[0].replace('-', '_')}")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    mod = importlib.import_module(spec.name)
    return argv[0] if getattr(mod, "NAME", None) == argv[0] else None


def run(argv: Sequence[str] | None, *, prog: str = PROG, package: str = __name__) -> int:
    """Parse ``argv`` and run the subcommand behind the single exception boundary."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(prog, package, only=_single_command(argv, package))
    try:
        args = parser.parse_args(argv)
    except _UsageExit as e:
        if "--json" in (sys.argv[1:] if argv is None else argv):
            print(
                json.dumps(
                    {
                        "ok": False,
                        "error": "UsageError",
                        "summary": e.message,
                        "details": [],
                        "hint": f"run `{e.prog} --help`",
                        "exit_code": EXIT_USAGE,
                    },
                    indent=2,
                )
            )
        return EXIT_USAGE
    except SystemExit as e:
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    want_json = bool(getattr(args, "json", False))
    try:
        return int(args.func(args))
    except GuardError as e:
        if want_json:
            print(json.dumps({"ok": False, **e.to_json()}, indent=2))
        else:
            print(f"{prog}: {e.diagnostics()}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # the one boundary for unexpected failures
        if want_json:
            print(
                json.dumps(
                    {
                        "ok": False,
                        "error": type(e).__name__,
                        "summary": str(e),
                        "details": [],
                        "hint": "this is a bug; please report it with the command you ran",
                        "exit_code": EXIT_INTERNAL,
                    },
                    indent=2,
                )
            )
        print(
            f"{prog}: internal error: {type(e).__name__}: {e}\n"
            "Next step: this is a bug; please report it with the command you ran.",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mlflow-guard``."""
    return run(argv)


if __name__ == "__main__":
    raise SystemExit(main())
