"""The registry as an ImageSource: resolve a reference, fetch manifests and blobs.

Resolution is the only point where we trust the registry (containerd's
words): a tag becomes a digest here, through ``HEAD`` (which Docker Hub
does not count against the pull limit) and ``GET`` only when the ``HEAD``
answer is incomplete.  Everything fetched afterwards is verified by the
caller against the digest.

Endpoints come from ``hosts.toml``: mirrors first, then the upstream; a
failure on a mirror falls through to the next endpoint.
"""

from __future__ import annotations

import time
from _thread import allocate_lock

from pyimg import _debug, oci
from pyimg.digest import Digest, Verifier, hasher
from pyimg.errors import FailedPrecondition, InvalidArgument, PyimgError, RegistryError
from pyimg.oci import Descriptor
from pyimg.record import Record
from pyimg.remote import http
from pyimg.remote.connection import Connection, connect
from pyimg.remote.hosts import resolve_hosts
from pyimg.remote.transport import RetryPolicy, check_response, translate, with_retries

# Import-light (a small pull is import-budgeted, see docs/design.md): no threading,
# contextlib, dataclasses, typing or pathlib.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator
    from typing import TypeVar

    from pyimg.fsutil import StrPath
    from pyimg.reference import Reference
    from pyimg.remote.credentials import DockerConfig
    from pyimg.remote.hosts import Endpoint
    from pyimg.sources import Chunk

    _T = TypeVar("_T")

#: Read size for blobs.  Larger buffers fall out of L2 cache between the
#: socket read, the hash and the write (measured: 1 MiB is ~2x slower).
CHUNK = 256 * 1024
_ACCEPT = ", ".join(oci.ACCEPT_MANIFESTS)


class RegistryOptions(Record):
    _fields = ("config_dir", "docker_config", "retry", "max_connections")
    __slots__ = _fields
    config_dir: StrPath | None  # holds certs.d/<host>/hosts.toml
    docker_config: DockerConfig | None
    retry: RetryPolicy
    max_connections: int  # kept for API stability; the pool grows on demand

    def __init__(self, config_dir: StrPath | None = None,
                 docker_config: DockerConfig | None = None, retry: RetryPolicy | None = None,
                 max_connections: int = 8) -> None:
        self._set(config_dir, docker_config, RetryPolicy() if retry is None else retry,
                  max_connections)


class RegistrySource:
    """ImageSource over the distribution API (thread-safe for concurrent fetches)."""

    def __init__(self, ref: Reference, options: RegistryOptions | None = None) -> None:
        self.ref = ref
        self.options = options or RegistryOptions()
        self.endpoints = resolve_hosts(ref.domain, self.options.config_dir)
        self._conns: dict[str, Connection] = {}
        self._lock = allocate_lock()
        self._manifests: dict[Digest, bytes] = {}

    # ImageSource ---------------------------------------------------------
    @property
    def name(self) -> str:
        return f"registry {self.ref.domain}"

    @property
    def image_name(self) -> Reference | None:
        return self.ref

    def resolve(self) -> Descriptor:
        what = f"resolve {self.ref}"
        return self._on_endpoints("resolve", what, lambda conn: with_retries(
            self.options.retry, what, lambda: self._resolve_on(conn)))

    def fetch(self, desc: Descriptor, offset: int = 0) -> _Fetch:
        cached = self._manifests.get(desc.digest)
        if cached is not None:
            return _Fetch(iter((cached[offset:],)))
        return _Fetch(self._stream(desc, offset))

    def close(self) -> None:
        with self._lock:
            for conn in self._conns.values():
                conn.close()
            self._conns.clear()

    def __enter__(self) -> RegistrySource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # endpoints -------------------------------------------------------------
    def _on_endpoints(self, capability: str, what: str, fn: Callable[[Connection], _T]) -> _T:
        candidates = [ep for ep in self.endpoints if capability in ep.capabilities]
        if not candidates:
            raise FailedPrecondition(f"{what}: no endpoint with capability {capability!r}",
                                     hint="check capabilities in hosts.toml")
        last: PyimgError | None = None
        for ep in candidates:
            try:
                return fn(self._connection(ep))
            except PyimgError as exc:
                last = exc
                if ep is not candidates[-1]:
                    _debug.log(__name__, "%s on %s failed (%s); trying next endpoint", what,
                               ep.url, exc)
        assert last is not None
        raise last

    def _connection(self, ep: Endpoint) -> Connection:
        with self._lock:
            conn = self._conns.get(ep.url)
            if conn is None:
                # A mirror is its own registry as far as credentials go.
                host = ep.host if ep.is_mirror else self.ref.domain
                config = self.options.docker_config
                cred = config.lookup(host) if config is not None else None
                try:
                    conn = connect(ep, host, cred, timeout=self.options.retry.timeout)
                except http.TransportError as exc:
                    raise translate(exc, f"connect to {ep.host}") from exc
                self._conns[ep.url] = conn
            return conn

    def _url(self, conn: Connection, kind: str, obj: str) -> str:
        url = f"{conn.base}/{self.ref.path}/{kind}/{obj}"
        if conn.endpoint.is_mirror:
            url += f"?ns={self.ref.domain}"  # containerd tells mirrors the upstream this way
        return url

    # resolve -----------------------------------------------------------------
    def _resolve_on(self, conn: Connection) -> Descriptor:
        url = self._url(conn, "manifests", self.ref.object)
        what = f"resolve {self.ref}"
        with conn.request("HEAD", url, {"Accept": _ACCEPT}) as resp:
            if resp.status in (401, 403, 404, 429) or resp.status >= 500:
                check_response(resp, what, host=self.ref.domain)
            desc = self._desc_from_head(resp) if resp.status == 200 else None
        if desc is not None:
            return desc
        return self._resolve_get(conn, url, what)

    def _desc_from_head(self, resp: http.Response) -> Descriptor | None:
        media_type = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
        if media_type in oci.SCHEMA1_TYPES:
            oci.detect_media_type(b'{"schemaVersion":1}', media_type)  # raises the message
        header = resp.headers.get("Docker-Content-Digest")
        length = resp.headers.get("Content-Length")
        known = media_type in (*oci.MANIFEST_TYPES, *oci.INDEX_TYPES)
        if not (known and length and length.isdigit() and (header or self.ref.digest)):
            return None
        try:
            claimed = Digest.parse(header) if header else None
        except InvalidArgument:
            return None
        if claimed and self.ref.digest and claimed != self.ref.digest:
            return None  # maybe another algorithm; let GET verify the bytes
        if int(length) > oci.MAX_MANIFEST_SIZE:
            raise InvalidArgument(f"resolve {self.ref}: manifest larger than 4 MiB refused")
        digest = self.ref.digest or claimed
        assert digest is not None
        return Descriptor(media_type, digest, int(length))

    def _resolve_get(self, conn: Connection, url: str, what: str) -> Descriptor:
        with conn.request("GET", url, {"Accept": _ACCEPT}) as resp:
            check_response(resp, what, host=self.ref.domain)
            try:
                body = resp.read(oci.MAX_MANIFEST_SIZE)
            except http.ProtocolError as exc:
                raise InvalidArgument(f"{what}: manifest larger than 4 MiB refused") from exc
            content_type = resp.headers.get("Content-Type")
            header = resp.headers.get("Docker-Content-Digest")
        media_type = oci.detect_media_type(body, content_type)
        digest = self.ref.digest or Digest.of(body)
        _verify_body(body, digest, what)
        if header and not self.ref.digest:
            try:
                claimed = Digest.parse(header)
            except InvalidArgument:
                claimed = digest
            if claimed.algorithm == digest.algorithm and claimed != digest:
                raise RegistryError(f"{what}: Docker-Content-Digest {claimed} does not match"
                                    f" the manifest's digest {digest}")
        self._manifests[digest] = body
        return Descriptor(media_type, digest, len(body))

    # fetch -------------------------------------------------------------------
    def _stream(self, desc: Descriptor, offset: int) -> Generator[Chunk, None, None]:
        """Yield bytes from ``offset``, reconnecting with Range after a broken body."""
        what = f"fetch {desc.digest}"
        pos = offset
        policy = self.options.retry
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        for attempt in range(policy.attempts):
            try:
                resp, skip = self._open(desc, pos)
                with resp:
                    while n := resp.readinto(buf):
                        if skip:  # the server ignored Range: drop what we already have
                            drop = min(skip, n)
                            skip -= drop
                            if drop == n:
                                continue
                            chunk = view[drop:n]
                        else:
                            chunk = view[:n]
                        pos += len(chunk)
                        yield chunk
                if pos >= desc.size:
                    return
                _debug.log(__name__, "%s: body ended at %d of %d; resuming", what, pos, desc.size)
            except http.TransportError as exc:
                if attempt == policy.attempts - 1:
                    raise translate(exc, what) from exc
                _debug.log(__name__, "%s: %s at byte %d; resuming", what, exc, pos)
            time.sleep(policy.delay(attempt))
        raise RegistryError(f"{what}: body ended early {policy.attempts} times at byte {pos}"
                            f" of {desc.size}", retryable=True)

    def _open(self, desc: Descriptor, pos: int) -> tuple[http.Response, int]:
        """The body from ``pos``: (response, bytes to discard when Range was ignored)."""
        kind = "manifests" if desc.media_type in (*oci.MANIFEST_TYPES, *oci.INDEX_TYPES) \
            else "blobs"
        what = f"fetch {desc.digest}"
        headers = {"Accept": _ACCEPT if kind == "manifests" else "*/*"}
        if pos:
            headers["Range"] = f"bytes={pos}-"

        def send(conn: Connection) -> tuple[http.Response, int]:
            resp = conn.request("GET", self._url(conn, kind, str(desc.digest)), headers)
            try:
                check_response(resp, what, kind="blob" if kind == "blobs" else "manifest",
                               host=self.ref.domain)
                return resp, _range_skip(resp, pos, desc)
            except BaseException:
                resp.close()
                raise

        return self._on_endpoints("pull", what, lambda conn: with_retries(
            self.options.retry, what, lambda: send(conn)))


class _Fetch:
    """``with source.fetch(desc) as chunks``: the chunks, closed at the end (what
    ``contextlib.contextmanager`` gave, without importing contextlib)."""

    __slots__ = ("_chunks",)

    def __init__(self, chunks: Iterator[Chunk]) -> None:
        self._chunks = chunks

    def __enter__(self) -> Iterator[Chunk]:
        return self._chunks

    def __exit__(self, *exc: object) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


def _range_skip(resp: http.Response, pos: int, desc: Descriptor) -> int:
    if not pos:
        return 0
    if resp.status == 200:
        return pos  # Range ignored (CDNs do): discard what we already have
    if resp.status == 206:
        start = (resp.headers.get("Content-Range") or "").removeprefix("bytes ").split("-")[0]
        if start != str(pos):
            raise RegistryError(f"fetch {desc.digest}: asked for bytes from {pos}, got"
                                f" Content-Range {resp.headers.get('Content-Range')!r}")
        return 0
    raise RegistryError(f"fetch {desc.digest}: unexpected status {resp.status}")


def _verify_body(body: bytes, digest: Digest, what: str) -> None:
    v = Verifier(digest, None, hasher=hasher(digest.algorithm, len(body)))
    v.update(body)
    try:
        v.verify()
    except PyimgError as exc:
        raise type(exc)(f"{what}: {exc.message}") from None
