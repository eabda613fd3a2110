"""The ``guard.yaml`` policy: frozen pydantic models and the loader.

The policy is found via an explicit path (``--policy``), the ``MLFLOW_GUARD_POLICY``
environment variable, or ``./guard.yaml``, in that order. Unknown keys are errors, never ignored;
every error names the file, the field path and what was expected.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, PrivateAttr, ValidationError, model_validator

from mlflow_guard.core.errors import PolicyError
from mlflow_guard.core.keys import read_small_file
from mlflow_guard.core.policy._types import Action, Duration, Purpose, StrictModel, parse_duration
from mlflow_guard.core.policy.access import AccessRule
from mlflow_guard.core.policy.datasets import DatasetPolicy, ValidationRule
from mlflow_guard.core.policy.feedback import FeedbackPolicy
from mlflow_guard.core.policy.keys import KeyEntry
from mlflow_guard.core.policy.registry import (
    MetricGates,
    ProtectedAlias,
    ProtectedStage,
    ProtectedTag,
    ProtectedTarget,
    RegistryPolicy,
)
from mlflow_guard.core.policy.scan import ScanPolicy
from mlflow_guard.core.policy.storage import StoragePolicy

__all__ = [
    "ENV_VAR",
    "AccessRule",
    "Action",
    "DatasetPolicy",
    "Duration",
    "FeedbackPolicy",
    "KeyEntry",
    "MetricGates",
    "Policy",
    "ProtectedAlias",
    "ProtectedStage",
    "ProtectedTag",
    "ProtectedTarget",
    "Purpose",
    "RegistryPolicy",
    "ScanPolicy",
    "StoragePolicy",
    "ValidationRule",
    "find_policy",
    "load_policy",
    "parse_duration",
    "parse_policy",
    "policy_schema",
]

ENV_VAR = "MLFLOW_GUARD_POLICY"
_MAX_POLICY_BYTES = 4 * 1024 * 1024


class Policy(StrictModel):
    """Root of ``guard.yaml``."""

    version: Literal[1]
    keys: list[KeyEntry] = Field(default_factory=list)
    revoked: list[str] = Field(default_factory=list)
    roles: dict[str, list[str]] = Field(default_factory=dict)
    access: list[AccessRule] = Field(default_factory=list)
    registry: RegistryPolicy = Field(default_factory=RegistryPolicy)
    datasets: DatasetPolicy = Field(default_factory=DatasetPolicy)
    feedback: FeedbackPolicy = Field(default_factory=FeedbackPolicy)
    storage: StoragePolicy = Field(default_factory=StoragePolicy)
    scan: ScanPolicy = Field(default_factory=ScanPolicy)
    _base_dir: Path = PrivateAttr(default=Path("."))

    @property
    def base_dir(self) -> Path:
        """Folder that relative key paths resolve from (the policy file's folder)."""
        return self._base_dir

    @model_validator(mode="after")
    def _cross_references(self) -> Policy:
        ids = [k.id for k in self.keys]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"keys: ids must be unique; repeated: {', '.join(dupes)}")
        known_roles = set(self.roles)
        for i, rule in enumerate(self.access):
            if rule.role not in known_roles:
                raise ValueError(
                    f"access[{i}].role: names role {rule.role!r}, "
                    "which is not defined under 'roles'"
                )
        for i, target in enumerate(self.registry.protected):
            for j, role in enumerate(target.approver_roles):
                if role not in known_roles:
                    raise ValueError(
                        f"registry.protected[{i}].approver_roles[{j}]: names role {role!r}, "
                        "which is not defined under 'roles'"
                    )
        for i, signer in enumerate(self.datasets.signers):
            if signer not in ids:
                raise ValueError(
                    f"datasets.signers[{i}]: names key {signer!r}, not listed under 'keys'"
                )
        for i, source in enumerate(self.feedback.sources):
            if source not in ids:
                raise ValueError(
                    f"feedback.sources[{i}]: names key {source!r}, not listed under 'keys'"
                )
        return self

    def key_path(self, entry: KeyEntry) -> Path:
        """Absolute path of a key entry's public key file."""
        p = entry.public_key
        return p if p.is_absolute() else (self.base_dir / p)


def find_policy(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Return the policy path from ``explicit``, ``$MLFLOW_GUARD_POLICY`` or ``./guard.yaml``.

    Raises:
        PolicyError: when none is given and ``./guard.yaml`` does not exist.
    """
    if explicit:
        return Path(explicit)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    default = Path("guard.yaml")
    if default.exists():
        return default
    raise PolicyError(
        "no policy found",
        details=["looked for --policy, $MLFLOW_GUARD_POLICY and ./guard.yaml"],
        hint="pass --policy PATH or copy examples/guard.yaml to ./guard.yaml",
    )


_UNION_TAGS = ("alias", "stage", "tag")


def _loc(loc: tuple[int | str, ...]) -> str:
    """``('registry', 'protected', 0, 'alias', 'approvals')`` → ``registry.protected[0].approvals``.

    Pydantic inserts the discriminated-union tag right after a list index, and validator names
    (``function-after[...]``); neither is a field the user wrote, so both are dropped.
    """
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        after_index = i > 0 and isinstance(loc[i - 1], int)
        if (after_index and part in _UNION_TAGS and i + 1 < len(loc)) or part.startswith(
            ("function-", "tagged-union[")
        ):
            continue
        out += f".{part}" if out else part
    return out or "(top level)"


def _format_validation(path: Path, err: ValidationError) -> PolicyError:
    details = []
    for e in err.errors():
        loc = _loc(tuple(e["loc"]))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field (not part of policy version 1; check the spelling)"
        elif e["type"] == "missing":
            msg = "required field is missing"
        if not e["loc"] and e["type"] == "value_error":
            details.append(f"{path}: {msg}")  # cross-reference checks name their own path
        else:
            details.append(f"{path}: {loc}: {msg}")
    return PolicyError(
        f"invalid policy {path}",
        details=details,
        hint="fix the fields above; `mlflow-guard policy schema` prints every allowed field",
    )


def parse_policy(data: Any, *, source: Path, base_dir: Path | None = None) -> Policy:
    """Validate already-parsed YAML/JSON data into a :class:`Policy`."""
    if not isinstance(data, dict):
        raise PolicyError(
            f"invalid policy {source}",
            details=[f"{source}: (top level): expected a mapping, got {type(data).__name__}"],
            hint="start from examples/guard.yaml",
        )
    try:
        policy = Policy.model_validate(data)
    except ValidationError as e:
        raise _format_validation(source, e) from e
    policy._base_dir = base_dir if base_dir is not None else source.parent
    return policy


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML loader that refuses a key repeated in one mapping (else the last one wins)."""


def _mapping_without_duplicates(
    loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False
) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            repeated = key in seen
        except TypeError:  # an unhashable key (a list or mapping): construct_mapping says so
            break
        if repeated:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r} (a repeated key would silently replace the first)",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


def load_policy(path: str | os.PathLike[str] | None = None, *, check_files: bool = True) -> Policy:
    """Load and validate a policy file.

    Args:
        path: explicit path; ``None`` uses :func:`find_policy`.
        check_files: also check that every referenced public key file exists.

    Raises:
        PolicyError: unreadable file, YAML syntax error, schema error or missing key file.
    """
    p = find_policy(path)
    try:
        text = read_small_file(p, _MAX_POLICY_BYTES).decode("utf-8")
    except OSError as e:
        raise PolicyError(
            f"cannot read policy {p}: {e.strerror or e}",
            hint="check the path given by --policy or $MLFLOW_GUARD_POLICY",
        ) from e
    except UnicodeDecodeError as e:
        raise PolicyError(
            f"policy {p} is not UTF-8 text", details=[str(e)], hint="save it as UTF-8"
        ) from e
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PolicyError(
            f"policy {p} is not valid YAML{where}",
            details=[str(getattr(e, "problem", e))],
            hint="fix the YAML syntax",
        ) from e
    policy = parse_policy(data, source=p, base_dir=p.resolve().parent)
    if check_files:
        missing = [
            f"{p}: keys[{i}].public_key: file not found: {policy.key_path(k)}"
            for i, k in enumerate(policy.keys)
            if not policy.key_path(k).is_file()
        ]
        if missing:
            raise PolicyError(
                f"invalid policy {p}",
                details=missing,
                hint="generate keys with `mlflow-guard keys generate` or fix the paths "
                "(relative paths are resolved from the policy file's folder)",
            )
    return policy


def policy_schema() -> dict[str, Any]:
    """JSON Schema of ``guard.yaml``."""
    schema = Policy.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "mlflow-guard policy (guard.yaml), version 1"
    out: dict[str, Any] = json.loads(json.dumps(schema))
    return out
