"""Crash-safe file writes: temp file + fsync + rename + fsync of the directory.

Readers see the old file or the new one, never half of either, and after
a power cut the rename is durable once this returns.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # no typing, pathlib or contextlib: the fast paths write state
if TYPE_CHECKING:
    from types import TracebackType

    StrPath = str | os.PathLike[str]


def fsync_dir(path: StrPath) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class atomic_file:  # used as a function: ``with atomic_file(path) as fd``
    """An fd to write ``path``'s new content into; it replaces ``path`` on success.

    ``durable=False`` skips the fsyncs, for state that a reboot discards
    anyway (runtime state under /run, like runc's state.json): the rename
    still makes the replacement atomic for readers.
    """

    __slots__ = ("_durable", "_fd", "_mode", "_path", "_tmp")

    def __init__(self, path: StrPath, mode: int = 0o644, *, durable: bool = True) -> None:
        self._path, self._mode, self._durable = path, mode, durable
        self._tmp = ""
        self._fd = -1

    def __enter__(self) -> int:
        parent, name = os.path.split(os.fspath(self._path))
        self._tmp = os.path.join(parent, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                           | os.O_CLOEXEC, self._mode)
        try:
            os.fchmod(self._fd, self._mode)  # whatever the umask: secrets stay 0600
        except BaseException:
            self._finish(failed=True)
            raise
        return self._fd

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._finish(failed=et is not None)  # an exception of the block goes on

    def _finish(self, *, failed: bool) -> None:
        try:
            try:
                if self._durable and not failed:
                    os.fsync(self._fd)
            finally:
                os.close(self._fd)
            if failed:
                unlink_quietly(self._tmp)
                return
            os.rename(self._tmp, self._path)
        except BaseException:
            unlink_quietly(self._tmp)
            raise
        if self._durable:
            try:  # noqa: SIM105 - contextlib costs ~2 ms to import here
                fsync_dir(os.path.dirname(os.fspath(self._path)) or ".")
            except OSError:
                pass  # some filesystems refuse to fsync a directory


def unlink_quietly(path: StrPath) -> None:
    """``os.unlink(path)``, whatever becomes of it (``contextlib.suppress(OSError)``)."""
    try:  # noqa: SIM105 - contextlib costs ~2 ms to import here
        os.unlink(path)
    except OSError:
        pass


def atomic_write(path: StrPath, data: bytes, mode: int = 0o644, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path, mode, durable=durable) as fd:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
