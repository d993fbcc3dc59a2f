"""What the overlay and native snapshotters share: rows, directories, ordering.

Layout under the snapshotter's root (created 0700: layers may hold setuid
binaries, safe only because no unprivileged user can reach them)::

    <root>/tmp-XXXXXXXX/      a snapshot being built (flock'd by its builder)
    <root>/<id>/fs            the snapshot's files (an overlay upperdir/lowerdir)
    <root>/<id>/work          overlay's workdir (active snapshots only)

``<id>`` is the integer id of the snapshot's row in ``metadata.db``; keys
and names are arbitrary strings and never appear in a path.

Crash-safe ordering (containerd's overlay snapshotter; the database is the
single source of truth):

* create: build in ``tmp-*``, insert the row inside a write transaction and
  rename ``tmp-*`` -> ``<id>`` (then fsync the root) *before* it commits.
  A crash leaves either a directory without a row or nothing: never a row
  without its directory.  On error the directory is removed.  Active
  snapshots skip the fsync (a container's rootfs, a layer being extracted):
  after a power cut one may have a row without its directory, which only
  its removal (stale extraction, vanished container) ever meets -- the
  fsync is what commit's ``syncfs`` does for every snapshot it commits.
* commit: ``syncfs`` the snapshot's filesystem *before* the transaction
  that marks it committed, so a power cut never leaves a committed, empty
  layer.
* remove: delete the row, commit, *then* remove the directory.
* :meth:`cleanup` removes what a crash left: directories no row owns.

pyimg has no daemon: several processes share one root.  Every directory
being built is ``flock``'d by its builder until its row is committed (or it
is removed), and :meth:`cleanup` holds the database write lock and skips
locked directories, so it never removes another process's work.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os

from pyimg import _debug
from pyimg.errors import AlreadyExists, FailedPrecondition
from pyimg.fsutil import fsync_dir
from pyimg.mount import mount_points_under
from pyimg.rmtree import rmtree
from pyimg.snapshotters import Kind, SnapshotInfo, Usage

# Import-light (`pyimg run` prepares and removes a snapshot): paths are strings
# here; ``root``, ``path()`` and ``fs()`` make pathlib objects for other callers.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

    from pyimg.fsutil import StrPath
    from pyimg.metadata import MetaStore, SnapshotRecord, Tx
    from pyimg.snapshotters import Mount


class DirSnapshotter:
    """A snapshotter keeping one directory per snapshot; subclasses say how
    a directory is populated and how it is mounted."""

    name = "base"
    supports_rebase = False

    def __init__(self, root: StrPath, meta: MetaStore) -> None:
        make_private_dir(root)
        self._root = os.fspath(root)
        self._meta = meta

    @property
    def root(self) -> Path:
        from pathlib import Path

        return Path(self._root)

    # hooks ---------------------------------------------------------------
    def _populate(self, tmp: str, kind: Kind, parent: SnapshotRecord | None) -> None:
        raise NotImplementedError

    def _mounts(self, tx: Tx, rec: SnapshotRecord) -> list[Mount]:
        raise NotImplementedError

    # queries -------------------------------------------------------------
    def path(self, rec: SnapshotRecord) -> Path:
        from pathlib import Path

        return Path(self._dir(rec))

    def fs(self, rec: SnapshotRecord) -> Path:
        from pathlib import Path

        return Path(self._fs(rec))

    def _dir(self, rec: SnapshotRecord) -> str:
        return os.path.join(self._root, str(rec.id))

    def _fs(self, rec: SnapshotRecord) -> str:
        return os.path.join(self._root, str(rec.id), "fs")

    def stat(self, key: str) -> SnapshotInfo:
        with self._meta.transaction() as tx:
            return self._info(tx.get_snapshot(self.name, key))

    def walk(self) -> Iterator[SnapshotInfo]:
        with self._meta.transaction() as tx:
            records = tx.list_snapshots(self.name)
        for rec in records:
            yield self._info(rec)

    def mounts(self, key: str) -> list[Mount]:
        with self._meta.transaction() as tx:
            rec = tx.get_snapshot(self.name, key)
            if rec.kind == Kind.COMMITTED:
                raise FailedPrecondition(f"mounts of snapshot {key}: it is committed",
                                         hint="prepare or view a snapshot on top of it")
            return self._mounts(tx, rec)

    def usage(self, key: str) -> Usage:
        """Disk used by the snapshot's own files (its ``fs``), like ``du``."""
        with self._meta.transaction() as tx:
            rec = tx.get_snapshot(self.name, key)
        return disk_usage(self._fs(rec))

    def upper_dir(self, key: str) -> str:
        """An active snapshot's ``fs`` (write into it), or a committed one's (read only).

        A view has no directory of its own worth reading (overlay mounts its
        parents), so asking for one is refused.
        """
        with self._meta.transaction() as tx:
            rec = tx.get_snapshot(self.name, key)
        if rec.kind == Kind.VIEW:
            raise FailedPrecondition(f"snapshot {key}: is a view, it has no upper dir",
                                     hint="mount it to read it")
        return self._fs(rec)

    def _info(self, rec: SnapshotRecord) -> SnapshotInfo:
        return SnapshotInfo(rec.key, Kind(rec.kind), rec.parent, rec.created_at,
                            dict(rec.labels), self._dir(rec))

    def _chain(self, tx: Tx, rec: SnapshotRecord) -> list[SnapshotRecord]:
        """The committed ancestors of ``rec``, nearest first."""
        chain: list[SnapshotRecord] = []
        parent = rec.parent
        while parent is not None:
            p = tx.get_snapshot(self.name, parent)
            chain.append(p)
            parent = p.parent
        return chain

    # changes -------------------------------------------------------------
    def prepare(self, key: str, parent: str | None, *,
                labels: Mapping[str, str] | None = None) -> list[Mount]:
        return self._create(Kind.ACTIVE, key, parent, labels)

    def view(self, key: str, parent: str | None, *,
             labels: Mapping[str, str] | None = None) -> list[Mount]:
        return self._create(Kind.VIEW, key, parent, labels)

    def _create(self, kind: Kind, key: str, parent: str | None,
                labels: Mapping[str, str] | None) -> list[Mount]:
        with self._meta.transaction() as tx:
            # Fail fast before a possibly long build; the write below re-checks.
            if tx.find_snapshot(self.name, key) is not None:
                raise AlreadyExists(f"snapshot {key}: already exists")
            parent_rec = None if parent is None else _committed(tx, self.name, parent)
        with temp_dir(self._root) as tmp:
            renamed: str | None = None
            try:
                self._populate(tmp, kind, parent_rec)
                with self._meta.transaction(write=True) as tx:
                    rec = tx.create_snapshot(self.name, key, kind.value, parent, labels)
                    final = self._dir(rec)
                    _clear_stale(final)
                    os.rename(tmp, final)
                    renamed = final
                    if kind != Kind.ACTIVE:  # (see the module docstring)
                        fsync_dir(self._root)  # the rename is durable before the row is
                    return self._mounts(tx, rec)
            except BaseException:
                remove_tree(renamed or tmp)
                raise

    def commit(self, name: str, key: str, *, parent: str | None = None,
               labels: Mapping[str, str] | None = None) -> None:
        """Turn active ``key`` into committed ``name``; ``parent`` rebases it."""
        with self._meta.transaction() as tx:
            rec = self._active(tx, key)
        # Outside the write lock: flushing a large layer may take a while.
        sync_filesystem(self._dir(rec))
        with self._meta.transaction(write=True) as tx:
            now = self._active(tx, key)
            if now.id != rec.id:
                raise FailedPrecondition(f"commit snapshot {key}: replaced while committing")
            new_parent = rec.parent if parent is None else parent
            if new_parent != rec.parent and not self.supports_rebase:
                raise FailedPrecondition(
                    f"commit snapshot {key} as {name}: the {self.name} snapshotter cannot"
                    f" change its parent from {rec.parent!r} to {new_parent!r}",
                    hint="prepare the snapshot on the right parent",
                )
            merged = {**rec.labels, **(labels or {})}
            tx.update_snapshot(self.name, key, kind=Kind.COMMITTED.value, new_key=name,
                               parent=new_parent, labels=merged)

    def _active(self, tx: Tx, key: str) -> SnapshotRecord:
        rec = tx.get_snapshot(self.name, key)
        if rec.kind != Kind.ACTIVE:
            raise FailedPrecondition(f"commit snapshot {key}: is {rec.kind}, not active")
        return rec

    def remove(self, key: str) -> None:
        with self._meta.transaction(write=True) as tx:
            rec = tx.delete_snapshot(self.name, key)
        # The row is gone for good; a failure here only leaves work for cleanup().
        try:
            remove_tree(self._dir(rec))
        except (OSError, FailedPrecondition) as exc:
            _debug.log(__name__, "remove snapshot %s: %s (cleanup() will retry)", key, exc)

    def cleanup(self) -> list[str]:
        """Remove directories no row owns (crash leftovers); returns their paths.

        Runs under the database write lock so that no snapshot is created
        meanwhile: a numbered directory without a row is then a leftover.
        Directories still flock'd by a live builder are skipped.
        """
        removed: list[str] = []
        with self._meta.transaction(write=True) as tx:
            ids = {rec.id for rec in tx.list_snapshots(self.name)}
            for entry in sorted(os.scandir(self._root), key=lambda e: e.name):
                orphan = entry.name.startswith("tmp-") or (
                    entry.name.isdigit() and int(entry.name) not in ids)
                if orphan and entry.is_dir(follow_symlinks=False) and _remove_unlocked(
                        entry.path):
                    removed.append(entry.path)
        return removed


def _committed(tx: Tx, snapshotter: str, name: str) -> SnapshotRecord:
    rec = tx.get_snapshot(snapshotter, name)
    if rec.kind != Kind.COMMITTED:
        raise FailedPrecondition(f"parent snapshot {name}: is {rec.kind}, not committed")
    return rec


def _clear_stale(final: str) -> None:
    # A directory under a fresh id is a leftover of a crash after the rename
    # whose transaction (and so the id) rolled back: nobody owns it.
    if os.path.lexists(final):
        remove_tree(final)


def _remove_unlocked(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live builder's
        try:
            remove_tree(path)
        except (OSError, FailedPrecondition) as exc:
            _debug.log(__name__, "cleanup %s: %s", path, exc)
            return False
        return True
    finally:
        os.close(fd)


# filesystem helpers ------------------------------------------------------

def make_private_dir(path: StrPath) -> None:
    """Create ``path`` mode 0700 (missing parents get the umask's mode), or tighten it."""
    os.makedirs(path, 0o700, exist_ok=True)
    os.chmod(path, 0o700)


@contextlib.contextmanager
def build_dir(root: StrPath) -> Iterator[Path]:
    """A fresh ``root/tmp-*`` directory, flock'd until the block ends."""
    from pathlib import Path

    with temp_dir(os.fspath(root)) as tmp:
        yield Path(tmp)


@contextlib.contextmanager
def temp_dir(root: str) -> Iterator[str]:
    """:func:`build_dir` as a string path."""
    while True:
        tmp = _mkdtemp(root, "tmp-")
        fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink > 0:
            break
        os.close(fd)  # cleanup() took it between mkdtemp and flock: try again
    try:
        yield tmp
    finally:
        os.close(fd)  # the lock goes with the last fd, after the rename


def _mkdtemp(parent: str, prefix: str) -> str:
    """``tempfile.mkdtemp(prefix=prefix, dir=parent)`` (a new 0700 directory), without
    importing tempfile (~4 ms here, on every `pyimg run`)."""
    while True:
        path = os.path.join(parent, prefix + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return path


def remove_tree(path: StrPath) -> None:
    """rmtree that refuses to descend into mounts and tolerates concurrent removal."""
    if not os.path.lexists(path):
        return
    busy = mount_points_under(path)
    if busy:
        raise FailedPrecondition(f"remove {path}: {busy[0]} is still mounted",
                                 hint=f"unmount it: umount {busy[0]}")

    # Another process (cleanup()) may be removing the same tree: entries
    # vanishing under us are fine, so retry until the tree is gone.
    for _ in range(5):
        with contextlib.suppress(FileNotFoundError):
            rmtree(path)
        if not os.path.lexists(path):
            return
    rmtree(path)


def sync_filesystem(path: StrPath) -> None:
    """Flush everything written under ``path`` (the whole filesystem, as containerd)."""
    from pyimg import linux

    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        linux.syncfs(fd)
    finally:
        os.close(fd)


def disk_usage(path: StrPath) -> Usage:
    """Allocated bytes (``st_blocks``) and inodes under ``path``, hardlinks once."""
    seen: set[tuple[int, int]] = set()
    size = inodes = 0
    stack = [os.fspath(path)]
    st = os.lstat(path)
    seen.add((st.st_dev, st.st_ino))
    size, inodes = st.st_blocks * 512, 1
    while stack:
        try:
            it = os.scandir(stack.pop())
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                continue
            raise
        with it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                size += st.st_blocks * 512
                inodes += 1
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return Usage(size=size, inodes=inodes)
