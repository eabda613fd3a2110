"""The trace ids of an OTLP/HTTP export (``POST /v1/traces``), read as MLflow reads them.

MLflow stores spans whose trace id already exists *into that trace*, whatever experiment the
request's ``X-Mlflow-Experiment-Id`` names; only a new trace id is created in that experiment.
Guard therefore needs every trace id of the payload before MLflow sees it. The body is an
``ExportTraceServiceRequest`` (``opentelemetry-proto``), binary (``application/x-protobuf``)
or OTLP JSON (``application/json``: ids in hex, converted by MLflow's own function), optionally
``gzip`` or ``deflate`` compressed.

Guard decompresses itself, within its size limit (a small compressed body can expand without
bound), and hands MLflow the decompressed bytes without ``Content-Encoding``: MLflow then parses
exactly the bytes guard parsed. A body guard cannot parse is refused (fail closed).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

from mlflow_guard.server.request_view import BadRequest

MEDIA_TYPES = ("application/x-protobuf", "application/json")


def _inflate(data: bytes, wbits: int, limit: int) -> tuple[bytes, bytes]:
    """One zlib/gzip/raw-deflate stream of ``data``: ``(output, bytes after the stream)``."""
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as e:
        raise BadRequest(f"OTLP body does not decompress: {e}") from e
    if len(out) > limit:
        raise BadRequest(
            f"decompressed OTLP body exceeds the limit of {limit} bytes "
            "(MLFLOW_GUARD_MAX_JSON_BYTES)",
            status=413,
        )
    if not d.eof:
        raise BadRequest("OTLP body is a truncated compressed stream")
    return out, d.unused_data


def decompress(raw: bytes, encoding: str, limit: int) -> bytes:
    """``raw`` decoded per ``Content-Encoding`` (``gzip`` members or ``deflate``), bounded.

    Raises:
        BadRequest: another encoding, a corrupt or truncated stream, trailing bytes (400), or
            more than ``limit`` bytes of output (413).
    """
    if encoding == "gzip":
        parts: list[bytes] = []
        total, rest = 0, raw
        while True:
            out, rest = _inflate(rest, 16 + zlib.MAX_WBITS, limit - total)
            parts.append(out)
            total += len(out)
            rest = rest.lstrip(b"\x00")  # padding between members, as gzip.decompress allows
            if not rest:
                return b"".join(parts)
    if encoding == "deflate":
        try:
            out, rest = _inflate(raw, zlib.MAX_WBITS, limit)
        except BadRequest as e:
            if e.status == 413:
                raise
            out, rest = _inflate(raw, -zlib.MAX_WBITS, limit)  # raw deflate, as MLflow accepts
        if rest:
            raise BadRequest("OTLP body has bytes after its deflate stream")
        return out
    raise BadRequest(f"unsupported Content-Encoding {encoding!r} (expected gzip or deflate)")


def parse(body: bytes, media_type: str) -> Any:
    """The ``ExportTraceServiceRequest`` MLflow's ``/v1/traces`` handler reads from ``body``."""
    from google.protobuf import json_format  # type: ignore[import-untyped,unused-ignore]
    from mlflow.server.otel_api import _convert_otlp_json_ids_to_base64
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    try:
        if media_type == "application/json":
            json_body = _convert_otlp_json_ids_to_base64(body)
            json_format.Parse(json_body, request, ignore_unknown_fields=True)
        else:
            request.ParseFromString(body)
    except Exception as e:  # whatever guard cannot read, MLflow must not get
        raise BadRequest(f"malformed OTLP {media_type} body: {type(e).__name__}") from e
    return request


def trace_ids(request: Any) -> list[str]:
    """The MLflow trace ids (``tr-<32 hex>``) of every span, in order, without repeats.

    Computed with MLflow's own conversion (``Span.from_otel_proto``): the OTLP ``trace_id``
    bytes as a big-endian integer, formatted. Spans without a trace id are skipped (MLflow
    rejects the whole request for them).
    """
    from mlflow.tracing.utils import generate_mlflow_trace_id_from_otel_trace_id
    from mlflow.tracing.utils.otlp import _otel_proto_bytes_to_id

    out: dict[str, None] = {}
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if span.trace_id:
                    otel_id = _otel_proto_bytes_to_id(span.trace_id)
                    out[generate_mlflow_trace_id_from_otel_trace_id(otel_id)] = None
    return list(out)


@dataclass
class OtlpBody:
    """The body of one OTLP export, parsed on first use (after authentication).

    Attributes:
        raw: the body as received.
        content_type: the ``Content-Type`` header (repeated headers joined).
        content_encoding: the ``Content-Encoding`` header, or ``None``.
        limit: the largest body guard reads, compressed or not.
    """

    raw: bytes
    content_type: str | None
    content_encoding: str | None
    limit: int
    _parsed: tuple[list[str], bytes] | None = field(default=None, repr=False)

    def _parse(self) -> tuple[list[str], bytes]:
        if self._parsed is None:
            if len(self.raw) > self.limit:
                raise BadRequest(
                    f"OTLP body of {len(self.raw)} bytes exceeds the limit of {self.limit} "
                    "bytes (MLFLOW_GUARD_MAX_JSON_BYTES)",
                    status=413,
                )
            media_type = (self.content_type or "").split(";")[0].strip()
            if media_type not in MEDIA_TYPES:
                raise BadRequest(
                    f"OTLP Content-Type must be one of {', '.join(MEDIA_TYPES)}, "
                    f"got {self.content_type!r}"
                )
            body = self.raw
            if self.content_encoding:
                body = decompress(body, self.content_encoding.lower(), self.limit)
            self._parsed = (trace_ids(parse(body, media_type)), body)
        return self._parsed

    def trace_ids(self) -> list[str]:
        """The MLflow trace ids the export writes to.

        Raises:
            BadRequest: the body cannot be read (see :func:`decompress`, :func:`parse`).
        """
        return self._parse()[0]

    def body(self) -> bytes:
        """The bytes to hand MLflow: the body guard parsed, decompressed."""
        return self._parse()[1]
