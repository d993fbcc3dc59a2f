"""A small HTTP/1.1 client for talking to registries.

Why not httpx or http.client: on this project's machines ``import httpx``
costs ~70 ms and ``import http.client`` ~24 ms (the email parser and ssl),
while a whole ``skopeo copy`` of a small image takes ~35 ms.  A registry
client needs little of HTTP: GET/HEAD (and POST for tokens), keep-alive,
Content-Length and chunked bodies, TLS.  Redirects and authentication are
decided by the caller (:mod:`pyimg.remote.registry`), never here, so that
no credential follows a redirect by accident.

Bodies stream with :meth:`Response.readinto` into the caller's buffer:
no per-chunk allocation on the hot path, and memory bounded by the buffer.
Limits protect against hostile servers: status and header lines of at most
64 KiB, at most 200 header lines.

Import-light (a small pull is import-budgeted, see docs/design.md): plain HTTP
uses the ``_socket`` C module (``socket.py`` costs ~3 ms to import here, and
``ssl`` imports it anyway for https), ``_thread`` locks, and
:func:`pyimg.remote.urls.split` instead of urllib.
"""

from __future__ import annotations

import _socket
import io
from _thread import allocate_lock

from pyimg.remote.urls import split as urlsplit

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    import ssl
    from collections.abc import Callable, Iterator, Mapping
    from typing import Any, TypeVar

    _S = TypeVar("_S", bound=_socket.socket)

_MAX_LINE = 64 * 1024
_MAX_HEADERS = 200
_IDLE_PER_ORIGIN = 16
_NO_BODY_STATUS = frozenset({204, 304})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class TransportError(Exception):
    """The conversation failed below HTTP semantics; retrying may help."""


class ConnectError(TransportError):
    pass


class ReadError(TransportError):
    pass


class Timeout(TransportError):
    pass


class ProtocolError(TransportError):
    pass


class Headers:
    """Response headers: case-insensitive, several values per name kept."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items

    def get(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        for k, v in self._items:
            if k.lower() == name:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self._items if k.lower() == name]

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)


class _SocketReader(io.RawIOBase):
    """``socket.SocketIO`` for reading (what ``makefile("rb")`` buffers), for a
    ``_socket`` socket as well as an ``ssl`` one."""

    def __init__(self, sock: _socket.socket | socket.socket) -> None:
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        return self._sock.recv_into(b)


class _Conn:
    def __init__(self, sock: _socket.socket | socket.socket,
                 origin: tuple[str, str, int]) -> None:
        self.sock = sock
        self.reader = io.BufferedReader(_SocketReader(sock), 256 * 1024)
        self.origin = origin
        self.reused = False

    def close(self) -> None:
        try:
            self.reader.close()
        finally:
            self.sock.close()


class Response:
    """Status, headers and a streamed body; ``close()`` recycles the connection."""

    def __init__(self, client: Client, conn: _Conn, method: str, url: str, status: int,
                 reason: str, headers: Headers) -> None:
        self._client = client
        self._conn: _Conn | None = conn
        self.url = url
        self.status = status
        self.reason = reason
        self.headers = headers
        self._chunked = False
        self._remaining: int | None = None  # None: until the connection closes
        self._chunk_left = 0
        self._done = False
        self._keep_alive = (headers.get("connection") or "").lower() != "close"
        if method == "HEAD" or status in _NO_BODY_STATUS or 100 <= status < 200:
            self._remaining = 0
        elif "chunked" in (headers.get("transfer-encoding") or "").lower():
            self._chunked = True
        elif (length := headers.get("content-length")) is not None:
            if not length.strip().isdigit():
                raise ProtocolError(f"{url}: invalid Content-Length {length!r}")
            self._remaining = int(length)
        else:
            self._keep_alive = False
        if self._remaining == 0:
            self._finish()

    @property
    def is_redirect(self) -> bool:
        return self.status in _REDIRECTS and "location" in self.headers

    @property
    def content_length(self) -> int | None:
        return None if self._chunked else self._remaining

    def readinto(self, buf: bytearray | memoryview) -> int:
        """Fill part of ``buf``; 0 at the end of the body."""
        if self._done or self._conn is None:
            return 0
        try:
            if self._chunked:
                return self._read_chunked(memoryview(buf))
            return self._read_plain(memoryview(buf))
        except TimeoutError as exc:
            self._abort()
            raise Timeout(f"{self.url}: read timed out") from exc
        except OSError as exc:
            self._abort()
            raise ReadError(f"{self.url}: {exc}") from exc

    def _read_plain(self, view: memoryview) -> int:
        assert self._conn is not None
        if self._remaining is not None:
            view = view[: self._remaining]
        # readinto1: one recv at most, so bytes that arrived before a reset are
        # returned rather than lost with the exception.
        n = self._conn.reader.readinto1(view)
        if not n:
            if self._remaining:
                self._abort()
                raise ReadError(f"{self.url}: connection closed with {self._remaining} bytes"
                                " of the body missing")
            self._finish()
            return 0
        if self._remaining is not None:
            self._remaining -= n
            if self._remaining == 0:
                self._finish()
        return n

    def _read_chunked(self, view: memoryview) -> int:
        assert self._conn is not None
        reader = self._conn.reader
        if self._chunk_left == 0:
            line = reader.readline(_MAX_LINE)
            size_text = line.split(b";", 1)[0].strip()
            try:
                self._chunk_left = int(size_text, 16)
            except ValueError:
                self._abort()
                raise ProtocolError(f"{self.url}: bad chunk size {line[:40]!r}") from None
            if self._chunk_left == 0:
                while reader.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self._finish()
                return 0
        n = reader.readinto1(view[: self._chunk_left])
        if not n:
            self._abort()
            raise ReadError(f"{self.url}: connection closed inside a chunk")
        self._chunk_left -= n
        if self._chunk_left == 0:
            reader.readline(_MAX_LINE)
        return n

    def read(self, limit: int = 1 << 30) -> bytes:
        """The whole body; ProtocolError beyond ``limit`` bytes."""
        out = bytearray()
        buf = bytearray(min(limit + 1, 256 * 1024))
        while n := self.readinto(buf):
            out += buf[:n]
            if len(out) > limit:
                self.close()
                raise ProtocolError(f"{self.url}: body larger than {limit} bytes")
        return bytes(out)

    def iter_bytes(self, size: int = 256 * 1024) -> Iterator[bytes]:
        buf = bytearray(size)
        while n := self.readinto(buf):
            yield bytes(buf[:n])

    def _finish(self) -> None:
        self._done = True
        conn, self._conn = self._conn, None
        if conn is not None:
            if self._keep_alive:
                self._client._release(conn)
            else:
                conn.close()

    def _abort(self) -> None:
        self._done = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Recycle the connection if the body was read, else drop it."""
        if not self._done:
            self._abort()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Client:
    """Keep-alive connection pool; thread-safe.  ``ssl_context`` is used for https."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, timeout: float = 30.0,
                 user_agent: str = "pyimg") -> None:
        self._ssl = ssl_context
        self.timeout = timeout
        self.user_agent = user_agent
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._lock = allocate_lock()
        self._closed = False

    def request(self, method: str, url: str, headers: Mapping[str, str] | None = None,
                body: bytes | None = None, *, timeout: float | None = None) -> Response:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ProtocolError(f"unsupported URL {url!r}")
        origin = (parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https"
                                                               else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = self._head(method, target, parts.netloc, headers, body)
        for attempt in range(2):
            conn = self._acquire(origin, timeout)
            try:
                conn.sock.sendall(head + (body or b""))
                return self._response(conn, method, url)
            except (OSError, ProtocolError) as exc:
                conn.close()
                # A kept-alive connection the server closed meanwhile: try a new one once.
                if conn.reused and attempt == 0 and not isinstance(exc, TimeoutError):
                    continue
                if isinstance(exc, TimeoutError):
                    raise Timeout(f"{method} {url}: timed out") from exc
                if isinstance(exc, TransportError):
                    raise
                raise ReadError(f"{method} {url}: {exc}") from exc
        raise AssertionError("unreachable")

    def _head(self, method: str, target: str, netloc: str, headers: Mapping[str, str] | None,
              body: bytes | None) -> bytes:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {netloc}",
                 f"User-Agent: {self.user_agent}", "Accept-Encoding: identity"]
        for k, v in (headers or {}).items():
            if "\n" in k or "\n" in v or "\r" in k or "\r" in v:
                raise ProtocolError(f"header {k!r} contains a line break")
            lines.append(f"{k}: {v}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _response(self, conn: _Conn, method: str, url: str) -> Response:
        while True:
            status_line = conn.reader.readline(_MAX_LINE + 1)
            if not status_line:
                raise ProtocolError(f"{method} {url}: connection closed before a response")
            if len(status_line) > _MAX_LINE:
                raise ProtocolError(f"{method} {url}: status line too long")
            parts = status_line.decode("latin-1").rstrip("\r\n").split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
                raise ProtocolError(f"{method} {url}: not an HTTP response: {status_line[:60]!r}")
            headers = self._headers(conn, method, url)
            status = int(parts[1])
            if status == 100:
                continue
            return Response(self, conn, method, url, status, parts[2] if len(parts) > 2 else "",
                            headers)

    def _headers(self, conn: _Conn, method: str, url: str) -> Headers:
        items: list[tuple[str, str]] = []
        while True:
            line = conn.reader.readline(_MAX_LINE + 1)
            if len(line) > _MAX_LINE or len(items) > _MAX_HEADERS:
                raise ProtocolError(f"{method} {url}: response headers too large")
            if line in (b"\r\n", b"\n"):
                return Headers(items)
            if not line:
                raise ProtocolError(f"{method} {url}: connection closed inside the headers")
            name, sep, value = line.decode("latin-1").partition(":")
            if sep:
                items.append((name.strip(), value.strip()))

    def _acquire(self, origin: tuple[str, str, int], timeout: float | None) -> _Conn:
        with self._lock:
            if self._closed:
                raise ConnectError("client is closed")
            idle = self._idle.get(origin)
            if idle:
                conn = idle.pop()
                conn.reused = True
                conn.sock.settimeout(timeout or self.timeout)
                return conn
        return self._connect(origin, timeout or self.timeout)

    def _connect(self, origin: tuple[str, str, int], timeout: float) -> _Conn:
        scheme, host, port = origin
        if scheme == "https":
            import socket  # ssl imports it anyway

            tcp = _tcp(lambda: socket.create_connection((host, port), timeout=timeout),
                       host, port)
            return _Conn(self._tls(tcp, host, port), origin)
        return _Conn(_tcp(lambda: _create_connection(host, port, timeout), host, port), origin)

    def _tls(self, sock: socket.socket, host: str, port: int) -> socket.socket:
        import ssl

        ctx = self._ssl or ssl.create_default_context()
        try:
            return ctx.wrap_socket(sock, server_hostname=host)
        except (ssl.SSLError, ssl.CertificateError, OSError) as exc:
            sock.close()
            raise ConnectError(f"TLS handshake with {host}:{port}: {exc}") from exc

    def _release(self, conn: _Conn) -> None:
        with self._lock:
            idle = self._idle.setdefault(conn.origin, [])
            if not self._closed and len(idle) < _IDLE_PER_ORIGIN:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for c in conns:
            c.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _tcp(connect: Callable[[], _S], host: str, port: int) -> _S:
    """A connected TCP socket (``TCP_NODELAY``), connection errors as ours."""
    try:
        sock = connect()
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
    except TimeoutError as exc:
        raise Timeout(f"connect to {host}:{port}: timed out") from exc
    except OSError as exc:
        raise ConnectError(f"connect to {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def _create_connection(host: str, port: int, timeout: float) -> _socket.socket:
    """``socket.create_connection((host, port), timeout)`` with the ``_socket`` module."""
    exceptions: list[OSError] = []
    for af, socktype, proto, _, sa in _socket.getaddrinfo(_host_arg(host), port, 0,
                                                          _socket.SOCK_STREAM):
        sock = None
        try:
            sock = _socket.socket(af, socktype, proto)
            sock.settimeout(timeout)
            sock.connect(sa)
            return sock
        except OSError as exc:
            exceptions.clear()
            exceptions.append(exc)
            if sock is not None:
                sock.close()
    if exceptions:
        try:
            raise exceptions[0]
        finally:
            exceptions.clear()
    raise OSError("getaddrinfo returns an empty list")


def _host_arg(host: str) -> str | bytes:
    """``host`` as getaddrinfo gets it: an ASCII name as the bytes its "idna" codec
    would give (without importing the codec, stringprep and unicodedata: ~0.8 ms
    here); anything else as is, for the codec to encode or refuse."""
    if not host.isascii():
        return host
    labels = host.split(".")
    if any(not 0 < len(label) < 64 for label in labels[:-1]) or len(labels[-1]) >= 64:
        return host  # the codec's error
    return host.encode("ascii")
