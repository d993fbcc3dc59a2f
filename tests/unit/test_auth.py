"""WWW-Authenticate parsing and the registry token/basic flow."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from urllib.parse import parse_qs

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from pyimg.errors import AuthenticationError, RegistryUnreachable
from pyimg.remote import http
from pyimg.remote.auth import (
    Challenge,
    RegistryAuth,
    parse_challenges,
    repository_of,
    scope_for,
)
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


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://r.example/v2/library/busybox/manifests/latest", "library/busybox"),
        ("https://r.example/v2/a/b/c/blobs/sha256:00", "a/b/c"),
        ("http://r.example:5000/v2/a/blobs/uploads/?digest=x", "a"),
        ("https://r.example/v2/a/tags/list", "a"),
        ("https://r.example/v2/a/referrers/sha256:00", "a"),
        ("https://r.example/v2/", None),
        ("https://r.example/v2/_catalog", None),
        ("https://r.example/token", None),
        ("http://[bad", None),
    ],
)
def test_repository_of(url: str, expected: str | None) -> None:
    assert repository_of(url) == expected


# -- flow helpers ----------------------------------------------------------


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _hostport(server: HTTPServer) -> str:
    return f"{server.host}:{server.port}"


def _requests_to(server: HTTPServer, path: str) -> list[Request]:
    return [request for request, _ in server.log if request.path == path]


def _statuses(server: HTTPServer, path: str = MANIFEST) -> list[int]:
    return [response.status_code for request, response in server.log if request.path == path]


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


def send(client: http.Client, auth: RegistryAuth, method: str, url: str) -> http.Response:
    """What :mod:`pyimg.remote.registry` does around one request."""
    sent = auth.authorization(method, url)
    response = client.request(method, url, {"Authorization": sent} if sent else {})
    if response.status == 401 and auth.applies_to(url):
        response.close()
        retry = auth.answer(method, url, response, sent)
        response = client.request(method, url, {"Authorization": retry})
        if response.status == 401:
            response.close()
            raise auth.rejected(url)
    return response


def fetch(client: http.Client, auth: RegistryAuth, url: str, method: str = "GET") -> int:
    """``send`` and read the body; the status."""
    with send(client, auth, method, url) as response:
        response.read()
        return response.status


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
def client() -> Iterator[http.Client]:
    with http.Client(timeout=10) as c:
        yield c


@pytest.fixture
def token_client() -> Iterator[http.Client]:
    with http.Client(timeout=10) as c:
        yield c


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- bearer ----------------------------------------------------------------


def test_anonymous_bearer_token_is_fetched_and_cached(
    httpserver: HTTPServer, client: http.Client, token_client: http.Client
) -> None:
    _serve_protected(httpserver, _bearer(httpserver.url_for("/token")), "Bearer anon-token")
    httpserver.expect_request("/token").respond_with_json({"token": "anon-token"})
    auth = RegistryAuth(_hostport(httpserver), None, token_client)
    assert fetch(client, auth, httpserver.url_for(MANIFEST)) == 200
    assert fetch(client, auth, httpserver.url_for(MANIFEST)) == 200

    tokens = _requests_to(httpserver, "/token")
    assert len(tokens) == 1
    assert "Authorization" not in tokens[0].headers
    assert parse_qs(tokens[0].query_string.decode()) == {
        "service": ["test-registry"],
        "scope": [SCOPE],
    }
    # 401, retry, then the cached token goes out with the first attempt.
    assert _statuses(httpserver) == [401, 200, 200]


def test_nothing_known_before_the_first_challenge(
    httpserver: HTTPServer, token_client: http.Client
) -> None:
    auth = RegistryAuth(_hostport(httpserver), Credential("alice", "pw"), token_client)
    assert auth.authorization("GET", httpserver.url_for(MANIFEST)) is None
    assert httpserver.log == []


def test_token_request_carries_basic_credentials(
    httpserver: HTTPServer, client: http.Client, token_client: http.Client
) -> None:
    _serve_protected(httpserver, _bearer(httpserver.url_for("/token")), "Bearer user-token")
    httpserver.expect_request("/token").respond_with_json(
        {"access_token": "user-token", "expires_in": 300}
    )
    auth = RegistryAuth(_hostport(httpserver), Credential("alice", "pw"), token_client)
    assert fetch(client, auth, httpserver.url_for(MANIFEST)) == 200

    (token_request,) = _requests_to(httpserver, "/token")
    assert token_request.headers["Authorization"] == _basic("alice", "pw")
    assert parse_qs(token_request.query_string.decode())["account"] == ["alice"]
    # The registry itself never sees the password, only the token.
    for request in _requests_to(httpserver, MANIFEST):
        assert request.headers.get("Authorization", "").startswith("Bearer") or (
            "Authorization" not in request.headers
        )


def test_realm_query_is_kept(
    httpserver: HTTPServer, client: http.Client, token_client: http.Client
) -> None:
    realm = httpserver.url_for("/token") + "?tenant=a%20b"
    _serve_protected(httpserver, _bearer(realm), "Bearer t")
    httpserver.expect_request("/token").respond_with_json({"token": "t"})
    auth = RegistryAuth(_hostport(httpserver), None, token_client)
    assert fetch(client, auth, httpserver.url_for(MANIFEST)) == 200
    (token_request,) = _requests_to(httpserver, "/token")
    assert parse_qs(token_request.query_string.decode()) == {
        "tenant": ["a b"],
        "service": ["test-registry"],
        "scope": [SCOPE],
    }


def test_scope_from_request_path_when_challenge_has_none(
    httpserver: HTTPServer, client: http.Client, token_client: http.Client
) -> None:
    challenge = _bearer(httpserver.url_for("/token"), scope=None)
    _serve_protected(httpserver, challenge, "Bearer t", path="/v2/lib/app/blobs/uploads/")
    httpserver.expect_request("/token").respond_with_json({"token": "t"})
    auth = RegistryAuth(_hostport(httpserver), None, token_client)
    assert fetch(client, auth, httpserver.url_for("/v2/lib/app/blobs/uploads/"), "POST") == 200

    (token_request,) = _requests_to(httpserver, "/token")
    assert parse_qs(token_request.query_string.decode())["scope"] == [
        "repository:lib/app:pull,push"
    ]


def test_token_realm_on_another_host(
    httpserver: HTTPServer,
    other_server: HTTPServer,
    client: http.Client,
    token_client: http.Client,
) -> None:
    realm = other_server.url_for("/auth/token")
    _serve_protected(httpserver, _bearer(realm), "Bearer remote-token")
    other_server.expect_request("/auth/token").respond_with_json({"token": "remote-token"})
    other_server.expect_request("/elsewhere").respond_with_data("blob")
    auth = RegistryAuth(_hostport(httpserver), Credential("alice", "pw"), token_client)
    assert fetch(client, auth, httpserver.url_for(MANIFEST)) == 200
    # Same client and auth, other host (e.g. blob storage after a redirect).
    elsewhere_url = other_server.url_for("/elsewhere")
    assert not auth.applies_to(elsewhere_url)
    assert auth.authorization("GET", elsewhere_url) is None
    with send(client, auth, "GET", elsewhere_url) as outside:
        assert outside.read() == b"blob"

    (token_request,) = _requests_to(other_server, "/auth/token")
    assert token_request.headers["Authorization"] == _basic("alice", "pw")
    (elsewhere,) = _requests_to(other_server, "/elsewhere")
    assert "Authorization" not in elsewhere.headers


def test_401_from_another_host_is_not_answered(
    httpserver: HTTPServer, other_server: HTTPServer, client: http.Client,
    token_client: http.Client,
) -> None:
    challenge = _bearer(other_server.url_for("/token"))
    other_server.expect_request(MANIFEST).respond_with_data(
        "", status=401, headers={"WWW-Authenticate": challenge}
    )
    auth = RegistryAuth(_hostport(httpserver), Credential("alice", "pw"), token_client)
    url = other_server.url_for(MANIFEST)
    with send(client, auth, "GET", url) as response:
        assert response.status == 401
        with pytest.raises(AuthenticationError, match="not a host of registry"):
            auth.answer("GET", url, response, None)
    assert _requests_to(other_server, "/token") == []


def test_endpoint_hosts_receive_credentials(token_client: http.Client) -> None:
    auth = RegistryAuth("docker.io", Credential("u", "p"), token_client,
                        endpoint_hosts=["localhost:5000", "https://Mirror.example:8443/v2/",
                                        "[::1]:5001"])
    assert auth.applies_to("http://localhost:5000/v2/")
    assert auth.applies_to("http://LOCALHOST:5000/v2/")
    assert not auth.applies_to("http://localhost:5001/")
    assert not auth.applies_to("http://localhost/")
    assert auth.applies_to("https://docker.io/v2/")
    assert auth.applies_to("https://docker.io:443/v2/")  # the default port is no port
    assert not auth.applies_to("https://docker.io:8443/v2/")
    assert auth.applies_to("https://mirror.example:8443/v2/x")
    assert not auth.applies_to("https://mirror.example/v2/x")
    assert auth.applies_to("http://[::1]:5001/v2/")
    assert not auth.applies_to("https://evil.example/v2/")
    assert not auth.applies_to("https://docker.io.evil.example/v2/")
    assert not auth.applies_to("ftp://docker.io/v2/")
    assert not auth.applies_to("https://docker.io:99999/v2/")
    assert not auth.applies_to("not a url")
    assert auth.authorization("GET", "https://evil.example/v2/a/manifests/x") is None


def test_host_with_port_matches_default_port(token_client: http.Client) -> None:
    auth = RegistryAuth("r.example:443", None, token_client)
    assert auth.applies_to("https://r.example/v2/")
    assert not auth.applies_to("http://r.example/v2/")


def test_second_401_after_token_raises(
    httpserver: HTTPServer, client: http.Client, token_client: http.Client
) -> None:
    challenge = _bearer(httpserver.url_for("/token"))
    httpserver.expect_request(MANIFEST).respond_with_data(
        "", status=401, headers={"WWW-Authenticate": challenge}
    )
    httpserver.expect_request("/token").respond_with_json({"token": "useless"})
    host = _hostport(httpserver)
    auth = RegistryAuth(host, None, token_client)
    with pytest.raises(AuthenticationError) as info:
        fetch(client, auth, httpserver.url_for(MANIFEST))
    assert info.value.hint == f"run 'pyimg login {host}'"
    assert "lib/app" in info.value.message
    assert info.value.status == 401
    assert len(_requests_to(httpserver, MANIFEST)) == 2


def test_expired_token_is_refetched(
    httpserver: HTTPServer, client: http.Client, token_client: http.Client
) -> None:
    _serve_protected(httpserver, _bearer(httpserver.url_for("/token")), "Bearer t")
    httpserver.expect_request("/token").respond_with_json({"token": "t", "expires_in": 120})
    clock = FakeClock()
    auth = RegistryAuth(_hostport(httpserver), None, token_client, clock=clock)
    fetch(client, auth, httpserver.url_for(MANIFEST))
    clock.now += 100
    fetch(client, auth, httpserver.url_for(MANIFEST))
    assert len(_requests_to(httpserver, "/token")) == 1
    clock.now += 30
    assert fetch(client, auth, httpserver.url_for(MANIFEST)) == 200
    # Realm known: the new token was fetched up front, without another 401.
    assert len(_requests_to(httpserver, "/token")) == 2
    assert _statuses(httpserver) == [401, 200, 200, 200]


def test_default_token_lifetime(
    httpserver: HTTPServer, client: http.Client, token_client: http.Client
) -> None:
    _serve_protected(httpserver, _bearer(httpserver.url_for("/token")), "Bearer t")
    httpserver.expect_request("/token").respond_with_json({"token": "t", "expires_in": "soon"})
    clock = FakeClock()
    auth = RegistryAuth(_hostport(httpserver), None, token_client, clock=clock)
    fetch(client, auth, httpserver.url_for(MANIFEST))
    clock.now += 59
    fetch(client, auth, httpserver.url_for(MANIFEST))
    assert len(_requests_to(httpserver, "/token")) == 1
    clock.now += 2
    fetch(client, auth, httpserver.url_for(MANIFEST))
    assert len(_requests_to(httpserver, "/token")) == 2


def test_token_fetched_up_front_for_another_repository(
    httpserver: HTTPServer, client: http.Client, token_client: http.Client
) -> None:
    other = "/v2/lib/other/manifests/latest"
    realm = httpserver.url_for("/token")
    _serve_protected(httpserver, _bearer(realm, scope=None), "Bearer t")
    _serve_protected(httpserver, _bearer(realm, scope=None), "Bearer t", path=other)
    httpserver.expect_request("/token").respond_with_json({"token": "t"})
    auth = RegistryAuth(_hostport(httpserver), None, token_client)
    assert fetch(client, auth, httpserver.url_for(MANIFEST)) == 200
    assert fetch(client, auth, httpserver.url_for(other), "HEAD") == 200
    tokens = _requests_to(httpserver, "/token")
    scopes = [parse_qs(r.query_string.decode())["scope"] for r in tokens]
    assert scopes == [[SCOPE], ["repository:lib/other:pull"]]
    assert _statuses(httpserver, other) == [200]


def test_identity_token_uses_oauth_refresh(
    httpserver: HTTPServer, client: http.Client, token_client: http.Client
) -> None:
    _serve_protected(httpserver, _bearer(httpserver.url_for("/token")), "Bearer oauth")
    httpserver.expect_request("/token", method="POST").respond_with_json({"access_token": "oauth"})
    cred = Credential("", "", identity_token="refresh-me")
    auth = RegistryAuth(_hostport(httpserver), cred, token_client)
    assert fetch(client, auth, httpserver.url_for(MANIFEST)) == 200
    (token_request,) = _requests_to(httpserver, "/token")
    assert token_request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "Authorization" not in token_request.headers
    form = parse_qs(token_request.get_data(as_text=True))
    assert form == {
        "grant_type": ["refresh_token"],
        "refresh_token": ["refresh-me"],
        "client_id": ["pyimg"],
        "scope": [SCOPE],
        "service": ["test-registry"],
    }


@pytest.mark.parametrize(
    ("status", "username", "account"), [(404, "", "<token>"), (405, "bob", "bob")]
)
def test_identity_token_falls_back_to_get(
    httpserver: HTTPServer,
    client: http.Client,
    token_client: http.Client,
    status: int,
    username: str,
    account: str,
) -> None:
    _serve_protected(httpserver, _bearer(httpserver.url_for("/token")), "Bearer fallback")
    httpserver.expect_request("/token", method="POST").respond_with_data("no", status=status)
    httpserver.expect_request("/token", method="GET").respond_with_json({"token": "fallback"})
    cred = Credential(username, "", identity_token="refresh-me")
    auth = RegistryAuth(_hostport(httpserver), cred, token_client)
    assert fetch(client, auth, httpserver.url_for(MANIFEST)) == 200
    post, get = _requests_to(httpserver, "/token")
    assert (post.method, get.method) == ("POST", "GET")
    assert get.headers["Authorization"] == _basic(username or "<token>", "refresh-me")
    assert parse_qs(get.query_string.decode())["account"] == [account]


def test_identity_token_post_error_is_not_retried_as_get(
    httpserver: HTTPServer, client: http.Client, token_client: http.Client
) -> None:
    _serve_protected(httpserver, _bearer(httpserver.url_for("/token")), "Bearer t")
    httpserver.expect_request("/token", method="POST").respond_with_data("no", status=401)
    cred = Credential("", "", identity_token="expired")
    auth = RegistryAuth(_hostport(httpserver), cred, token_client)
    with pytest.raises(AuthenticationError, match="HTTP 401") as info:
        fetch(client, auth, httpserver.url_for(MANIFEST))
    assert info.value.hint == f"run 'pyimg login {_hostport(httpserver)}'"
    assert [r.method for r in _requests_to(httpserver, "/token")] == ["POST"]


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (500, "oops", "HTTP 500"),
        (401, "no", "HTTP 401"),
        (200, "not json", "invalid JSON"),
        (200, "[1]", "invalid JSON"),
        (200, json.dumps({"expires_in": 60}), "without a token"),
        (200, json.dumps({"token": ""}), "without a token"),
        (200, json.dumps({"token": "x" * (1 << 20)}), "more than"),
    ],
)
def test_token_endpoint_errors(
    httpserver: HTTPServer,
    client: http.Client,
    token_client: http.Client,
    status: int,
    body: str,
    message: str,
) -> None:
    _serve_protected(httpserver, _bearer(httpserver.url_for("/token")), "Bearer t")
    httpserver.expect_request("/token").respond_with_data(body, status=status)
    auth = RegistryAuth(_hostport(httpserver), None, token_client)
    with pytest.raises(AuthenticationError, match=message) as info:
        fetch(client, auth, httpserver.url_for(MANIFEST))
    assert "token server" in info.value.message


def test_oversized_streamed_token_answer(
    httpserver: HTTPServer, client: http.Client, token_client: http.Client
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"token": "'
        for _ in range(20):
            yield b"x" * 65536

    def handler(request: Request) -> Response:
        return Response(chunks(), status=200)  # no length: streamed

    _serve_protected(httpserver, _bearer(httpserver.url_for("/token")), "Bearer t")
    httpserver.expect_request("/token").respond_with_handler(handler)
    auth = RegistryAuth(_hostport(httpserver), None, token_client)
    with pytest.raises(AuthenticationError, match="more than"):
        fetch(client, auth, httpserver.url_for(MANIFEST))


def test_token_endpoint_unreachable(
    httpserver: HTTPServer, client: http.Client, token_client: http.Client
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    _serve_protected(httpserver, _bearer(f"http://127.0.0.1:{closed_port}/token"), "Bearer t")
    auth = RegistryAuth(_hostport(httpserver), None, token_client)
    with pytest.raises(RegistryUnreachable, match=r"token server 127\.0\.0\.1") as info:
        fetch(client, auth, httpserver.url_for(MANIFEST))
    assert info.value.retryable


@pytest.mark.parametrize("realm", ["", "/relative/token", "ftp://t/x", "https://", "http://t:x/"])
def test_unusable_realm(
    httpserver: HTTPServer, client: http.Client, token_client: http.Client, realm: str
) -> None:
    _serve_protected(httpserver, _bearer(realm), "Bearer t")
    auth = RegistryAuth(_hostport(httpserver), None, token_client)
    with pytest.raises(AuthenticationError, match="unusable token realm"):
        fetch(client, auth, httpserver.url_for(MANIFEST))


def test_plain_http_realm_refused_for_tls_registry(
    httpserver: HTTPServer, client: http.Client, token_client: http.Client
) -> None:
    # Only the challenge headers of the 401 matter, so a plain-HTTP server can
    # stand in for the TLS registry's answer.
    httpserver.expect_request(MANIFEST).respond_with_data(
        "", status=401, headers={"WWW-Authenticate": 'Bearer realm="http://t/x"'}
    )
    url = "https://r.example/v2/a/manifests/latest"
    with client.request("GET", httpserver.url_for(MANIFEST)) as response:
        auth = RegistryAuth("r.example", Credential("u", "p"), token_client)
        with pytest.raises(AuthenticationError, match="plain-HTTP token realm"):
            auth.answer("GET", url, response, None)


def test_plain_http_realm_allowed_without_credentials(
    httpserver: HTTPServer, client: http.Client, token_client: http.Client
) -> None:
    httpserver.expect_request(MANIFEST).respond_with_data(
        "", status=401, headers={"WWW-Authenticate": _bearer(httpserver.url_for("/token"))}
    )
    httpserver.expect_request("/token").respond_with_json({"token": "anon"})
    url = "https://r.example/v2/a/manifests/latest"
    with client.request("GET", httpserver.url_for(MANIFEST)) as response:
        auth = RegistryAuth("r.example", None, token_client)
        assert auth.answer("GET", url, response, None) == "Bearer anon"
    # Cached for the registry's origin, not the realm's.
    assert auth.authorization("GET", url) == "Bearer anon"


# -- token endpoint redirects ----------------------------------------------


def test_token_redirect_on_same_origin_keeps_credentials(
    httpserver: HTTPServer, client: http.Client, token_client: http.Client
) -> None:
    _serve_protected(httpserver, _bearer(httpserver.url_for("/token")), "Bearer moved")
    httpserver.expect_request("/token").respond_with_data(
        "", status=307, headers={"Location": "/token2?x=1"}
    )
    httpserver.expect_request("/token2").respond_with_json({"token": "moved"})
    auth = RegistryAuth(_hostport(httpserver), Credential("alice", "pw"), token_client)
    assert fetch(client, auth, httpserver.url_for(MANIFEST)) == 200
    (moved,) = _requests_to(httpserver, "/token2")
    assert moved.headers["Authorization"] == _basic("alice", "pw")


def test_token_redirect_to_another_origin_drops_credentials(
    httpserver: HTTPServer,
    other_server: HTTPServer,
    client: http.Client,
    token_client: http.Client,
) -> None:
    _serve_protected(httpserver, _bearer(httpserver.url_for("/token")), "Bearer moved")
    httpserver.expect_request("/token").respond_with_data(
        "", status=302, headers={"Location": other_server.url_for("/elsewhere")}
    )
    other_server.expect_request("/elsewhere").respond_with_json({"token": "moved"})
    auth = RegistryAuth(_hostport(httpserver), Credential("alice", "pw"), token_client)
    assert fetch(client, auth, httpserver.url_for(MANIFEST)) == 200
    (moved,) = _requests_to(other_server, "/elsewhere")
    assert "Authorization" not in moved.headers
    assert parse_qs(moved.query_string.decode()) == {}


def test_oauth_post_redirected_to_another_origin_is_refused(
    httpserver: HTTPServer,
    other_server: HTTPServer,
    client: http.Client,
    token_client: http.Client,
) -> None:
    _serve_protected(httpserver, _bearer(httpserver.url_for("/token")), "Bearer t")
    httpserver.expect_request("/token").respond_with_data(
        "", status=308, headers={"Location": other_server.url_for("/steal")}
    )
    cred = Credential("", "", identity_token="refresh-me")
    auth = RegistryAuth(_hostport(httpserver), cred, token_client)
    with pytest.raises(AuthenticationError, match="refusing to send credentials"):
        fetch(client, auth, httpserver.url_for(MANIFEST))
    assert _requests_to(other_server, "/steal") == []


def test_oauth_post_303_becomes_get(
    httpserver: HTTPServer, client: http.Client, token_client: http.Client
) -> None:
    _serve_protected(httpserver, _bearer(httpserver.url_for("/token")), "Bearer t")
    httpserver.expect_request("/token").respond_with_data(
        "", status=303, headers={"Location": "/done"}
    )
    httpserver.expect_request("/done", method="GET").respond_with_json({"token": "t"})
    cred = Credential("", "", identity_token="refresh-me")
    auth = RegistryAuth(_hostport(httpserver), cred, token_client)
    assert fetch(client, auth, httpserver.url_for(MANIFEST)) == 200
    (done,) = _requests_to(httpserver, "/done")
    assert "Content-Type" not in done.headers
    assert done.get_data() == b""


def test_token_redirect_loop(
    httpserver: HTTPServer, client: http.Client, token_client: http.Client
) -> None:
    _serve_protected(httpserver, _bearer(httpserver.url_for("/token")), "Bearer t")
    httpserver.expect_request("/token").respond_with_data(
        "", status=302, headers={"Location": "/token"}
    )
    auth = RegistryAuth(_hostport(httpserver), None, token_client)
    with pytest.raises(AuthenticationError, match="redirected more than 3 times"):
        fetch(client, auth, httpserver.url_for(MANIFEST))
    assert len(_requests_to(httpserver, "/token")) == 4


def test_token_redirect_to_unusable_url(
    httpserver: HTTPServer, client: http.Client, token_client: http.Client
) -> None:
    _serve_protected(httpserver, _bearer(httpserver.url_for("/token")), "Bearer t")
    httpserver.expect_request("/token").respond_with_data(
        "", status=302, headers={"Location": "file:///etc/passwd"}
    )
    auth = RegistryAuth(_hostport(httpserver), None, token_client)
    with pytest.raises(AuthenticationError, match="unusable URL"):
        fetch(client, auth, httpserver.url_for(MANIFEST))


def test_close_leaves_the_token_client_open(
    httpserver: HTTPServer, client: http.Client, token_client: http.Client
) -> None:
    _serve_protected(httpserver, _bearer(httpserver.url_for("/token")), "Bearer t")
    httpserver.expect_request("/token").respond_with_json({"token": "t"})
    with RegistryAuth(_hostport(httpserver), None, token_client) as auth:
        assert fetch(client, auth, httpserver.url_for(MANIFEST)) == 200
    with token_client.request("GET", httpserver.url_for("/token")) as response:
        assert response.status == 200
        response.read()


# -- basic -----------------------------------------------------------------


def test_basic_auth(
    httpserver: HTTPServer, client: http.Client, token_client: http.Client
) -> None:
    _serve_protected(httpserver, 'Basic realm="Registry"', _basic("bob", "pw"))
    auth = RegistryAuth(_hostport(httpserver), Credential("bob", "pw"), token_client)
    assert fetch(client, auth, httpserver.url_for(MANIFEST)) == 200
    assert fetch(client, auth, httpserver.url_for(MANIFEST)) == 200
    assert _statuses(httpserver) == [401, 200, 200]  # Basic sent up front once known
    # Once the origin asked for Basic, every path of it gets it.
    assert auth.authorization("GET", httpserver.url_for("/v2/")) == _basic("bob", "pw")


def test_basic_wrong_credentials(
    httpserver: HTTPServer, client: http.Client, token_client: http.Client
) -> None:
    _serve_protected(httpserver, 'Basic realm="Registry"', _basic("bob", "right"))
    host = _hostport(httpserver)
    auth = RegistryAuth(host, Credential("bob", "wrong"), token_client)
    with pytest.raises(AuthenticationError) as info:
        fetch(client, auth, httpserver.url_for(MANIFEST))
    assert "rejected the credentials" in info.value.message
    assert info.value.hint == f"run 'pyimg login {host}'"
    # Known to want Basic now: the next request sends it up front and the
    # second 401 is answered at once, without resending the same credentials.
    with pytest.raises(AuthenticationError, match="rejected the credentials"):
        fetch(client, auth, httpserver.url_for(MANIFEST))
    assert _statuses(httpserver) == [401, 401, 401]


def test_basic_without_credentials(
    httpserver: HTTPServer, client: http.Client, token_client: http.Client
) -> None:
    _serve_protected(httpserver, 'Basic realm="Registry"', _basic("bob", "pw"))
    auth = RegistryAuth(_hostport(httpserver), None, token_client)
    with pytest.raises(AuthenticationError, match="answered 401"):
        fetch(client, auth, httpserver.url_for(MANIFEST))
    assert len(_requests_to(httpserver, MANIFEST)) == 1


def test_401_without_supported_challenge(
    httpserver: HTTPServer, client: http.Client, token_client: http.Client
) -> None:
    httpserver.expect_request(MANIFEST).respond_with_data(
        "", status=401, headers={"WWW-Authenticate": "Negotiate"}
    )
    auth = RegistryAuth(_hostport(httpserver), Credential("u", "p"), token_client)
    with pytest.raises(AuthenticationError, match=r"supported challenge \(offered: negotiate\)"):
        fetch(client, auth, httpserver.url_for(MANIFEST))


def test_401_without_any_challenge(
    httpserver: HTTPServer, client: http.Client, token_client: http.Client
) -> None:
    httpserver.expect_request(MANIFEST).respond_with_data("", status=401)
    auth = RegistryAuth(_hostport(httpserver), Credential("u", "p"), token_client)
    with pytest.raises(AuthenticationError, match=r"offered: none"):
        fetch(client, auth, httpserver.url_for(MANIFEST))


def test_bearer_preferred_over_basic_in_separate_headers(
    httpserver: HTTPServer, client: http.Client, token_client: http.Client
) -> None:
    def challenge(request: Request) -> Response:
        if request.headers.get("Authorization") == "Bearer t":
            return Response("{}", status=200)
        response = Response("", status=401)
        response.headers.add("WWW-Authenticate", 'Basic realm="r"')
        response.headers.add("WWW-Authenticate", _bearer(httpserver.url_for("/token")))
        return response

    httpserver.expect_request(MANIFEST).respond_with_handler(challenge)
    httpserver.expect_request("/token").respond_with_json({"token": "t"})
    auth = RegistryAuth(_hostport(httpserver), Credential("u", "p"), token_client)
    assert fetch(client, auth, httpserver.url_for(MANIFEST)) == 200


def test_non_401_passes_through(
    httpserver: HTTPServer, client: http.Client, token_client: http.Client
) -> None:
    def forbidden(request: Request) -> Response:
        return Response("denied", status=403)

    httpserver.expect_request(MANIFEST).respond_with_handler(forbidden)
    auth = RegistryAuth(_hostport(httpserver), None, token_client)
    assert fetch(client, auth, httpserver.url_for(MANIFEST)) == 403
