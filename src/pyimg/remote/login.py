"""Checking credentials before storing them, as ``docker login`` does."""

from __future__ import annotations

from pathlib import Path

from pyimg.errors import AuthenticationError, FailedPrecondition
from pyimg.remote import http
from pyimg.remote.connection import connect
from pyimg.remote.credentials import Credential
from pyimg.remote.hosts import resolve_hosts
from pyimg.remote.transport import RetryPolicy, check_response, translate, with_retries


def check_credentials(host: str, cred: Credential, config_dir: Path | None,
                      retry: RetryPolicy) -> None:
    """GET /v2/ on the upstream endpoint with ``cred``; raise unless accepted."""
    upstream = [ep for ep in resolve_hosts(host, config_dir) if not ep.is_mirror]
    if not upstream:
        raise FailedPrecondition(f"login {host}: no upstream endpoint configured")
    try:
        conn = connect(upstream[-1], host, cred, timeout=retry.timeout)
    except http.TransportError as exc:
        raise translate(exc, f"login {host}") from exc
    try:
        def ping() -> None:
            try:
                resp = conn.request("GET", conn.base + "/")
            except AuthenticationError as exc:
                raise AuthenticationError(f"login {host}: credentials refused",
                                          hint="check username and password",
                                          status=401) from exc
            check_response(resp, f"login {host}", host=host)
            resp.close()

        with_retries(retry, f"login {host}", ping)
    finally:
        conn.close()
