"""Describe a directory tree the way the differential tests compare them."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def _xattrs(path: str) -> dict[str, bytes]:
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    for name in names:
        if name.startswith("security.selinux"):
            continue
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
    return out


def describe(root: Path, *, mtimes: bool = False) -> dict[str, tuple[object, ...]]:
    """path → (type, mode, uid, gid, size, sha256 or link target, xattrs[, mtime])."""
    tree: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            kind = stat.S_IFMT(st.st_mode)
            if stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(full, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                what: object = h.hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                what = os.readlink(full)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                what = st.st_rdev
            else:
                what = None
            size = st.st_size if stat.S_ISREG(st.st_mode) else 0
            entry: tuple[object, ...] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                                         size, what, tuple(sorted(_xattrs(full).items())))
            if mtimes and not stat.S_ISDIR(st.st_mode):
                entry += (int(st.st_mtime),)
            tree[rel] = entry
    return tree


def diff(a: dict[str, tuple[object, ...]], b: dict[str, tuple[object, ...]]) -> list[str]:
    out = [f"only in first: {p}" for p in sorted(set(a) - set(b))]
    out += [f"only in second: {p}" for p in sorted(set(b) - set(a))]
    out += [f"differs: {p}: {a[p]} != {b[p]}" for p in sorted(set(a) & set(b)) if a[p] != b[p]]
    return out
