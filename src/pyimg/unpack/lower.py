"""Commit-time checks of a layer extracted in parallel against its lower layers.

The lookup through the lower chain (``O_NOFOLLOW`` walks, whiteouts, opaque
directories) and the copy-up of hardlinks into lower layers live with the
layer applier, in :mod:`pyimg.archive.lowers`; this module decides what a
layer needs before its snapshot commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from pyimg.archive.lowers import copy_up as copy_up_hardlinks
from pyimg.archive.lowers import lookup

__all__ = ["copy_up_hardlinks", "symlink_conflicts"]


def symlink_conflicts(dirs: Iterable[str], lowers: Sequence[Path]) -> list[str]:
    """Directories of an upper layer that the lower chain shows as symlinks.

    Overlay would let the upper directory hide the symlink, whereas a
    sequential unpack writes through it: those layers must be re-applied.
    """
    conflicts = []
    for rel in sorted(set(dirs)):
        if not rel.strip("/."):
            continue
        for layer in lowers:
            state, _ = lookup(layer, rel)
            if state == "symlink":
                conflicts.append(rel)
                break
            if state != "absent":
                break
    return conflicts
