"""sqlite metadata: images and content labels (snapshots and containers later).

One database in WAL mode, shared by every pyimg process.  The only way in is
``with meta.transaction(write=True) as tx:``: writes take the lock up front
with ``BEGIN IMMEDIATE`` so two processes never deadlock upgrading a read
lock; the block commits on normal exit and rolls back on an exception.
Blobs on disk are authoritative; the database holds names and references.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from pyimg.digest import Digest
from pyimg.errors import FailedPrecondition, NotFound, Unavailable
from pyimg.oci import Descriptor

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
)


@dataclass(frozen=True, slots=True)
class ImageRecord:
    name: str
    target: Descriptor
    created_at: float
    updated_at: float


class MetaStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, timeout=60.0,
                                   check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 60000")
        self._db.execute("PRAGMA synchronous = NORMAL")
        _retry_locked(self._enable_wal)
        _retry_locked(self._migrate)

    def _enable_wal(self) -> None:
        # Switching the journal mode needs an exclusive lock and sqlite does not
        # run the busy handler for it: a second process opening the database at
        # the same moment gets "database is locked" at once.  Hence the retry.
        if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self._db.execute("PRAGMA journal_mode = WAL")

    def _migrate(self) -> None:
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

    @contextmanager
    def transaction(self, write: bool = False) -> Iterator[Tx]:
        self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield Tx(self._db)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> MetaStore:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


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


def _image(row: tuple[str, str, str, int, float, float]) -> ImageRecord:
    name, media_type, digest, size, created, updated = row
    return ImageRecord(name, Descriptor(media_type, Digest.parse(digest), size), created, updated)
