"""WWW-Authenticate parsing and the registry token/basic flow."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from urllib.parse import parse_qs

import httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from pyimg.errors import AuthenticationError, RegistryUnreachable
from pyimg.remote.auth import Challenge, RegistryAuth, parse_challenges, scope_for
from pyimg.remote.credentials import Credential

MANIFEST = "/v2/lib/app/manifests/latest"
SCOPE = "repository:lib/app:pull"

# -- parsing ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:library/busybox:pull"',
            [
                Challenge(
                    "bearer",
                    {
                        "realm": "https://auth.docker.io/token",
                        "service": "registry.docker.io",
                        "scope": "repository:library/busybox:pull",
                    },
                )
            ],
        ),
        ('Basic realm="Registry Realm"', [Challenge("basic", {"realm": "Registry Realm"})]),
        ("BASIC Realm=x", [Challenge("basic", {"realm": "x"})]),
        ("Basic", [Challenge("basic", {})]),
        (
            'Bearer realm="r", scope="repository:a:pull,push"',
            [Challenge("bearer", {"realm": "r", "scope": "repository:a:pull,push"})],
        ),
        (
            'Basic realm="a, b", Bearer realm="https://t/x", service=s',
            [
                Challenge("basic", {"realm": "a, b"}),
                Challenge("bearer", {"realm": "https://t/x", "service": "s"}),
            ],
        ),
        ('Basic realm="say \\"hi\\""', [Challenge("basic", {"realm": 'say "hi"'})]),
        ("Bearer realm = https://t/token , service = svc", [
            Challenge("bearer", {"realm": "https://t/token", "service": "svc"})
        ]),
        ("Negotiate abc+/d==, Basic realm=x", [
            Challenge("negotiate", {}), Challenge("basic", {"realm": "x"})
        ]),
        ("Basic, Bearer realm=x", [Challenge("basic", {}), Challenge("bearer", {"realm": "x"})]),
        ('Bearer realm="x" Basic realm="y"', [
            Challenge("bearer", {"realm": "x"}), Challenge("basic", {"realm": "y"})
        ]),
        ('Bearer realm="x", realm="y"', [Challenge("bearer", {"realm": "x"})]),
        ("", []),
        ("   ,, ", []),
        ('Bearer realm="unterminated', []),
        ("=== garbage", []),
        ('"quoted" scheme', []),
        ("Bearer realm=x, @@@", []),
    ],
)
def test_parse_challenges(header: str, expected: list[Challenge]) -> None:
    assert parse_challenges(header) == expected


@pytest.mark.parametrize("header", ["\x00\xff", "Bearer ,=,=", 'a="', "\\", "Basic realm=\"\\"])
def test_parse_challenges_never_raises(header: str) -> None:
    assert isinstance(parse_challenges(header), list)


def test_scope_for() -> None:
    assert scope_for("library/busybox") == "repository:library/busybox:pull"
    assert scope_for("a/b", "pull,push") == "repository:a/b:pull,push"


# -- flow helpers ----------------------------------------------------------


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _hostport(server: HTTPServer) -> str:
    return f"{server.host}:{server.port}"


def _requests_to(server: HTTPServer, path: str) -> list[Request]:
    return [request for request, _ in server.log if request.path == path]


def _bearer(realm: str, *, scope: str | None = SCOPE, service: str = "test-registry") -> str:
    header = f'Bearer realm="{realm}",service="{service}"'
    return header + (f',scope="{scope}"' if scope else "")


def _serve_protected(server: HTTPServer, challenge: str, accept: str, path: str = MANIFEST) -> None:
    """``path`` answers 200 with the right Authorization, else 401 + challenge."""
    server.expect_request(path, headers={"Authorization": accept}).respond_with_json({"ok": 1})
    server.expect_request(path).respond_with_json(
        {"errors": [{"code": "UNAUTHORIZED"}]},
        status=401,
        headers={"WWW-Authenticate": challenge},
    )


@pytest.fixture
def other_server() -> Iterator[HTTPServer]:
    # The default httpserver listens on "localhost": this one is another host.
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    try:
        yield server
    finally:
        server.clear()
        server.stop()


@pytest.fixture
def token_client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def _client(auth: RegistryAuth) -> httpx.Client:
    return httpx.Client(auth=auth, timeout=10)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- bearer ----------------------------------------------------------------


def test_anonymous_bearer_token_is_fetched_and_cached(
    httpserver: HTTPServer, token_client: httpx.Client
) -> None:
    _serve_protected(httpserver, _bearer(httpserver.url_for("/token")), "Bearer anon-token")
    httpserver.expect_request("/token").respond_with_json({"token": "anon-token"})
    auth = RegistryAuth(_hostport(httpserver), None, token_client)
    with _client(auth) as client:
        assert client.get(httpserver.url_for(MANIFEST)).status_code == 200
        assert client.get(httpserver.url_for(MANIFEST)).status_code == 200

    tokens = _requests_to(httpserver, "/token")
    assert len(tokens) == 1
    assert "Authorization" not in tokens[0].headers
    assert parse_qs(tokens[0].query_string.decode()) == {
        "service": ["test-registry"],
        "scope": [SCOPE],
    }
    # 401, retry, then the cached token goes out with the first attempt.
    statuses = [r.status_code for q, r in httpserver.log if q.path == MANIFEST]
    assert statuses == [401, 200, 200]


def test_token_request_carries_basic_credentials(
    httpserver: HTTPServer, token_client: httpx.Client
) -> None:
    _serve_protected(httpserver, _bearer(httpserver.url_for("/token")), "Bearer user-token")
    httpserver.expect_request("/token").respond_with_json(
        {"access_token": "user-token", "expires_in": 300}
    )
    auth = RegistryAuth(_hostport(httpserver), Credential("alice", "pw"), token_client)
    with _client(auth) as client:
        assert client.get(httpserver.url_for(MANIFEST)).status_code == 200

    (token_request,) = _requests_to(httpserver, "/token")
    assert token_request.headers["Authorization"] == _basic("alice", "pw")
    # The registry itself never sees the password, only the token.
    for request in _requests_to(httpserver, MANIFEST):
        assert request.headers.get("Authorization", "").startswith("Bearer") or (
            "Authorization" not in request.headers
        )


def test_scope_from_request_path_when_challenge_has_none(
    httpserver: HTTPServer, token_client: httpx.Client
) -> None:
    challenge = _bearer(httpserver.url_for("/token"), scope=None)
    _serve_protected(httpserver, challenge, "Bearer t", path="/v2/lib/app/blobs/uploads/")
    httpserver.expect_request("/token").respond_with_json({"token": "t"})
    auth = RegistryAuth(_hostport(httpserver), None, token_client)
    with _client(auth) as client:
        response = client.post(httpserver.url_for("/v2/lib/app/blobs/uploads/"))
        assert response.status_code == 200

    (token_request,) = _requests_to(httpserver, "/token")
    assert parse_qs(token_request.query_string.decode())["scope"] == [
        "repository:lib/app:pull,push"
    ]


def test_token_realm_on_another_host(
    httpserver: HTTPServer, other_server: HTTPServer, token_client: httpx.Client
) -> None:
    realm = other_server.url_for("/auth/token")
    _serve_protected(httpserver, _bearer(realm), "Bearer remote-token")
    other_server.expect_request("/auth/token").respond_with_json({"token": "remote-token"})
    other_server.expect_request("/elsewhere").respond_with_data("blob")
    auth = RegistryAuth(_hostport(httpserver), Credential("alice", "pw"), token_client)
    with _client(auth) as client:
        assert client.get(httpserver.url_for(MANIFEST)).status_code == 200
        # Same client and auth, other host (e.g. blob storage after a redirect).
        outside = client.get(other_server.url_for("/elsewhere"), headers={"Authorization": "x"})
        assert outside.text == "blob"

    (token_request,) = _requests_to(other_server, "/auth/token")
    assert token_request.headers["Authorization"] == _basic("alice", "pw")
    (elsewhere,) = _requests_to(other_server, "/elsewhere")
    assert "Authorization" not in elsewhere.headers


def test_endpoint_hosts_receive_credentials(
    httpserver: HTTPServer, token_client: httpx.Client
) -> None:
    httpserver.expect_request(MANIFEST).respond_with_json({})
    auth = RegistryAuth("docker.io", Credential("u", "p"), token_client,
                        endpoint_hosts=[_hostport(httpserver)])
    assert auth.applies_to(httpx.URL(httpserver.url_for(MANIFEST)))
    assert not auth.applies_to(httpx.URL(f"http://{httpserver.host}:{httpserver.port + 1}/"))
    assert auth.applies_to(httpx.URL("https://docker.io/v2/"))
    assert not auth.applies_to(httpx.URL("https://docker.io:8443/v2/"))
    assert not auth.applies_to(httpx.URL("https://evil.example/v2/"))


def test_second_401_after_token_raises(httpserver: HTTPServer, token_client: httpx.Client) -> None:
    challenge = _bearer(httpserver.url_for("/token"))
    httpserver.expect_request(MANIFEST).respond_with_data(
        "", status=401, headers={"WWW-Authenticate": challenge}
    )
    httpserver.expect_request("/token").respond_with_json({"token": "useless"})
    host = _hostport(httpserver)
    auth = RegistryAuth(host, None, token_client)
    with _client(auth) as client, pytest.raises(AuthenticationError) as info:
        client.get(httpserver.url_for(MANIFEST))
    assert info.value.hint == f"run 'pyimg login {host}'"
    assert "lib/app" in info.value.message
    assert info.value.status == 401
    assert len(_requests_to(httpserver, MANIFEST)) == 2


def test_expired_token_is_refetched(httpserver: HTTPServer, token_client: httpx.Client) -> None:
    _serve_protected(httpserver, _bearer(httpserver.url_for("/token")), "Bearer t")
    httpserver.expect_request("/token").respond_with_json({"token": "t", "expires_in": 120})
    clock = FakeClock()
    auth = RegistryAuth(_hostport(httpserver), None, token_client, clock=clock)
    with _client(auth) as client:
        client.get(httpserver.url_for(MANIFEST))
        clock.now += 100
        client.get(httpserver.url_for(MANIFEST))
        assert len(_requests_to(httpserver, "/token")) == 1
        clock.now += 30
        assert client.get(httpserver.url_for(MANIFEST)).status_code == 200
        # Realm known: the new token was fetched up front, without another 401.
        assert len(_requests_to(httpserver, "/token")) == 2
    statuses = [r.status_code for q, r in httpserver.log if q.path == MANIFEST]
    assert statuses == [401, 200, 200, 200]


def test_identity_token_uses_oauth_refresh(
    httpserver: HTTPServer, token_client: httpx.Client
) -> None:
    _serve_protected(httpserver, _bearer(httpserver.url_for("/token")), "Bearer oauth")
    httpserver.expect_request("/token", method="POST").respond_with_json({"access_token": "oauth"})
    cred = Credential("", "", identity_token="refresh-me")
    with _client(RegistryAuth(_hostport(httpserver), cred, token_client)) as client:
        assert client.get(httpserver.url_for(MANIFEST)).status_code == 200
    (token_request,) = _requests_to(httpserver, "/token")
    form = parse_qs(token_request.get_data(as_text=True))
    assert form["grant_type"] == ["refresh_token"]
    assert form["refresh_token"] == ["refresh-me"]
    assert form["scope"] == [SCOPE]


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (500, "oops", "HTTP 500"),
        (401, "no", "HTTP 401"),
        (200, "not json", "invalid JSON"),
        (200, json.dumps({"expires_in": 60}), "without a token"),
        (200, json.dumps({"token": ""}), "without a token"),
    ],
)
def test_token_endpoint_errors(
    httpserver: HTTPServer, token_client: httpx.Client, status: int, body: str, message: str
) -> None:
    _serve_protected(httpserver, _bearer(httpserver.url_for("/token")), "Bearer t")
    httpserver.expect_request("/token").respond_with_data(body, status=status)
    auth = RegistryAuth(_hostport(httpserver), None, token_client)
    with _client(auth) as client, pytest.raises(AuthenticationError, match=message) as info:
        client.get(httpserver.url_for(MANIFEST))
    assert "token server" in info.value.message


def test_token_endpoint_unreachable(httpserver: HTTPServer, token_client: httpx.Client) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    _serve_protected(httpserver, _bearer(f"http://127.0.0.1:{closed_port}/token"), "Bearer t")
    auth = RegistryAuth(_hostport(httpserver), None, token_client)
    with _client(auth) as client, pytest.raises(RegistryUnreachable):
        client.get(httpserver.url_for(MANIFEST))


def test_plain_http_realm_refused_for_tls_registry(token_client: httpx.Client) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="http://t/x"'})

    auth = RegistryAuth("r.example", Credential("u", "p"), token_client)
    transport = httpx.MockTransport(handler)
    with (
        httpx.Client(auth=auth, transport=transport) as client,
        pytest.raises(AuthenticationError, match="plain-HTTP token realm"),
    ):
        client.get("https://r.example/v2/a/manifests/latest")


def test_owned_token_client_is_closed(httpserver: HTTPServer) -> None:
    _serve_protected(httpserver, _bearer(httpserver.url_for("/token")), "Bearer t")
    httpserver.expect_request("/token").respond_with_json({"token": "t"})
    with RegistryAuth(_hostport(httpserver), None) as auth, _client(auth) as client:
        assert client.get(httpserver.url_for(MANIFEST)).status_code == 200


# -- basic -----------------------------------------------------------------


def test_basic_auth(httpserver: HTTPServer, token_client: httpx.Client) -> None:
    _serve_protected(httpserver, 'Basic realm="Registry"', _basic("bob", "pw"))
    auth = RegistryAuth(_hostport(httpserver), Credential("bob", "pw"), token_client)
    with _client(auth) as client:
        assert client.get(httpserver.url_for(MANIFEST)).status_code == 200
        assert client.get(httpserver.url_for(MANIFEST)).status_code == 200
    statuses = [r.status_code for q, r in httpserver.log if q.path == MANIFEST]
    assert statuses == [401, 200, 200]  # Basic sent up front once known


def test_basic_wrong_credentials(httpserver: HTTPServer, token_client: httpx.Client) -> None:
    _serve_protected(httpserver, 'Basic realm="Registry"', _basic("bob", "right"))
    host = _hostport(httpserver)
    auth = RegistryAuth(host, Credential("bob", "wrong"), token_client)
    with _client(auth) as client, pytest.raises(AuthenticationError) as info:
        client.get(httpserver.url_for(MANIFEST))
    assert "rejected the credentials" in info.value.message
    assert info.value.hint == f"run 'pyimg login {host}'"


def test_basic_without_credentials(httpserver: HTTPServer, token_client: httpx.Client) -> None:
    _serve_protected(httpserver, 'Basic realm="Registry"', _basic("bob", "pw"))
    auth = RegistryAuth(_hostport(httpserver), None, token_client)
    with _client(auth) as client, pytest.raises(AuthenticationError, match="answered 401"):
        client.get(httpserver.url_for(MANIFEST))
    assert len(_requests_to(httpserver, MANIFEST)) == 1


def test_401_without_supported_challenge(
    httpserver: HTTPServer, token_client: httpx.Client
) -> None:
    httpserver.expect_request(MANIFEST).respond_with_data("", status=401)
    auth = RegistryAuth(_hostport(httpserver), Credential("u", "p"), token_client)
    with _client(auth) as client, pytest.raises(AuthenticationError, match="supported challenge"):
        client.get(httpserver.url_for(MANIFEST))


def test_non_401_passes_through(httpserver: HTTPServer, token_client: httpx.Client) -> None:
    def forbidden(request: Request) -> Response:
        return Response("denied", status=403)

    httpserver.expect_request(MANIFEST).respond_with_handler(forbidden)
    auth = RegistryAuth(_hostport(httpserver), None, token_client)
    with _client(auth) as client:
        assert client.get(httpserver.url_for(MANIFEST)).status_code == 403
