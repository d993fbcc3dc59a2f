"""The copy-based snapshotter (containerd's ``plugins/snapshots/native``).

The fallback where overlayfs cannot be used (no privilege, a backing
filesystem overlay refuses, nested overlay).  Every snapshot is a complete
tree: ``prepare`` and ``view`` copy the parent's tree faithfully
(:mod:`pyimg.snapshotters.fscopy`) and the mount is always a bind of the
snapshot's own ``fs`` (read-only for views).  A layer's directory therefore
depends on its parent's contents, so it cannot be rebased
(``supports_rebase = False``).
"""

from __future__ import annotations

import os
from pathlib import Path

from pyimg.metadata import SnapshotRecord, Tx
from pyimg.snapshotters import Kind, Mount
from pyimg.snapshotters.base import DirSnapshotter
from pyimg.snapshotters.fscopy import copy_tree


class NativeSnapshotter(DirSnapshotter):
    name = "native"
    supports_rebase = False

    def _populate(self, tmp: str, kind: Kind, parent: SnapshotRecord | None) -> None:
        if parent is None:
            os.mkdir(os.path.join(tmp, "fs"), 0o755)
        else:
            copy_tree(self.fs(parent), Path(tmp) / "fs")

    def _mounts(self, tx: Tx, rec: SnapshotRecord) -> list[Mount]:
        mode = "rw" if rec.kind == Kind.ACTIVE else "ro"
        return [Mount("bind", self._fs(rec), (mode, "bind"))]
