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

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pyimg.errors import InvalidArgument

if TYPE_CHECKING:
    from pyimg.metadata import MetaStore


class Kind(StrEnum):
    ACTIVE = "active"
    VIEW = "view"
    COMMITTED = "committed"


@dataclass(frozen=True, slots=True)
class Mount:
    """A mount description: ``mount -t TYPE -o OPTIONS SOURCE TARGET``."""

    type: str  # "overlay" or "bind"
    source: str
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    key: str  # the key (active/view) or the name (committed)
    kind: Kind
    parent: str | None
    created_at: float
    labels: Mapping[str, str] = field(default_factory=dict)
    path: str = ""  # the snapshot's directory (its fs/ lives inside)


@dataclass(frozen=True, slots=True)
class Usage:
    size: int  # bytes of disk used by this snapshot's own directory
    inodes: int


class Snapshotter(Protocol):
    name: str  # "overlay" or "native"
    supports_rebase: bool

    def stat(self, key: str) -> SnapshotInfo: ...
    def prepare(self, key: str, parent: str | None, *,
                labels: Mapping[str, str] | None = None) -> list[Mount]: ...
    def view(self, key: str, parent: str | None, *,
             labels: Mapping[str, str] | None = None) -> list[Mount]: ...
    def mounts(self, key: str) -> list[Mount]: ...
    def commit(self, name: str, key: str, *, parent: str | None = None,
               labels: Mapping[str, str] | None = None) -> None: ...
    def remove(self, key: str) -> None: ...
    def walk(self) -> Iterator[SnapshotInfo]: ...
    def usage(self, key: str) -> Usage: ...
    def upper_dir(self, key: str) -> str:
        """The directory an applier writes an active snapshot's changes into.

        For a committed snapshot, the directory holding that snapshot's own
        files (its layer, for overlay; the whole tree, for native): read it,
        never write it.  Views are refused.
        """
        ...
    def cleanup(self) -> list[str]:
        """Remove directories no metadata row owns (after a crash); returns them."""
        ...


SNAPSHOTTERS = ("overlay", "native")


def open_snapshotter(name: str, store_root: Path, meta: MetaStore) -> Snapshotter:
    """The snapshotter ``name`` keeping its snapshots in ``store_root/snapshots/<name>``.

    ``snapshots/`` is created (or tightened to) 0700: layers hold setuid
    binaries, harmless only while no unprivileged user can reach them.
    Choosing a default is the caller's::

        name = "overlay" if overlay_supported(store_root / "snapshots") else "native"
    """
    from pyimg.snapshotters.base import make_private_dir

    base = store_root / "snapshots"
    make_private_dir(base)
    if name == "overlay":
        from pyimg.snapshotters.overlay import OverlaySnapshotter

        return OverlaySnapshotter(base / "overlay", meta)
    if name == "native":
        from pyimg.snapshotters.native import NativeSnapshotter

        return NativeSnapshotter(base / "native", meta)
    raise InvalidArgument(f"snapshotter {name!r}: unknown",
                          hint=f"use one of {', '.join(SNAPSHOTTERS)}")


def overlay_supported(path: Path) -> bool:
    """Whether overlay mounts work for layers under ``path`` (a real probe, cached)."""
    from pyimg.snapshotters.overlay import overlay_supported as probe

    return probe(path)
