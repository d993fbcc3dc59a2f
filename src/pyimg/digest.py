"""Content digests (OCI image-spec descriptor.md#digests) and verification."""

from __future__ import annotations

import sys

from pyimg.errors import DigestMismatch, InvalidArgument, SizeMismatch
from pyimg.record import Record

TYPE_CHECKING = False  # import-light: `pyimg run` reads digests before it starts anything
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any

_ALGORITHMS = {"sha256": 64, "sha512": 128}
_HEX = frozenset("0123456789abcdef")
#: Up to this size SHA-256 is Python's own (``_sha256``, ~250-350 MB/s here) while
#: OpenSSL is not loaded: OpenSSL's is ~5x faster, but loading it costs ~2 ms, the
#: time ``_sha256`` takes for about 0.6 MB.
SMALL = 512 << 10


def hasher(algorithm: str, size: int | None = None) -> Any:
    """A hash object for ``algorithm``, for about ``size`` bytes (None: unknown).

    OpenSSL's (fastest for layers), except for small SHA-256 content while OpenSSL
    is not loaded yet: importing hashlib loads it (~2.5 ms here, on every `pyimg run`
    and small pull), which only pays off for large blobs.
    """
    if (algorithm == "sha256" and size is not None and size <= SMALL
            and "_hashlib" not in sys.modules):
        try:
            from _sha256 import sha256  # type: ignore[import-not-found]
        except ImportError:  # Python 3.12+: _sha2
            pass
        else:
            return sha256()
    try:
        import _hashlib  # hashlib's OpenSSL half, without the module around it

        return _hashlib.new(algorithm)
    except (ImportError, ValueError):
        import hashlib

        return hashlib.new(algorithm)


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of a few bytes (an ingest's ref), as hex, without loading OpenSSL."""
    h = hasher("sha256", len(data))
    h.update(data)
    return str(h.hexdigest())


class Digest(Record):
    """``algorithm:hex``, validated by :meth:`parse`; ordered like its text."""

    _fields = ("algorithm", "hex")
    __slots__ = _fields
    algorithm: str
    hex: str

    def __init__(self, algorithm: str, hex: str) -> None:
        self._set(algorithm, hex)

    def __lt__(self, other: Digest) -> bool:
        if type(other) is not Digest:
            return NotImplemented
        return self._values() < other._values()

    def __le__(self, other: Digest) -> bool:
        if type(other) is not Digest:
            return NotImplemented
        return self._values() <= other._values()

    def __gt__(self, other: Digest) -> bool:
        if type(other) is not Digest:
            return NotImplemented
        return self._values() > other._values()

    def __ge__(self, other: Digest) -> bool:
        if type(other) is not Digest:
            return NotImplemented
        return self._values() >= other._values()

    @classmethod
    def parse(cls, text: str) -> Digest:
        algorithm, sep, hexpart = text.partition(":")
        if not sep:
            raise InvalidArgument(f"invalid digest {text!r}: expected ALGORITHM:HEX")
        length = _ALGORITHMS.get(algorithm)
        if length is None:
            raise InvalidArgument(f"invalid digest {text!r}: unsupported algorithm {algorithm!r}")
        if len(hexpart) != length or not _HEX.issuperset(hexpart):
            raise InvalidArgument(
                f"invalid digest {text!r}: expected {length} lowercase hex characters"
            )
        return cls(algorithm, hexpart)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        h = hasher(algorithm, len(data))
        h.update(data)
        return cls(algorithm, h.hexdigest())

    def hasher(self, size: int | None = None) -> Any:
        """A hash object for this algorithm, for about ``size`` bytes (see :func:`hasher`)."""
        return hasher(self.algorithm, size)

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

    def __init__(self, expected: Digest, size: int | None, offset: int = 0,
                 hasher: Any = None) -> None:
        self.expected = expected
        self.size = size
        self.count = offset
        self._hash = expected.hasher(size) if hasher is None else hasher

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
    """Check a small document held in memory (a manifest, a config)."""
    v = Verifier(expected, size, hasher=hasher(expected.algorithm, len(data)))
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
