"""URLs split as :func:`urllib.parse.urlsplit` splits them, without importing it.

``import urllib.parse`` costs ~1.5 ms here (it imports ipaddress), a few percent
of a small pull.  The URLs the registry client sends are built by pyimg
(``http(s)://host[:port]/v2/...``): for those, :func:`split` gives urllib's
answer by hand; anything else (credentials in the authority, brackets, a
fragment, unusual characters, a port that is not a number) goes to urllib.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from urllib.parse import SplitResult

_NETLOC = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.:")
_REST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                  "-._~:/?&=%+,;!$'()*")


class Split:
    """The parts of :class:`urllib.parse.SplitResult` the client reads."""

    __slots__ = ("hostname", "netloc", "path", "port", "query", "scheme")

    def __init__(self, scheme: str, netloc: str, path: str, query: str, hostname: str | None,
                 port: int | None) -> None:
        self.scheme = scheme
        self.netloc = netloc
        self.path = path
        self.query = query
        self.hostname = hostname
        self.port = port


def split(url: str) -> Split | SplitResult:
    """``urlsplit(url)``: a :class:`Split` for a plain http(s) URL, else urllib's
    own result (whose ``port`` raises ValueError when it is not a valid port)."""
    for scheme in ("https", "http"):
        if url.startswith(scheme + "://"):
            break
    else:
        return _urllib(url)
    rest = url[len(scheme) + 3:]
    end = len(rest)
    for c in "/?":
        found = rest.find(c)
        if found >= 0:
            end = min(end, found)
    netloc, tail = rest[:end], rest[end:]
    if not _NETLOC.issuperset(netloc) or not _REST.issuperset(tail):
        return _urllib(url)
    host, colon, port_text = netloc.partition(":")
    port = None
    if port_text:
        if not port_text.isdigit() or int(port_text) > 65535:
            return _urllib(url)
        port = int(port_text)
    elif colon and not host:
        return _urllib(url)
    path, _, query = tail.partition("?")
    return Split(scheme, netloc, path, query, host.lower() or None, port)


def _urllib(url: str) -> SplitResult:
    from urllib.parse import urlsplit

    return urlsplit(url)
