"""Crash-safe file writes: temp file + fsync + rename + fsync of the directory.

Readers see the old file or the new one, never half of either, and after
a power cut the rename is durable once this returns.
"""

from __future__ import annotations

import contextlib
import os
from contextlib import contextmanager

TYPE_CHECKING = False  # no typing, no pathlib: the runtime's fast path writes state
if TYPE_CHECKING:
    from collections.abc import Iterator

    StrPath = str | os.PathLike[str]


def fsync_dir(path: StrPath) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: StrPath, mode: int = 0o644, *, durable: bool = True) -> Iterator[int]:
    """An fd to write ``path``'s new content into; it replaces ``path`` on success.

    ``durable=False`` skips the fsyncs, for state that a reboot discards
    anyway (runtime state under /run, like runc's state.json): the rename
    still makes the replacement atomic for readers.
    """
    parent, name = os.path.split(os.fspath(path))
    tmp = os.path.join(parent, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode)
    try:
        try:
            os.fchmod(fd, mode)  # whatever the umask: secrets stay 0600
            yield fd
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        with contextlib.suppress(OSError):  # some filesystems refuse to fsync a directory
            fsync_dir(parent or ".")


def atomic_write(path: StrPath, data: bytes, mode: int = 0o644, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path, mode, durable=durable) as fd:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
