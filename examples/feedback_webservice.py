"""A small web service that records user feedback on predictions as signed records.

The service holds no private key: it signs with HMAC-SHA256 (Standard Webhooks style) using a
secret from ``$FEEDBACK_WEB_SECRET`` (``whsec_<base64>``), and the guard policy lists it under
``feedback.hmac_sources``. A service that can keep a private key would use
``FeedbackSigner("checkout", "keys/checkout.key")`` instead.

Each accepted user click becomes one record; records are forwarded to the guard collector
(``$GUARD_URL/api/2.0/mlflow-guard/feedback`` with ``$GUARD_TOKEN``) or, without ``$GUARD_URL``,
appended to an outbox JSONL file for ``mlflow-guard feedback ingest``.

Run: ``FEEDBACK_WEB_SECRET=whsec_... flask --app examples/feedback_webservice:create_app run``
"""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, request

from mlflow_guard.feedback import FeedbackSigner

ALLOWED_LABELS = {"ok", "fraud"}


def create_app(outbox: str | None = None, source: str = "web") -> Flask:
    """The feedback service: ``POST /feedback`` with ``{"prediction_id": ..., "label": ...}``."""
    app = Flask(__name__)
    signer = FeedbackSigner.from_env(source, "FEEDBACK_WEB_SECRET")
    out = Path(outbox or os.environ.get("FEEDBACK_OUTBOX", "feedback-outbox.jsonl"))

    @app.post("/feedback")
    def feedback() -> Any:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return jsonify(error="expected a JSON object"), 400
        pred, label = body.get("prediction_id"), body.get("label")
        if not isinstance(pred, str) or label not in ALLOWED_LABELS:
            return jsonify(error=f"need prediction_id and label in {sorted(ALLOWED_LABELS)}"), 400
        line = signer.sign_line({"prediction_id": pred, "label": label})
        guard = os.environ.get("GUARD_URL")
        if guard:
            req = urllib.request.Request(
                f"{guard}/api/2.0/mlflow-guard/feedback",
                data=line + b"\n",
                headers={
                    "Content-Type": "application/x-ndjson",
                    "Authorization": f"Bearer {os.environ['GUARD_TOKEN']}",
                },
            )
            with urllib.request.urlopen(req, timeout=10) as resp:
                return app.response_class(
                    resp.read(), status=resp.status, mimetype="application/json"
                )
        with out.open("ab") as f:
            f.write(line + b"\n")
        return jsonify(recorded=True), 201

    return app
