"""Image references, parsed and normalised the way docker does.

``busybox`` → ``docker.io/library/busybox:latest``;
``host:5000/ns/repo:tag@sha256:...`` keeps both tag and digest (the digest
wins when resolving, as in docker).  ``str()`` round-trips the normalised form.
"""

from __future__ import annotations

from pyimg.digest import Digest
from pyimg.errors import InvalidArgument
from pyimg.record import Record

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
DEFAULT_TAG = "latest"

# docker's grammar (distribution/reference), as these regular expressions say it;
# matched by hand below: `import re` costs ~2.5 ms here, a few percent of a small pull.
_COMPONENT = r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$"
_TAG = r"^[\w][\w.-]{0,127}$"
_DOMAIN = (
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::[0-9]+)?$|^\[[0-9a-fA-F:]+\](?::[0-9]+)?$"
)
_MAX_NAME = 255
_DIGITS = frozenset("0123456789")
_LOWER_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz") | _DIGITS
_ALNUM = _LOWER_ALNUM | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_HEX_COLON = _DIGITS | frozenset("abcdefABCDEF:")


def _end(text: str) -> str:
    """``text`` as ``$`` sees it: a final newline may follow the match."""
    return text[:-1] if text[-1:] == "\n" else text


def is_component(text: str) -> bool:
    """``re.match(_COMPONENT, text)``: lowercase alphanumeric runs joined by ``.``,
    ``_``, ``__`` or dashes."""
    text = _end(text)
    i, n = 0, len(text)
    while True:
        start = i
        while i < n and text[i] in _LOWER_ALNUM:
            i += 1
        if i == start:
            return False
        if i == n:
            return True
        start = i
        while i < n and text[i] not in _LOWER_ALNUM:
            i += 1
        sep = text[start:i]
        if sep not in (".", "_", "__") and sep.strip("-"):
            return False


def is_tag(text: str) -> bool:
    """``re.match(_TAG, text)``: a word character, then up to 127 word characters,
    dots and dashes (``\\w`` is ``str.isalnum()`` or ``_``, as ``re`` has it)."""
    text = _end(text)
    if not 0 < len(text) <= 128 or not (text[0].isalnum() or text[0] == "_"):
        return False
    return all(c.isalnum() or c in "_.-" for c in text[1:])


def is_domain(text: str) -> bool:
    """``re.match(_DOMAIN, text)``: DNS labels or a bracketed IPv6 address, and a port."""
    text = _end(text)
    if text[:1] == "[":
        inner, bracket, port = text[1:].partition("]")
        if not bracket or not inner or not _HEX_COLON.issuperset(inner):
            return False
    else:
        host, colon, port = text.partition(":")
        for label in host.split("."):
            if not label or label[0] not in _ALNUM or label[-1] not in _ALNUM or not (
                    _ALNUM | {"-"}).issuperset(label):
                return False
        port = colon + port
    return not port or (port[0] == ":" and len(port) > 1 and _DIGITS.issuperset(port[1:]))


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
        if not is_component(component):
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
    if not is_tag(tag):
        raise InvalidArgument(f"invalid reference {name!r}: invalid tag {tag!r}")
    return name[:colon], tag


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        if not is_domain(first):
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
