"""Filesystem content store: ``blobs/<alg>/<hex>`` plus resumable ingests.

Layout::

    blobs/sha256/<hex>            verified, read-only (0444)
    ingest/<sha256(ref)>/lock     flock'd by the one writer of this ref
    ingest/<sha256(ref)>/data     bytes received so far
    ingest/<sha256(ref)>/meta     JSON: ref, expected digest and size

pyimg has no daemon, so the "one writer per ref" rule that containerd keeps
in memory is an ``flock`` here: a second process pulling the same blob waits
on the lock, then finds the blob committed and skips it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat

from pyimg import jsonc
from pyimg.digest import Digest, Verifier, sha256_hex, verify_bytes
from pyimg.errors import AlreadyExists, FailedPrecondition, IntegrityError, NotFound
from pyimg.fsutil import fsync_dir, unlink_quietly
from pyimg.record import Record

# Import-light: `pyimg run` and `pyimg pull` read and write blobs here, so paths are
# strings on those paths and pathlib is imported by what lists (gc, save).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path
    from types import TracebackType
    from typing import BinaryIO

    from pyimg.fsutil import StrPath
    from pyimg.oci import Descriptor

_CHUNK = 1 << 20


class BlobInfo(Record):
    _fields = ("digest", "size", "mtime")
    __slots__ = _fields
    digest: Digest
    size: int
    mtime: float

    def __init__(self, digest: Digest, size: int, mtime: float) -> None:
        self._set(digest, size, mtime)


class LocalStore:
    def __init__(self, root: StrPath) -> None:
        self.root = root
        self._blobs = os.path.join(root, "blobs")
        self._ingest = os.path.join(root, "ingest")

    def blob_path(self, digest: Digest) -> Path:
        from pathlib import Path

        return Path(self._blob(digest))

    def blob_location(self, digest: Digest) -> str:
        """The blob's path, as a string."""
        return self._blob(digest)

    def _blob(self, digest: Digest) -> str:
        return os.path.join(self._blobs, digest.algorithm, digest.hex)

    def exists(self, digest: Digest) -> bool:
        return os.path.isfile(self._blob(digest))

    def info(self, digest: Digest) -> BlobInfo:
        try:
            st = os.stat(self._blob(digest))
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not in the store") from None
        return BlobInfo(digest, st.st_size, st.st_mtime)

    def open(self, digest: Digest) -> BinaryIO:
        try:
            return open(self._blob(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not in the store") from None

    def read(self, desc: Descriptor) -> bytes:
        """Small documents (manifests, configs), re-verified on every read."""
        with self.open(desc.digest) as f:
            data = f.read(desc.size + 1)
        verify_bytes(data, desc.digest, desc.size)
        return data

    def walk(self) -> Iterator[BlobInfo]:
        from pathlib import Path

        for algdir in sorted(Path(self._blobs).glob("*")):
            for entry in sorted(os.scandir(algdir), key=lambda e: e.name):
                if entry.name.startswith("."):
                    continue
                st = entry.stat()
                yield BlobInfo(Digest(algdir.name, entry.name), st.st_size, st.st_mtime)

    def delete(self, digest: Digest) -> None:
        try:
            os.unlink(self._blob(digest))
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not in the store") from None

    def writer(self, ref: str, expected: Descriptor,
               on_wait: Callable[[], None] | None = None) -> Writer:
        """Open (or resume) the ingest for ``ref``.

        Blocks while another process writes the same ref, calling ``on_wait``
        first so that a progress display can say why nothing moves.
        """
        if self.exists(expected.digest):
            raise AlreadyExists(f"content {expected.digest}: already in the store")
        ingest = os.path.join(self._ingest, sha256_hex(ref.encode()))
        lock_fd = _lock(ingest, on_wait)
        try:
            if self.exists(expected.digest):
                raise AlreadyExists(f"content {expected.digest}: already in the store")
            return Writer(self, ingest, lock_fd, ref, expected)
        except BaseException:
            os.close(lock_fd)
            raise

    def sync(self) -> None:
        """Make every committed rename durable (fsync of the blob directories)."""
        if os.path.isdir(self._blobs):
            for name in os.listdir(self._blobs):
                fsync_dir(os.path.join(self._blobs, name))

    def ingests(self) -> Iterator[Path]:
        from pathlib import Path

        if os.path.isdir(self._ingest):
            yield from sorted(Path(self._ingest).iterdir())

    def write_blob(self, desc: Descriptor, data: bytes, *, sync_dir: bool = True) -> None:
        """Store a small blob held in memory; idempotent.  ``sync_dir=False``: see
        :meth:`Writer.commit`."""
        try:
            with self.writer(str(desc.digest), desc) as w:
                if w.offset:
                    w.truncate(0)
                w.write(data)
                w.commit(sync_dir=sync_dir)
        except AlreadyExists:
            pass


def _lock(ingest: str, on_wait: Callable[[], None] | None) -> int:
    """flock ``ingest/lock``, retrying if the dir was committed and removed meanwhile."""
    while True:
        os.makedirs(ingest, exist_ok=True)
        path = os.path.join(ingest, "lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:
            continue  # removed between mkdir and open by a committing writer
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


class Writer:
    """One ingest in progress.  ``offset`` is where the next write lands."""

    def __init__(
        self, store: LocalStore, ingest: StrPath, lock_fd: int, ref: str, expected: Descriptor
    ) -> None:
        self._store = store
        self._dir = ingest = os.fspath(ingest)
        self._lock_fd = lock_fd
        self.expected = expected
        self._closed = False
        self._verifier = Verifier(expected.digest, expected.size)
        meta = jsonc.dumps({"ref": ref, "digest": str(expected.digest), "size": expected.size})
        data_path = os.path.join(ingest, "data")
        meta_path = os.path.join(ingest, "meta")
        if _read_text(meta_path) != meta:
            # Another blob's leftovers (or none): start clean.
            try:  # noqa: SIM105 - contextlib costs ~2 ms to import here
                os.unlink(data_path)
            except FileNotFoundError:
                pass
            # No fsync: a torn meta only fails to match next time, and the
            # ingest then restarts from zero.
            with open(meta_path, "w") as f:
                f.write(meta)
        self._file = open(data_path, "ab+", buffering=0)  # noqa: SIM115 - closed in close()
        self.offset = self._rehash()

    def _rehash(self) -> int:
        """Resume: hashlib state can't be saved, so re-read what is on disk."""
        self._file.seek(0)
        size = 0
        while chunk := self._file.read(_CHUNK):
            if self.expected.size is not None and size + len(chunk) > self.expected.size:
                self.truncate(0)
                return 0
            self._verifier.update(chunk)
            size += len(chunk)
        return size

    def truncate(self, offset: int) -> None:
        """Discard everything after ``offset`` (only 0 is supported: hashes don't rewind)."""
        if offset != 0:
            raise FailedPrecondition("ingest can only be truncated to 0")
        self._file.truncate(0)
        self._file.seek(0)
        self._verifier = Verifier(self.expected.digest, self.expected.size)
        self.offset = 0

    def write(self, data: bytes | memoryview) -> int:
        self._verifier.update(data)  # raises SizeMismatch before the disk fills
        size = len(data)
        written = 0
        while written < size:  # unbuffered file: a short write is possible
            written += self._file.write(data[written:] if written else data) or 0
        self.offset += size
        return size

    def commit(self, *, sync_dir: bool = True) -> None:
        """fsync, verify, rename into place; always closes the writer.

        ``sync_dir=False`` leaves the rename's durability to a later
        :meth:`LocalStore.sync` (a pull does one for all its blobs).
        """
        try:
            os.fsync(self._file.fileno())
            try:
                self._verifier.verify()
            except IntegrityError:
                self.truncate(0)  # the bytes are wrong: resuming would only fail again
                raise
            target = self._store._blob(self.expected.digest)
            parent = os.path.dirname(target)
            os.makedirs(parent, exist_ok=True)
            os.chmod(self._file.fileno(), stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            os.rename(os.path.join(self._dir, "data"), target)
            if sync_dir:
                fsync_dir(parent)
        finally:
            self.close()
        # The blob is in place; failing to tidy the ingest must not fail the commit.
        for name in ("meta", "lock"):
            unlink_quietly(os.path.join(self._dir, name))
        try:  # noqa: SIM105 - contextlib costs ~2 ms to import here
            os.rmdir(self._dir)
        except OSError:
            pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._file.close()
        finally:
            os.close(self._lock_fd)

    def __enter__(self) -> Writer:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EISDIR):
            return None
        raise
