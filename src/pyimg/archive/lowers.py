"""Hardlinks: link inside the root, or materialise a target from lower layers.

In DELETE mode the root holds the whole tree, so a hardlink may point at a
file of an earlier layer.  In OVERLAY mode the root is one layer's upperdir:
a target that this layer does not contain is copied (content and metadata)
from the lower layers as overlayfs would show it (``lowers`` is top-first:
whiteouts and opaque directories hide what is below), either at once or, with
no lowers given, later by :func:`copy_up` from ``ApplyResult.deferred``.  A
copy breaks the link relation, which is what overlayfs copy-up does anyway.
This module also answers what a lower chain shows at a path (:func:`lookup`),
for the unpacker's commit-time checks.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Sequence
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
    """Copy ``target``, as the overlay of ``lowers`` shows it, to ``head/base`` in the root.

    False when the merged view has no such file: absent everywhere, whited out
    or under an opaque directory in the nearest layer that mentions it, or
    reached through a symlinked directory.
    """
    found = find_in_lowers(lowers, target)
    if found is None:
        return False
    lower, st = found
    if stat.S_ISDIR(st.st_mode):
        raise UnsafeEntryError(ap.member, "hardlink to a directory")
    thead, tbase = split(target)
    lfd = os.open(lower, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    cache = DirCache(lfd)
    cache.member = ap.member
    try:
        # no component is a symlink (find_in_lowers checked): this opens that very path
        parent = cache.lookup(thead, create=False)
        if parent is None:
            return False  # the lower changed under us
        _copy_entry(ap, parent[0], tbase, st, head, base)
        return True
    finally:
        cache.close()
        os.close(lfd)


def copy_up(upper: Path, lowers: Sequence[Path], links: Iterable[tuple[str, str]]) -> None:
    """Materialise hardlinks whose target is in a lower layer as copies in ``upper``
    (overlayfs cannot link across layers; containerd copies too when it applies
    onto an upperdir).  ``links`` are (link, target), root-relative and clean."""
    from pyimg.archive import Limits, WhiteoutMode
    from pyimg.archive.apply import Applier

    root_fd = os.open(upper, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    ap = Applier(root_fd, WhiteoutMode.OVERLAY, Limits(), lowers, None)
    try:
        for link, target in links:
            ap.member = link
            head, base = split(link)
            if not copy_from_lowers(ap, lowers, head, base, target):
                raise UnpackError(f"hardlink {link} -> {target}: target not found in this "
                                  "layer or the layers below it")
    finally:
        ap.close()
        os.close(root_fd)


_OPAQUE = "trusted.overlay.opaque"


def lookup(layer: Path, rel: str, *, leaf_link: bool = False
           ) -> tuple[str, os.stat_result | None]:
    """('found'|'absent'|'deleted'|'opaque'|'symlink', stat) of ``rel`` in one layer dir.

    Lower layers hold what earlier (possibly hostile) layers wrote, so the walk
    goes component by component with ``O_NOFOLLOW``: a symlink is reported,
    never traversed (``leaf_link``: a symlink as the last component is
    'found').  A whiteout (0/0 character device) ends the lookup, as does an
    opaque directory (``trusted.overlay.opaque=y``): the layers below are hidden.
    """
    parts = [p for p in rel.split("/") if p and p != "."]
    fd = os.open(layer, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for n, part in enumerate(parts):
            try:
                st = os.stat(part, dir_fd=fd, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                return "absent", None
            last = n == len(parts) - 1
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                return "deleted", None
            if stat.S_ISLNK(st.st_mode) and not (last and leaf_link):
                return "symlink", st
            if last:
                return "found", st
            if not stat.S_ISDIR(st.st_mode):
                return "absent", None
            nfd = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=fd)
            os.close(fd)
            fd = nfd
            if _is_opaque(fd):
                return "opaque", None
        return "found", os.stat(fd)
    finally:
        os.close(fd)


def _is_opaque(fd: int) -> bool:
    try:
        return os.getxattr(f"/proc/self/fd/{fd}", _OPAQUE) == b"y"
    except OSError:
        return False


def find_in_lowers(lowers: Sequence[Path], rel: str
                   ) -> tuple[Path, os.stat_result] | None:
    """(layer, stat) of ``rel`` as the overlay of ``lowers`` (top-first) shows it."""
    for layer in lowers:
        state, st = lookup(layer, rel, leaf_link=True)
        if state == "found" and st is not None:
            return layer, st
        if state != "absent":
            return None  # deleted, hidden, or behind a symlinked directory
    return None


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
