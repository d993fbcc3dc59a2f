"""Shared by save and load: layout names, tar output, atomic files and directories."""


from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from pyimg.errors import AlreadyExists, IntegrityError, InvalidArgument
from pyimg.fsutil import atomic_file, fsync_dir

if TYPE_CHECKING:
    pass

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
LAYOUT_VERSION = "1.0.0"
Format = Literal["oci", "docker-archive"]
_CHUNK = 1 << 20
_BLOCK = 512


# Tar output ---------------------------------------------------------------------------


def _header(name: str, size: int, kind: bytes = tarfile.REGTYPE, mode: int = 0o644) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode, info.mtime = size, kind, mode, 0
    info.uname = info.gname = "root"
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


def _copy_fd(src: int, dst: int, size: int) -> None:
    """``size`` bytes from ``src`` (at 0) appended to ``dst``: sendfile, else read/write."""
    offset = 0
    try:
        while offset < size:
            sent = os.sendfile(dst, src, offset, min(size - offset, 1 << 30))
            if sent == 0:
                raise IntegrityError(f"blob shrank while being copied ({offset} of {size})")
            offset += sent
        return
    except OSError:
        if offset:
            raise
    while offset < size:
        chunk = os.pread(src, min(_CHUNK, size - offset), offset)
        if not chunk:
            raise IntegrityError(f"blob shrank while being copied ({offset} of {size})")
        _write_all(dst, chunk)
        offset += len(chunk)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class _TarOut:
    """A plain tar written to a file descriptor, headers by hand so data can be sendfile'd."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.names: set[str] = set()

    def _pad(self, size: int) -> None:
        if size % _BLOCK:
            _write_all(self.fd, b"\0" * (_BLOCK - size % _BLOCK))

    def add_dir(self, name: str) -> None:
        _write_all(self.fd, _header(name, 0, tarfile.DIRTYPE, 0o755))
        self.names.add(name)

    def add_bytes(self, name: str, data: bytes) -> None:
        _write_all(self.fd, _header(name, len(data)) + data)
        self._pad(len(data))
        self.names.add(name)

    def add_blob(self, name: str, path: Path, size: int) -> None:
        src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if os.fstat(src).st_size != size:
                raise IntegrityError(f"{path}: size differs from its descriptor ({size})")
            _write_all(self.fd, _header(name, size))
            _copy_fd(src, self.fd, size)
        finally:
            os.close(src)
        self._pad(size)
        self.names.add(name)

    def add_stream(self, name: str, reader: _Readable) -> int:
        """Stream ``reader`` of unknown length; the header is patched once it is known."""
        start = os.lseek(self.fd, 0, os.SEEK_CUR)
        placeholder = _header(name, 0)
        if len(placeholder) != _BLOCK:
            raise InvalidArgument(f"tar member name {name!r} too long for a one-block header")
        _write_all(self.fd, placeholder)
        size = 0
        while chunk := reader.read(_CHUNK):
            _write_all(self.fd, chunk)
            size += len(chunk)
        # GNU headers stay one block for any size (base-256 above 8 GiB).
        os.pwrite(self.fd, _header(name, size), start)
        self._pad(size)
        self.names.add(name)
        return size

    def finish(self) -> None:
        _write_all(self.fd, b"\0" * (2 * _BLOCK))


def _atomic_file(dest: Path) -> AbstractContextManager[int]:
    return atomic_file(dest, 0o644)


@contextmanager
def _atomic_dir(dest: Path) -> Iterator[Path]:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise AlreadyExists(f"save: {dest} exists", hint="remove it or choose another path")
    tmp = dest.with_name(f"{dest.name}.tmp-{os.urandom(4).hex()}")
    tmp.mkdir(mode=0o755)
    try:
        yield tmp
        for sub in (tmp / "blobs" / "sha256", tmp / "blobs", tmp):
            with contextlib.suppress(OSError):
                fsync_dir(sub)
        if dest.is_dir():
            dest.rmdir()  # empty, checked above
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    with contextlib.suppress(OSError):
        fsync_dir(dest.parent)


