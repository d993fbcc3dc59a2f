"""pyimg.remote.urls.split gives urllib.parse.urlsplit's answer (without importing it)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from pyimg.remote.urls import split

URLS = [
    "http://127.0.0.1:5000/v2/", "https://registry-1.docker.io/v2/library/busybox/manifests/x",
    "http://h/v2/a/blobs/sha256:abc?ns=docker.io", "http://H.Example:80", "http://h:",
    "http://h:65535/", "http://h:65536/", "http://h:x/", "http://h:1:2/", "http://:80/",
    "http:///p", "http://u:p@h/", "http://[::1]:5000/v2/", "http://h/p#frag", "http://h/p?q#f",
    "HTTP://h/", "ftp://h/", "h/p", "http://h/p q", "http://h/\u00e9", "http://h\u00e9/",
    "https://h/a?b?c", "https://h?x", "http://h/%41", " http://h/", "http://h/\t", "",
    "http://h:\u0663/", "http://h/p;x=1", "http://h.-/p",
]


@pytest.mark.parametrize("url", URLS)
def test_split_is_urlsplit(url: str) -> None:
    got, want = split(url), urlsplit(url)
    for name in ("scheme", "netloc", "path", "query", "hostname"):
        assert getattr(got, name) == getattr(want, name), name
    try:
        port: object = want.port
    except ValueError as exc:
        port = exc
    if isinstance(port, ValueError):
        with pytest.raises(ValueError):
            _ = got.port
    else:
        assert got.port == port
