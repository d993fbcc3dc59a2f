"""Streaming layer decompression with bomb limits and the diffID hash.

:func:`open_layer` wraps a compressed blob in a :class:`LayerReader`: a
file-like object whose ``read(n)`` returns at most ``n`` uncompressed bytes,
hashes everything it returns (the diffID is the sha256 of the uncompressed
tar, image-spec config.md#layer-diffids) and refuses to produce more than
``Limits.max_bytes``.  Memory stays bounded: compressed input is read in
:data:`INPUT_CHUNK` pieces and every ``decompress`` call is given a
``max_length``.

gzip uses python-isal when importable (2.3-2.7x stdlib zlib here, FIELD-NOTES
§3.4), then zlib-ng, then the standard library.  Concatenated gzip members
are decoded in sequence and NUL padding after the last member is ignored
(some registries pad blobs; umoci tolerates it too).  zstd uses zstandard's
stream reader across frames.
"""

from __future__ import annotations

import hashlib
import importlib
from types import ModuleType
from typing import Any, BinaryIO, Protocol

from pyimg.archive import Limits
from pyimg.digest import Digest
from pyimg.errors import UnpackError

INPUT_CHUNK = 256 * 1024
_GZIP_WBITS = 31  # gzip header and trailer, 32 KiB window


class _Decoder(Protocol):
    def read(self, n: int) -> bytes: ...


def _gzip_module() -> ModuleType:
    """The fastest importable zlib-compatible module: isal, zlib-ng, zlib."""
    for name in ("isal.isal_zlib", "zlib_ng.zlib_ng", "zlib"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise AssertionError("zlib is always importable")  # pragma: no cover


GZIP_BACKEND: ModuleType = _gzip_module()


class _GzipDecoder:
    """Multi-member gzip with trailing NUL padding tolerated."""

    def __init__(self, blob: BinaryIO, zmod: ModuleType) -> None:
        self._blob = blob
        self._zmod = zmod
        self._d: Any = zmod.decompressobj(_GZIP_WBITS)
        self._in = b""

    def read(self, n: int) -> bytes:
        while True:
            if self._d is None and not self._next_member():
                return b""
            out: bytes = self._d.decompress(self._in, n)
            if self._d.eof:
                self._in = self._d.unused_data
                self._d = None
            else:
                self._in = self._d.unconsumed_tail
            if out:
                return out
            if self._d is not None and not self._in:
                self._in = self._blob.read(INPUT_CHUNK)
                if not self._in:
                    raise UnpackError("truncated gzip stream: unexpected end of compressed data")

    def _next_member(self) -> bool:
        """Skip NUL padding; start another member if more data follows."""
        while True:
            self._in = self._in.lstrip(b"\0")
            if self._in:
                if self._in[0] != 0x1F:
                    raise UnpackError("trailing garbage after the gzip stream")
                self._d = self._zmod.decompressobj(_GZIP_WBITS)
                return True
            self._in = self._blob.read(INPUT_CHUNK)
            if not self._in:
                return False


class _ZstdDecoder:
    def __init__(self, blob: BinaryIO) -> None:
        import zstandard

        self._reader = zstandard.ZstdDecompressor().stream_reader(
            blob, read_size=INPUT_CHUNK, read_across_frames=True, closefd=False
        )

    def read(self, n: int) -> bytes:
        return self._reader.read(n)


class _PlainDecoder:
    def __init__(self, blob: BinaryIO) -> None:
        self._blob = blob

    def read(self, n: int) -> bytes:
        return self._blob.read(n)


def _decoder(blob: BinaryIO, compression: str) -> _Decoder:
    if compression == "gzip":
        return _GzipDecoder(blob, GZIP_BACKEND)
    if compression == "zstd":
        return _ZstdDecoder(blob)
    if compression == "none":
        return _PlainDecoder(blob)
    raise UnpackError(f"unsupported layer compression {compression!r}")


class LayerReader:
    """Uncompressed view of a layer blob; hashes and counts what it returns."""

    def __init__(self, blob: BinaryIO, compression: str, limits: Limits,
                 label: str = "layer") -> None:
        self._dec = _decoder(blob, compression)
        self._max = limits.max_bytes
        self._label = label
        self._hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = INPUT_CHUNK
        try:
            data = self._dec.read(n)
        except UnpackError:
            raise
        except Exception as exc:  # codec errors: zlib.error, isal error, ZstdError
            raise UnpackError(f"{self._label}: cannot decompress: {exc}") from exc
        if data:
            self.size += len(data)
            if self.size > self._max:
                raise UnpackError(
                    f"{self._label} decompresses to more than {self._max} bytes",
                    hint="the layer is corrupt or a decompression bomb",
                )
            self._hash.update(data)
        return data

    def readinto(self, buf: bytearray | memoryview) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Read to EOF, so padding after the tar end is hashed (it is part of the diffID)."""
        while self.read(INPUT_CHUNK):
            pass

    @property
    def diff_id(self) -> Digest:
        return Digest("sha256", self._hash.hexdigest())


def open_layer(blob: BinaryIO, compression: str, limits: Limits | None = None,
               label: str = "layer") -> LayerReader:
    """Return a reader of the uncompressed tar in ``blob`` (``gzip``/``zstd``/``none``)."""
    return LayerReader(blob, compression, limits or Limits(), label)
