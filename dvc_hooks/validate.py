"""Data validation (OWASP ML02, data poisoning) of tabular datasets as they change.

For each ``datasets.validate`` rule of the policy the current file (CSV or Parquet, read with
pandas/pyarrow, imported only here) is checked on its own — schema, types, ranges, categories,
null share, duplicate rows — and against the previously committed version — schema change,
label-distribution shift (Jensen–Shannon distance and PSI) and the share of previous rows
modified or removed — and, with a rule's ``baseline``, against a reviewed revision. Where those
versions come from: :mod:`dvc_hooks.data_versions`.
"""

from __future__ import annotations

import io
import math
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dvc_hooks import _stats, dvcfiles, gitutil, manifests
from dvc_hooks.data_versions import baseline_bytes, previous_bytes, staged_bytes
from mlflow_guard.core.errors import PolicyViolation, VerificationError
from mlflow_guard.core.policy import ValidationRule


class DataError(VerificationError):
    """A data file cannot be read as the table its rule describes (broken rows, bad Parquet)."""


@dataclass(frozen=True)
class Finding:
    """One measured check: rule name, measured value, threshold and the verdict."""

    path: str
    rule: str
    value: float | str
    limit: float | str
    ok: bool
    detail: str = ""

    def line(self) -> str:
        """Human-readable one-liner naming the rule and the numbers."""
        val = f"{self.value:.4f}" if isinstance(self.value, float) else str(self.value)
        lim = f"{self.limit:.4f}" if isinstance(self.limit, float) else str(self.limit)
        verdict = "ok" if self.ok else "VIOLATION"
        extra = f" ({self.detail})" if self.detail else ""
        return f"{self.path}: {self.rule}: {val} (limit {lim}) {verdict}{extra}"


@dataclass
class Result:
    """All findings for a set of rules, and notes (e.g. no previous version)."""

    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def violations(self) -> list[Finding]:
        """Findings that failed."""
        return [f for f in self.findings if not f.ok]

    def raise_if_failed(self) -> None:
        """Raise :class:`PolicyViolation` listing every failed check with its numbers."""
        bad = self.violations
        if bad:
            raise PolicyViolation(
                f"data validation failed: {len(bad)} check(s) violated",
                details=[f.line() for f in bad],
                hint="inspect the data change; if it is intended, adjust the thresholds in "
                "guard.yaml datasets.validate (reviewed like code)",
            )


def _fmt(rule: ValidationRule) -> str:
    if rule.format != "auto":
        return rule.format
    return "parquet" if rule.path.lower().endswith((".parquet", ".pq")) else "csv"


def read_table(data: bytes, rule: ValidationRule, *, what: str) -> Any:
    """Parse bytes into a pandas DataFrame.

    Raises:
        DataError: broken CSV rows, unreadable Parquet, or column names that are the same
            once case, surrounding whitespace, a BOM or Unicode compatibility forms are
            ignored (``label,label`` which pandas renames to ``label.1``, ``label,Label ``):
            another reader may pick the column this check did not look at.
    """
    import pandas as pd

    try:
        if _fmt(rule) == "parquet":
            df = pd.read_parquet(io.BytesIO(data))
            names = [str(c) for c in df.columns]
        else:
            df = pd.read_csv(io.BytesIO(data), on_bad_lines="error")
            head = pd.read_csv(io.BytesIO(data), header=None, nrows=1, dtype=str)
            names = [str(c) for c in head.iloc[0].tolist()] if len(head) else []
    except Exception as e:  # pandas/pyarrow raise many types for malformed input
        raise DataError(
            f"{what}: cannot be read as {_fmt(rule).upper()}",
            details=[f"{type(e).__name__}: {str(e).strip()[:300]}"],
            hint="fix the broken rows or restore the previous version",
        ) from e
    seen: dict[str, str] = {}
    clashes = []
    for name in names:
        key = _column_key(name)
        if key in seen:
            clashes.append(f"{seen[key]!r} and {name!r}")
        seen.setdefault(key, name)
    nested = [str(c) for c in df.columns if _is_nested(df[c])]
    if nested:
        raise DataError(
            f"{what}: nested columns (lists, maps, structs) cannot be validated",
            details=[f"column {c!r}" for c in nested],
            hint="flatten them into scalar columns, or keep them out of a validated file",
        )
    if clashes:
        raise DataError(
            f"{what}: ambiguous column names (equal ignoring case, whitespace, BOM)",
            details=clashes,
            hint="give every column one distinct name; readers disagree on which duplicate "
            "they use",
        )
    return df


def _is_nested(col: Any) -> bool:
    if col.dtype.kind != "O":
        return False
    import numpy as np

    return any(isinstance(v, (list, tuple, dict, set, np.ndarray)) for v in col)


def _column_key(name: str) -> str:
    cleaned = unicodedata.normalize("NFKC", name)
    for ch in ("\ufeff", "\u200b", "\u200c", "\u200d", "\u2060"):
        cleaned = cleaned.replace(ch, "")
    return cleaned.strip().casefold()


_KINDS = {
    "int": "iu",
    "float": "f",
    "number": "iuf",
    "bool": "b",
    "datetime": "M",
    "string": "OSU",
}


def _type_ok(series: Any, want: str) -> bool:
    if want == "any":
        return True
    kind = series.dtype.kind
    if want == "string" and str(series.dtype) in ("string", "str"):
        return True
    return kind in _KINDS[want]


def _outside(
    col: Any, lo: float | None, hi: float | None, *, nulls_governed: bool
) -> tuple[int, str]:
    """Rows of ``col`` outside ``[lo, hi]`` and a detail line.

    A range holds finite numbers: ``inf``/``-inf`` are outside even at an open end, and so is a
    value that is not a number (a string column, ``"5"``). Missing values (empty, ``NaN``) are
    outside too unless the rule sets ``max_null_share``, which then governs them: otherwise
    poisoned rows could hide as ``NaN`` in a ranged column.
    """
    missing = int(col.isna().sum())
    s = col.dropna()
    nbad = 0 if nulls_governed else missing
    try:
        vals = [float(v) for v in s.tolist()]
        if s.dtype.kind not in "iufb":
            raise TypeError
    except (TypeError, ValueError):
        return nbad + len(s), f"not numeric (dtype {col.dtype})"
    finite = [v for v in vals if math.isfinite(v)]
    nbad += len(vals) - len(finite)
    nbad += sum(1 for v in finite if (lo is not None and v < lo) or (hi is not None and v > hi))
    detail = f"min {min(vals)}, max {max(vals)}" if vals else ""
    if missing:
        how = "governed by max_null_share" if nulls_governed else "counted outside"
        detail += f"{', ' if detail else ''}{missing} missing ({how})"
    return nbad, detail


def _normalised(df: Any) -> Any:
    """``df`` with text cells stripped and NFKC-normalised: ``"Paris "`` repeats ``"Paris"``
    (numbers are already parsed, so ``0.5``/``0.50``/``5e-1`` are equal)."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype.kind == "O" or str(out[c].dtype) in ("string", "str"):
            out[c] = out[c].map(
                lambda v: unicodedata.normalize("NFKC", v).strip() if isinstance(v, str) else v
            )
    return out


def check_table(df: Any, rule: ValidationRule, prev: Any | None) -> list[Finding]:
    """Run every configured check of ``rule`` on ``df`` (and ``prev``, if any)."""
    p, out = rule.path, []
    n = len(df)
    if rule.min_rows is not None:
        out.append(Finding(p, "min_rows", n, rule.min_rows, n >= rule.min_rows))
    if rule.columns:
        for col, want in rule.columns.items():
            if col not in df.columns:
                out.append(Finding(p, f"columns.{col}", "missing", want, False))
            elif not _type_ok(df[col], want):
                out.append(Finding(p, f"columns.{col}", str(df[col].dtype), want, False))
        if not rule.allow_extra_columns:
            extra = sorted(set(map(str, df.columns)) - set(rule.columns))
            out.append(
                Finding(p, "allow_extra_columns", ",".join(extra) or "none", "none", not extra)
            )
    if rule.max_null_share is not None and n:
        shares = df.isna().mean()
        worst = str(shares.idxmax()) if len(shares) else ""
        val = float(shares.max()) if len(shares) else 0.0
        out.append(
            Finding(
                p,
                "max_null_share",
                val,
                rule.max_null_share,
                val <= rule.max_null_share,
                f"column {worst}",
            )
        )
    for col, (lo, hi) in rule.ranges.items():
        if col not in df.columns:
            out.append(Finding(p, f"ranges.{col}", "missing column", f"[{lo}, {hi}]", False))
            continue
        nbad, detail = _outside(df[col], lo, hi, nulls_governed=rule.max_null_share is not None)
        out.append(
            Finding(p, f"ranges.{col}", f"{nbad} rows outside", f"[{lo}, {hi}]", nbad == 0, detail)
        )
    for col, allowed in rule.categories.items():
        if col not in df.columns:
            out.append(Finding(p, f"categories.{col}", "missing column", str(allowed), False))
            continue
        seen = set(df[col].dropna().unique().tolist())
        unknown = sorted(map(str, seen - set(allowed)))
        out.append(
            Finding(
                p,
                f"categories.{col}",
                ",".join(unknown[:10]) or "none",
                "none",
                not unknown,
                "values not allowed" if unknown else "",
            )
        )
    if rule.max_duplicate_share is not None and n:
        dup = _normalised(df).duplicated()
        val = float(dup.mean())
        out.append(
            Finding(
                p,
                "max_duplicate_share",
                val,
                rule.max_duplicate_share,
                val <= rule.max_duplicate_share,
                f"{int(dup.sum())} of {n} rows repeat an earlier row "
                "(text compared without surrounding whitespace, NFKC)",
            )
        )
    if prev is None:
        return out
    old_schema = {str(c): str(t) for c, t in prev.dtypes.items()}
    new_schema = {str(c): str(t) for c, t in df.dtypes.items()}
    if not rule.allow_schema_change and old_schema != new_schema:
        diff = [
            f"{c}: {old_schema.get(c, '-')} -> {new_schema.get(c, '-')}"
            for c in sorted(old_schema.keys() | new_schema.keys())
            if old_schema.get(c) != new_schema.get(c)
        ]
        out.append(Finding(p, "schema", "changed", "unchanged", False, "; ".join(diff)))
    out += _drift(df, prev, rule, rule.max_label_shift, rule.max_psi, rule.max_changed_share)
    return out


def _drift(
    df: Any,
    prev: Any,
    rule: ValidationRule,
    max_shift: float | None,
    max_psi: float | None,
    max_changed: float | None,
    *,
    against: str = "",
) -> list[Finding]:
    """Label shift, PSI and changed-row share of ``df`` against ``prev`` (the previous commit,
    or with ``against`` the baseline version it names)."""
    p, lab, out = rule.path, rule.label_column, []
    prefix = f"baseline {against}: " if against else ""
    rows = f"rows of {against}" if against else "previous rows"
    if lab and (max_shift is not None or max_psi is not None):
        if lab not in df.columns or lab not in prev.columns:
            out.append(Finding(p, f"{prefix}label_column", "missing", lab, False))
        else:
            old_d = _stats.distribution(prev[lab].tolist())
            new_d = _stats.distribution(df[lab].tolist())
            desc = f"{_stats.describe(old_d)} -> {_stats.describe(new_d)}"
            if max_shift is not None:
                js = _stats.js_distance(old_d, new_d)
                name = f"{prefix}max_label_shift (Jensen-Shannon distance)"
                out.append(Finding(p, name, js, max_shift, js <= max_shift, desc))
            if max_psi is not None:
                psi = _stats.psi(old_d, new_d)
                out.append(Finding(p, f"{prefix}max_psi", psi, max_psi, psi <= max_psi, desc))
    if max_changed is not None and len(prev):
        common = [c for c in prev.columns if c in df.columns]
        gone = _stats.removed_rows(prev[common], df[common])
        val = gone / len(prev)
        out.append(
            Finding(
                p,
                f"{prefix}max_changed_share",
                val,
                max_changed,
                val <= max_changed,
                f"{gone} of {len(prev)} {rows} modified or removed",
            )
        )
    return out


def validate_rule(
    root: Path, rule: ValidationRule, result: Result, *, staged: bool = False
) -> None:
    """Validate one rule's data against HEAD, adding findings.

    ``staged`` validates what the commit records (index / staged DVC record), else the working
    tree: a pre-commit hook must check the bytes that get committed, not a clean working copy
    left beside a poisoned staged version.
    """
    if staged:
        current = staged_bytes(root, rule.path)
        if current is None:
            raise VerificationError(
                f"{rule.path}: file named by a datasets.validate rule is not in the commit",
                hint="stage it (`git add`, or `dvc add` and stage its .dvc file), "
                "or fix the path in guard.yaml",
            )
    else:
        current = manifests.workspace_reader(root)(rule.path)
        if current is None:
            raise VerificationError(
                f"{rule.path}: file named by a datasets.validate rule is not in the workspace",
                hint="run `dvc checkout`/`dvc pull`, or fix the path in guard.yaml",
            )
    df = read_table(current, rule, what=rule.path)
    old, where = previous_bytes(root, rule.path)
    prev = read_table(old, rule, what=f"{rule.path} ({where})") if old is not None else None
    if prev is None:
        result.notes.append(f"{rule.path}: {where}; shift and change checks skipped")
    result.findings.extend(check_table(df, rule, prev))
    b = rule.baseline
    if b is not None:
        data, where = baseline_bytes(root, rule)
        base = read_table(data, rule, what=f"{rule.path} ({where})")
        drift = _drift(
            df, base, rule, b.max_label_shift, b.max_psi, b.max_changed_share, against=b.ref
        )
        result.findings.extend(drift)


def changed_paths(root: Path) -> set[str]:
    """Data paths a staged commit changes: git-tracked files and DVC outputs of staged files."""
    paths: set[str] = set()
    for ch in gitutil.staged_changes(root):
        paths.add(ch.path)
        if dvcfiles.is_dvc_file(ch.path) and ch.status != "D":
            data = gitutil.show(root, f":{ch.path}")
            if data is not None:
                paths.update(o.path for o in dvcfiles.parse(ch.path, data))
    return paths
