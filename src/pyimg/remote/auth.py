"""Registry authentication: ``WWW-Authenticate`` challenges, Bearer tokens, Basic.

The flow is the distribution token protocol that docker and containerd speak:
the registry answers 401 with a challenge; for ``Bearer`` we ask the announced
realm for a token (with Basic credentials when we have some) and retry once;
for ``Basic`` we retry once with the credentials.  Tokens are cached per
origin and scope, so a pull does one token request per repository.

Credentials only ever go to the registry's own hosts and to the token realm it
announces.  Requests through this auth to any other host (blob storage after a
redirect) carry no ``Authorization`` header at all: a presigned S3 URL must
never see a Docker Hub password.
"""

from __future__ import annotations

import base64
import json
import re
import string
import threading
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from pyimg.errors import AuthenticationError, RegistryUnreachable
from pyimg.remote.credentials import Credential

#: Default token lifetime when the token server does not say (distribution spec).
DEFAULT_TOKEN_LIFETIME = 60.0
#: A token answer is a small JSON document; refuse to buffer more than this.
_MAX_TOKEN_RESPONSE = 1 << 20
_CLIENT_ID = "pyimg"
_TCHAR = frozenset("!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits)
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*(?=[ \t]*(?:,|$))")
_REPOSITORY_PATH = re.compile(r"/v2/(?P<name>.+)/(?:manifests|blobs|tags|referrers)/")
_DEFAULT_PORTS = {"https": 443, "http": 80}
_READ_METHODS = frozenset({"GET", "HEAD"})
_QueryValue = str | int | float | bool | None


# -- challenges ------------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    """One challenge; ``scheme`` and parameter names are lowercased."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)


class _Garbage(Exception):
    """The header does not follow RFC 7235 closely enough to trust any of it."""


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def done(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip(self, chars: str) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1

    def token(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _TCHAR:
            self.pos += 1
        return self.text[start : self.pos]

    def token68(self) -> str | None:
        match = _TOKEN68.match(self.text, self.pos)
        if match is None:
            return None
        self.pos = match.end()
        return match.group()

    def value(self) -> str:
        if self.peek() == '"':
            return self._quoted()
        # Lenient: some registries send realm URLs unquoted, and ':' or '/'
        # are not token characters; a bare value simply runs to the next
        # separator.
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in " \t,":
            self.pos += 1
        return self.text[start : self.pos]

    def _quoted(self) -> str:
        out: list[str] = []
        self.pos += 1
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == '"':
                return "".join(out)
            if char == "\\":
                if self.pos >= len(self.text):
                    break
                char = self.text[self.pos]
                self.pos += 1
            out.append(char)
        raise _Garbage("unterminated quoted string")


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` value into its challenges.

    Several challenges, quoted values with commas and escapes, and any case
    of scheme are understood; a malformed header yields ``[]`` rather than a
    half-understood challenge.
    """
    scanner = _Scanner(header)
    challenges: list[Challenge] = []
    try:
        while True:
            scanner.skip(" \t,")
            if scanner.done():
                return challenges
            scheme = scanner.token()
            if not scheme:
                raise _Garbage(f"expected an auth scheme at {scanner.pos}")
            challenges.append(Challenge(scheme.lower(), _parse_params(scanner)))
    except _Garbage:
        return []


def _parse_params(scanner: _Scanner) -> dict[str, str]:
    params: dict[str, str] = {}
    scanner.skip(" \t")
    # A token68 (``Negotiate abc==``) may only follow the scheme directly.
    if scanner.peek() not in ("", ",") and scanner.token68() is not None:
        return params
    while True:
        mark = scanner.pos
        scanner.skip(" \t,")
        name = scanner.token()
        if not name:
            if scanner.done():
                return params
            raise _Garbage(f"unexpected {scanner.peek()!r} at {scanner.pos}")
        scanner.skip(" \t")
        if scanner.peek() != "=":
            # ``name`` is the scheme of the next challenge.
            scanner.pos = mark
            return params
        scanner.pos += 1
        scanner.skip(" \t")
        params.setdefault(name.lower(), scanner.value())


def _challenges_of(response: httpx.Response) -> list[Challenge]:
    found: list[Challenge] = []
    for value in response.headers.get_list("www-authenticate"):
        found.extend(parse_challenges(value))
    return found


# -- scopes ----------------------------------------------------------------


def scope_for(repository: str, actions: str = "pull") -> str:
    """The token scope for ``repository`` (the path, without the registry)."""
    return f"repository:{repository}:{actions}"


def repository_of(url: httpx.URL) -> str | None:
    """The repository a registry API URL addresses, if any."""
    match = _REPOSITORY_PATH.search(url.path)
    return match.group("name") if match else None


def _request_scope(request: httpx.Request) -> str | None:
    repository = repository_of(request.url)
    if repository is None:
        return None
    actions = "pull" if request.method in _READ_METHODS else "pull,push"
    return scope_for(repository, actions)


# -- hosts -----------------------------------------------------------------


def _split_hostport(text: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]:port`` or a URL → (host, port or None)."""
    if "://" in text:
        url = httpx.URL(text)
        return url.host.lower(), url.port
    text = text.split("/", 1)[0]
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    return host.lower(), int(port) if port.isdigit() else None


def _origin(url: httpx.URL) -> str:
    port = url.port or _DEFAULT_PORTS.get(url.scheme, 0)
    return f"{url.scheme}://{url.host.lower()}:{port}"


def _basic_header(username: str, secret: str) -> str:
    raw = base64.b64encode(f"{username}:{secret}".encode()).decode("ascii")
    return f"Basic {raw}"


@dataclass(frozen=True)
class _Token:
    header: str
    expires_at: float


# -- the httpx.Auth --------------------------------------------------------


class RegistryAuth(httpx.Auth):
    """Answers registry challenges for one registry host.

    ``host`` is the registry as the user names it (``docker.io``,
    ``localhost:5000``); ``endpoint_hosts`` adds the hosts actually contacted
    for it (``registry-1.docker.io``, a mirror).  Only requests to those get an
    ``Authorization`` header.  Token requests go through ``token_client`` (a
    plain client owned by the caller); without one, a client is created on
    first use and closed by :meth:`close`.
    """

    requires_request_body = False
    requires_response_body = False

    def __init__(
        self,
        host: str,
        credential: Credential | None,
        token_client: httpx.Client | None = None,
        *,
        endpoint_hosts: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self._credential = credential
        self._allowed = {_split_hostport(h) for h in (host, *endpoint_hosts)}
        self._token_client = token_client
        self._owns_client = token_client is None
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._bearer: dict[str, Challenge] = {}
        self._basic: set[str] = set()

    # -- lifecycle

    def close(self) -> None:
        with self._lock:
            client, self._token_client = self._token_client, None
        if client is not None and self._owns_client:
            client.close()

    def __enter__(self) -> RegistryAuth:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the flow

    def applies_to(self, url: httpx.URL) -> bool:
        """Whether requests to ``url`` may carry this registry's credentials."""
        host = url.host.lower()
        for allowed_host, allowed_port in self._allowed:
            if allowed_host != host:
                continue
            if allowed_port is None and url.port is None:
                return True
            if allowed_port is not None and allowed_port == (
                url.port or _DEFAULT_PORTS.get(url.scheme)
            ):
                return True
        return False

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if not self.applies_to(request.url):
            # Not ours: strip anything a default header may have put there.
            request.headers.pop("Authorization", None)
            yield request
            return
        origin = _origin(request.url)
        scope = _request_scope(request)
        sent = self._known_header(origin, request.url, scope)
        if sent is not None:
            request.headers["Authorization"] = sent
        response = yield request
        if response.status_code != 401:
            return
        request.headers["Authorization"] = self._answer(request.url, scope, response, sent)
        response = yield request
        if response.status_code == 401:
            raise self._rejected(request.url)

    def _known_header(self, origin: str, url: httpx.URL, scope: str | None) -> str | None:
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
            return self._bearer_header(url, challenge, scope)
        return None

    def _answer(
        self, url: httpx.URL, scope: str | None, response: httpx.Response, sent: str | None
    ) -> str:
        challenges = {c.scheme: c for c in reversed(_challenges_of(response))}
        if "bearer" in challenges:
            with self._lock:
                self._bearer[_origin(url)] = challenges["bearer"]
            return self._bearer_header(url, challenges["bearer"], scope)
        if "basic" in challenges:
            return self._basic_answer(url, sent)
        offered = ", ".join(sorted(challenges)) or "none"
        raise AuthenticationError(
            f"registry {self.host} answered 401 without a supported challenge (offered: {offered})",
            status=401,
        )

    def _basic_answer(self, url: httpx.URL, sent: str | None) -> str:
        header = self._basic_credentials()
        if header is None or header == sent:
            raise self._rejected(url)
        with self._lock:
            self._basic.add(_origin(url))
        return header

    def _rejected(self, url: httpx.URL) -> AuthenticationError:
        repository = repository_of(url)
        what = f" for repository {repository}" if repository else ""
        verb = "rejected the credentials" if self._credential else "answered 401"
        return AuthenticationError(
            f"registry {self.host} {verb}{what}",
            hint=f"run 'pyimg login {self.host}'",
            status=401,
        )

    def _basic_credentials(self) -> str | None:
        cred = self._credential
        if cred is None or not (cred.username or cred.secret):
            return None
        return _basic_header(cred.username, cred.secret)

    # -- tokens

    def _bearer_header(self, url: httpx.URL, challenge: Challenge, scope: str | None) -> str:
        scopes = challenge.params.get("scope", "").split() or ([scope] if scope else [])
        token = self._fetch_token(url, challenge, scopes)
        key = scope or " ".join(scopes)
        with self._lock:
            self._tokens[(_origin(url), key)] = token
        return token.header

    def _fetch_token(self, url: httpx.URL, challenge: Challenge, scopes: list[str]) -> _Token:
        realm = self._realm(url, challenge)
        service = challenge.params.get("service")
        try:
            response = self._token_response(realm, service, scopes)
        except httpx.TransportError as exc:
            raise RegistryUnreachable(
                f"token server {realm.host} for registry {self.host} is unreachable: {exc}",
                retryable=True,
            ) from exc
        return self._parse_token(realm, response)

    def _realm(self, url: httpx.URL, challenge: Challenge) -> httpx.URL:
        text = challenge.params.get("realm", "")
        try:
            realm = httpx.URL(text)
        except httpx.InvalidURL:
            realm = httpx.URL()
        if realm.scheme not in _DEFAULT_PORTS or not realm.host:
            raise AuthenticationError(
                f"registry {self.host} announced an unusable token realm {text!r}", status=401
            )
        # The realm is the registry's word, but not a licence to send a password
        # in clear text when the registry itself is reached over TLS.
        if self._credential and realm.scheme == "http" and url.scheme == "https":
            raise AuthenticationError(
                f"registry {self.host} announced a plain-HTTP token realm {text!r};"
                " refusing to send credentials over it",
                status=401,
            )
        return realm

    def _token_response(
        self, realm: httpx.URL, service: str | None, scopes: list[str]
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
        realm: httpx.URL,
        service: str | None,
        scopes: list[str],
        username: str | None,
        secret: str | None,
    ) -> tuple[int, bytes]:
        params: list[tuple[str, _QueryValue]] = [("service", service)] if service else []
        params += [("scope", s) for s in scopes]
        headers: dict[str, str] = {}
        if username is not None and secret is not None:
            headers["Authorization"] = _basic_header(username, secret)
            if username:
                params.append(("account", username))
        request = self._client().build_request("GET", realm, params=params, headers=headers)
        return self._send_bounded(request)

    def _oauth_refresh(
        self, realm: httpx.URL, service: str | None, scopes: list[str], token: str
    ) -> tuple[int, bytes]:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": token,
            "client_id": _CLIENT_ID,
            "scope": " ".join(scopes),
        }
        if service:
            form["service"] = service
        request = self._client().build_request("POST", realm, data=form)
        return self._send_bounded(request)

    def _send_bounded(self, request: httpx.Request) -> tuple[int, bytes]:
        response = self._client().send(request, stream=True)
        try:
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > _MAX_TOKEN_RESPONSE:
                    break
            return response.status_code, bytes(body)
        finally:
            response.close()

    def _parse_token(self, realm: httpx.URL, answer: tuple[int, bytes]) -> _Token:
        status, body = answer
        where = f"token server {realm.host} for registry {self.host}"
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

    def _client(self) -> httpx.Client:
        with self._lock:
            if self._token_client is None:
                self._token_client = httpx.Client(timeout=30.0, follow_redirects=True)
                self._owns_client = True
            return self._token_client


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return document if isinstance(document, dict) else None


def _lifetime(document: dict[str, Any]) -> float:
    value = document.get("expires_in")
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return DEFAULT_TOKEN_LIFETIME
    return float(value)
