"""A layer as a forward stream of tar entries, without extracting anything.

The blob (from the store or straight from a source) is decompressed by
:func:`pyimg.archive.compression.open_layer` (bounded reads, diffID hash,
bomb limit) and parsed by tarfile on the fast plumbing of
:mod:`pyimg.archive.tarstream`.  Iterating yields :class:`TarEntry` values
with cleaned root-relative paths and whiteouts recognised; file data is
skipped unless :meth:`LayerTar.data` is called for the current entry.
Memory stays bounded: tarfile's member list is cleared on every step.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pyimg import oci
from pyimg.archive import Limits
from pyimg.archive.compression import LayerReader, open_layer
from pyimg.archive.securepath import clean, split
from pyimg.archive.tarstream import TarStream, open_tar
from pyimg.digest import Digest
from pyimg.errors import IntegrityError, UnpackError, UnsafeEntryError
from pyimg.inspect.content import ContentReader
from pyimg.oci import Descriptor

FILE, DIR, SYMLINK, HARDLINK, WHITEOUT, OPAQUE, OTHER = (
    "file", "dir", "symlink", "hardlink", "whiteout", "opaque", "other")
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
_REG = frozenset((tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE, tarfile.GNUTYPE_SPARSE))
CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class TarEntry:
    """One entry of a layer.

    ``path`` is root-relative and cleaned (``""`` is the root).  ``target``:
    for a symlink its link text as written; for a hardlink the cleaned
    root-relative path it links to; for a whiteout the path it deletes; for
    an opaque marker the directory whose lower content it hides.
    """

    path: str
    kind: str
    info: tarfile.TarInfo
    target: str = ""

    @property
    def size(self) -> int:
        return self.info.size if self.kind == FILE else 0


def _join(head: str, base: str) -> str:
    return f"{head}/{base}" if head else base


def classify(m: tarfile.TarInfo) -> TarEntry | None:
    """The entry for a tar member; None for aufs metadata (``.wh..wh.*`` other than opq)."""
    path = clean(m.name, m.name)
    head, base = split(path)
    if base.startswith(WHITEOUT_PREFIX):
        if base == OPAQUE_MARKER:
            return TarEntry(path, OPAQUE, m, head)
        if base.startswith(".wh..wh."):
            return None
        name = base[len(WHITEOUT_PREFIX):]
        if name in ("", ".", "..") or "\0" in name:
            raise UnsafeEntryError(m.name, f"invalid whiteout name {name!r}")
        return TarEntry(path, WHITEOUT, m, _join(head, name))
    t = m.type
    if t in _REG:
        return TarEntry(path, FILE, m)
    if t == tarfile.DIRTYPE:
        return TarEntry(path, DIR, m)
    if t == tarfile.SYMTYPE:
        return TarEntry(path, SYMLINK, m, m.linkname)
    if t == tarfile.LNKTYPE:
        target = clean(m.linkname, m.name)
        if not target:
            raise UnsafeEntryError(m.name, "hardlink to the root directory")
        return TarEntry(path, HARDLINK, m, target)
    return TarEntry(path, OTHER, m)


class LayerTar:
    """Entries of one layer, read forward once."""

    def __init__(self, reader: LayerReader, label: str, limits: Limits) -> None:
        self._reader = reader
        self._label = label
        self._limits = limits
        try:
            self._tf = open_tar(reader)
        except tarfile.TarError as exc:
            raise UnpackError(f"{label}: not a tar archive: {exc}") from exc
        stream = self._tf.fileobj
        assert isinstance(stream, TarStream)
        self._stream = stream
        self._current: tarfile.TarInfo | None = None
        self._data_read = False
        self.entries = 0

    def __iter__(self) -> Iterator[TarEntry]:
        tf = self._tf
        members: list[tarfile.TarInfo] = tf.members  # type: ignore[attr-defined]
        name = ""
        while True:
            try:
                m = tf.next()
            except tarfile.TarError as exc:
                raise UnpackError(f"{self._label}: malformed tar after {self.entries} entries:"
                                  f" {exc}") from exc
            if m is None:
                if not self._stream.at_clean_end():
                    raise UnpackError(f"{self._label}: malformed or truncated tar header after"
                                      f" entry {name!r}")
                self._current = None
                return
            members.clear()  # stream mode still collects members; keep memory flat
            self.entries += 1
            if self.entries > self._limits.max_entries:
                raise UnpackError(f"{self._label}: more than {self._limits.max_entries} entries")
            if len(m.name) > self._limits.max_path:
                raise UnsafeEntryError(m.name[:80] + "...",
                                       f"path longer than {self._limits.max_path}")
            name = m.name
            self._current, self._data_read = m, False
            entry = classify(m)
            if entry is not None:
                yield entry

    def data(self) -> Iterator[bytes]:
        """The current entry's bytes, in pieces of at most 1 MiB (sparse holes as zeros)."""
        m = self._current
        if m is None or self._data_read:
            raise AssertionError("data() is for the current entry, once")
        self._data_read = True
        if m.sparse is not None:
            yield from self._sparse(m)
            return
        left = m.size
        while left:
            piece = self._read(min(left, CHUNK), m)
            left -= len(piece)
            yield piece

    def _read(self, n: int, m: tarfile.TarInfo) -> bytes:
        data: bytes = self._stream.read(n)
        if not data:
            raise UnpackError(f"{self._label}: truncated layer: data of {m.name!r} ends early")
        return data

    def _sparse(self, m: tarfile.TarInfo) -> Iterator[bytes]:
        pos = 0
        regions: list[tuple[int, int]] = m.sparse  # type: ignore[assignment]
        for offset, numbytes in regions:
            yield from _zeros(offset - pos)
            left = numbytes
            while left:
                piece = self._read(min(left, CHUNK), m)
                left -= len(piece)
                yield piece
            pos = offset + numbytes
        yield from _zeros(m.size - pos)

    def finish(self, expected: Digest | None) -> None:
        """Read to the end (padding is part of the diffID) and check the diffID."""
        self._reader.drain()
        if expected is not None and self._reader.diff_id != expected:
            raise IntegrityError(f"{self._label}: uncompressed content hashes to"
                                 f" {self._reader.diff_id}, the config says {expected}")

    @property
    def uncompressed_size(self) -> int:
        return self._reader.size

    def close(self) -> None:
        self._tf.close()


def _zeros(n: int) -> Iterator[bytes]:
    while n > 0:
        step = min(n, CHUNK)
        yield bytes(step)
        n -= step


@contextmanager
def open_layer_tar(reader: ContentReader, desc: Descriptor, *, label: str | None = None,
                   limits: Limits | None = None) -> Iterator[LayerTar]:
    """Stream the layer ``desc`` from ``reader`` as tar entries."""
    label = label or f"layer {desc.digest}"
    compression = oci.layer_compression(desc.media_type)
    limits = limits or Limits()
    with reader.open_blob(desc) as blob:
        layer: LayerTar | None = None
        try:
            # tarfile reads the first header here: errors can start now
            layer = LayerTar(open_layer(blob, compression, limits, label),  # type: ignore[arg-type]
                             label, limits)
            yield layer
        except UnpackError as exc:
            # the decompressor wraps what its input raised: a digest or size
            # mismatch of the blob is the real story
            error = getattr(blob, "error", None)
            if isinstance(error, IntegrityError):
                raise error from exc
            raise
        finally:
            if layer is not None:
                layer.close()
