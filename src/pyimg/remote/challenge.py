"""``WWW-Authenticate`` challenges (RFC 9110 §11.6.1), parsed without raising.

A registry's answer is untrusted input: garbage yields no challenge, never
an exception.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field

_TCHAR = frozenset("!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits)
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*(?=[ \t]*(?:,|$))")


@dataclass(frozen=True)
class Challenge:
    """One challenge; ``scheme`` and parameter names are lowercased."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)


class _Garbage(Exception):
    """The header does not follow RFC 7235 closely enough to trust any of it."""


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def done(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip(self, chars: str) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1

    def token(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _TCHAR:
            self.pos += 1
        return self.text[start : self.pos]

    def token68(self) -> str | None:
        match = _TOKEN68.match(self.text, self.pos)
        if match is None:
            return None
        self.pos = match.end()
        return match.group()

    def value(self) -> str:
        if self.peek() == '"':
            return self._quoted()
        # Lenient: some registries send realm URLs unquoted, and ':' or '/'
        # are not token characters; a bare value simply runs to the next
        # separator.
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in " \t,":
            self.pos += 1
        return self.text[start : self.pos]

    def _quoted(self) -> str:
        out: list[str] = []
        self.pos += 1
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == '"':
                return "".join(out)
            if char == "\\":
                if self.pos >= len(self.text):
                    break
                char = self.text[self.pos]
                self.pos += 1
            out.append(char)
        raise _Garbage("unterminated quoted string")


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` value into its challenges.

    Several challenges, quoted values with commas and escapes, and any case
    of scheme are understood; a malformed header yields ``[]`` rather than a
    half-understood challenge.
    """
    scanner = _Scanner(header)
    challenges: list[Challenge] = []
    try:
        while True:
            scanner.skip(" \t,")
            if scanner.done():
                return challenges
            scheme = scanner.token()
            if not scheme:
                raise _Garbage(f"expected an auth scheme at {scanner.pos}")
            challenges.append(Challenge(scheme.lower(), _parse_params(scanner)))
    except _Garbage:
        return []


def _parse_params(scanner: _Scanner) -> dict[str, str]:
    params: dict[str, str] = {}
    scanner.skip(" \t")
    # A token68 (``Negotiate abc==``) may only follow the scheme directly.
    if scanner.peek() not in ("", ",") and scanner.token68() is not None:
        return params
    while True:
        mark = scanner.pos
        scanner.skip(" \t,")
        name = scanner.token()
        if not name:
            if scanner.done():
                return params
            raise _Garbage(f"unexpected {scanner.peek()!r} at {scanner.pos}")
        scanner.skip(" \t")
        if scanner.peek() != "=":
            # ``name`` is the scheme of the next challenge.
            scanner.pos = mark
            return params
        scanner.pos += 1
        scanner.skip(" \t")
        params.setdefault(name.lower(), scanner.value())
