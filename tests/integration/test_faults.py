"""Fault injection against the registry client and pull (pytest-httpserver).

A real registry never resets a connection half-way through a blob, lies about
a digest, ignores ``Range`` or sends a token realm on another host; these
tests make a tiny fake registry do exactly that and check what pyimg stores,
what it asks the server for, and which error it raises.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import random
import re
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from pyimg import reference
from pyimg.content import LocalStore
from pyimg.digest import Digest
from pyimg.errors import (
    DigestMismatch,
    FailedPrecondition,
    IntegrityError,
    InvalidArgument,
    PyimgError,
    RateLimited,
    RegistryError,
)
from pyimg.metadata import MetaStore
from pyimg.pull import ProgressEvent, PullOptions, PullResult, pull
from pyimg.remote.credentials import DockerConfig
from pyimg.remote.registry import RegistryOptions, RegistrySource
from pyimg.remote.transport import RetryPolicy

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
REPO = "test/img"
LAYER_SIZE = 200 * 1024
USER, PASSWORD = "alice", "s3cret"

Fault = Callable[[Request, bytes], Response | None]


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, str] = field(default_factory=dict)


def _record(request: Request) -> Seen:
    return Seen(request.method, request.path, dict(request.headers), dict(request.args))


# -- the fake registry ---------------------------------------------------------


class FakeRegistry:
    """A one-image registry on a pytest-httpserver, with hooks to misbehave.

    ``layer_faults`` are consumed one per GET of the layer blob (a fault
    returning ``None`` serves normally); ``layer_fault_always`` answers every
    GET once they are used up.  ``auth`` sees every ``/v2/`` request first.
    """

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.layer = random.Random(1234).randbytes(LAYER_SIZE)
        self.config = json.dumps({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha(b"diff")]},
            "config": {},
        }).encode()
        self.layer_digest = sha(self.layer)
        self.config_digest = sha(self.config)
        self.blobs: dict[str, bytes] = {self.layer_digest: self.layer,
                                        self.config_digest: self.config}
        self.set_manifest(json.dumps(self.manifest_doc()).encode(), OCI_MANIFEST)
        self.ignore_range = False
        self.head_digest = True  # send Docker-Content-Digest on manifest HEAD
        self.get_digest: str | None = None  # lie in Docker-Content-Digest on manifest GET
        self.layer_faults: list[Fault] = []
        self.layer_fault_always: Fault | None = None
        self.manifest_fault: Fault | None = None
        self.auth: Callable[[Request], Response | None] | None = None
        self.requests: list[Seen] = []
        self.delivered: list[int] = []  # per layer GET: offset + bytes actually sent
        server.expect_request(re.compile(r"^/v2/.*")).respond_with_handler(self.handle)

    # content
    def manifest_doc(self, **override: object) -> dict[str, object]:
        doc: dict[str, object] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": self.config_digest,
                       "size": len(self.config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": self.layer_digest,
                        "size": len(self.layer)}],
        }
        doc.update(override)
        return doc

    def set_manifest(self, body: bytes, content_type: str) -> None:
        self.manifest = body
        self.manifest_type = content_type
        self.manifest_digest = sha(body)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def seen(self, method: str | None = None, kind: str | None = None,
             digest: str | None = None) -> list[Seen]:
        out = []
        for s in self.requests:
            if method and s.method != method:
                continue
            if kind and f"/{kind}/" not in s.path:
                continue
            if digest and not s.path.endswith(digest):
                continue
            out.append(s)
        return out

    # serving
    def handle(self, request: Request) -> Response:
        self.requests.append(_record(request))
        if self.auth is not None:
            denied = self.auth(request)
            if denied is not None:
                return denied
        if request.path == "/v2/":
            return Response("{}", 200, content_type="application/json")
        m = re.fullmatch(rf"/v2/{re.escape(REPO)}/(manifests|blobs)/([^/]+)", request.path)
        if m is None:
            return _error(404, "NAME_UNKNOWN")
        kind, obj = m.groups()
        if kind == "manifests":
            return self._manifest(request, obj)
        return self._blob(request, obj)

    def _manifest(self, request: Request, obj: str) -> Response:
        if self.manifest_fault is not None:
            answer = self.manifest_fault(request, self.manifest)
            if answer is not None:
                return answer
        if obj not in ("latest", self.manifest_digest):
            return _error(404, "MANIFEST_UNKNOWN")
        headers = {"Content-Type": self.manifest_type}
        if request.method == "HEAD":
            if self.head_digest:
                headers["Docker-Content-Digest"] = self.manifest_digest
            return _sized(b"", len(self.manifest), 200, headers)
        headers["Docker-Content-Digest"] = self.get_digest or self.manifest_digest
        return _sized(self.manifest, len(self.manifest), 200, headers)

    def _blob(self, request: Request, digest: str) -> Response:
        data = self.blobs.get(digest)
        if data is None:
            return _error(404, "BLOB_UNKNOWN")
        if digest == self.layer_digest and request.method == "GET":
            fault = self.layer_faults.pop(0) if self.layer_faults else self.layer_fault_always
            if fault is not None:
                answer = fault(request, data)
                if answer is not None:
                    return answer
            start = self.range_start(request)
            self.delivered.append(len(data))
            return self.ranged(request, data, data[start:])
        return self.ranged(request, data, data[self.range_start(request):])

    def range_start(self, request: Request) -> int:
        header = request.headers.get("Range")
        if self.ignore_range or not header:
            return 0
        m = re.fullmatch(r"bytes=(\d+)-", header)
        assert m is not None, f"unexpected Range {header!r}"
        return int(m.group(1))

    def ranged(self, request: Request, data: bytes, body: bytes, sent: int | None = None,
               *, reset: bool = False) -> Response:
        """``body`` (data from range_start) with the right status; only ``sent`` bytes go out."""
        start = len(data) - len(body)
        headers = {"Content-Type": "application/octet-stream",
                   "Docker-Content-Digest": sha(data), "Accept-Ranges": "bytes"}
        status = 200
        if start:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        if request.method == "HEAD":
            return _sized(b"", len(body), status, headers)
        if sent is None:
            return _sized(body, len(body), status, headers)
        sock = request.environ["werkzeug.socket"] if reset else None
        return _sized(_cut(body[:sent], sock), len(body), status, headers)

    # faults
    def status(self, code: int, headers: dict[str, str] | None = None) -> Fault:
        def fault(request: Request, data: bytes) -> Response:
            return _error(code, "TOOMANYREQUESTS" if code == 429 else "UNAVAILABLE", headers)
        return fault

    def cut(self, *, reset: bool, fraction: float = 0.5) -> Fault:
        """Send ``fraction`` of the requested bytes, then reset or just close."""
        def fault(request: Request, data: bytes) -> Response:
            start = self.range_start(request)
            body = data[start:]
            sent = int(len(body) * fraction)
            self.delivered.append(start + sent)
            return self.ranged(request, data, body, sent, reset=reset)
        return fault


def _cut(prefix: bytes, sock: socket.socket | None) -> Iterator[bytes]:
    yield prefix
    if sock is not None:
        _reset(sock)
        # werkzeug treats a ConnectionError as a dropped connection: nothing more
        # is written to the (now dead) connection.
        raise ConnectionResetError("injected reset")


def _reset(sock: socket.socket) -> None:
    """Abort the connection with a TCP RST once the peer has acknowledged every byte.

    SO_LINGER 0 turns close into RST; dup2 closes the socket's descriptor
    atomically and leaves a dead socket in its place for werkzeug's own cleanup.
    """
    deadline = time.monotonic() + 5
    while _unacked(sock) and time.monotonic() < deadline:
        time.sleep(0.005)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    left, right = socket.socketpair()
    with left, right:
        os.dup2(left.fileno(), sock.fileno())


def _unacked(sock: socket.socket) -> int:
    buf = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
    return int(struct.unpack("i", buf)[0])


def _sized(body: bytes | Iterator[bytes], length: int, status: int,
           headers: dict[str, str]) -> Response:
    resp = Response(body, status, headers=headers)
    resp.headers["Content-Length"] = str(length)  # after set_data, which sets its own
    resp.headers["Connection"] = "close"
    return resp


def _error(code: int, err: str, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps({"errors": [{"code": err, "message": f"injected {code}"}]})
    return Response(body, code, headers=headers or {}, content_type="application/json")


# -- fixtures --------------------------------------------------------------------


def _server(host: str) -> Iterator[HTTPServer]:
    server = HTTPServer(host=host, port=0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def _server_a() -> Iterator[HTTPServer]:
    yield from _server("127.0.0.1")


@pytest.fixture(scope="module")
def _server_b() -> Iterator[HTTPServer]:
    yield from _server("localhost")


@pytest.fixture
def server_a(_server_a: HTTPServer) -> Iterator[HTTPServer]:
    """The registry's host; handlers and log are cleared after each test."""
    yield _server_a
    errors = list(_server_a.handler_errors)
    _server_a.clear()
    assert not errors, errors


@pytest.fixture
def server_b(_server_b: HTTPServer) -> Iterator[HTTPServer]:
    """A second host: 'localhost' is not '127.0.0.1' as far as pyimg is concerned."""
    yield _server_b
    errors = list(_server_b.handler_errors)
    _server_b.clear()
    assert not errors, errors


@pytest.fixture
def reg(server_a: HTTPServer) -> FakeRegistry:
    return FakeRegistry(server_a)


@dataclass
class Env:
    tmp: Path
    reg: FakeRegistry
    events: list[ProgressEvent] = field(default_factory=list)
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.store = LocalStore(self.tmp / "content")
        self.meta = MetaStore(self.tmp / "m.db")
        self._closers.append(self.meta.close)

    def source(self, *, retry: RetryPolicy | None = None,
               docker_config: DockerConfig | None = None) -> RegistrySource:
        src = RegistrySource(
            reference.parse(f"{self.reg.host}/{REPO}"),
            RegistryOptions(retry=retry or RetryPolicy(base=0.01, cap=0.05, attempts=4),
                            config_dir=self.tmp / "cfg", docker_config=docker_config))
        self._closers.append(src.close)
        return src

    def pull(self, **kw: object) -> PullResult:
        src = self.source(**kw)  # type: ignore[arg-type]
        try:
            return pull(src, self.store, self.meta, PullOptions(), self.events.append)
        finally:
            src.close()

    def seen_blobs(self) -> list[Seen]:
        return self.reg.seen(kind="blobs")

    def blob_files(self) -> list[str]:
        d = self.store.root / "blobs" / "sha256"
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []

    def ingest_data(self) -> list[Path]:
        return [p / "data" for p in self.store.ingests() if (p / "data").is_file()]

    def close(self) -> None:
        for fn in reversed(self._closers):
            fn()


@pytest.fixture
def env(tmp_path: Path, reg: FakeRegistry) -> Iterator[Env]:
    e = Env(tmp_path, reg)
    yield e
    e.close()


def _assert_pulled(env: Env) -> None:
    reg = env.reg
    for digest, data in reg.blobs.items():
        d = Digest.parse(digest)
        assert env.store.exists(d)
        assert env.store.blob_path(d).read_bytes() == data
    assert env.store.exists(Digest.parse(reg.manifest_digest))
    assert not env.ingest_data()
    with env.meta.transaction() as tx:
        assert str(tx.get_image(f"{reg.host}/{REPO}:latest").target.digest) == \
            reg.manifest_digest


def _digest(text: str) -> Digest:
    return Digest.parse(text)


# -- 1. transient statuses ---------------------------------------------------------


def test_500_then_503_then_success(env: Env) -> None:
    reg = env.reg
    reg.layer_faults = [reg.status(500), reg.status(503)]
    result = env.pull()
    _assert_pulled(env)
    assert len(reg.seen("GET", "blobs", reg.layer_digest)) == 3
    assert result.fetched == 1  # the layer (the config is fetched as a document)


# -- 2. 429 -------------------------------------------------------------------------


def test_429_retry_after_is_honoured(env: Env) -> None:
    reg = env.reg
    reg.layer_faults = [reg.status(429, {"Retry-After": "1"})]
    policy = RetryPolicy(base=0.01, cap=0.05, attempts=4, max_retry_after=1.5)
    started = time.monotonic()
    env.pull(retry=policy)
    elapsed = time.monotonic() - started
    _assert_pulled(env)
    gets = reg.seen("GET", "blobs", reg.layer_digest)
    assert len(gets) == 2
    assert elapsed >= 0.95


def test_429_retry_after_capped_by_policy(env: Env) -> None:
    reg = env.reg
    reg.layer_faults = [reg.status(429, {"Retry-After": "3600"})]
    policy = RetryPolicy(base=0.01, cap=0.05, attempts=4, max_retry_after=0.2)
    started = time.monotonic()
    env.pull(retry=policy)
    assert time.monotonic() - started < 3
    _assert_pulled(env)


def test_429_forever_is_rate_limited(env: Env) -> None:
    reg = env.reg
    reg.manifest_fault = reg.status(429)
    with pytest.raises(RateLimited) as info:
        env.pull()
    assert info.value.status == 429
    assert "429" in str(info.value)
    assert len(reg.seen("HEAD", "manifests")) == 4  # policy.attempts
    assert env.blob_files() == []


def test_429_forever_on_blob_is_rate_limited(env: Env) -> None:
    reg = env.reg
    reg.layer_fault_always = reg.status(429)
    with pytest.raises(RateLimited):
        env.pull()
    assert len(reg.seen("GET", "blobs", reg.layer_digest)) == 4
    assert not env.store.exists(_digest(reg.layer_digest))


# -- 3. reset mid-blob -------------------------------------------------------------


def test_reset_mid_blob_resumes_with_exact_range(env: Env) -> None:
    reg = env.reg
    reg.layer_faults = [reg.cut(reset=True)]
    env.pull()
    _assert_pulled(env)
    gets = reg.seen("GET", "blobs", reg.layer_digest)
    assert len(gets) == 2
    assert "Range" not in gets[0].headers
    half = LAYER_SIZE // 2
    assert reg.delivered[0] == half
    assert gets[1].headers["Range"] == f"bytes={half}-"
    # the resumed transfer is reported as starting where the first one broke
    starts = [e.done for e in env.events if e.kind == "start" and e.desc is not None
              and str(e.desc.digest) == reg.layer_digest]
    assert starts == [0]


# -- 4. truncated body -------------------------------------------------------------


def test_truncated_body_is_resumed(env: Env) -> None:
    reg = env.reg
    reg.layer_faults = [reg.cut(reset=False, fraction=0.3), reg.cut(reset=False, fraction=0.5)]
    env.pull()
    _assert_pulled(env)
    gets = reg.seen("GET", "blobs", reg.layer_digest)
    assert len(gets) == 3
    assert "Range" not in gets[0].headers
    assert gets[1].headers["Range"] == f"bytes={reg.delivered[0]}-"
    assert gets[2].headers["Range"] == f"bytes={reg.delivered[1]}-"
    assert 0 < reg.delivered[0] < reg.delivered[1] < LAYER_SIZE


def test_always_truncated_fails_then_later_pull_resumes(env: Env) -> None:
    reg = env.reg
    reg.layer_fault_always = reg.cut(reset=False)
    with pytest.raises(RegistryError) as info:
        env.pull()
    assert isinstance(info.value, PyimgError)
    assert info.value.retryable
    layer = _digest(reg.layer_digest)
    assert not env.store.exists(layer)
    assert layer.hex not in env.blob_files()
    assert len(reg.seen("GET", "blobs", reg.layer_digest)) == 4
    partial = env.ingest_data()
    assert len(partial) == 1
    kept = partial[0].stat().st_size
    assert kept == reg.delivered[-1]  # every byte received is kept
    assert 0 < kept < LAYER_SIZE
    assert partial[0].read_bytes() == reg.layer[:kept]

    # the server recovers: the next pull resumes from what is on disk
    reg.layer_fault_always = None
    reg.requests.clear()
    env.pull()
    _assert_pulled(env)
    gets = reg.seen("GET", "blobs", reg.layer_digest)
    assert [g.headers.get("Range") for g in gets] == [f"bytes={kept}-"]
    starts = [e.done for e in env.events if e.kind == "start" and e.desc is not None
              and str(e.desc.digest) == reg.layer_digest]
    assert starts[-1] == kept


# -- 5. Range ignored ----------------------------------------------------------------


def test_range_ignored_after_reset(env: Env) -> None:
    reg = env.reg
    reg.ignore_range = True
    reg.layer_faults = [reg.cut(reset=True)]
    env.pull()
    _assert_pulled(env)
    gets = reg.seen("GET", "blobs", reg.layer_digest)
    assert len(gets) == 2
    assert gets[1].headers["Range"] == f"bytes={LAYER_SIZE // 2}-"


# -- 6. wrong bytes ------------------------------------------------------------------


def test_blob_bytes_not_matching_digest(env: Env) -> None:
    reg = env.reg

    def wrong(request: Request, data: bytes) -> Response:
        bad = bytearray(data)
        bad[len(bad) // 2] ^= 0xFF
        return reg.ranged(request, bytes(bad), bytes(bad))

    reg.layer_fault_always = wrong
    with pytest.raises(DigestMismatch) as info:
        env.pull()
    assert isinstance(info.value, IntegrityError)
    layer = _digest(reg.layer_digest)
    assert not env.store.exists(layer)
    assert layer.hex not in env.blob_files()
    # the bad bytes are not kept for a later resume either
    assert all(p.stat().st_size == 0 for p in env.ingest_data())
    with env.meta.transaction() as tx:
        assert tx.list_images() == []


# -- 7. token realm on another host ----------------------------------------------------


def _docker_config(path: Path, host: str) -> DockerConfig:
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return DockerConfig.load(path)


def _basic() -> str:
    return "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def test_token_realm_on_another_host(env: Env, server_b: HTTPServer) -> None:
    reg = env.reg
    token_requests: list[Seen] = []

    def token(request: Request) -> Response:
        token_requests.append(_record(request))
        if request.headers.get("Authorization") != _basic():
            return Response("{}", 401, content_type="application/json")
        return Response(json.dumps({"token": "T", "expires_in": 300}), 200,
                        content_type="application/json")

    server_b.expect_request("/token").respond_with_handler(token)
    realm = f"http://localhost:{server_b.port}/token"

    def bearer(request: Request) -> Response | None:
        if request.headers.get("Authorization") == "Bearer T":
            return None
        return _error(401, "UNAUTHORIZED", {
            "WWW-Authenticate":
                f'Bearer realm="{realm}",service="reg",scope="repository:{REPO}:pull"'})

    reg.auth = bearer
    env.pull(docker_config=_docker_config(env.tmp / "config.json", reg.host))
    _assert_pulled(env)
    assert token_requests, "no token request reached the realm"
    first = token_requests[0]
    assert first.headers["Authorization"] == _basic()
    assert first.query["service"] == "reg"
    assert first.query["scope"] == f"repository:{REPO}:pull"
    # the registry got the token, never the password
    assert all(s.headers.get("Authorization") in (None, "Bearer T") for s in reg.requests)
    assert any(s.headers.get("Authorization") == "Bearer T"
               for s in reg.seen("GET", "blobs", reg.layer_digest))


# -- 8. redirect to another host -------------------------------------------------------


def test_redirect_to_other_host_drops_credentials(env: Env, server_b: HTTPServer) -> None:
    reg = env.reg
    storage: list[Seen] = []

    def basic(request: Request) -> Response | None:
        if request.path == "/v2/" or request.headers.get("Authorization") == _basic():
            return None
        return _error(401, "UNAUTHORIZED", {"WWW-Authenticate": 'Basic realm="reg"'})

    def storage_blob(request: Request) -> Response:
        storage.append(_record(request))
        return reg.ranged(request, reg.layer, reg.layer[reg.range_start(request):])

    def redirect(request: Request, data: bytes) -> Response:
        return Response("", 307, headers={
            "Location": f"http://localhost:{server_b.port}/blob/{reg.layer_digest[7:]}?sig=x"})

    server_b.expect_request(re.compile(r"^/blob/.*")).respond_with_handler(storage_blob)
    reg.auth = basic
    reg.layer_fault_always = redirect
    env.pull(docker_config=_docker_config(env.tmp / "config.json", reg.host))
    _assert_pulled(env)
    assert len(storage) == 1
    assert "Authorization" not in storage[0].headers
    assert storage[0].query == {"sig": "x"}
    layer_gets = reg.seen("GET", "blobs", reg.layer_digest)
    assert layer_gets and all(g.headers.get("Authorization") == _basic() for g in layer_gets)
    # A really did demand the credentials
    assert any(s.headers.get("Authorization") is None and s.path != "/v2/"
               for s in reg.requests)


def test_redirect_to_other_host_after_reset_resumes_there(env: Env,
                                                          server_b: HTTPServer) -> None:
    reg = env.reg
    storage: list[Seen] = []
    cut = reg.cut(reset=True)

    def storage_blob(request: Request) -> Response:
        storage.append(_record(request))
        if len(storage) == 1:
            return cut(request, reg.layer)
        return reg.ranged(request, reg.layer, reg.layer[reg.range_start(request):])

    def redirect(request: Request, data: bytes) -> Response:
        return Response("", 307, headers={
            "Location": f"http://localhost:{server_b.port}/blob/x"})

    server_b.expect_request(re.compile(r"^/blob/.*")).respond_with_handler(storage_blob)
    reg.layer_fault_always = redirect
    env.pull()
    _assert_pulled(env)
    assert [s.headers.get("Range") for s in storage] == [None, f"bytes={LAYER_SIZE // 2}-"]


# -- 9. malformed manifests --------------------------------------------------------------


def _layer(**kw: object) -> dict[str, object]:
    layer: dict[str, object] = {"mediaType": OCI_LAYER, "digest": sha(b"x"), "size": 1}
    layer.update(kw)
    return layer


MALFORMED: dict[str, Callable[[FakeRegistry], bytes]] = {
    "not-json": lambda r: b"this is {not json",
    "json-array": lambda r: json.dumps([r.manifest_doc()]).encode(),
    "missing-layers": lambda r: json.dumps(
        {k: v for k, v in r.manifest_doc().items() if k != "layers"}).encode(),
    "layers-not-list": lambda r: json.dumps(r.manifest_doc(layers={"0": _layer()})).encode(),
    "negative-size": lambda r: json.dumps(r.manifest_doc(layers=[_layer(size=-5)])).encode(),
    "bad-hex": lambda r: json.dumps(
        r.manifest_doc(layers=[_layer(digest="sha256:" + "zz" * 32)])).encode(),
    "over-4mib": lambda r: json.dumps(
        r.manifest_doc(annotations={"pad": "x" * (4 * 1024 * 1024 + 10)})).encode(),
}


@pytest.mark.parametrize("head_digest", [True, False], ids=["head", "get"])
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_manifest(env: Env, case: str, head_digest: bool) -> None:
    reg = env.reg
    reg.head_digest = head_digest
    reg.set_manifest(MALFORMED[case](reg), OCI_MANIFEST)
    with pytest.raises(PyimgError) as info:
        env.pull()
    assert type(info.value) is InvalidArgument, repr(info.value)
    assert "\n" not in str(info.value)
    # the document may be kept (it matches its digest); nothing it names is fetched
    assert set(env.blob_files()) <= {reg.manifest_digest[7:]}
    assert not env.seen_blobs()
    with env.meta.transaction() as tx:
        assert tx.list_images() == []


@pytest.mark.parametrize("head_digest", [True, False], ids=["head", "get"])
def test_schema1_manifest_refused(env: Env, head_digest: bool) -> None:
    reg = env.reg
    reg.head_digest = head_digest
    doc = {"schemaVersion": 1, "name": REPO, "tag": "latest", "architecture": "amd64",
           "fsLayers": [{"blobSum": reg.layer_digest}], "history": [],
           "mediaType": SCHEMA1_SIGNED}
    reg.set_manifest(json.dumps(doc).encode(), SCHEMA1_SIGNED)
    with pytest.raises(FailedPrecondition) as info:
        env.pull()
    assert "schema 1" in str(info.value).lower()
    assert env.blob_files() == []


# -- 10. digests in headers ---------------------------------------------------------------


def test_head_without_digest_falls_back_to_get(env: Env) -> None:
    reg = env.reg
    reg.head_digest = False
    result = env.pull()
    assert str(result.target.digest) == reg.manifest_digest
    assert result.target.size == len(reg.manifest)
    assert result.target.media_type == OCI_MANIFEST
    _assert_pulled(env)
    # resolve: HEAD lacked the digest, so GET the tag and hash the body; the pull
    # then reuses that body instead of fetching the manifest again by digest
    assert [(s.method, s.path.rsplit("/", 1)[1]) for s in reg.seen(kind="manifests")] == [
        ("HEAD", "latest"), ("GET", "latest")]


def test_get_digest_header_disagrees_with_body(env: Env) -> None:
    reg = env.reg
    reg.head_digest = False
    reg.get_digest = sha(b"something else")
    with pytest.raises(RegistryError) as info:
        env.pull()
    assert "Docker-Content-Digest" in str(info.value)
    assert reg.get_digest in str(info.value)
    assert env.blob_files() == []


def test_head_digest_disagrees_with_body(env: Env) -> None:
    reg = env.reg
    lie = sha(b"something else")

    def lying_head(request: Request, body: bytes) -> Response | None:
        # HEAD claims ``lie``; GET by ``lie`` serves the real (other) bytes
        headers = {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": lie}
        if request.method == "HEAD":
            return _sized(b"", len(body), 200, headers)
        if request.path.endswith(lie):
            return _sized(body, len(body), 200, headers)
        return None

    reg.manifest_fault = lying_head
    with pytest.raises(DigestMismatch):
        env.pull()
    assert env.blob_files() == []
    assert [s.path.rsplit("/", 1)[1] for s in reg.seen("GET", "manifests")] == [lie]


# -- 11. media type and Accept -----------------------------------------------------------


def test_manifest_without_media_type_field(env: Env) -> None:
    reg = env.reg
    doc = reg.manifest_doc()
    del doc["mediaType"]
    reg.set_manifest(json.dumps(doc).encode(), OCI_MANIFEST)
    env.pull()
    _assert_pulled(env)
    accepts = [s.headers.get("Accept", "") for s in reg.seen(kind="manifests")]
    assert accepts
    for accept in accepts:
        offered = {part.split(";")[0].strip() for part in accept.split(",")}
        assert {OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST} <= offered


# -- 12. CLI -----------------------------------------------------------------------------


def test_cli_manifest_404_is_one_line(tmp_path: Path, server_a: HTTPServer) -> None:
    server_a.expect_request(re.compile(r"^/v2/.*")).respond_with_handler(
        lambda request: _error(404, "MANIFEST_UNKNOWN"))
    exe = Path(sys.executable).parent / "pyimg"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYIMG_", "DOCKER_"))}
    env.update(PYIMG_RETRY_BASE="0.01", DOCKER_CONFIG=str(tmp_path / "docker"),
               HOME=str(tmp_path), XDG_RUNTIME_DIR=str(tmp_path / "run"))
    proc = subprocess.run(
        [str(exe), "--root", str(tmp_path / "root"), "--config", str(tmp_path / "cfg"),
         "pull", f"127.0.0.1:{server_a.port}/{REPO}"],
        capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("pyimg: error:")
    assert "Traceback" not in proc.stderr
    assert "404" in lines[0]
