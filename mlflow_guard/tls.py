"""TLS for guard endpoints: option checking and the uvicorn/gunicorn flags that enable it.

Rules: a guard endpoint on a non-loopback address must use TLS unless the operator says
``--insecure-http`` on purpose (and is told so at start). Certificates and keys are loaded once
before the server starts, so a wrong path or a key that does not match its certificate is a
clear configuration error (exit 2) instead of a worker crash. ``--tls-client-ca`` turns on
mutual TLS: clients must present a certificate signed by that CA.
"""

from __future__ import annotations

import ipaddress
import shlex
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from mlflow_guard.core.errors import PolicyError, UsageError


@dataclass(frozen=True)
class TLSConfig:
    """Server TLS material (``None`` fields: TLS off)."""

    cert: Path | None = None
    key: Path | None = None
    client_ca: Path | None = None

    @property
    def enabled(self) -> bool:
        """Whether a certificate and key are configured."""
        return self.cert is not None and self.key is not None


def is_loopback(host: str) -> bool:
    """Whether ``host`` only binds loopback (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    h = host.strip("[]")
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        try:
            infos = socket.getaddrinfo(h, None)
        except OSError:
            return False
        return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def check(host: str, tls: TLSConfig, *, insecure_http: bool) -> str | None:
    """Validate the TLS settings for binding ``host``; return a warning to print, if any.

    Raises:
        UsageError: only one of cert/key, or a client CA without a server certificate.
        PolicyError: a non-loopback address without TLS and without ``--insecure-http``;
            unreadable or mismatched certificate/key; unreadable client CA.
    """
    if (tls.cert is None) != (tls.key is None):
        raise UsageError("--tls-cert and --tls-key go together", hint="give both, or neither")
    if tls.client_ca is not None and not tls.enabled:
        raise UsageError("--tls-client-ca needs --tls-cert and --tls-key")
    if not tls.enabled:
        if is_loopback(host):
            return None
        if not insecure_http:
            raise PolicyError(
                f"refusing to serve plain HTTP on non-loopback address {host}",
                details=["credentials, models and predictions would cross the network in clear"],
                hint="pass --tls-cert and --tls-key (and --tls-client-ca for mutual TLS), or "
                "--insecure-http if TLS is terminated in front of this server",
            )
        return (
            f"WARNING: serving plain HTTP on {host} (--insecure-http): anything sent to this "
            "server, including passwords and tokens, travels in clear text"
        )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(str(tls.cert), str(tls.key))
    except (OSError, ssl.SSLError) as e:
        raise PolicyError(
            f"cannot use TLS certificate {tls.cert} with key {tls.key}: {e}",
            hint="check both paths and that the key belongs to the certificate",
        ) from e
    if tls.client_ca is not None:
        try:
            ctx.load_verify_locations(cafile=str(tls.client_ca))
        except (OSError, ssl.SSLError) as e:
            raise PolicyError(f"cannot read client CA bundle {tls.client_ca}: {e}") from e
    return None


def uvicorn_args(tls: TLSConfig) -> list[str]:
    """uvicorn flags for ``mlflow server --uvicorn-opts``."""
    if not tls.enabled:
        return []
    args = ["--ssl-certfile", str(tls.cert), "--ssl-keyfile", str(tls.key)]
    if tls.client_ca is not None:
        args += [
            "--ssl-ca-certs",
            str(tls.client_ca),
            "--ssl-cert-reqs",
            str(int(ssl.CERT_REQUIRED)),
        ]
    return args


def gunicorn_args(tls: TLSConfig) -> list[str]:
    """gunicorn flags for ``mlflow server --gunicorn-opts``."""
    if not tls.enabled:
        return []
    args = ["--certfile", str(tls.cert), "--keyfile", str(tls.key)]
    if tls.client_ca is not None:
        args += ["--ca-certs", str(tls.client_ca), "--cert-reqs", str(int(ssl.CERT_REQUIRED))]
    return args


def merge_opts(existing: str | None, extra: list[str]) -> str | None:
    """Append ``extra`` flags to an ``--uvicorn-opts``/``--gunicorn-opts`` string."""
    if not extra:
        return existing
    return " ".join(filter(None, [existing, shlex.join(extra)]))
