"""Plain git hooks (``dvc-guard install``) that block, chained with whatever was there before.

The hooks folder is the one git uses: ``git rev-parse --git-path hooks`` honours
``core.hooksPath`` and linked worktrees. An existing hook that is not ours (for example the one
``dvc install`` writes) is moved to ``<hook>.legacy`` and still runs first; if it fails, the
commit or push stops there. ``dvc-guard uninstall`` removes our hook and moves the legacy one
back. Hooks call the interpreter that ran ``install`` (as pre-commit does), falling back to
``dvc-guard`` on ``PATH`` if that interpreter is gone.
"""

from __future__ import annotations

import os
import shlex
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from dvc_hooks import gitutil
from mlflow_guard.core.errors import UsageError

MARKER = "# dvc-guard-hook v1"
HOOKS = ("pre-commit", "pre-push")

_TEMPLATE = """#!/bin/sh
{marker}
# Installed by `dvc-guard install`; `dvc-guard uninstall` restores the previous hook.
# A previous hook, if any, is kept as {hook}.legacy and runs first.
HERE="$(cd "$(dirname "$0")" && pwd)"
{stdin_save}if [ -x "$HERE/{hook}.legacy" ]; then
  {legacy_call} || exit $?
fi
PY={python}
if [ -x "$PY" ]; then
  {stdin_pipe}"$PY" -m dvc_hooks.cli hook {hook}{extra} "$@"
else
  {stdin_pipe}dvc-guard hook {hook}{extra} "$@"
fi
"""


def hooks_dir(root: Path) -> Path:
    """The folder git reads hooks from (``core.hooksPath`` and worktrees honoured)."""
    return gitutil.git_path(root, "hooks")


def is_ours(path: Path) -> bool:
    """Whether ``path`` is a hook this module wrote."""
    try:
        return MARKER in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def script(hook: str, *, extra_args: str = "", python: str | None = None) -> str:
    """The shell script for one hook."""
    push = hook == "pre-push"
    return _TEMPLATE.format(
        marker=MARKER,
        hook=hook,
        python=shlex.quote(python or sys.executable),
        extra=f" {extra_args}" if extra_args else "",
        stdin_save='STDIN="$(cat)"\n' if push else "",
        legacy_call=(
            f'printf \'%s\\n\' "$STDIN" | "$HERE/{hook}.legacy" "$@"'
            if push
            else f'"$HERE/{hook}.legacy" "$@"'
        ),
        stdin_pipe="printf '%s\\n' \"$STDIN\" | " if push else "",
    )


@dataclass(frozen=True)
class Action:
    """What install/uninstall did to one hook."""

    hook: str
    path: Path
    what: str


def install(root: Path, *, extra_args: dict[str, str] | None = None) -> list[Action]:
    """Install (or refresh) our hooks, moving foreign hooks to ``.legacy``.

    Raises:
        UsageError: a foreign hook exists and a ``.legacy`` file is already there.
    """
    d = hooks_dir(root)
    d.mkdir(parents=True, exist_ok=True)
    actions = []
    for hook in HOOKS:
        path, legacy = d / hook, d / f"{hook}.legacy"
        what = "installed"
        if path.exists() and not is_ours(path):
            if legacy.exists():
                raise UsageError(
                    f"{path} exists and {legacy.name} is taken too; refusing to overwrite",
                    hint=f"merge or remove {legacy} yourself, then run `dvc-guard install` again",
                )
            os.replace(path, legacy)
            what = f"installed (previous hook kept as {legacy.name}, still run first)"
        elif path.exists():
            what = "refreshed"
        tmp = path.with_name(path.name + ".dvc-guard.tmp")
        tmp.write_text(script(hook, extra_args=(extra_args or {}).get(hook, "")))
        tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        os.replace(tmp, path)
        actions.append(Action(hook, path, what))
    return actions


def uninstall(root: Path) -> list[Action]:
    """Remove our hooks and move ``.legacy`` hooks back; foreign hooks are left alone."""
    d = hooks_dir(root)
    actions = []
    for hook in HOOKS:
        path, legacy = d / hook, d / f"{hook}.legacy"
        if not path.exists():
            actions.append(Action(hook, path, "not installed"))
            continue
        if not is_ours(path):
            actions.append(Action(hook, path, "left alone (not installed by dvc-guard)"))
            continue
        path.unlink()
        if legacy.exists():
            os.replace(legacy, path)
            actions.append(Action(hook, path, "removed; previous hook restored"))
        else:
            actions.append(Action(hook, path, "removed"))
    return actions
