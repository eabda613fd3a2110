# Sourced by scripts/demo and scripts/test: create .venv from the pinned lock file once,
# reinstall when requirements.lock or pyproject.toml change.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
VENV="$ROOT/.venv"
STAMP="$VENV/.mlflow-guard-installed"
want="$(cat "$ROOT/requirements.lock" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  echo "installing pinned dependencies into $VENV (first run takes a few minutes)" >&2
  "$VENV/bin/python" -m pip install -q "pip==26.3" >&2
  "$VENV/bin/python" -m pip install -q -r "$ROOT/requirements.lock" >&2
  "$VENV/bin/python" -m pip install -q --no-deps -e "$ROOT" >&2
  echo "$want" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
