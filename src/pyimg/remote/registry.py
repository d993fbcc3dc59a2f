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

import logging
import ssl
import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from pyimg import oci
from pyimg.digest import Digest, Verifier
from pyimg.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PyimgError,
    RegistryError,
)
from pyimg.oci import Descriptor
from pyimg.reference import Reference
from pyimg.remote.auth import RegistryAuth
from pyimg.remote.credentials import Credential, DockerConfig
from pyimg.remote.hosts import Endpoint, build_ssl_context, resolve_hosts
from pyimg.remote.transport import (
    RetryPolicy,
    check_response,
    translate,
    with_retries,
)

log = logging.getLogger("pyimg.remote")

CHUNK = 1 << 20
_ACCEPT = ", ".join(oci.ACCEPT_MANIFESTS)
_MAX_REDIRECTS = 5
_USER_AGENT = "pyimg/0.1"


@dataclass(frozen=True)
class RegistryOptions:
    config_dir: Path | None = None  # holds certs.d/<host>/hosts.toml
    docker_config: DockerConfig | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_connections: int = 8


class RegistrySource:
    """ImageSource over the distribution API (thread-safe for concurrent fetches)."""

    def __init__(self, ref: Reference, options: RegistryOptions | None = None) -> None:
        self.ref = ref
        self.options = options or RegistryOptions()
        self.endpoints = resolve_hosts(ref.domain, self.options.config_dir)
        self._clients: dict[str, Connection] = {}
        self._lock = threading.Lock()
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
        return self._on_endpoints("resolve", what,
                                  lambda ep: with_retries(self.options.retry, what,
                                                          lambda: self._resolve_on(ep)))

    @contextmanager
    def fetch(self, desc: Descriptor, offset: int = 0) -> Iterator[Iterator[bytes]]:
        cached = self._manifests.get(desc.digest)
        if cached is not None:
            yield iter((cached[offset:],))
            return
        gen = self._stream(desc, offset)
        try:
            yield gen
        finally:
            gen.close()

    def close(self) -> None:
        with self._lock:
            for conn in self._clients.values():
                conn.close()
            self._clients.clear()

    def __enter__(self) -> RegistrySource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # endpoints -------------------------------------------------------------
    def _on_endpoints(self, capability: str, what: str,
                      fn: Callable[[Endpoint], Descriptor]) -> Descriptor:
        candidates = [ep for ep in self.endpoints if capability in ep.capabilities]
        if not candidates:
            raise FailedPrecondition(f"{what}: no endpoint with capability {capability!r}",
                                     hint="check capabilities in hosts.toml")
        last: PyimgError | None = None
        for ep in candidates:
            try:
                return fn(ep)
            except PyimgError as exc:
                last = exc
                if ep is not candidates[-1]:
                    log.debug("%s on %s failed (%s); trying next endpoint", what, ep.url, exc)
        assert last is not None
        raise last

    def _client(self, ep: Endpoint) -> tuple[httpx.Client, str]:
        """(client, API base URL) for an endpoint, created once."""
        with self._lock:
            if ep.url not in self._clients:
                # A mirror is its own registry as far as credentials go.
                host = _hostport(ep.url) if ep.is_mirror else self.ref.domain
                config = self.options.docker_config
                cred = config.lookup(host) if config is not None else None
                self._clients[ep.url] = connect(ep, host, cred, self.options)
            conn = self._clients[ep.url]
            return conn.client, conn.base

    def _url(self, ep: Endpoint, kind: str, obj: str) -> tuple[httpx.Client, str]:
        client, base = self._client(ep)
        url = f"{base}/{self.ref.path}/{kind}/{obj}"
        if ep.is_mirror:
            url += f"?ns={self.ref.domain}"  # containerd tells mirrors the upstream this way
        return client, url

    # resolve -----------------------------------------------------------------
    def _resolve_on(self, ep: Endpoint) -> Descriptor:
        client, url = self._url(ep, "manifests", self.ref.object)
        what = f"resolve {self.ref}"
        resp = client.head(url, headers={"Accept": _ACCEPT}, follow_redirects=True)
        if resp.status_code == 404 or resp.status_code >= 500 or resp.status_code in (401,
                                                                                       403,
                                                                                       429):
            check_response(resp, what, host=self.ref.domain)
        if resp.status_code == 200:
            desc = self._desc_from_head(resp)
            if desc is not None:
                return desc
        return self._resolve_get(client, url, what)

    def _desc_from_head(self, resp: httpx.Response) -> Descriptor | None:
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        if media_type in oci.SCHEMA1_TYPES:
            oci.detect_media_type(b'{"schemaVersion":1}', media_type)  # raises the message
        header = resp.headers.get("Docker-Content-Digest")
        length = resp.headers.get("Content-Length")
        known = media_type in (*oci.MANIFEST_TYPES, *oci.INDEX_TYPES)
        if not (known and length and length.isdigit() and (header or self.ref.digest)):
            return None
        digest = self.ref.digest or Digest.parse(header or "")
        if header and self.ref.digest and Digest.parse(header) != self.ref.digest:
            return None  # maybe another algorithm; let GET verify the bytes
        if int(length) > oci.MAX_MANIFEST_SIZE:
            raise InvalidArgument(f"resolve {self.ref}: manifest larger than 4 MiB refused")
        return Descriptor(media_type, digest, int(length))

    def _resolve_get(self, client: httpx.Client, url: str, what: str) -> Descriptor:
        with client.stream("GET", url, headers={"Accept": _ACCEPT}, follow_redirects=True) as r:
            check_response(r, what, host=self.ref.domain)
            body = _read_bounded(r, oci.MAX_MANIFEST_SIZE, what)
            content_type = r.headers.get("Content-Type")
            header = r.headers.get("Docker-Content-Digest")
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
    def _stream(self, desc: Descriptor, offset: int) -> Generator[bytes, None, None]:
        """Yield bytes from ``offset``, reconnecting with Range after a broken body."""
        what = f"fetch {desc.digest}"
        pos = offset
        policy = self.options.retry
        for attempt in range(policy.attempts):
            try:
                with self._open(desc, pos) as (resp, skip):
                    # No chunk size: httpx would buffer up to it and drop the
                    # buffered bytes when the connection breaks, so a resume
                    # would restart at a chunk boundary instead of where it broke.
                    for chunk in _skipping(resp.iter_raw(), skip):
                        pos += len(chunk)
                        yield chunk
                if pos >= desc.size:
                    return
                log.debug("%s: body ended at %d of %d; resuming", what, pos, desc.size)
            except httpx.TransportError as exc:
                if attempt == policy.attempts - 1:
                    raise translate(exc, what) from exc
                log.debug("%s: %s at byte %d; resuming", what, exc, pos)
            time.sleep(policy.delay(attempt))
        raise RegistryError(f"{what}: body ended early {policy.attempts} times at byte {pos}"
                            f" of {desc.size}", retryable=True)

    @contextmanager
    def _open(self, desc: Descriptor, pos: int) -> Iterator[tuple[httpx.Response, int]]:
        """Open the body at ``pos``: (response, bytes to discard when Range was ignored)."""
        kind = "manifests" if desc.media_type in (*oci.MANIFEST_TYPES, *oci.INDEX_TYPES) \
            else "blobs"
        what = f"fetch {desc.digest}"
        opened: list[tuple[httpx.Response, int]] = []

        def attempt(ep: Endpoint) -> Descriptor:
            client, url = self._url(ep, kind, str(desc.digest))
            opened.append(with_retries(self.options.retry, what,
                                       lambda: self._send(client, url, desc, pos, kind)))
            return desc

        self._on_endpoints("pull", what, attempt)
        resp, skip = opened[-1]
        try:
            yield resp, skip
        finally:
            resp.close()

    def _send(self, client: httpx.Client, url: str, desc: Descriptor, pos: int,
              kind: str) -> tuple[httpx.Response, int]:
        headers = {"Accept": _ACCEPT if kind == "manifests" else "*/*"}
        if pos:
            headers["Range"] = f"bytes={pos}-"
        origin = _hostport(url)
        for _ in range(_MAX_REDIRECTS + 1):
            # Never send the registry's credentials to another host (blob storage).
            auth = httpx.USE_CLIENT_DEFAULT if _hostport(url) == origin else None
            req = client.build_request("GET", url, headers=headers)
            resp = client.send(req, stream=True, auth=auth,
                               follow_redirects=False)
            if resp.is_redirect and "Location" in resp.headers:
                url = urljoin(url, resp.headers["Location"])
                resp.close()
                continue
            try:
                check_response(resp, f"fetch {desc.digest}", kind="blob" if kind == "blobs"
                               else "manifest", host=self.ref.domain)
                return resp, _range_skip(resp, pos, desc)
            except BaseException:
                resp.close()
                raise
        raise RegistryError(f"fetch {desc.digest}: more than {_MAX_REDIRECTS} redirects")


@dataclass
class Connection:
    """Clients for one endpoint: the API client and the one fetching tokens."""

    client: httpx.Client
    token_client: httpx.Client
    base: str  # API base URL, ``.../v2`` unless override_path

    def close(self) -> None:
        self.client.close()
        self.token_client.close()


def connect(ep: Endpoint, host: str, cred: Credential | None,
            options: RegistryOptions) -> Connection:
    """Clients for ``ep``; a loopback endpoint without TLS is detected here, once."""
    verify: ssl.SSLContext | bool = build_ssl_context(ep)
    limits = httpx.Limits(max_connections=options.max_connections,
                          max_keepalive_connections=options.max_connections)
    timeout = httpx.Timeout(options.retry.timeout)
    headers = {"User-Agent": _USER_AGENT}
    token_client = httpx.Client(verify=verify, timeout=timeout, trust_env=False, headers=headers)
    auth = RegistryAuth(host, cred, token_client=token_client,
                        endpoint_hosts=[_hostport(ep.url)])
    client = httpx.Client(verify=verify, timeout=timeout, limits=limits, auth=auth,
                          headers=headers, trust_env=False)
    base = ep.api_base
    if ep.allow_http_fallback and base.startswith("https://") and _speaks_plain_http(client,
                                                                                     ep.url):
        base = "http://" + base.removeprefix("https://")
    return Connection(client, token_client, base)


def _range_skip(resp: httpx.Response, pos: int, desc: Descriptor) -> int:
    if not pos:
        return 0
    if resp.status_code == 200:
        return pos  # Range ignored (CDNs do): discard what we already have
    if resp.status_code == 206:
        start = resp.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
        if start != str(pos):
            raise RegistryError(f"fetch {desc.digest}: asked for bytes from {pos}, got"
                                f" Content-Range {resp.headers.get('Content-Range')!r}")
        return 0
    raise RegistryError(f"fetch {desc.digest}: unexpected status {resp.status_code}")


def _skipping(chunks: Iterator[bytes], skip: int) -> Iterator[bytes]:
    for chunk in chunks:
        if skip:
            if len(chunk) <= skip:
                skip -= len(chunk)
                continue
            chunk, skip = chunk[skip:], 0
        yield chunk


def _read_bounded(resp: httpx.Response, limit: int, what: str) -> bytes:
    buf = bytearray()
    for chunk in resp.iter_raw():
        buf += chunk
        if len(buf) > limit:
            raise InvalidArgument(f"{what}: manifest larger than {limit // (1 << 20)} MiB refused")
    return bytes(buf)


def _verify_body(body: bytes, digest: Digest, what: str) -> None:
    v = Verifier(digest, None)
    v.update(body)
    try:
        v.verify()
    except PyimgError as exc:
        raise type(exc)(f"{what}: {exc.message}") from None


def _hostport(url: str) -> str:
    return urlsplit(url).netloc


def _speaks_plain_http(client: httpx.Client, https_url: str) -> bool:
    """Loopback registries may be plain HTTP (docker's insecure default): probe once."""
    try:
        client.get(https_url + "/v2/", auth=None, timeout=5.0).close()
        return False
    except httpx.ConnectError as exc:
        text = str(exc)
        if "CERTIFICATE" in text.upper():
            return False  # it speaks TLS; the certificate is the problem, say so later
        return "SSL" in text.upper() or "TLS" in text.upper() or "EOF" in text.upper()
    except NotFound:
        return False
