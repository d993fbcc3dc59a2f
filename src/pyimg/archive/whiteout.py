"""Whiteouts, image-spec layer.md#whiteouts, in the two modes of :class:`WhiteoutMode`.

``.wh.NAME`` deletes NAME from the lower layers; ``.wh..wh..opq`` in a
directory hides all of its lower content.  A whiteout entry is never written
as a file.

OVERLAY (the root is an upperdir): ``.wh.NAME`` becomes a 0/0 character
device NAME, the opaque marker becomes ``trusted.overlay.opaque=y`` on the
directory.  DELETE (the root holds the merged tree): NAME is removed
recursively; an opaque directory loses every child this layer did not write
itself - opaque applies to the lower content only, whatever the entry order
(image-spec#1215).  Other ``.wh..wh.`` names are aufs metadata and skipped.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from pyimg.archive.securepath import open_dir, remove_tree
from pyimg.errors import UnsafeEntryError

if TYPE_CHECKING:
    from pyimg.archive.apply import Applier

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
_META_PREFIX = ".wh..wh."
OPAQUE_XATTR = "trusted.overlay.opaque"


def apply_whiteout(ap: Applier, head: str, base: str) -> None:
    if base == OPAQUE:
        if ap.overlay:
            _opaque_overlay(ap, head)
        else:
            _opaque_delete(ap, head)
        return
    if base.startswith(_META_PREFIX):
        if ap.verbose is not None:
            ap.verbose(f"{ap.member}: aufs metadata entry skipped")
        return
    name = base[len(WHITEOUT_PREFIX):]
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise UnsafeEntryError(ap.member, f"invalid whiteout name {name!r}")
    if ap.overlay:
        _whiteout_overlay(ap, head, name)
    else:
        _whiteout_delete(ap, head, name)


def _whiteout_overlay(ap: Applier, head: str, name: str) -> None:
    def mknod(pfd: int) -> None:
        os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pfd)

    ap.create(head, name, mknod)


def _whiteout_delete(ap: Applier, head: str, name: str) -> None:
    found = ap.cache.lookup(head, create=False)
    if found is not None:
        ap.clear(found[0], name, f"{found[1]}/{name}" if found[1] else name)


def _opaque_overlay(ap: Applier, head: str) -> None:
    fd, real = ap.parent(head)
    os.setxattr(fd, OPAQUE_XATTR, b"y")
    ap.dirs[real] = None
    ap.touched.add(real)


def _opaque_delete(ap: Applier, head: str) -> None:
    """Remove the lower content under ``head``, keeping what this layer wrote.

    Walks only into directories this layer touched; anything else under the
    opaque directory is removed whole.  Uses its own fds: removals
    invalidate the cache.
    """
    found = ap.cache.lookup(head, create=False)
    if found is None:
        return
    touched = ap.touched
    stack = [(os.dup(found[0]), found[1])]
    removed = False
    try:
        while stack:
            fd, real = stack.pop()
            try:
                for name in os.listdir(fd):
                    child = f"{real}/{name}" if real else name
                    if child not in touched:
                        remove_tree(fd, name)
                        ap.forget_tree(child)
                        removed = True
                        continue
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        stack.append((open_dir(fd, name), child))
            finally:
                os.close(fd)
    finally:
        for fd, _ in stack:
            os.close(fd)
    if removed:
        ap.cache.invalidate()
