"""Retries, backoff, and error translation for registry requests.

This is the one boundary where transport exceptions (:mod:`pyimg.remote.http`)
and registry error bodies become :mod:`pyimg.errors`.
"""

from __future__ import annotations

import time

from pyimg import _debug
from pyimg.errors import (
    AuthenticationError,
    AuthorizationError,
    BlobUnknown,
    ManifestUnknown,
    PyimgError,
    RateLimited,
    RegistryError,
    RegistryUnreachable,
)
from pyimg.record import Record
from pyimg.remote.http import Timeout, TransportError

# Import-light (a small pull is import-budgeted, see docs/design.md): no dataclasses
# or typing; random for a backoff, json for an error body, when they happen.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    from pyimg.remote.http import Response

    _T = TypeVar("_T")

_MAX_ERROR_BODY = 64 * 1024
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class RetryPolicy(Record):
    """Exponential backoff with full jitter, capped; Retry-After wins when sane.

    ``timeout`` is per read or connect, not per whole blob.
    """

    attempts: int
    base: float
    cap: float
    max_retry_after: float
    timeout: float
    _fields = ("attempts", "base", "cap", "max_retry_after", "timeout")
    __slots__ = _fields

    def __init__(self, attempts: int = 5, base: float = 0.5, cap: float = 8.0,
                 max_retry_after: float = 60.0, timeout: float = 30.0) -> None:
        self._set(attempts, base, cap, max_retry_after, timeout)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        import random

        return random.uniform(0, min(self.cap, self.base * (2 ** attempt)))


def retry_after(resp: Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    import email.utils  # HTTP-date form: rare, so not imported up front

    try:
        return email.utils.parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        return None


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, RegistryError):
        return exc.retryable
    return isinstance(exc, TransportError)


def with_retries(policy: RetryPolicy, what: str, fn: Callable[[], _T],
                 sleep: Callable[[float], None] = time.sleep) -> _T:
    """Run ``fn`` until it succeeds, a permanent error, or attempts run out."""
    for attempt in range(policy.attempts):
        try:
            return fn()
        except (TransportError, RegistryError) as exc:
            if not is_transient(exc) or attempt == policy.attempts - 1:
                raise translate(exc, what) from exc
            after = exc.retry_after if isinstance(exc, RegistryError) else None
            wait = policy.delay(attempt, after)
            _debug.log(__name__, "%s: %s; retry %d in %.2fs", what, exc, attempt + 1, wait)
            sleep(wait)
    raise AssertionError("unreachable")


def translate(exc: BaseException, what: str) -> PyimgError:
    if isinstance(exc, PyimgError):
        return exc
    if isinstance(exc, Timeout):
        return RegistryUnreachable(f"{what}: timed out", hint="check the network",
                                   retryable=True)
    if isinstance(exc, TransportError):
        return RegistryUnreachable(f"{what}: {_reason(exc)}",
                                   hint="check that the registry is up and reachable",
                                   retryable=True)
    return RegistryError(f"{what}: {exc}")


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "TLS certificate not trusted (put the CA in certs.d/HOST/ca.crt or hosts.toml)"
    return text.splitlines()[0]


def check_response(resp: Response, what: str, *, kind: str = "manifest",
                   host: str = "") -> None:
    """Raise the right error for a non-2xx answer (reads at most 64 KiB of body)."""
    if resp.status < 300:
        return
    status = resp.status
    codes, detail = _error_body(resp)
    msg = f"{what}: registry {host} answered {status}" + (f" ({detail})" if detail else "")
    if status == 401:
        raise AuthenticationError(msg, hint=f"run 'pyimg login {host}'", status=status,
                                  codes=codes)
    if status == 403:
        raise AuthorizationError(msg, hint="check that your account may pull this repository",
                                 status=status, codes=codes)
    if status == 404:
        cls = BlobUnknown if kind == "blob" else ManifestUnknown
        msg = f"{what}: not found on registry {host} (404" + (f", {detail})" if detail else ")")
        raise cls(msg, hint="check the repository name and tag", status=status, codes=codes)
    if status == 429:
        raise RateLimited(msg, hint="wait, or log in for a higher limit", status=status,
                          codes=codes, retryable=True, retry_after=retry_after(resp))
    raise RegistryError(msg, status=status, codes=codes, retryable=status in _RETRY_STATUS)


def _error_body(resp: Response) -> tuple[tuple[str, ...], str]:
    """Distribution-spec error codes and messages from a bounded read of the body."""
    import json

    try:
        raw = resp.read(_MAX_ERROR_BODY)
        obj = json.loads(raw)
        errors = obj.get("errors", []) if isinstance(obj, dict) else []
        codes = tuple(str(e.get("code", "")) for e in errors if isinstance(e, dict))
        msgs = [str(e.get("message", "")) for e in errors if isinstance(e, dict)]
        return codes, "; ".join(f"{c}: {m}" if m else c for c, m in zip(codes, msgs, strict=True))
    except (ValueError, UnicodeDecodeError, TransportError):
        return (), ""
    finally:
        resp.close()
