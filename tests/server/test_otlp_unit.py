"""How guard reads the trace ids of an OTLP export: as MLflow does, bounded, fail closed."""

from __future__ import annotations

import gzip
import json
import os
import zlib

import pytest
from mlflow.entities.span import Span
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from mlflow_guard.server.otlp import OtlpBody, decompress
from mlflow_guard.server.request_view import BadRequest

LIMIT = 1 << 20


def export(*trace_ids: bytes) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    spans = req.resource_spans.add().scope_spans.add()
    for tid in trace_ids:
        span = spans.spans.add()
        span.trace_id, span.span_id, span.name = tid, os.urandom(8), "s"
        span.start_time_unix_nano, span.end_time_unix_nano = 1, 2
    return req


def mlflow_ids(req: ExportTraceServiceRequest) -> list[str]:
    """The trace ids MLflow's handler derives (``Span.from_otel_proto``)."""
    out: dict[str, None] = {}
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            for s in ss.spans:
                out[Span.from_otel_proto(s, resource=rs.resource).trace_id] = None
    return list(out)


def otlp_json(req: ExportTraceServiceRequest) -> bytes:
    """OTLP JSON (hex ids), as an OTel collector sends it."""
    from google.protobuf.json_format import MessageToDict

    doc = MessageToDict(req)
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for s in ss["spans"]:
                for k in ("traceId", "spanId"):
                    s[k] = __import__("base64").b64decode(s[k]).hex()
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "ids",
    [
        [os.urandom(16)],
        [b"\x00" * 15 + b"\x07", b"\x07"],  # same integer, so the same MLflow trace id
        [os.urandom(16), os.urandom(16), b"\xff" * 20],
    ],
)
def test_trace_ids_match_mlflow(ids: list[bytes]) -> None:
    req = export(*ids)
    body = OtlpBody(req.SerializeToString(), "application/x-protobuf", None, LIMIT)
    assert body.trace_ids() == mlflow_ids(req)
    as_json = OtlpBody(otlp_json(req), "application/json; charset=utf-8", None, LIMIT)
    assert as_json.trace_ids() == mlflow_ids(req)


def test_compressed_bodies_are_read_and_replayed_decompressed() -> None:
    req = export(os.urandom(16), os.urandom(16))
    plain = req.SerializeToString()
    half = len(plain) // 2
    for encoding, data in [
        ("gzip", gzip.compress(plain)),
        ("GZIP", gzip.compress(plain[:half]) + b"\x00\x00" + gzip.compress(plain[half:])),
        ("deflate", zlib.compress(plain)),
        ("deflate", zlib.compress(plain)[2:-4]),  # raw deflate
    ]:
        body = OtlpBody(data, "application/x-protobuf", encoding, LIMIT)
        assert body.trace_ids() == mlflow_ids(req), encoding
        assert body.body() == plain


@pytest.mark.parametrize(
    ("raw", "ctype", "encoding", "status", "message"),
    [
        (b"\x0a\x05junk", "application/x-protobuf", None, 400, "malformed OTLP"),
        (b"{not json", "application/json", None, 400, "malformed OTLP"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
            "application/json",
            None,
            400,
            "malformed OTLP",
        ),
        (b"[1]", "application/json", None, 400, "malformed OTLP"),
        (b"", "text/plain", None, 400, "Content-Type must be"),
        (b"", "application/json, application/x-protobuf", None, 400, "Content-Type must be"),
        (b"x", "application/x-protobuf", "br", 400, "unsupported Content-Encoding"),
        (b"x", "application/x-protobuf", "gzip, gzip", 400, "unsupported Content-Encoding"),
        (b"not gzip", "application/x-protobuf", "gzip", 400, "does not decompress"),
        (gzip.compress(b"abc")[:-3], "application/x-protobuf", "gzip", 400, "truncated"),
        (gzip.compress(b"abc") + b"trailing", "application/x-protobuf", "gzip", 400, "decompress"),
        (zlib.compress(b"abc") + b"x", "application/x-protobuf", "deflate", 400, "after its"),
        (gzip.compress(b"\x00" * (LIMIT + 1)), "application/x-protobuf", "gzip", 413, "exceeds"),
        (b"\x00" * (LIMIT + 1), "application/x-protobuf", None, 413, "exceeds"),
    ],
)
def test_unreadable_bodies_are_refused(
    raw: bytes, ctype: str, encoding: str | None, status: int, message: str
) -> None:
    with pytest.raises(BadRequest) as e:
        OtlpBody(raw, ctype, encoding, LIMIT).trace_ids()
    assert e.value.status == status
    assert message in str(e.value)


def test_gzip_members_count_towards_one_limit() -> None:
    member = gzip.compress(b"\x00" * (LIMIT // 2 + 1))
    with pytest.raises(BadRequest) as e:
        decompress(member + member, "gzip", LIMIT)
    assert e.value.status == 413
