"""One registry endpoint: its HTTP client, its credentials, authorized requests.

:meth:`Connection.request` sends a request with the endpoint's credentials,
answers one 401 challenge (token or Basic) and retries once, and follows
redirects by hand: a hop to another host is sent without ``Authorization``
(blob storage must never see registry credentials).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from pyimg import _debug
from pyimg.errors import RegistryError
from pyimg.remote import http
from pyimg.remote.auth import RegistryAuth
from pyimg.remote.credentials import Credential
from pyimg.remote.hosts import Endpoint, build_ssl_context

USER_AGENT = "pyimg/0.1"
_MAX_REDIRECTS = 5
# What a Go net/http TLS server answers to plain HTTP (distribution is Go).
_TLS_ONLY_ANSWER = b"Client sent an HTTP request to an HTTPS server"


@dataclass
class Connection:
    endpoint: Endpoint
    client: http.Client
    auth: RegistryAuth
    base: str  # API base URL: ``scheme://host[/prefix]/v2`` (or the override path)

    def request(self, method: str, url: str, headers: Mapping[str, str] | None = None
                ) -> http.Response:
        """Send with credentials where they belong; redirects followed, 401 answered once."""
        hdrs = dict(headers or {})
        for _ in range(_MAX_REDIRECTS + 1):
            resp = self._authorized(method, url, hdrs)
            if not resp.is_redirect:
                return resp
            resp.close()
            url = urljoin(url, resp.headers["location"])
            _debug.log(__name__, "%s redirected to %s", method, _redact(url))
        raise RegistryError(f"{method} {_redact(url)}: more than {_MAX_REDIRECTS} redirects")

    def _authorized(self, method: str, url: str, headers: dict[str, str]) -> http.Response:
        if not self.auth.applies_to(url):
            return self.client.request(method, url, headers)
        sent = self.auth.authorization(method, url)
        resp = self.client.request(method, url, _with_auth(headers, sent))
        if resp.status != 401:
            return resp
        resp.close()
        answer = self.auth.answer(method, url, resp, sent)
        resp = self.client.request(method, url, _with_auth(headers, answer))
        if resp.status == 401:
            resp.close()
            raise self.auth.rejected(url)
        return resp

    def close(self) -> None:
        self.client.close()
        self.auth.close()


def _with_auth(headers: dict[str, str], value: str | None) -> dict[str, str]:
    return {**headers, "Authorization": value} if value else headers


def _redact(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + ("?…" if parts.query else "")


def connect(ep: Endpoint, host: str, cred: Credential | None, *, timeout: float) -> Connection:
    """A connection to ``ep`` speaking for registry ``host`` (credentials' key).

    A loopback registry without configuration may be plain HTTP (docker's
    insecure-registry default).  It is probed over plain HTTP first: on
    loopback that costs one local round trip, whereas starting with TLS costs
    loading the CA store and a handshake on every pull of a plain registry.
    """
    url = ep.url
    if ep.allow_http_fallback and url.startswith("https://"):
        plain = "http://" + url.removeprefix("https://")
        if _speaks_plain_http(plain, timeout):
            url = plain
    ssl_context = build_ssl_context(ep) if url.startswith("https://") else None
    client = http.Client(ssl_context=ssl_context, timeout=timeout, user_agent=USER_AGENT)
    auth = RegistryAuth(host, cred, client, endpoint_hosts=[urlsplit(url).netloc])
    base = url + ep.api_base.removeprefix(ep.url)
    return Connection(ep, client, auth, base)


def _speaks_plain_http(url: str, timeout: float) -> bool:
    with http.Client(timeout=min(timeout, 5.0), user_agent=USER_AGENT) as probe:
        try:
            resp = probe.request("GET", url + "/v2/")
        except http.TransportError:
            return False  # nothing there, or not HTTP: let HTTPS report the real error
        with resp:
            if resp.status != 400:
                return True
            try:
                return _TLS_ONLY_ANSWER not in resp.read(4096)
            except http.TransportError:
                return False
