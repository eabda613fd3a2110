"""The risk report: one JSON document and a small self-contained HTML page."""

from __future__ import annotations

import html
import json
import math
from typing import Any

OWASP = {
    "robustness": "ML01 adversarial attack",
    "membership": "ML04 membership inference",
    "inversion": "ML03 model inversion",
    "extraction": "ML05 model stealing",
}


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    return v


def to_json(sections: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    """JSON text: metadata and, per risk, its metrics, attack, budget or skip reason."""
    doc = {"meta": meta, "risks": {k: {"owasp": OWASP[k], **v} for k, v in sections.items()}}
    return json.dumps(_clean(doc), indent=2, sort_keys=True)


def to_html(sections: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    """A static HTML table of every metric with its attack and budget (no scripts)."""
    rows = []
    for key, sec in sections.items():
        if "skipped" in sec:
            rows.append(
                f"<tr><td>{html.escape(OWASP[key])}</td><td colspan=3>skipped: "
                f"{html.escape(str(sec['skipped']))}</td></tr>"
            )
            continue
        budget = html.escape(json.dumps(_clean(sec.get("budget", {})), sort_keys=True))
        for name, value in sec["metrics"].items():
            shown = f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))
            rows.append(
                f"<tr><td>{html.escape(OWASP[key])}</td><td>guard.{html.escape(name)}</td>"
                f"<td>{shown}</td><td>{html.escape(sec['attack'])}<br><small>{budget}</small>"
                "</td></tr>"
            )
    title = html.escape(str(meta.get("model", "model")))
    return (
        "<!doctype html><meta charset=utf-8><title>mlflow-guard risk report</title>"
        f"<h1>Risk report: {title}</h1><table border=1 cellpadding=4>"
        "<tr><th>risk</th><th>metric</th><th>value</th><th>attack and budget</th></tr>"
        + "".join(rows)
        + "</table>"
    )
