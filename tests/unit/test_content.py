import os
import stat
import threading
import time
from pathlib import Path

import pytest

from pyimg.content import LocalStore
from pyimg.digest import Digest
from pyimg.errors import AlreadyExists, DigestMismatch, SizeMismatch
from pyimg.metadata import _MIGRATIONS, MetaStore
from pyimg.oci import OCI_LAYER, Descriptor

DATA = os.urandom(300_000)
DESC = Descriptor(OCI_LAYER, Digest.of(DATA), len(DATA))


def test_commit_makes_blob_visible_read_only(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with store.writer("r", DESC) as w:
        assert not store.exists(DESC.digest)
        w.write(DATA)
        w.commit()
    path = store.blob_path(DESC.digest)
    assert path.read_bytes() == DATA
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert list(store.ingests()) == []
    with pytest.raises(AlreadyExists):
        store.writer("r", DESC)


def test_interrupted_writer_resumes_at_offset(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with store.writer("r", DESC) as w:
        w.write(DATA[:1000])
    with store.writer("r", DESC) as w:
        assert w.offset == 1000
        w.write(DATA[1000:])
        w.commit()
    assert store.read(DESC) == DATA


def test_wrong_bytes_are_refused_and_not_visible(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with store.writer("r", DESC) as w:
        w.write(b"x" * len(DATA))
        with pytest.raises(DigestMismatch):
            w.commit()
    assert not store.exists(DESC.digest)
    with store.writer("r", DESC) as w:
        assert w.offset == 0  # bad bytes discarded, not resumed


def test_more_bytes_than_declared_are_refused(tmp_path: Path) -> None:
    with LocalStore(tmp_path).writer("r", DESC) as w, pytest.raises(SizeMismatch):
        w.write(DATA + b"!")


def test_second_writer_waits_then_sees_blob(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    waited = threading.Event()
    w = store.writer("r", DESC)
    w.write(DATA)
    result: list[str] = []

    def other() -> None:
        try:
            LocalStore(tmp_path).writer("r", DESC, on_wait=waited.set)
            result.append("writer")
        except AlreadyExists:
            result.append("exists")

    t = threading.Thread(target=other)
    t.start()
    assert waited.wait(5)
    time.sleep(0.05)
    w.commit()
    t.join(5)
    assert result == ["exists"]


def test_metadata_images_and_labels(tmp_path: Path) -> None:
    with MetaStore(tmp_path / "m.db") as meta:
        with meta.transaction(write=True) as tx:
            tx.put_image("a:1", DESC)
            tx.set_labels(DESC.digest, {"k": "v", "gone": None})
        with pytest.raises(RuntimeError), meta.transaction(write=True) as tx:
            tx.put_image("b:1", DESC)
            raise RuntimeError
        with meta.transaction() as tx:
            assert [r.name for r in tx.list_images()] == ["a:1"]  # b rolled back
            assert tx.get_image("a:1").target == DESC
            assert tx.labels(DESC.digest) == {"k": "v"}
    with MetaStore(tmp_path / "m.db") as meta, meta.transaction() as tx:  # reopen: migrated once
        assert tx.execute("PRAGMA user_version").fetchone()[0] == len(_MIGRATIONS)
