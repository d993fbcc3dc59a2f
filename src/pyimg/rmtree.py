"""``shutil.rmtree`` for the `pyimg run` path, without importing shutil.

shutil loads zlib, bz2 and lzma for its archive functions: ~2 ms here, on
every container removal.  :func:`rmtree` walks the tree through directory
fds opened with ``O_NOFOLLOW`` (so a symlink swapped in is removed, never
followed, as in shutil's own fd-based walk) and leaves anything unusual --
an error, a file it may not remove -- to ``shutil.rmtree``, which then
decides (and raises) exactly as before.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyimg.fsutil import StrPath

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def rmtree(path: StrPath, ignore_errors: bool = False) -> None:
    """Remove the directory ``path`` and everything in it (``shutil.rmtree``)."""
    try:
        fd: int | None = os.open(path, _DIR_FLAGS)
    except FileNotFoundError:
        if ignore_errors:
            return
        raise
    except OSError:  # a symlink, a file: shutil says what is wrong
        fd = None
    if fd is not None:
        try:
            try:
                _empty(fd)
            finally:
                os.close(fd)
            os.rmdir(path)
            return
        except OSError:
            pass
    import shutil  # anything unusual: shutil decides (and raises) as it always did

    shutil.rmtree(path, ignore_errors=ignore_errors)


def _empty(dir_fd: int) -> None:
    with os.scandir(dir_fd) as it:
        entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
    for name, is_dir in entries:
        if is_dir:
            fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            try:
                _empty(fd)
            finally:
                os.close(fd)
            os.rmdir(name, dir_fd=dir_fd)
        else:
            os.unlink(name, dir_fd=dir_fd)
