"""Hardlinks: link inside the root, or materialise a target from lower layers.

In DELETE mode the root holds the whole tree, so a hardlink may point at a
file of an earlier layer.  In OVERLAY mode the root is one layer's upperdir:
a target that this layer does not contain is copied (content and metadata)
from the first lower layer that has it (``lowers`` is top-first), or, with no
lowers given, recorded in ``ApplyResult.deferred`` for the caller.  A copy
breaks the link relation, which is what overlayfs copy-up does anyway.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pyimg.archive.attrs import FORBIDDEN_XATTRS
from pyimg.archive.securepath import DirCache, split
from pyimg.errors import UnpackError, UnsafeEntryError

if TYPE_CHECKING:
    from pyimg.archive.apply import Applier

_COPY_CHUNK = 1 << 24


def link_or_copy(ap: Applier, key: str, head: str, base: str, target: str) -> None:
    if target in ap.skipped_devices:
        ap.device(key)
        return
    thead, tbase = split(target)
    found = ap.cache.lookup(thead, create=False)
    st = _lstat(found[0], tbase) if found is not None else None
    if st is None:
        _missing_target(ap, key, head, base, target)
        return
    if stat.S_ISDIR(st.st_mode):
        raise UnsafeEntryError(ap.member, "hardlink to a directory")
    pfd, preal = ap.parent(head)
    real = f"{preal}/{base}" if preal else base
    ap.touched.update((real, preal))
    tfd = ap.parent(thead)[0]
    try:
        os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        return
    except FileExistsError:
        old = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        if (old.st_dev, old.st_ino) == (st.st_dev, st.st_ino):
            return  # already this very file (a link to itself)
    if ap.clear(pfd, base, real):
        pfd, tfd = ap.parent(head)[0], ap.parent(thead)[0]
    os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _missing_target(ap: Applier, key: str, head: str, base: str, target: str) -> None:
    if not ap.overlay:
        raise UnpackError(f"hardlink {key!r} -> {target!r}: target not found in the tree")
    if not ap.lowers:
        ap.deferred.append((key, target))
        return
    if not copy_from_lowers(ap, ap.lowers, head, base, target):
        raise UnpackError(f"hardlink {key!r} -> {target!r}: target not found in lower layers")


def copy_from_lowers(ap: Applier, lowers: Sequence[Path], head: str, base: str,
                     target: str) -> bool:
    """Copy ``target`` from the first lower that has it to ``head/base`` in the root."""
    thead, tbase = split(target)
    for lower in lowers:
        lfd = os.open(lower, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        cache = DirCache(lfd)
        cache.member = ap.member
        try:
            try:
                found = cache.lookup(thead, create=False)
            except UnsafeEntryError:
                return False  # a non-directory in a lower hides everything below it
            st = _lstat(found[0], tbase) if found is not None else None
            if st is None or found is None:
                continue
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                return False  # whited out in that lower
            if stat.S_ISDIR(st.st_mode):
                raise UnsafeEntryError(ap.member, "hardlink to a directory")
            _copy_entry(ap, found[0], tbase, st, head, base)
            return True
        finally:
            cache.close()
            os.close(lfd)
    return False


def _copy_entry(ap: Applier, sfd: int, sname: str, st: os.stat_result,
                head: str, base: str) -> None:
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        link = os.readlink(sname, dir_fd=sfd)
        pfd, _ = ap.create(head, base, lambda pfd: os.symlink(link, base, dir_fd=pfd))
        os.chown(base, st.st_uid, st.st_gid, dir_fd=pfd, follow_symlinks=False)
        os.utime(base, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=pfd, follow_symlinks=False)
        return
    if stat.S_ISFIFO(mode):
        pfd, _ = ap.create(head, base, lambda pfd: os.mkfifo(base, 0o600, dir_fd=pfd))
        os.chown(base, st.st_uid, st.st_gid, dir_fd=pfd, follow_symlinks=False)
        os.chmod(base, stat.S_IMODE(mode), dir_fd=pfd, follow_symlinks=False)
        os.utime(base, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=pfd, follow_symlinks=False)
        return
    if not stat.S_ISREG(mode):
        ap.device(f"{head}/{base}" if head else base)
        return
    src = os.open(sname, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sfd)
    try:
        _, dst = ap.create(head, base, lambda pfd: os.open(
            base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
            dir_fd=pfd))
        try:
            _copy_data(src, dst, st.st_size)
            os.fchown(dst, st.st_uid, st.st_gid)
            os.fchmod(dst, stat.S_IMODE(mode))
            _copy_xattrs(src, dst)
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _copy_data(src: int, dst: int, size: int) -> None:
    left = size
    try:
        while left > 0:
            n = os.copy_file_range(src, dst, min(left, _COPY_CHUNK))
            if n == 0:
                return
            left -= n
    except OSError as exc:  # EXDEV and friends: fall back to read/write
        if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    while left > 0:
        data = os.read(src, min(left, 1 << 20))
        if not data:
            return
        left -= os.write(dst, data)


def _copy_xattrs(src: int, dst: int) -> None:
    for name in os.listxattr(src):
        if not name.startswith(FORBIDDEN_XATTRS):
            os.setxattr(dst, name, os.getxattr(src, name))
