"""Linux system calls Python 3.11 lacks, through ctypes: the one place for them.

Every wrapper raises :class:`OSError` with the C ``errno`` and a message that
names the call and the path (``mount(overlay): Invalid argument: '/x'``), so
callers handle ``exc.errno`` exactly as for :mod:`os` functions.

libc is loaded once, with ``use_errno=True`` so that ``ctypes.get_errno()``
reads the errno of *our* call rather than whatever ran last.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mount(2) flags (<linux/mount.h>)
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

# umount2(2) flags
MNT_FORCE = 0x1
MNT_DETACH = 0x2
MNT_EXPIRE = 0x4
UMOUNT_NOFOLLOW = 0x8


def _load_libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                           ctypes.c_ulong, ctypes.c_char_p]
    libc.mount.restype = ctypes.c_int
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    libc.umount2.restype = ctypes.c_int
    libc.syncfs.argtypes = [ctypes.c_int]
    libc.syncfs.restype = ctypes.c_int
    return libc


_libc = _load_libc()


def _fsencode(path: str | os.PathLike[str] | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def _check(result: int, call: str, path: str | os.PathLike[str] | None) -> None:
    if result == 0:
        return
    err = ctypes.get_errno()
    raise OSError(err, f"{call}: {os.strerror(err)}", None if path is None else os.fspath(path))


def mount(source: str | None, target: str | os.PathLike[str], fstype: str | None,
          flags: int = 0, data: str | bytes | None = None) -> None:
    """mount(2).  ``data`` is the filesystem's option string (at most one page)."""
    raw = data.encode() if isinstance(data, str) else data
    rc = _libc.mount(_fsencode(source), _fsencode(target), _fsencode(fstype), flags, raw)
    _check(rc, f"mount({fstype or source or 'none'})", target)


def umount(target: str | os.PathLike[str], flags: int = 0) -> None:
    """umount2(2)."""
    _check(_libc.umount2(_fsencode(target), flags), "umount2", target)


def syncfs(fd: int) -> None:
    """syncfs(2): flush the whole filesystem that ``fd`` lives on."""
    _check(_libc.syncfs(fd), "syncfs", f"/proc/self/fd/{fd}")
