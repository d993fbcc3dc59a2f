"""Registry authentication: ``WWW-Authenticate`` challenges, Bearer tokens, Basic.

The flow is the distribution token protocol that docker and containerd speak:
the registry answers 401 with a challenge; for ``Bearer`` we ask the announced
realm for a token (with Basic credentials when we have some) and retry once;
for ``Basic`` we retry once with the credentials.  Tokens are cached per
origin and scope, so a pull does one token request per repository.

:class:`RegistryAuth` does not send the registry requests itself: the caller
(:mod:`pyimg.remote.registry`) asks :meth:`RegistryAuth.authorization` for the
header to send, and after a 401 asks :meth:`RegistryAuth.answer` for the
header to retry with.  Only the token requests go out from here, through the
caller's :class:`pyimg.remote.http.Client`.

Credentials only ever go to the registry's own hosts and to the token realm it
announces.  Requests to any other host (blob storage after a redirect) get no
``Authorization`` header at all: a presigned S3 URL must never see a Docker Hub
password.
"""

from __future__ import annotations

import time
from _thread import allocate_lock

from pyimg.errors import AuthenticationError, RegistryUnreachable
from pyimg.remote import http

# Import-light (a small pull is import-budgeted, see docs/design.md): an anonymous
# registry never challenges, so urllib, re, base64, json and the challenge parser are
# imported by the code that answers one.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any
    from urllib.parse import SplitResult

    from pyimg.remote.challenge import Challenge as Challenge
    from pyimg.remote.challenge import parse_challenges as parse_challenges
    from pyimg.remote.credentials import Credential


def __getattr__(name: str) -> object:
    if name in ("Challenge", "parse_challenges"):
        from pyimg.remote import challenge

        return getattr(challenge, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Default token lifetime when the token server does not say (distribution spec).
DEFAULT_TOKEN_LIFETIME = 60.0
#: A token answer is a small JSON document; refuse to buffer more than this.
_MAX_TOKEN_RESPONSE = 1 << 20
#: Redirects followed on the token endpoint (never on registry requests: the caller decides those).
_MAX_TOKEN_REDIRECTS = 3
_CLIENT_ID = "pyimg"
_REPOSITORY_PATH = r"/v2/(?P<name>.+)/(?:manifests|blobs|tags|referrers)/"
_DEFAULT_PORTS = {"https": 443, "http": 80}
_READ_METHODS = frozenset({"GET", "HEAD"})
_FORM = "application/x-www-form-urlencoded"


def _challenges_of(response: http.Response) -> list[Challenge]:
    from pyimg.remote.challenge import parse_challenges

    found: list[Challenge] = []
    for value in response.headers.get_all("www-authenticate"):
        found.extend(parse_challenges(value))
    return found


# -- scopes ----------------------------------------------------------------


def scope_for(repository: str, actions: str = "pull") -> str:
    """The token scope for ``repository`` (the path, without the registry)."""
    return f"repository:{repository}:{actions}"


def repository_of(url: str) -> str | None:
    """The repository a registry API URL addresses, if any."""
    import re
    from urllib.parse import unquote, urlsplit

    try:
        path = unquote(urlsplit(url).path)
    except ValueError:
        return None
    match = re.search(_REPOSITORY_PATH, path)
    return match.group("name") if match else None


def _request_scope(method: str, url: str) -> str | None:
    repository = repository_of(url)
    if repository is None:
        return None
    actions = "pull" if method.upper() in _READ_METHODS else "pull,push"
    return scope_for(repository, actions)


# -- URLs and hosts --------------------------------------------------------

#: (scheme, lowercased host, port with the scheme's default filled in)
_Origin = tuple[str, str, int]


def _split(url: str) -> SplitResult | None:
    """``url`` split, or None unless it is an http(s) URL with a host and a valid port."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        _ = parts.port  # ValueError for a port out of range or not a number
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return parts


def _explicit_port(parts: SplitResult) -> int | None:
    """The port ``parts`` names, None when absent or the scheme's default."""
    port = parts.port
    return None if port == _DEFAULT_PORTS[parts.scheme] else port


def _origin(parts: SplitResult) -> _Origin:
    assert parts.hostname is not None
    return parts.scheme, parts.hostname, parts.port or _DEFAULT_PORTS[parts.scheme]


def _split_hostport(text: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]:port`` or a URL → (host, port or None)."""
    if "://" in text:
        parts = _split(text)
        if parts is None or parts.hostname is None:
            return "", None  # matches no URL
        return parts.hostname, _explicit_port(parts)
    text = text.split("/", 1)[0]
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    return host.lower(), int(port) if port.isdigit() else None


def _with_query(url: SplitResult, params: list[tuple[str, str]]) -> str:
    """``url`` with ``params`` appended to any query it already has."""
    from urllib.parse import urlencode, urlunsplit

    query = "&".join(q for q in (url.query, urlencode(params)) if q)
    return urlunsplit((url.scheme, url.netloc, url.path, query, ""))


def _basic_header(username: str, secret: str) -> str:
    import base64

    raw = base64.b64encode(f"{username}:{secret}".encode()).decode("ascii")
    return f"Basic {raw}"


class _Token:
    # A plain class: each @dataclass costs ~0.5 ms at import.
    __slots__ = ("expires_at", "header")

    def __init__(self, header: str, expires_at: float) -> None:
        self.header = header
        self.expires_at = expires_at


# -- the authenticator -----------------------------------------------------


class RegistryAuth:
    """Answers registry challenges for one registry host.

    ``host`` is the registry as the user names it (``docker.io``,
    ``localhost:5000``); ``endpoint_hosts`` adds the hosts actually contacted
    for it (``registry-1.docker.io``, a mirror).  Only requests to those get an
    ``Authorization`` header.  Token requests go through ``token_client``,
    owned by the caller.  Thread-safe.

    The caller's loop, per request::

        sent = auth.authorization(method, url)
        response = client.request(method, url, {"Authorization": sent} if sent else {})
        if response.status == 401 and auth.applies_to(url):
            response.close()
            retry = auth.answer(method, url, response, sent)
            response = client.request(method, url, {"Authorization": retry})
            if response.status == 401:
                response.close()
                raise auth.rejected(url)
    """

    def __init__(
        self,
        host: str,
        credential: Credential | None,
        token_client: http.Client,
        *,
        endpoint_hosts: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self._credential = credential
        self._allowed = {_split_hostport(h) for h in (host, *endpoint_hosts)}
        self._token_client = token_client
        self._clock = clock
        self._lock = allocate_lock()
        self._tokens: dict[tuple[_Origin, str], _Token] = {}
        self._bearer: dict[_Origin, Challenge] = {}
        self._basic: set[_Origin] = set()

    # -- lifecycle

    def close(self) -> None:
        """Nothing to release: the token client belongs to the caller."""

    def __enter__(self) -> RegistryAuth:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the flow

    def applies_to(self, url: str) -> bool:
        """Whether requests to ``url`` may carry this registry's credentials."""
        return self._ours(url) is not None

    def authorization(self, method: str, url: str) -> str | None:
        """The ``Authorization`` value to send with ``method url``, if any yet.

        None when ``url`` is not one of this registry's hosts, or nothing is
        known about the origin yet.  Otherwise a cached token for the request's
        scope, Basic credentials once the origin asked for Basic, or a token
        fetched now when the origin's bearer realm is already known (saving a
        401 round trip per repository).  May raise like :meth:`answer` when it
        fetches a token.
        """
        if not (self._basic or self._tokens or self._bearer):
            return None  # nothing known about any origin yet (no challenge so far)
        parts = self._ours(url)
        if parts is None:
            return None
        return self._known_header(parts, _request_scope(method, url))

    def answer(self, method: str, url: str, response: http.Response, sent: str | None) -> str:
        """The ``Authorization`` value to retry ``method url`` with after ``response`` (a 401).

        Only the challenge headers of ``response`` are used; its body is left
        alone.  ``sent`` is what the refused request carried.
        """
        parts = self._ours(url)
        if parts is None:
            from urllib.parse import urlsplit

            host = urlsplit(url).hostname or url
            raise AuthenticationError(
                f"{host} is not a host of registry {self.host}; not sending it credentials",
                status=401,
            )
        scope = _request_scope(method, url)
        challenges = {c.scheme: c for c in reversed(_challenges_of(response))}
        if "bearer" in challenges:
            with self._lock:
                self._bearer[_origin(parts)] = challenges["bearer"]
            return self._bearer_header(parts, challenges["bearer"], scope)
        if "basic" in challenges:
            return self._basic_answer(parts, url, sent)
        offered = ", ".join(sorted(challenges)) or "none"
        raise AuthenticationError(
            f"registry {self.host} answered 401 without a supported challenge (offered: {offered})",
            status=401,
        )

    def rejected(self, url: str) -> AuthenticationError:
        """The error for a request to ``url`` still refused after :meth:`answer`."""
        repository = repository_of(url)
        what = f" for repository {repository}" if repository else ""
        verb = "rejected the credentials" if self._credential else "answered 401"
        return AuthenticationError(
            f"registry {self.host} {verb}{what}",
            hint=f"run 'pyimg login {self.host}'",
            status=401,
        )

    def _ours(self, url: str) -> SplitResult | None:
        parts = _split(url)
        if parts is None:
            return None
        host = parts.hostname
        explicit = _explicit_port(parts)
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
        for allowed_host, allowed_port in self._allowed:
            if allowed_host != host:
                continue
            if allowed_port is None and explicit is None:
                return parts
            if allowed_port is not None and allowed_port == port:
                return parts
        return None

    def _known_header(self, parts: SplitResult, scope: str | None) -> str | None:
        origin = _origin(parts)
        basic = self._basic_credentials()
        with self._lock:
            if origin in self._basic and basic is not None:
                return basic
            token = self._tokens.get((origin, scope or ""))
            if token is not None and token.expires_at > self._clock():
                return token.header
            challenge = self._bearer.get(origin)
        if challenge is not None and scope is not None:
            # The realm is known from an earlier challenge: fetch the token for
            # this repository up front instead of paying a 401 round trip.
            return self._bearer_header(parts, challenge, scope)
        return None

    def _basic_answer(self, parts: SplitResult, url: str, sent: str | None) -> str:
        header = self._basic_credentials()
        if header is None or header == sent:
            raise self.rejected(url)
        with self._lock:
            self._basic.add(_origin(parts))
        return header

    def _basic_credentials(self) -> str | None:
        cred = self._credential
        if cred is None or not (cred.username or cred.secret):
            return None
        return _basic_header(cred.username, cred.secret)

    # -- tokens

    def _bearer_header(self, parts: SplitResult, challenge: Challenge, scope: str | None) -> str:
        scopes = challenge.params.get("scope", "").split() or ([scope] if scope else [])
        token = self._fetch_token(parts, challenge, scopes)
        key = scope or " ".join(scopes)
        with self._lock:
            self._tokens[(_origin(parts), key)] = token
        return token.header

    def _fetch_token(self, parts: SplitResult, challenge: Challenge, scopes: list[str]) -> _Token:
        realm = self._realm(parts, challenge)
        service = challenge.params.get("service")
        try:
            status, body = self._token_response(realm, service, scopes)
        except http.TransportError as exc:
            raise RegistryUnreachable(
                f"token server {realm.hostname} for registry {self.host} is unreachable: {exc}",
                retryable=True,
            ) from exc
        return self._parse_token(realm, status, body)

    def _realm(self, parts: SplitResult, challenge: Challenge) -> SplitResult:
        text = challenge.params.get("realm", "")
        realm = _split(text)
        if realm is None:
            raise AuthenticationError(
                f"registry {self.host} announced an unusable token realm {text!r}", status=401
            )
        # The realm is the registry's word, but not a licence to send a password
        # in clear text when the registry itself is reached over TLS.
        if self._credential and realm.scheme == "http" and parts.scheme == "https":
            raise AuthenticationError(
                f"registry {self.host} announced a plain-HTTP token realm {text!r};"
                " refusing to send credentials over it",
                status=401,
            )
        return realm

    def _token_response(
        self, realm: SplitResult, service: str | None, scopes: list[str]
    ) -> tuple[int, bytes]:
        cred = self._credential
        if cred is not None and cred.identity_token:
            status, body = self._oauth_refresh(realm, service, scopes, cred.identity_token)
            # Some registries (GCR) lack the OAuth2 POST; docker falls back too.
            if status not in (404, 405):
                return status, body
            username = cred.username or "<token>"
            return self._token_get(realm, service, scopes, username, cred.identity_token)
        if cred is not None and (cred.username or cred.secret):
            return self._token_get(realm, service, scopes, cred.username, cred.secret)
        return self._token_get(realm, service, scopes, None, None)

    def _token_get(
        self,
        realm: SplitResult,
        service: str | None,
        scopes: list[str],
        username: str | None,
        secret: str | None,
    ) -> tuple[int, bytes]:
        params = [("service", service)] if service else []
        params += [("scope", s) for s in scopes]
        headers: dict[str, str] = {}
        if username is not None and secret is not None:
            headers["Authorization"] = _basic_header(username, secret)
            if username:
                params.append(("account", username))
        return self._token_exchange("GET", _with_query(realm, params), headers, None)

    def _oauth_refresh(
        self, realm: SplitResult, service: str | None, scopes: list[str], token: str
    ) -> tuple[int, bytes]:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": token,
            "client_id": _CLIENT_ID,
            "scope": " ".join(scopes),
        }
        if service:
            form["service"] = service
        from urllib.parse import urlencode

        body = urlencode(form).encode("ascii")
        return self._token_exchange("POST", realm.geturl(), {"Content-Type": _FORM}, body)

    def _token_exchange(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, bytes]:
        """Status and (for a 200) body of a token request, following a few redirects.

        A redirect to another origin loses the ``Authorization`` header, and a
        credential-bearing body (the OAuth form) is never resent to another
        origin.  301/302 turn a POST into a GET, 303 anything into a GET.
        """
        for _ in range(_MAX_TOKEN_REDIRECTS + 1):
            response = self._token_client.request(method, url, headers, body)
            try:
                if not response.is_redirect:
                    return response.status, self._token_body(response)
                status, location = response.status, response.headers["location"]
            finally:
                response.close()
            from urllib.parse import urljoin

            target = urljoin(url, location)
            current, following = _split(url), _split(target)
            if following is None:
                raise AuthenticationError(
                    f"token server {current.hostname if current else url} for registry"
                    f" {self.host} redirected to an unusable URL {location!r}",
                    status=status,
                )
            if status == 303 or (status in (301, 302) and method == "POST"):
                method, body = "GET", None
                headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
            if current is None or _origin(current) != _origin(following):
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                if body is not None:
                    raise AuthenticationError(
                        f"token server {current.hostname if current else url} for registry"
                        f" {self.host} redirected the token request to {following.hostname};"
                        " refusing to send credentials there",
                        status=status,
                    )
            url = target
        raise AuthenticationError(
            f"token server for registry {self.host} redirected more than"
            f" {_MAX_TOKEN_REDIRECTS} times",
            status=status,
        )

    def _token_body(self, response: http.Response) -> bytes:
        """The body of a 200 answer, at most ``_MAX_TOKEN_RESPONSE`` bytes; ``b""`` otherwise."""
        if response.status != 200:
            return b""  # only the status matters; close() drops the connection
        length = response.content_length
        if length is None or length <= _MAX_TOKEN_RESPONSE:
            out = bytearray()
            buf = bytearray(64 * 1024)
            while n := response.readinto(buf):
                out += buf[:n]
                if len(out) > _MAX_TOKEN_RESPONSE:
                    break
            else:
                return bytes(out)
        from urllib.parse import urlsplit

        host = urlsplit(response.url).hostname
        raise AuthenticationError(
            f"token server {host} for registry {self.host} answered with more than"
            f" {_MAX_TOKEN_RESPONSE} bytes",
            status=response.status,
        )

    def _parse_token(self, realm: SplitResult, status: int, body: bytes) -> _Token:
        where = f"token server {realm.hostname} for registry {self.host}"
        if status != 200:
            hint = f"run 'pyimg login {self.host}'" if status in (401, 403) else None
            raise AuthenticationError(
                f"{where} answered HTTP {status}",
                hint=hint,
                status=status,
                retryable=status == 429 or status >= 500,
            )
        document = _json_object(body)
        if document is None:
            raise AuthenticationError(f"{where} answered with invalid JSON", status=status)
        token = document.get("token") or document.get("access_token")
        if not isinstance(token, str) or not token:
            raise AuthenticationError(f"{where} answered without a token", status=status)
        return _Token(f"Bearer {token}", self._clock() + _lifetime(document))


def _json_object(body: bytes) -> dict[str, Any] | None:
    from pyimg import jsonc

    try:
        document = jsonc.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return document if isinstance(document, dict) else None


def _lifetime(document: dict[str, Any]) -> float:
    value = document.get("expires_in")
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return DEFAULT_TOKEN_LIFETIME
    return float(value)
