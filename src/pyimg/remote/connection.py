"""One registry endpoint: its HTTP client, its credentials, authorized requests.

:meth:`Connection.request` sends a request with the endpoint's credentials,
answers one 401 challenge (token or Basic) and retries once, and follows
redirects by hand: a hop to another host is sent without ``Authorization``
(blob storage must never see registry credentials).
"""

from __future__ import annotations

from pyimg import _debug
from pyimg.errors import RegistryError
from pyimg.remote import http
from pyimg.remote.auth import RegistryAuth
from pyimg.remote.urls import split as urlsplit

TYPE_CHECKING = False  # import-light: see pyimg.remote.http
if TYPE_CHECKING:
    from collections.abc import Mapping

    from pyimg.remote.credentials import Credential
    from pyimg.remote.hosts import Endpoint

USER_AGENT = "pyimg/0.1"
_MAX_REDIRECTS = 5
# What a Go net/http TLS server answers to plain HTTP (distribution is Go).
_TLS_ONLY_ANSWER = b"Client sent an HTTP request to an HTTPS server"
_PROBE_BODY = 64 * 1024  # what the probe reads of the answer to GET /v2/


class Connection:
    __slots__ = ("auth", "base", "client", "endpoint")

    def __init__(self, endpoint: Endpoint, client: http.Client, auth: RegistryAuth,
                 base: str) -> None:
        self.endpoint = endpoint
        self.client = client
        self.auth = auth
        self.base = base  # API base URL: ``scheme://host[/prefix]/v2`` (or the override path)

    def request(self, method: str, url: str, headers: Mapping[str, str] | None = None
                ) -> http.Response:
        """Send with credentials where they belong; redirects followed, 401 answered once."""
        hdrs = dict(headers or {})
        for _ in range(_MAX_REDIRECTS + 1):
            resp = self._authorized(method, url, hdrs)
            if not resp.is_redirect:
                return resp
            resp.close()
            from urllib.parse import urljoin  # redirects are rare

            url = urljoin(url, resp.headers["location"])
            _debug.log(__name__, "%s redirected to %s", method, _redact(url))
        raise RegistryError(f"{method} {_redact(url)}: more than {_MAX_REDIRECTS} redirects")

    def _authorized(self, method: str, url: str, headers: dict[str, str]) -> http.Response:
        # authorization() is None for a URL that is not the registry's (no credential
        # leaves for another host), so it is asked first: whether the URL is the
        # registry's matters only when the answer is a 401.
        sent = self.auth.authorization(method, url)
        resp = self.client.request(method, url, _with_auth(headers, sent))
        if resp.status != 401 or not self.auth.applies_to(url):
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
    client = http.Client(timeout=timeout, user_agent=USER_AGENT)
    if ep.allow_http_fallback and url.startswith("https://"):
        plain = "http://" + url.removeprefix("https://")
        if _speaks_plain_http(client, plain, timeout):
            url = plain  # and the probe's connection stays open for the requests
    if url.startswith("https://"):
        from pyimg.remote.hosts import build_ssl_context

        client.close()
        client = http.Client(ssl_context=build_ssl_context(ep), timeout=timeout,
                             user_agent=USER_AGENT)
    auth = RegistryAuth(host, cred, client, endpoint_hosts=[urlsplit(url).netloc])
    base = url + ep.api_base.removeprefix(ep.url)
    return Connection(ep, client, auth, base)


def _speaks_plain_http(client: http.Client, url: str, timeout: float) -> bool:
    try:
        resp = client.request("GET", url + "/v2/", timeout=min(timeout, 5.0))
    except http.TransportError:
        return False  # nothing there, or not HTTP: let HTTPS report the real error
    with resp:
        try:
            body = resp.read(_PROBE_BODY)  # read: the connection is then kept alive
        except http.TransportError:
            return resp.status != 400
        if resp.status != 400:
            return True
        return len(body) <= 4096 and _TLS_ONLY_ANSWER not in body
