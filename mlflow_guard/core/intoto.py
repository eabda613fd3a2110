"""in-toto Statement v1 and signed attestations (a Statement in a DSSE envelope).

Every signed document mlflow-guard writes other than the OMS bundle — dataset manifests,
approvals, feedback batches, SLSA provenance — is an in-toto Statement v1 in a DSSE envelope,
signed by a key trusted for the matching purpose.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlflow_guard.core import dsse, keys
from mlflow_guard.core.errors import SignatureInvalid
from mlflow_guard.core.policy import Purpose
from mlflow_guard.core.trust import TrustedKey, TrustStore

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"


class Subject(BaseModel):
    """A ResourceDescriptor naming what the statement is about."""

    model_config = ConfigDict(extra="allow")

    name: str
    digest: dict[str, str] = Field(min_length=1)


class Statement(BaseModel):
    """in-toto Statement v1."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type_: str = Field(default=STATEMENT_TYPE, alias="_type")
    subject: list[Subject] = Field(min_length=1)
    predicate_type: str = Field(alias="predicateType")
    predicate: dict[str, Any] = Field(default_factory=dict)

    def to_json_bytes(self) -> bytes:
        """Serialized form used as the DSSE payload (stable key order, UTF-8)."""
        return json.dumps(self.model_dump(by_alias=True), sort_keys=True, indent=2).encode("utf-8")


def parse_statement(payload: bytes, *, expected_predicate_type: str | None = None) -> Statement:
    """Parse and check a Statement payload.

    Raises:
        SignatureInvalid: not JSON, not a Statement v1, or of another predicate type.
    """
    try:
        data = dsse.loads_strict(payload)
    except (ValueError, UnicodeDecodeError) as e:
        raise SignatureInvalid("signed payload is not valid JSON", details=[str(e)]) from e
    try:
        st = Statement.model_validate(data)
    except ValidationError as e:
        raise SignatureInvalid(
            "signed payload is not an in-toto Statement v1",
            details=[
                f"{'.'.join(map(str, err['loc'])) or '(top)'}: {err['msg']}" for err in e.errors()
            ],
        ) from e
    if st.type_ != STATEMENT_TYPE:
        raise SignatureInvalid(
            f"unexpected statement type {st.type_!r}", details=[f"expected {STATEMENT_TYPE!r}"]
        )
    if expected_predicate_type is not None and st.predicate_type != expected_predicate_type:
        raise SignatureInvalid(
            f"unexpected predicate type {st.predicate_type!r}",
            details=[f"expected {expected_predicate_type!r}"],
            hint="this is a different kind of attestation than the one asked for",
        )
    return st


def sign_statement(statement: Statement, signer: keys.Signer) -> dsse.Envelope:
    """Sign a statement into a DSSE envelope."""
    return dsse.sign(statement.to_json_bytes(), dsse.INTOTO_PAYLOAD_TYPE, signer)


def verify_attestation(
    data: bytes | str | dict[str, Any],
    trust: TrustStore,
    purpose: Purpose,
    predicate_type: str,
    *,
    source: str = "attestation",
) -> tuple[Statement, TrustedKey]:
    """Verify a DSSE-wrapped Statement: signature by a key trusted for ``purpose``, then type.

    Raises:
        SignatureInvalid: malformed envelope or statement, wrong predicate type, bad signature.
        KeyNotTrusted: signed by an unknown, revoked, expired or wrong-purpose key.
    """
    env = dsse.parse(data, source=source)
    payload, key = dsse.verify(env, trust, purpose)
    return parse_statement(payload, expected_predicate_type=predicate_type), key
