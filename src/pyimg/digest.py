"""Content digests (OCI image-spec descriptor.md#digests) and verification."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pyimg.errors import DigestMismatch, InvalidArgument, SizeMismatch

_ALGORITHMS = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"^[a-f0-9]+$")


@dataclass(frozen=True, slots=True, order=True)
class Digest:
    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        algorithm, sep, hexpart = text.partition(":")
        if not sep:
            raise InvalidArgument(f"invalid digest {text!r}: expected ALGORITHM:HEX")
        length = _ALGORITHMS.get(algorithm)
        if length is None:
            raise InvalidArgument(f"invalid digest {text!r}: unsupported algorithm {algorithm!r}")
        if len(hexpart) != length or not _HEX.match(hexpart):
            raise InvalidArgument(
                f"invalid digest {text!r}: expected {length} lowercase hex characters"
            )
        return cls(algorithm, hexpart)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> Any:
        return hashlib.new(self.algorithm)

    @property
    def short(self) -> str:
        return self.hex[:12]

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


class Verifier:
    """Hashes what passes through and checks size and digest at the end.

    Reads are refused beyond ``size`` (a registry sending more than it
    declared is lying, and an unbounded body is a memory and disk DoS).
    """

    def __init__(self, expected: Digest, size: int | None, offset: int = 0) -> None:
        self.expected = expected
        self.size = size
        self.count = offset
        self._hash = expected.hasher()

    def update(self, chunk: bytes | memoryview) -> None:
        self.count += len(chunk)
        if self.size is not None and self.count > self.size:
            raise SizeMismatch(
                f"content {self.expected}: more than the declared {self.size} bytes"
            )
        self._hash.update(chunk)

    def digest(self) -> Digest:
        return Digest(self.expected.algorithm, self._hash.hexdigest())

    def verify(self) -> None:
        if self.size is not None and self.count != self.size:
            raise SizeMismatch(
                f"content {self.expected}: size mismatch, got {self.count} bytes,"
                f" expected {self.size}"
            )
        actual = self.digest()
        if actual != self.expected:
            raise DigestMismatch(f"content {self.expected}: digest mismatch, got {actual}")


def verify_bytes(data: bytes, expected: Digest, size: int | None = None) -> None:
    v = Verifier(expected, size)
    v.update(data)
    v.verify()


def verified_stream(
    chunks: Iterable[bytes], expected: Digest, size: int | None
) -> Iterator[bytes]:
    """Yield chunks, raising before the end if content does not match."""
    v = Verifier(expected, size)
    for chunk in chunks:
        v.update(chunk)
        yield chunk
    v.verify()
