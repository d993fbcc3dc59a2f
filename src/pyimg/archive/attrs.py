"""Entry metadata: times in nanoseconds, PAX xattrs, and their application.

Order matters and is fixed here: data, then owner (chown clears setuid/setgid
and security.capability), then mode, then xattrs, then times.
"""

from __future__ import annotations

import errno
import os
import tarfile
from collections.abc import Callable

_XATTR_PREFIX = "SCHILY.xattr."
#: Never applied from a layer: a layer must not forge overlayfs metadata
#: (opaque dirs, redirects, metacopy) - whiteouts are expressed as .wh. entries.
FORBIDDEN_XATTRS = ("trusted.overlay.", "user.overlay.")
_UNSUPPORTED = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM)
_NS = 1_000_000_000

Verbose = Callable[[str], None] | None


def pax_ns(text: str) -> int:
    """A PAX decimal time (``"1700000000.123456789"``, may be negative) in ns."""
    neg = text.startswith("-")
    sec, _, frac = text.lstrip("-").partition(".")
    ns = int(sec or "0") * _NS + (int((frac + "000000000")[:9]) if frac else 0)
    return -ns if neg else ns


def times_ns(m: tarfile.TarInfo) -> tuple[int, int]:
    """(atime, mtime) of a member; PAX times keep their nanoseconds."""
    pax = m.pax_headers
    if pax:
        mt = pax.get("mtime")
        mtime = pax_ns(mt) if mt is not None else int(m.mtime) * _NS
        at = pax.get("atime")
        return (pax_ns(at) if at is not None else mtime), mtime
    mtime = int(m.mtime) * _NS
    return mtime, mtime


def xattrs(m: tarfile.TarInfo, verbose: Verbose) -> list[tuple[str, bytes]]:
    """``SCHILY.xattr.*`` records of a member, minus the forbidden ones.

    tarfile decodes PAX values as UTF-8 with surrogateescape when they are
    not valid UTF-8, so encoding back the same way restores the raw bytes
    (binary values such as ``security.capability``).
    """
    out = []
    for key, value in m.pax_headers.items():
        if not key.startswith(_XATTR_PREFIX):
            continue
        name = key[len(_XATTR_PREFIX):]
        if name.startswith(FORBIDDEN_XATTRS):
            if verbose is not None:
                verbose(f"{m.name}: xattr {name} not applied (overlay metadata from a layer)")
            continue
        out.append((name, value.encode("utf-8", "surrogateescape")))
    return out


def set_xattrs(target: int | str, attrs: list[tuple[str, bytes]], member: str,
               verbose: Verbose) -> None:
    """Set xattrs on an fd, or on a path without following a final symlink."""
    for name, value in attrs:
        try:
            if isinstance(target, int):
                os.setxattr(target, name, value)
            else:
                os.setxattr(target, name, value, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                raise
            if verbose is not None:
                verbose(f"{member}: xattr {name} not supported here ({exc.strerror}), skipped")


def apply_fd(fd: int, m: tarfile.TarInfo, chown: bool, verbose: Verbose,
             times: bool = True) -> None:
    """Owner, mode, xattrs and (optionally) times on an open file or directory."""
    if chown:
        os.fchown(fd, m.uid, m.gid)
    os.fchmod(fd, m.mode & 0o7777)
    if m.pax_headers:
        attrs = xattrs(m, verbose)
        if attrs:
            set_xattrs(fd, attrs, m.name, verbose)
    if times:
        os.utime(fd, ns=times_ns(m))


def apply_name(parent_fd: int, name: str, m: tarfile.TarInfo, chown: bool,
               verbose: Verbose, chmod: bool = True) -> None:
    """The same for an entry without an fd (symlink, FIFO), never following it."""
    if chown:
        os.chown(name, m.uid, m.gid, dir_fd=parent_fd, follow_symlinks=False)
    if chmod:
        os.chmod(name, m.mode & 0o7777, dir_fd=parent_fd, follow_symlinks=False)
    if m.pax_headers:
        attrs = xattrs(m, verbose)
        if attrs:
            set_xattrs(f"/proc/self/fd/{parent_fd}/{name}", attrs, m.name, verbose)
    os.utime(name, ns=times_ns(m), dir_fd=parent_fd, follow_symlinks=False)
