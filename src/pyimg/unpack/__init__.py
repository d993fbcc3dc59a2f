"""Unpack: an image's layers → a chain of committed snapshots named by chain ID.

With a snapshotter that can rebase (overlay), every layer is extracted into
its own directory, independently and in parallel (worker processes), as
soon as its blob is in the store — during a pull, while later layers still
download.  Commits happen in layer order, each after its diffID has been
checked against the image config.  Without rebase (native), layers are
applied one after the other onto a copy of their parent.

Two cases need the layers below, which a parallel extraction does not see:

* a hardlink to a file of a lower layer: the applier defers it and the
  commit step copies the file up from the lower chain (as overlay would);
* a path that goes through a symlink made by a lower layer (``lib/x`` with
  ``lib -> usr/lib`` below): the commit step finds the conflict and
  re-applies that layer onto a real overlay mount of its parents, so the
  result is what a sequential unpack gives.

Layers already committed (same chain ID, from any image) are skipped.  An
interrupted unpack leaves ``extract-…`` snapshots whose lock is free;
:func:`cleanup_stale` removes them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

from pyimg import oci
from pyimg.archive import Limits, WhiteoutMode
from pyimg.digest import Digest
from pyimg.errors import AlreadyExists, NotFound, UnpackError
from pyimg.imageparts import ImageParts, chain_ids, image_parts
from pyimg.record import Record
from pyimg.snapshotters import Kind
from pyimg.unpack.pool import ApplyPool, Job, workers_for

# Import-light (a pull that unpacks imports this before its layers download, see
# docs/design.md): no secrets, dataclasses, typing or pathlib here, and the
# commit-time checks against lower layers (tarfile...) are imported when a layer
# has lower layers.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from pyimg.archive import ApplyResult
    from pyimg.content import LocalStore
    from pyimg.fsutil import StrPath
    from pyimg.snapshotters import Snapshotter
    from pyimg.unpack.pool import Pending

    Note = Callable[[str], None]

__all__ = ["ImageParts", "UnpackResult", "Unpacker", "chain_ids", "cleanup_stale",
           "image_parts", "unpack"]

_EXTRACT = "extract-"


class UnpackResult(Record):
    _fields = ("chain_id", "extracted", "reused")
    __slots__ = _fields
    chain_id: Digest
    extracted: int
    reused: int

    def __init__(self, chain_id: Digest, extracted: int, reused: int) -> None:
        self._set(chain_id, extracted, reused)


class Unpacker:
    """Unpacks one image; feed it with :meth:`layer_ready`, then :meth:`finish`."""

    def __init__(self, content: LocalStore, sn: Snapshotter, parts: ImageParts, pool: ApplyPool,
                 lock_dir: StrPath, *, limits: Limits | None = None, note: Note | None = None
                 ) -> None:
        self.content = content
        self.sn = sn
        self.parts = parts
        self.pool = pool
        self.limits = limits or Limits()
        self.note = note
        self.chain = [str(c) for c in parts.chain]
        self.nonce = os.urandom(6).hex()  # secrets.token_hex(6), without secrets
        self._lock_fd = _hold_lock(lock_dir, self.nonce)
        self._keys: dict[int, str] = {}
        self._pending: dict[int, Pending] = {}
        self.first = self._first_missing()

    def _first_missing(self) -> int:
        for i in range(len(self.chain) - 1, -1, -1):
            if _committed(self.sn, self.chain[i]):
                return i + 1
        return 0

    @property
    def parallel(self) -> bool:
        return self.sn.supports_rebase

    def layer_ready(self, index: int) -> None:
        """Blob ``index`` is in the content store: start extracting it if useful."""
        if index < self.first or not self.parallel or index in self._pending:
            return
        key = self._prepare(index, None)
        self._pending[index] = self.pool.submit(self._job(index, self.sn.upper_dir(key),
                                                          WhiteoutMode.OVERLAY))

    def finish(self) -> UnpackResult:
        """Commit every missing layer in order; the top chain ID."""
        try:
            for i in range(self.first, len(self.chain)):
                if self.parallel:
                    self.layer_ready(i)  # no-op when already submitted
                    self._commit_parallel(i)
                else:
                    self._apply_sequential(i)
        except BaseException:
            self.abort()
            raise
        finally:
            _release_lock(self._lock_fd)
        return UnpackResult(Digest.parse(self.chain[-1]), len(self.chain) - self.first,
                            self.first)

    def abort(self) -> None:
        for index, key in list(self._keys.items()):
            pending = self._pending.get(index)
            if pending is not None:
                with contextlib.suppress(BaseException):
                    pending.result()  # never delete a dir a worker is writing
            with contextlib.suppress(NotFound):
                self.sn.remove(key)
            del self._keys[index]

    # -- steps -------------------------------------------------------------
    def _prepare(self, index: int, parent: str | None) -> str:
        key = f"{_EXTRACT}{self.nonce} {self.chain[index]}"
        self.sn.prepare(key, parent, labels={"pyimg.io/unpack": self.nonce})
        self._keys[index] = key
        return key

    def _job(self, index: int, root: StrPath, mode: WhiteoutMode,
             lowers: Sequence[StrPath] = ()) -> Job:
        layer = self.parts.manifest.layers[index]
        return Job(self.content.blob_location(layer.digest),
                   oci.layer_compression(layer.media_type), root, mode, self.limits,
                   tuple(lowers))

    def _commit_parallel(self, i: int) -> None:
        result = self._pending[i].result()
        self._check_diff_id(i, result)
        key = self._keys[i]
        lowers = self._lower_dirs(i)
        if result.deferred:
            from pathlib import Path

            from pyimg.unpack.lower import copy_up_hardlinks

            copy_up_hardlinks(Path(self.sn.upper_dir(key)), lowers, result.deferred)
        if lowers and _symlink_conflicts(result.dirs, lowers):
            if self.note:
                self.note(f"layer {i}: writes through a symlink of a lower layer;"
                          " re-applying it on an overlay mount")
            key = self._reapply_mounted(i)
        self._commit(i, key, parent=self.chain[i - 1] if i else None)

    def _apply_sequential(self, i: int) -> None:
        key = self._prepare(i, self.chain[i - 1] if i else None)
        job = self._job(i, self.sn.upper_dir(key), WhiteoutMode.DELETE)
        self._check_diff_id(i, self.pool.submit(job).result())
        self._commit(i, key)

    def _reapply_mounted(self, i: int) -> str:
        from pathlib import Path

        from pyimg.mount import mounted

        self.sn.remove(self._keys.pop(i))
        key = self._prepare(i, self.chain[i - 1])
        with mounted(self.sn.mounts(key), Path(self.sn.upper_dir(key)).parent) as target:
            job = self._job(i, Path(target), WhiteoutMode.DELETE)
            self._check_diff_id(i, self.pool.submit(job).result())
        return key

    def _lower_dirs(self, i: int) -> list[Path]:
        """Committed parents' layer dirs, nearest first."""
        if not i:
            return []
        from pathlib import Path

        return [Path(self.sn.upper_dir(self.chain[j])) for j in range(i - 1, -1, -1)]

    def _check_diff_id(self, i: int, result: ApplyResult) -> None:
        expected = self.parts.config.diff_ids[i]
        if result.diff_id != expected:
            layer = self.parts.manifest.layers[i]
            raise UnpackError(f"layer {i} ({layer.digest}): diffID {result.diff_id} does not"
                              f" match {expected} in the image config",
                              hint="the image is corrupt or was tampered with")
        if result.skipped_devices and self.note:
            self.note(f"layer {i}: device nodes not created: "
                      + ", ".join(result.skipped_devices[:5]))

    def _commit(self, i: int, key: str, parent: str | None = None) -> None:
        try:
            self.sn.commit(self.chain[i], key, parent=parent)
        except AlreadyExists:  # another pyimg process committed the same layer first
            self.sn.remove(key)
        self._keys.pop(i, None)


def _symlink_conflicts(dirs: list[str], lowers: list[Path]) -> list[str]:
    from pyimg.unpack.lower import symlink_conflicts  # imports tarfile: when needed

    return symlink_conflicts(dirs, lowers)


def unpack(content: LocalStore, sn: Snapshotter, parts: ImageParts, lock_dir: StrPath, *,
           processes: int | None = None, limits: Limits | None = None,
           note: Note | None = None) -> UnpackResult:
    """Unpack an image whose blobs are all in the store."""
    with ApplyPool(workers_for(len(parts.manifest.layers), sn.supports_rebase,
                               processes)) as pool:
        u = Unpacker(content, sn, parts, pool, lock_dir, limits=limits, note=note)
        for i in range(u.first, len(parts.manifest.layers)):
            u.layer_ready(i)
        return u.finish()


def cleanup_stale(sn: Snapshotter, lock_dir: StrPath) -> list[str]:
    """Remove ``extract-…`` snapshots left by killed unpacks (their lock is free)."""
    removed = []
    for info in list(sn.walk()):
        if info.kind is Kind.COMMITTED or not info.key.startswith(_EXTRACT):
            continue
        nonce = info.key[len(_EXTRACT):].split(" ", 1)[0]
        if _lock_is_free(lock_dir, nonce):
            with contextlib.suppress(NotFound):
                sn.remove(info.key)
                removed.append(info.key)
    return removed


def _committed(sn: Snapshotter, name: str) -> bool:
    try:
        return sn.stat(name).kind is Kind.COMMITTED
    except NotFound:
        return False


def _hold_lock(lock_dir: StrPath, nonce: str) -> int:
    os.makedirs(lock_dir, 0o700, exist_ok=True)
    fd = os.open(os.path.join(lock_dir, nonce), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _release_lock(fd: int) -> None:
    path = f"/proc/self/fd/{fd}"
    with contextlib.suppress(OSError):
        os.unlink(os.readlink(path))
    os.close(fd)


def _lock_is_free(lock_dir: StrPath, nonce: str) -> bool:
    try:
        fd = os.open(os.path.join(lock_dir, nonce), os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(lock_dir, nonce))
    return True
