"""Image references, parsed and normalised the way docker does.

``busybox`` → ``docker.io/library/busybox:latest``;
``host:5000/ns/repo:tag@sha256:...`` keeps both tag and digest (the digest
wins when resolving, as in docker).  ``str()`` round-trips the normalised form.
"""

from __future__ import annotations

import re

from pyimg.digest import Digest
from pyimg.errors import InvalidArgument
from pyimg.record import Record

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
DEFAULT_TAG = "latest"

# Patterns, compiled on first use (re caches them): `pyimg run` of an image with
# no registry host in its name never needs _DOMAIN.
_COMPONENT = r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$"
_TAG = r"^[\w][\w.-]{0,127}$"
_DOMAIN = (
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::[0-9]+)?$|^\[[0-9a-fA-F:]+\](?::[0-9]+)?$"
)
_MAX_NAME = 255


class Reference(Record):
    _fields = ("domain", "path", "tag", "digest")
    __slots__ = _fields
    domain: str
    path: str
    tag: str | None
    digest: Digest | None

    def __init__(self, domain: str, path: str, tag: str | None = None,
                 digest: Digest | None = None) -> None:
        self._set(domain, path, tag, digest)

    @property
    def repository(self) -> str:
        """``domain/path`` — the name without tag or digest."""
        return f"{self.domain}/{self.path}"

    @property
    def object(self) -> str:
        """What goes after ``/manifests/`` in the registry API."""
        return str(self.digest) if self.digest else (self.tag or DEFAULT_TAG)

    def with_digest(self, digest: Digest) -> Reference:
        return Reference(self.domain, self.path, self.tag, digest)

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.domain, self.path, tag, None)

    def familiar(self) -> str:
        """The short form docker prints (``busybox:latest``)."""
        name = self.repository
        if self.domain == DEFAULT_DOMAIN:
            name = self.path.removeprefix("library/")
        return name + self._suffix()

    def _suffix(self) -> str:
        out = f":{self.tag}" if self.tag else ""
        return out + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.repository + self._suffix()


def parse(text: str) -> Reference:
    """Parse and normalise; raise InvalidArgument with the reason otherwise."""
    if not text or text != text.strip():
        raise InvalidArgument(f"invalid reference {text!r}: empty or surrounded by spaces")
    name, digest = _split_digest(text)
    name, tag = _split_tag(name)
    domain, path = _split_domain(name)
    if len(path) + len(domain) + 1 > _MAX_NAME:
        raise InvalidArgument(f"invalid reference {text!r}: name longer than {_MAX_NAME}")
    for component in path.split("/"):
        if not re.match(_COMPONENT, component):
            reason = "must be lowercase" if component.lower() != component else "invalid"
            raise InvalidArgument(
                f"invalid reference {text!r}: repository component {component!r} {reason}"
            )
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)


def _split_digest(text: str) -> tuple[str, Digest | None]:
    name, sep, dig = text.partition("@")
    if not sep:
        return text, None
    try:
        return name, Digest.parse(dig)
    except InvalidArgument as exc:
        raise InvalidArgument(f"invalid reference {text!r}: {exc.message}") from exc


def _split_tag(name: str) -> tuple[str, str | None]:
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon <= slash:
        return name, None
    tag = name[colon + 1 :]
    if not re.match(_TAG, tag):
        raise InvalidArgument(f"invalid reference {name!r}: invalid tag {tag!r}")
    return name[:colon], tag


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        if not re.match(_DOMAIN, first):
            raise InvalidArgument(f"invalid reference {name!r}: invalid registry host {first!r}")
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    if not path:
        raise InvalidArgument(f"invalid reference {name!r}: missing repository name")
    return domain, path
