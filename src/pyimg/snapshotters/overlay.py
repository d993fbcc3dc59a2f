"""The overlayfs snapshotter (containerd's ``plugins/snapshots/overlay``).

Each snapshot is an independent directory ``<root>/<id>/fs``; a chain is
stacked at mount time, nearest parent first::

    active, no parent      bind  <id>/fs                      rw
    active, parents        overlay lowerdir=<p1>/fs:<p2>/fs:...,upperdir=<id>/fs,workdir=<id>/work
    view, no parent        bind  <id>/fs                      ro
    view, one parent       bind  <p1>/fs                      ro
    view, parents          overlay lowerdir=<p1>/fs:<p2>/fs:...  (no upper: read-only)

Because a layer's directory does not depend on its parent's contents, a
layer can be extracted before its parent exists and attached with
``commit(name, key, parent=...)`` ("rebase"; ``supports_rebase = True``).
"""

from __future__ import annotations

import errno
import os
from _thread import allocate_lock

from pyimg import _debug
from pyimg.snapshotters import Kind, Mount
from pyimg.snapshotters.base import DirSnapshotter, remove_tree, temp_dir

TYPE_CHECKING = False
if TYPE_CHECKING:

    from pyimg.fsutil import StrPath
    from pyimg.metadata import SnapshotRecord, Tx


class OverlaySnapshotter(DirSnapshotter):
    name = "overlay"
    supports_rebase = True

    def _populate(self, tmp: str, kind: Kind, parent: SnapshotRecord | None) -> None:
        fs = os.path.join(tmp, "fs")
        os.mkdir(fs, 0o755)
        if kind == Kind.ACTIVE:
            os.mkdir(os.path.join(tmp, "work"), 0o700)
        if parent is not None:
            # The merged root takes the upper dir's owner and mode: keep the parent's.
            st = os.stat(self._fs(parent))
            os.chown(fs, st.st_uid, st.st_gid)
            os.chmod(fs, st.st_mode & 0o7777)

    def _mounts(self, tx: Tx, rec: SnapshotRecord) -> list[Mount]:
        lowers = [self._fs(p) for p in self._chain(tx, rec)]
        own = self._fs(rec)
        if rec.kind == Kind.ACTIVE:
            if not lowers:
                return [Mount("bind", own, ("rw", "bind"))]
            return [Mount("overlay", "overlay", (
                f"workdir={os.path.join(self._dir(rec), 'work')}",
                f"upperdir={own}",
                "lowerdir=" + ":".join(lowers),
            ))]
        if not lowers:
            return [Mount("bind", own, ("ro", "bind"))]
        if len(lowers) == 1:
            return [Mount("bind", lowers[0], ("ro", "bind"))]
        # overlay needs two lower layers when there is no upper dir.
        return [Mount("overlay", "overlay", ("lowerdir=" + ":".join(lowers),))]


_SUPPORTED: dict[str, bool] = {}
_SUPPORTED_LOCK = allocate_lock()


def overlay_supported(path: StrPath) -> bool:
    """Whether an overlay mount works with its layers under ``path`` (cached).

    Tries a real mount in a temp dir there: the answer depends on privileges,
    the kernel and the backing filesystem (overlay refuses some upper
    filesystems, and nested overlay), which no static check covers.
    """
    key = os.path.realpath(path)
    with _SUPPORTED_LOCK:
        if key not in _SUPPORTED:
            _SUPPORTED[key] = _probe(key)
        return _SUPPORTED[key]


def _probe(path: str) -> bool:
    from pyimg import mount

    os.makedirs(path, 0o700, exist_ok=True)
    with temp_dir(path) as tmp:
        try:
            for d in ("lower", "upper", "work", "merged"):
                os.mkdir(os.path.join(tmp, d), 0o700)
            os.close(os.open(os.path.join(tmp, "lower", "probe"),
                             os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666))
            merged = os.path.join(tmp, "merged")
            m = Mount("overlay", "overlay", (
                f"lowerdir={os.path.join(tmp, 'lower')}",
                f"upperdir={os.path.join(tmp, 'upper')}",
                f"workdir={os.path.join(tmp, 'work')}"))
            try:
                mount.mount_all([m], merged)
            except OSError as exc:
                _debug.log(__name__, "overlay probe under %s: %s", path, exc)
                if exc.errno not in (errno.EPERM, errno.EINVAL, errno.ENODEV, errno.ENOTSUP,
                                     errno.EACCES, errno.ENOENT, errno.ENOSYS):
                    raise
                return False
            try:
                return os.path.exists(os.path.join(merged, "probe"))
            finally:
                mount.unmount(merged)
        finally:
            remove_tree(tmp)
