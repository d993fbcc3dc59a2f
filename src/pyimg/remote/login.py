"""Checking credentials before storing them, as ``docker login`` does."""

from __future__ import annotations

from pathlib import Path

from pyimg.errors import AuthenticationError, FailedPrecondition
from pyimg.remote.credentials import Credential
from pyimg.remote.hosts import resolve_hosts
from pyimg.remote.registry import RegistryOptions, connect
from pyimg.remote.transport import RetryPolicy, check_response, with_retries


def check_credentials(host: str, cred: Credential, config_dir: Path | None,
                      retry: RetryPolicy) -> None:
    """GET /v2/ on the upstream endpoint with ``cred``; raise unless accepted."""
    upstream = [ep for ep in resolve_hosts(host, config_dir) if not ep.is_mirror]
    if not upstream:
        raise FailedPrecondition(f"login {host}: no upstream endpoint configured")
    conn = connect(upstream[-1], host, cred, RegistryOptions(retry=retry, max_connections=2))
    try:
        def ping() -> None:
            resp = conn.client.get(conn.base + "/")
            if resp.status_code == 401:
                raise AuthenticationError(f"login {host}: credentials refused",
                                          hint="check username and password", status=401)
            check_response(resp, f"login {host}", host=host)

        with_retries(retry, f"login {host}", ping)
    finally:
        conn.close()
