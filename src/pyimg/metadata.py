"""sqlite metadata: images, content labels and snapshots (containers later).

One database in WAL mode, shared by every pyimg process.  The only way in is
``with meta.transaction(write=True) as tx:``: writes take the lock up front
with ``BEGIN IMMEDIATE`` so two processes never deadlock upgrading a read
lock; the block commits on normal exit and rolls back on an exception.
Blobs on disk are authoritative; the database holds names and references.
"""

from __future__ import annotations

import _sqlite3 as sqlite3  # the sqlite3 package's C module, without its datetime import
import os
import time
from _thread import allocate_lock, get_ident  # threading's Lock, without threading

from pyimg import jsonc
from pyimg.digest import Digest
from pyimg.errors import AlreadyExists, FailedPrecondition, NotFound, Unavailable
from pyimg.oci import Descriptor
from pyimg.record import Record

TYPE_CHECKING = False  # import-light: `pyimg run` and `pyimg pull` open the store
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import TracebackType

    from pyimg.fsutil import StrPath

_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE images (
        name        TEXT PRIMARY KEY,
        media_type  TEXT NOT NULL,
        digest      TEXT NOT NULL,
        size        INTEGER NOT NULL,
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL
    );
    CREATE INDEX images_digest ON images(digest);
    CREATE TABLE content_labels (
        digest  TEXT NOT NULL,
        key     TEXT NOT NULL,
        value   TEXT NOT NULL,
        PRIMARY KEY (digest, key)
    );
    """,
    # 2: snapshots.  The integer id names the snapshot's directory (keys are
    # arbitrary strings and never appear in paths; short ids keep overlay's
    # lowerdir list short).  AUTOINCREMENT: an id is never reused, so a
    # directory whose row was deleted can never be mistaken for a new one.
    """
    CREATE TABLE snapshots (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        snapshotter TEXT NOT NULL,
        key         TEXT NOT NULL,
        kind        TEXT NOT NULL CHECK (kind IN ('active', 'view', 'committed')),
        parent      TEXT NULL,
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL,
        labels      TEXT NOT NULL DEFAULT '{}',
        UNIQUE (snapshotter, key),
        FOREIGN KEY (snapshotter, parent) REFERENCES snapshots(snapshotter, key)
    );
    CREATE INDEX snapshots_parent ON snapshots(snapshotter, parent);
    """,
    # 3: leases.  A lease pins resources (kind 'content': a blob digest,
    # 'ingest': an ingest ref) against gc while a pull runs; ``expires``
    # bounds how long a killed pull can pin them.
    """
    CREATE TABLE leases (
        id       TEXT PRIMARY KEY,
        created  REAL NOT NULL,
        expires  REAL NOT NULL
    );
    CREATE TABLE lease_resources (
        lease  TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,
        kind   TEXT NOT NULL,
        key    TEXT NOT NULL,
        PRIMARY KEY (lease, kind, key)
    );
    """,
)


_KEEP: object = object()  # "leave this column alone" for update_snapshot


class SnapshotRecord(Record):
    _fields = ("id", "snapshotter", "key", "kind", "parent", "created_at", "updated_at",
               "labels")
    __slots__ = _fields
    id: int  # names the snapshot's directory
    snapshotter: str
    key: str
    kind: str  # "active", "view" or "committed"
    parent: str | None
    created_at: float
    updated_at: float
    labels: Mapping[str, str]

    def __init__(self, id: int, snapshotter: str, key: str, kind: str, parent: str | None,
                 created_at: float, updated_at: float, labels: Mapping[str, str]) -> None:
        self._set(id, snapshotter, key, kind, parent, created_at, updated_at, labels)


class ImageRecord(Record):
    _fields = ("name", "target", "created_at", "updated_at")
    __slots__ = _fields
    name: str
    target: Descriptor
    created_at: float
    updated_at: float

    def __init__(self, name: str, target: Descriptor, created_at: float,
                 updated_at: float) -> None:
        self._set(name, target, created_at, updated_at)


class MetaStore:
    def __init__(self, path: StrPath) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, timeout=60.0,
                                   check_same_thread=False)
        self._lock = allocate_lock()
        self._owner: int | None = None
        self._db.execute("PRAGMA busy_timeout = 60000")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute("PRAGMA foreign_keys = ON")
        _retry_locked(self._enable_wal)
        _retry_locked(self._migrate)

    def _enable_wal(self) -> None:
        # Switching the journal mode needs an exclusive lock and sqlite does not
        # run the busy handler for it: a second process opening the database at
        # the same moment gets "database is locked" at once.  Hence the retry.
        if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self._db.execute("PRAGMA journal_mode = WAL")

    def _migrate(self) -> None:
        # A write transaction only when there is something to do: every `pyimg`
        # command opens the store, and a write lock (and a commit) is not free.
        if self._db.execute("PRAGMA user_version").fetchone()[0] == len(_MIGRATIONS):
            return
        with self.transaction(write=True) as tx:
            version = tx.execute("PRAGMA user_version").fetchone()[0]
            if version > len(_MIGRATIONS):
                raise FailedPrecondition(
                    f"metadata schema {version} is newer than this pyimg understands",
                    hint="upgrade pyimg",
                )
            for i in range(version, len(_MIGRATIONS)):
                tx.executescript_safe(_MIGRATIONS[i])
            tx.execute(f"PRAGMA user_version = {len(_MIGRATIONS)}")

    def transaction(self, write: bool = False) -> _Transaction:
        """``with meta.transaction(write=...) as tx:`` commits at the end of the block,
        rolls back when it raises."""
        return _Transaction(self, write)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> MetaStore:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _Transaction:
    """One transaction (a class, not ``contextlib.contextmanager``: contextlib costs
    ~2 ms to import here, on every `pyimg run` and `pyimg pull`)."""

    __slots__ = ("_meta", "_write")

    def __init__(self, meta: MetaStore, write: bool) -> None:
        self._meta = meta
        self._write = write

    def __enter__(self) -> Tx:
        # One connection holds one transaction at a time: threads (parallel
        # fetch and unpack workers) take turns.  Opening a second one on the
        # same thread is a bug (pass the tx instead); refusing it up front
        # keeps sqlite's error from rolling back the outer transaction.
        meta = self._meta
        me = get_ident()
        if meta._owner == me:
            raise FailedPrecondition("metadata transaction: this thread is already in one")
        meta._lock.acquire()
        try:
            meta._owner = me
            meta._db.execute("BEGIN IMMEDIATE" if self._write else "BEGIN")
        except BaseException:
            meta._owner = None
            meta._lock.release()
            raise
        return Tx(meta._db)

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        meta = self._meta
        try:
            meta._db.execute("COMMIT" if et is None else "ROLLBACK")
        finally:
            meta._owner = None
            meta._lock.release()


def _retry_locked(fn: Callable[[], None], deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    delay = 0.005
    while True:
        try:
            fn()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > end:
                raise Unavailable(f"metadata database: {exc}",
                                  hint="another pyimg process holds it; retry") from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


class Tx:
    """A transaction handle: pass it explicitly, never keep it."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, args: tuple[object, ...] = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, args)

    def executescript_safe(self, script: str) -> None:
        # executescript() would COMMIT our transaction; run statements one by one.
        for statement in script.split(";"):
            if statement.strip():
                self._db.execute(statement)

    # images ------------------------------------------------------------
    def put_image(self, name: str, target: Descriptor) -> None:
        now = time.time()
        self.execute(
            "INSERT INTO images(name, media_type, digest, size, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET"
            " media_type=excluded.media_type, digest=excluded.digest, size=excluded.size,"
            " updated_at=excluded.updated_at",
            (name, target.media_type, str(target.digest), target.size, now, now),
        )

    def get_image(self, name: str) -> ImageRecord:
        row = self.execute("SELECT * FROM images WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"image {name}: not in the store", hint=f"run 'pyimg pull {name}'")
        return _image(row)

    def list_images(self) -> list[ImageRecord]:
        rows = self.execute("SELECT * FROM images ORDER BY name").fetchall()
        return [_image(r) for r in rows]

    def images_by_digest(self, digest: Digest) -> list[ImageRecord]:
        rows = self.execute("SELECT * FROM images WHERE digest = ? ORDER BY name",
                            (str(digest),)).fetchall()
        return [_image(r) for r in rows]

    def delete_image(self, name: str) -> None:
        if self.execute("DELETE FROM images WHERE name = ?", (name,)).rowcount == 0:
            raise NotFound(f"image {name}: not in the store")

    # content labels ----------------------------------------------------
    def set_labels(self, digest: Digest, labels: Mapping[str, str | None]) -> None:
        for key, value in labels.items():
            if value is None:
                self.execute("DELETE FROM content_labels WHERE digest = ? AND key = ?",
                             (str(digest), key))
            else:
                self.execute(
                    "INSERT INTO content_labels(digest, key, value) VALUES (?, ?, ?)"
                    " ON CONFLICT(digest, key) DO UPDATE SET value=excluded.value",
                    (str(digest), key, value),
                )

    def labels(self, digest: Digest) -> dict[str, str]:
        rows = self.execute("SELECT key, value FROM content_labels WHERE digest = ?",
                            (str(digest),)).fetchall()
        return {k: v for k, v in rows}

    def delete_labels(self, digest: Digest) -> None:
        self.execute("DELETE FROM content_labels WHERE digest = ?", (str(digest),))

    # leases ------------------------------------------------------------
    def create_lease(self, lease: str, ttl: float) -> None:
        now = time.time()
        self.execute("INSERT INTO leases(id, created, expires) VALUES (?, ?, ?)",
                     (lease, now, now + ttl))

    def add_lease_resources(self, lease: str, kind: str, keys: list[str]) -> None:
        for key in keys:
            self.execute("INSERT OR IGNORE INTO lease_resources(lease, kind, key)"
                         " VALUES (?, ?, ?)", (lease, kind, key))

    def delete_lease(self, lease: str) -> None:
        self.execute("DELETE FROM lease_resources WHERE lease = ?", (lease,))
        self.execute("DELETE FROM leases WHERE id = ?", (lease,))

    def delete_expired_leases(self, now: float) -> int:
        expired = [r[0] for r in self.execute("SELECT id FROM leases WHERE expires <= ?",
                                              (now,)).fetchall()]
        for lease in expired:
            self.delete_lease(lease)
        return len(expired)

    def leased(self, now: float) -> set[tuple[str, str]]:
        """(kind, key) of every resource an unexpired lease holds."""
        rows = self.execute("SELECT r.kind, r.key FROM lease_resources r JOIN leases l"
                            " ON l.id = r.lease WHERE l.expires > ?", (now,)).fetchall()
        return {(k, v) for k, v in rows}

    def all_labels(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for digest, key, value in self.execute(
                "SELECT digest, key, value FROM content_labels").fetchall():
            out.setdefault(digest, {})[key] = value
        return out

    # snapshots ---------------------------------------------------------
    # Rows only: the snapshotter owns the directories and the ordering
    # between them and these rows (see pyimg.snapshotters).
    def create_snapshot(self, snapshotter: str, key: str, kind: str, parent: str | None,
                        labels: Mapping[str, str] | None = None) -> SnapshotRecord:
        """Insert a snapshot; ``parent`` must be a committed snapshot."""
        if self._snapshot_row(snapshotter, key) is not None:
            raise AlreadyExists(f"snapshot {key}: already exists")
        if parent is not None:
            self._require_committed(snapshotter, parent)
        now = time.time()
        cur = self.execute(
            "INSERT INTO snapshots(snapshotter, key, kind, parent, created_at, updated_at,"
            " labels) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (snapshotter, key, kind, parent, now, now, jsonc.dumps(dict(labels or {}))),
        )
        assert cur.lastrowid is not None
        return SnapshotRecord(cur.lastrowid, snapshotter, key, kind, parent, now, now,
                              dict(labels or {}))

    def find_snapshot(self, snapshotter: str, key: str) -> SnapshotRecord | None:
        return self._snapshot_row(snapshotter, key)

    def get_snapshot(self, snapshotter: str, key: str) -> SnapshotRecord:
        row = self._snapshot_row(snapshotter, key)
        if row is None:
            raise NotFound(f"snapshot {key}: not found")
        return row

    def list_snapshots(self, snapshotter: str) -> list[SnapshotRecord]:
        rows = self.execute(f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots"
                            " WHERE snapshotter = ? ORDER BY id", (snapshotter,)).fetchall()
        return [_snapshot(r) for r in rows]

    def update_snapshot(self, snapshotter: str, key: str, *, kind: str | None = None,
                        new_key: str | None = None, parent: object = _KEEP,
                        labels: Mapping[str, str] | None = None) -> SnapshotRecord:
        """Change kind, key (commit: key -> name), parent (rebase) or labels."""
        rec = self.get_snapshot(snapshotter, key)
        if new_key is not None and new_key != key:
            if self._snapshot_row(snapshotter, new_key) is not None:
                raise AlreadyExists(f"snapshot {new_key}: already exists")
            if self.children(snapshotter, key):
                raise FailedPrecondition(f"snapshot {key}: has children, cannot be renamed")
        new_parent = rec.parent if parent is _KEEP else parent
        if new_parent is not None and not isinstance(new_parent, str):
            raise TypeError("parent must be a str or None")
        if new_parent is not None and new_parent != rec.parent:
            self._require_committed(snapshotter, new_parent)
        now = time.time()
        updated = SnapshotRecord(
            rec.id, snapshotter, new_key or key, kind or rec.kind, new_parent,
            rec.created_at, now, dict(rec.labels if labels is None else labels))
        self.execute(
            "UPDATE snapshots SET key = ?, kind = ?, parent = ?, updated_at = ?, labels = ?"
            " WHERE id = ?",
            (updated.key, updated.kind, updated.parent, now, jsonc.dumps(dict(updated.labels)),
             rec.id),
        )
        return updated

    def delete_snapshot(self, snapshotter: str, key: str) -> SnapshotRecord:
        """Delete the row (refused while children exist); returns what was deleted."""
        rec = self.get_snapshot(snapshotter, key)
        kids = self.children(snapshotter, key)
        if kids:
            raise FailedPrecondition(
                f"remove snapshot {key}: {len(kids)} snapshot(s) depend on it",
                hint=f"remove {kids[0]!r} first",
            )
        self.execute("DELETE FROM snapshots WHERE id = ?", (rec.id,))
        return rec

    def children(self, snapshotter: str, key: str) -> list[str]:
        rows = self.execute("SELECT key FROM snapshots WHERE snapshotter = ? AND parent = ?"
                            " ORDER BY id", (snapshotter, key)).fetchall()
        return [r[0] for r in rows]

    def _snapshot_row(self, snapshotter: str, key: str) -> SnapshotRecord | None:
        row = self.execute(f"SELECT {_SNAPSHOT_COLUMNS} FROM snapshots"
                           " WHERE snapshotter = ? AND key = ?", (snapshotter, key)).fetchone()
        return None if row is None else _snapshot(row)

    def _require_committed(self, snapshotter: str, name: str) -> None:
        parent = self._snapshot_row(snapshotter, name)
        if parent is None:
            raise NotFound(f"parent snapshot {name}: not found")
        if parent.kind != "committed":
            raise FailedPrecondition(f"parent snapshot {name}: is {parent.kind}, not committed")


_SNAPSHOT_COLUMNS = "id, snapshotter, key, kind, parent, created_at, updated_at, labels"


def _snapshot(row: tuple[int, str, str, str, str | None, float, float, str]) -> SnapshotRecord:
    id_, snapshotter, key, kind, parent, created, updated, labels = row
    return SnapshotRecord(id_, snapshotter, key, kind, parent, created, updated,
                          jsonc.loads(labels))


def _image(row: tuple[str, str, str, int, float, float]) -> ImageRecord:
    name, media_type, digest, size, created, updated = row
    return ImageRecord(name, Descriptor(media_type, Digest.parse(digest), size), created, updated)
