"""Garbage collection of blobs, snapshots and ingests (containerd's model, daemonless).

Roots: every image's target, every resource an unexpired lease holds, and
every snapshot that is not committed (containers' ``container:<id>``
rootfs, views, layers being unpacked).  From the roots gc follows the
``containerd.io/gc.ref.content.*`` labels (index -> manifests -> config and
layers), the ``containerd.io/gc.ref.snapshot.<snapshotter>`` labels on
configs, the chain ids derived from each reachable config's diff ids (so a
chain being unpacked before its label is written stays), and snapshot
parents.  Everything else is removed.

Why this is safe while other pyimg processes work: the whole mark and the
blob deletion happen inside one ``BEGIN IMMEDIATE`` transaction.  A pull
adds each blob to its lease (a write transaction) *before* it checks
whether the blob exists or writes it, and records the image (another write
transaction) before releasing the lease; so for any blob a pull needs,
either gc's snapshot of the database already shows it leased or
referenced, or the pull's write waits until gc has committed, and then
finds the blob missing and fetches it again.  Ingest directories whose
``flock`` is held belong to a live writer and are never touched; a free
one is removed while gc holds its lock, and the writer's lock loop notices
the directory changed and starts afresh.  Snapshot rows are deleted in the
transaction and their directories after it commits, the order the
snapshotters use (ids are never reused, so a late removal cannot hit a new
snapshot; a crash leaves only what ``cleanup()`` removes).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pyimg import oci
from pyimg.digest import Digest
from pyimg.metadata import SnapshotRecord, Tx
from pyimg.snapshotters.base import disk_usage, remove_tree

if TYPE_CHECKING:
    from pyimg.api import Store

_CONTENT = "containerd.io/gc.ref.content."
_SNAPSHOT = "containerd.io/gc.ref.snapshot."


@dataclass
class GcResult:
    dry_run: bool
    blobs: list[str] = field(default_factory=list)  # digests removed
    blob_bytes: int = 0
    snapshots: list[str] = field(default_factory=list)  # "<snapshotter>/<key>"
    snapshot_bytes: int = 0
    ingests: list[str] = field(default_factory=list)  # ingest dir names
    ingest_bytes: int = 0
    leases_expired: int = 0

    @property
    def reclaimed(self) -> int:
        return self.blob_bytes + self.snapshot_bytes + self.ingest_bytes


@dataclass(frozen=True)
class DiskUsage:
    blobs: int
    blob_bytes: int
    snapshots: int
    snapshot_bytes: int
    containers: int  # active snapshots keyed container:<id>
    container_bytes: int
    reclaimable: GcResult


def _snapshot_dir(store: Store, rec: SnapshotRecord) -> Path:
    return store.root / "snapshots" / rec.snapshotter / str(rec.id)


def _usage(path: Path) -> int:
    try:
        return disk_usage(path).size
    except FileNotFoundError:
        return 0


def _mark_content(store: Store, tx: Tx, roots: set[str]) -> tuple[set[str], set[tuple[str, str]]]:
    """Reachable digests, and (snapshotter or '', key) of snapshots they reference."""
    labels = tx.all_labels()
    seen: set[str] = set()
    snaps: set[tuple[str, str]] = set()
    todo = list(roots)
    while todo:
        digest = todo.pop()
        if digest in seen:
            continue
        seen.add(digest)
        for key, value in labels.get(digest, {}).items():
            if key.startswith(_CONTENT):
                todo.append(value)
                if key == _CONTENT + "config":
                    for chain in _chain_ids(store, value):
                        snaps.add(("", chain))
            elif key.startswith(_SNAPSHOT):
                snaps.add((key[len(_SNAPSHOT):], value))
    # A leased config (a pull in progress) has no manifest label yet: its
    # chain is being unpacked, keep it too.
    for digest in roots:
        for chain in _chain_ids(store, digest):
            snaps.add(("", chain))
    return seen, snaps


def _chain_ids(store: Store, digest: str) -> list[str]:
    from pyimg.imageparts import chain_ids

    try:
        path = store.content.blob_path(Digest.parse(digest))
        if path.stat().st_size > oci.MAX_CONFIG_SIZE:
            return []
        data = json.loads(path.read_bytes())
        if not isinstance(data, dict) or "rootfs" not in data:
            return []
        cfg = oci.parse_config(path.read_bytes())
    except Exception:  # not a config, or not stored
        return []
    return [str(c) for c in chain_ids(cfg.diff_ids)]


def gc(store: Store, *, dry_run: bool = False) -> GcResult:
    result = GcResult(dry_run)
    doomed_dirs: list[Path] = []
    now = time.time()
    with store.meta.transaction(write=True) as tx:
        if not dry_run:
            result.leases_expired = tx.delete_expired_leases(now)
        leased = tx.leased(now)
        roots = {str(img.target.digest) for img in tx.list_images()}
        roots |= {key for kind, key in leased if kind == "content"}
        reachable, snap_refs = _mark_content(store, tx, roots)

        # snapshots -------------------------------------------------------
        records = _all_snapshots(tx)
        by_key = {(r.snapshotter, r.key): r for r in records}
        keep: set[tuple[str, str]] = set()
        todo = [(r.snapshotter, r.key) for r in records if r.kind != "committed"]
        todo += [(r.snapshotter, r.key) for r in records
                 if (r.snapshotter, r.key) in snap_refs or ("", r.key) in snap_refs]
        while todo:
            k = todo.pop()
            if k in keep or k not in by_key:
                continue
            keep.add(k)
            parent = by_key[k].parent
            if parent is not None:
                todo.append((k[0], parent))
        # Children before parents (ids say nothing: layers unpack in
        # parallel and are rebased when committed).
        for rec in _children_first([r for r in records if (r.snapshotter, r.key) not in keep]):
            result.snapshots.append(f"{rec.snapshotter}/{rec.key}")
            result.snapshot_bytes += _usage(_snapshot_dir(store, rec))
            if not dry_run:
                tx.delete_snapshot(rec.snapshotter, rec.key)
                doomed_dirs.append(_snapshot_dir(store, rec))

        # blobs -----------------------------------------------------------
        for info in store.content.walk():
            if str(info.digest) in reachable:
                continue
            result.blobs.append(str(info.digest))
            result.blob_bytes += info.size
            if not dry_run:
                tx.delete_labels(info.digest)
                with contextlib.suppress(FileNotFoundError):
                    store.content.delete(info.digest)

        # ingests ---------------------------------------------------------
        leased_refs = {key for kind, key in leased if kind == "ingest"}
        for ingest in store.content.ingests():
            size = _free_ingest(ingest, leased_refs, dry_run)
            if size is not None:
                result.ingests.append(ingest.name)
                result.ingest_bytes += size
    # After the commit: the rows are gone for good (see the module docstring).
    for path in doomed_dirs:
        with contextlib.suppress(OSError, Exception):
            remove_tree(path)
    return result


def _free_ingest(ingest: Path, leased_refs: set[str], dry_run: bool) -> int | None:
    """Remove a stale ingest; its size, or None when it is kept (locked or leased)."""
    try:
        meta = json.loads((ingest / "meta").read_text())
        if meta.get("ref") in leased_refs:
            return None
    except (OSError, ValueError, AttributeError):
        pass
    try:
        fd = os.open(ingest / "lock", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = -1  # no lock file: a leftover (or a writer committing right now)
        if (ingest / "data").exists():
            return None
    except OSError:
        return None
    try:
        if fd >= 0:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None  # a live writer's
        size = _usage(ingest)
        if not dry_run:
            # Still holding the lock: a writer waiting on it re-checks the inode.
            remove_tree(ingest)
        return size
    finally:
        if fd >= 0:
            os.close(fd)


def _children_first(doomed: list[SnapshotRecord]) -> list[SnapshotRecord]:
    order: list[SnapshotRecord] = []
    left = {(r.snapshotter, r.key): r for r in doomed}
    while left:
        parents = {(r.snapshotter, r.parent) for r in left.values()}
        leaves = [k for k in left if k not in parents]
        order.extend(left.pop(k) for k in sorted(leaves))
        if not leaves:  # a cycle cannot happen; refuse rather than loop
            break
    return order


def _all_snapshots(tx: Tx) -> list[SnapshotRecord]:
    names = [r[0] for r in tx.execute("SELECT DISTINCT snapshotter FROM snapshots").fetchall()]
    return [rec for name in names for rec in tx.list_snapshots(name)]


def df(store: Store) -> DiskUsage:
    blobs = list(store.content.walk())
    with store.meta.transaction() as tx:
        records = _all_snapshots(tx)
    containers = [r for r in records if r.key.startswith("container:")]
    others = [r for r in records if not r.key.startswith("container:")]
    return DiskUsage(
        blobs=len(blobs), blob_bytes=sum(b.size for b in blobs),
        snapshots=len(others),
        snapshot_bytes=sum(_usage(_snapshot_dir(store, r)) for r in others),
        containers=len(containers),
        container_bytes=sum(_usage(_snapshot_dir(store, r)) for r in containers),
        reclaimable=gc(store, dry_run=True))
