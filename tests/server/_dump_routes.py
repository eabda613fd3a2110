"""Build the guard app as a worker would and print every route with its guard decision (JSON).

Run in a subprocess by the route-coverage test so the global MLflow Flask app of the test
process stays untouched.
"""

from __future__ import annotations

import json
import re
import sys


def main() -> None:
    from mlflow.server import app as flask_app

    from mlflow_guard.server import asgi_layer
    from mlflow_guard.server.app import create_app
    from mlflow_guard.server.routes import spec_for

    asgi = create_app()
    out = []
    for rule in flask_app.url_map.iter_rules():
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            spec = spec_for(rule.endpoint)
            path = re.sub(
                r"<(?:[^:<>]+:)?([^<>]+)>",
                lambda m: "0/x" if "path:" in m.group(0) else "0",
                rule.rule,
            )
            out.append(
                {
                    "layer": "flask",
                    "endpoint": rule.endpoint,
                    "rule": rule.rule,
                    "method": method,
                    "path": path,
                    "resolver": spec.resolver if spec else None,
                }
            )
    for r in asgi_layer.native_routes(asgi.app):
        spec = spec_for(f"fastapi:{r.name}")
        path = re.sub(r"\{[^{}:]+(:path)?\}", lambda m: "0/x" if m.group(1) else "0", r.path)
        for method in sorted(r.methods):
            out.append(
                {
                    "layer": "fastapi",
                    "endpoint": f"fastapi:{r.name}",
                    "rule": r.path,
                    "method": method,
                    "path": path,
                    "resolver": spec.resolver if spec else None,
                }
            )
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
