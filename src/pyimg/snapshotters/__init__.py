"""Snapshotters: containerd's model of filesystem layers, in Python.

Vocabulary (containerd's): a *key* names an **active** snapshot (writable,
being built or used by a container), a *name* names a **committed** one
(read-only, a layer of an image chain), a **view** is a read-only active
snapshot.  ``parent`` is always a committed name (or None).

Snapshotters never mount anything themselves: they return :class:`Mount`
descriptions that the caller performs (``pyimg.mount.mount_all``) or reads
(the applier writes straight into an overlay ``upperdir``).

Importing a layer::

    key = f"extract-{nonce} {chain_id}"
    mounts = sn.prepare(key, parent_chain_id)          # active snapshot
    apply(layer, mounts)                               # write the layer's changes
    sn.commit(chain_id, key)                           # now a committed layer

Running a container::

    mounts = sn.prepare(container_id, top_chain_id)    # writable rootfs
    ...                                                # mount, run, umount
    sn.remove(container_id)

Overlay layer directories are independent, so the overlay snapshotter can
also build a layer before its parent exists: ``prepare(key, None)`` then
``commit(name, key, parent=parent_name)`` (containerd 2.2's "rebase"),
which is what lets pyimg extract layers in parallel.  Snapshotters that
cannot do this say so with ``supports_rebase = False``.
"""

from __future__ import annotations

import os
from enum import StrEnum

from pyimg.errors import InvalidArgument
from pyimg.record import Record

TYPE_CHECKING = False  # import-light: `pyimg run` prepares a snapshot
if TYPE_CHECKING:
    from collections.abc import Mapping

    from pyimg.fsutil import StrPath
    from pyimg.metadata import MetaStore
    from pyimg.snapshotters.protocol import Snapshotter as Snapshotter


def __getattr__(name: str) -> object:
    if name == "Snapshotter":  # a typing.Protocol: typing costs ~3 ms to import
        from pyimg.snapshotters.protocol import Snapshotter

        return Snapshotter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Kind(StrEnum):
    ACTIVE = "active"
    VIEW = "view"
    COMMITTED = "committed"


class Mount(Record):
    """A mount description: ``mount -t TYPE -o OPTIONS SOURCE TARGET``."""

    _fields = ("type", "source", "options")
    __slots__ = _fields
    type: str  # "overlay" or "bind"
    source: str
    options: tuple[str, ...]

    def __init__(self, type: str, source: str, options: tuple[str, ...] = ()) -> None:
        self._set(type, source, options)


class SnapshotInfo(Record):
    _fields = ("key", "kind", "parent", "created_at", "labels", "path")
    __slots__ = _fields
    key: str  # the key (active/view) or the name (committed)
    kind: Kind
    parent: str | None
    created_at: float
    labels: Mapping[str, str]
    path: str  # the snapshot's directory (its fs/ lives inside)

    def __init__(self, key: str, kind: Kind, parent: str | None, created_at: float,
                 labels: Mapping[str, str] | None = None, path: str = "") -> None:
        self._set(key, kind, parent, created_at, {} if labels is None else labels, path)


class Usage(Record):
    _fields = ("size", "inodes")
    __slots__ = _fields
    size: int  # bytes of disk used by this snapshot's own directory
    inodes: int

    def __init__(self, size: int, inodes: int) -> None:
        self._set(size, inodes)


SNAPSHOTTERS = ("overlay", "native")


def open_snapshotter(name: str, store_root: StrPath, meta: MetaStore) -> Snapshotter:
    """The snapshotter ``name`` keeping its snapshots in ``store_root/snapshots/<name>``.

    ``snapshots/`` is created (or tightened to) 0700: layers hold setuid
    binaries, harmless only while no unprivileged user can reach them.
    Choosing a default is the caller's::

        name = "overlay" if overlay_supported(store_root / "snapshots") else "native"
    """
    from pyimg.snapshotters.base import make_private_dir

    base = os.path.join(store_root, "snapshots")
    make_private_dir(base)
    if name == "overlay":
        from pyimg.snapshotters.overlay import OverlaySnapshotter

        return OverlaySnapshotter(os.path.join(base, "overlay"), meta)
    if name == "native":
        from pyimg.snapshotters.native import NativeSnapshotter

        return NativeSnapshotter(os.path.join(base, "native"), meta)
    raise InvalidArgument(f"snapshotter {name!r}: unknown",
                          hint=f"use one of {', '.join(SNAPSHOTTERS)}")


def overlay_supported(path: StrPath) -> bool:
    """Whether overlay mounts work for layers under ``path`` (a real probe, cached)."""
    from pyimg.snapshotters.overlay import overlay_supported as probe

    return probe(path)
