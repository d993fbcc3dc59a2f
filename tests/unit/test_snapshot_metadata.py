"""Snapshot rows in metadata.db (no directories: those are the snapshotter's)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyimg.errors import AlreadyExists, FailedPrecondition, NotFound
from pyimg.metadata import _MIGRATIONS, MetaStore


@pytest.fixture
def meta(tmp_path: Path) -> Iterator[MetaStore]:
    with MetaStore(tmp_path / "m.db") as store:
        yield store


def test_create_get_list(meta: MetaStore) -> None:
    with meta.transaction(write=True) as tx:
        a = tx.create_snapshot("overlay", "a", "committed", None, {"x": "1"})
        b = tx.create_snapshot("overlay", "b", "active", "a")
        tx.create_snapshot("native", "a", "active", None)  # keys are per snapshotter
    with meta.transaction() as tx:
        assert tx.get_snapshot("overlay", "a") == a
        assert tx.get_snapshot("overlay", "b").parent == "a"
        assert [r.key for r in tx.list_snapshots("overlay")] == ["a", "b"]
        assert tx.children("overlay", "a") == ["b"]
        assert tx.find_snapshot("overlay", "zzz") is None
        assert dict(a.labels) == {"x": "1"}
    assert a.id < b.id


def test_duplicate_and_bad_parent(meta: MetaStore) -> None:
    with meta.transaction(write=True) as tx:
        tx.create_snapshot("overlay", "a", "active", None)
        with pytest.raises(AlreadyExists):
            tx.create_snapshot("overlay", "a", "active", None)
        with pytest.raises(FailedPrecondition):
            tx.create_snapshot("overlay", "b", "active", "a")  # parent not committed
        with pytest.raises(NotFound):
            tx.create_snapshot("overlay", "c", "active", "missing")


def test_update_commit_and_rebase(meta: MetaStore) -> None:
    with meta.transaction(write=True) as tx:
        tx.create_snapshot("overlay", "p", "committed", None)
        rec = tx.create_snapshot("overlay", "k", "active", None, {"a": "1"})
        done = tx.update_snapshot("overlay", "k", kind="committed", new_key="n", parent="p")
        assert (done.id, done.key, done.kind, done.parent) == (rec.id, "n", "committed", "p")
        assert dict(done.labels) == {"a": "1"}
        with pytest.raises(NotFound):
            tx.get_snapshot("overlay", "k")
        with pytest.raises(AlreadyExists):
            tx.update_snapshot("overlay", "n", new_key="p")
        with pytest.raises(FailedPrecondition):
            tx.update_snapshot("overlay", "p", new_key="renamed")  # has a child
        assert tx.update_snapshot("overlay", "n", parent=None).parent is None


def test_delete_refused_with_children(meta: MetaStore) -> None:
    with meta.transaction(write=True) as tx:
        tx.create_snapshot("overlay", "p", "committed", None)
        tx.create_snapshot("overlay", "c", "active", "p")
        with pytest.raises(FailedPrecondition):
            tx.delete_snapshot("overlay", "p")
        assert tx.delete_snapshot("overlay", "c").key == "c"
        tx.delete_snapshot("overlay", "p")
        with pytest.raises(NotFound):
            tx.delete_snapshot("overlay", "p")


def test_foreign_key_enforced(meta: MetaStore) -> None:
    with meta.transaction(write=True) as tx, pytest.raises(sqlite3.IntegrityError):
        tx.execute("INSERT INTO snapshots(snapshotter, key, kind, parent, created_at,"
                   " updated_at) VALUES ('overlay', 'x', 'active', 'nope', 0, 0)")


def test_ids_never_reused(meta: MetaStore) -> None:
    with meta.transaction(write=True) as tx:
        first = tx.create_snapshot("overlay", "a", "active", None)
        tx.delete_snapshot("overlay", "a")
        assert tx.create_snapshot("overlay", "a", "active", None).id > first.id


def test_migrates_a_version_1_database(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "m.db")
    db.executescript(_MIGRATIONS[0])
    db.execute("PRAGMA user_version = 1")
    db.close()
    with MetaStore(tmp_path / "m.db") as meta, meta.transaction(write=True) as tx:
        assert tx.execute("PRAGMA user_version").fetchone()[0] == len(_MIGRATIONS)
        tx.create_snapshot("overlay", "a", "active", None)


def test_threads_take_turns_on_one_connection(meta: MetaStore) -> None:
    def work(n: int) -> None:
        for i in range(30):
            with meta.transaction(write=True) as tx:
                tx.create_snapshot("overlay", f"{n}-{i}", "active", None)
            with meta.transaction() as tx:
                tx.get_snapshot("overlay", f"{n}-{i}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with meta.transaction() as tx:
        assert len(tx.list_snapshots("overlay")) == 240


def test_nested_transaction_refused_without_harm(meta: MetaStore) -> None:
    with meta.transaction(write=True) as tx:
        tx.create_snapshot("overlay", "kept", "active", None)
        with pytest.raises(FailedPrecondition), meta.transaction():
            pass
    with meta.transaction() as tx:
        assert tx.find_snapshot("overlay", "kept") is not None
