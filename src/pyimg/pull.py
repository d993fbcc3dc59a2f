"""Pull: walk index → manifests → config and layers into the content store.

Small documents (index, manifests, configs) are fetched first, one by one,
verified and stored; then every missing config and layer blob is fetched by
a bounded thread pool (network and hashing release the GIL).  A blob already
in the store is skipped; a blob another process is writing is waited for,
not downloaded twice; a partial ingest left by a killed pull is resumed.

Progress is reported as :class:`ProgressEvent` values through a callback,
never printed: the CLI decides between bars, plain lines and JSON.
"""

from __future__ import annotations

import os
from _thread import allocate_lock, start_new_thread  # threading costs ~2.5 ms to import

from pyimg import oci
from pyimg.digest import Verifier
from pyimg.errors import AlreadyExists, IntegrityError, InvalidArgument, NotFound
from pyimg.oci import Descriptor, Platform
from pyimg.record import Record

# Import-light (see docs/design.md, "A small pull is import-budgeted"): no typing,
# dataclasses or threading; the protocol and the aliases are for type checkers (and
# for callers that import them: see __getattr__).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from _thread import LockType
    from collections.abc import Callable, Iterable
    from typing import Protocol

    from pyimg.content import LocalStore
    from pyimg.digest import Digest
    from pyimg.metadata import MetaStore, Tx
    from pyimg.sources import ImageSource

    class BlobObserver(Protocol):
        """Told about each layer blob once it is in the store (fetched or already
        there), from the fetching threads; e.g. an unpacker starting extraction."""

        def blob_ready(self, desc: Descriptor) -> None: ...

    ProgressFn = Callable[["ProgressEvent"], None]
    #: Called once the manifests and configs are stored, before layers download.
    ObserverFactory = Callable[["PullResult"], "BlobObserver | None"]


def __getattr__(name: str) -> object:
    if name in ("BlobObserver", "ProgressFn", "ObserverFactory"):
        from collections.abc import Callable
        from typing import Protocol

        class BlobObserver(Protocol):
            def blob_ready(self, desc: Descriptor) -> None: ...

        found = {"BlobObserver": BlobObserver,
                 "ProgressFn": Callable[[ProgressEvent], None],
                 "ObserverFactory": Callable[[PullResult], BlobObserver | None]}
        globals().update(found)
        return found[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ProgressEvent(Record):
    """One step of a pull.

    kind: ``resolved`` (root known), ``start`` (blob transfer begins at
    ``done`` bytes: non-zero when resumed), ``progress``, ``waiting``
    (another process holds this blob), ``done``, ``skipped`` (already
    stored), ``stored`` (image recorded under ``name``).
    """

    _fields = ("kind", "desc", "done", "total", "name")
    __slots__ = _fields
    kind: str
    desc: Descriptor | None
    done: int
    total: int
    name: str

    def __init__(self, kind: str, desc: Descriptor | None = None, done: int = 0,
                 total: int = 0, name: str = "") -> None:
        self._set(kind, desc, done, total, name)


class PullOptions(Record):
    _fields = ("platform", "all_platforms", "jobs")
    __slots__ = _fields
    platform: Platform | None  # None: the host's
    all_platforms: bool
    jobs: int

    def __init__(self, platform: Platform | None = None, all_platforms: bool = False,
                 jobs: int = 4) -> None:
        self._set(platform, all_platforms, jobs)


class PullResult:
    """What a pull did (mutable: filled in as it goes)."""

    __slots__ = ("bytes_fetched", "fetched", "manifests", "name", "skipped", "target",
                 "unpacked")

    def __init__(self, name: str | None, target: Descriptor,
                 manifests: list[Descriptor] | None = None, fetched: int = 0, skipped: int = 0,
                 bytes_fetched: int = 0, unpacked: object = None) -> None:
        self.name = name
        self.target = target
        self.manifests: list[Descriptor] = [] if manifests is None else manifests
        self.fetched = fetched
        self.skipped = skipped
        self.bytes_fetched = bytes_fetched
        self.unpacked = unpacked  # the UnpackResult when the pull unpacked

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in _RESULT_FIELDS)

    def __eq__(self, other: object) -> bool:
        if type(other) is not PullResult:
            return NotImplemented
        return self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]  # mutable, as a dataclass

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={getattr(self, k)!r}" for k in _RESULT_FIELDS)
        return f"PullResult({inner})"


_RESULT_FIELDS = ("name", "target", "manifests", "fetched", "skipped", "bytes_fetched",
                  "unpacked")


def _noop(_: ProgressEvent) -> None:
    pass


def pull(source: ImageSource, store: LocalStore, meta: MetaStore,
         options: PullOptions | None = None, on_progress: ProgressFn | None = None,
         observe: ObserverFactory | None = None) -> PullResult:
    options = options or PullOptions()
    emit = on_progress or _noop
    root = source.resolve()
    name = str(source.image_name) if source.image_name else None
    emit(ProgressEvent("resolved", root, total=root.size, name=name or ""))
    result = PullResult(name, root)
    labels: dict[Digest, dict[str, str]] = {}
    # pins every blob we store or skip until the image is recorded
    lease = Lease(meta, [root])
    try:
        blobs = _walk(source, store, root, options, result, labels, lease)
        lease.protect(blobs)  # (already protected with their manifest: no transaction)
        observer = observe(result) if observe is not None else None
        _fetch_all(source, store, blobs, options.jobs, emit, result, observer)
        # Blob commits skip the directory fsync; one here makes every rename
        # durable before the image that names them is recorded.
        store.sync()
        with meta.transaction(write=True) as tx:
            for digest, lab in labels.items():
                tx.set_labels(digest, lab)
            if name:
                tx.put_image(name, root)
            tx.delete_lease(lease.id)
        lease.released = True
    finally:
        lease.release()
    if name:
        emit(ProgressEvent("stored", root, name=name))
    return result


class Lease:
    """A gc lease (see :mod:`pyimg.gc`): a resource is added *before* the pull
    looks for or writes it, so gc either sees it leased or has finished
    deleting it first (both take the database write lock).  Resources already
    added are not added again (each addition is a write transaction)."""

    TTL = 3600.0  # a killed pull pins its blobs for at most this long

    def __init__(self, meta: MetaStore, descs: Iterable[Descriptor] = ()) -> None:
        self._meta = meta
        self.id = f"pull-{_uuid4_hex(os.urandom(16))}"
        self.released = False
        self._keys: set[str] = set()
        keys = self._new(descs)
        with meta.transaction(write=True) as tx:
            tx.create_lease(self.id, self.TTL)
            self._add(tx, keys)

    def protect(self, descs: Iterable[Descriptor]) -> None:
        keys = self._new(descs)
        if keys:
            with self._meta.transaction(write=True) as tx:
                self._add(tx, keys)

    def _new(self, descs: Iterable[Descriptor]) -> list[str]:
        keys = list(dict.fromkeys(k for k in (str(d.digest) for d in descs)
                                  if k not in self._keys))
        self._keys.update(keys)
        return keys

    def _add(self, tx: Tx, keys: list[str]) -> None:
        tx.add_lease_resources(self.id, "content", keys)
        tx.add_lease_resources(self.id, "ingest", keys)  # pull's ingest ref is the digest

    def release(self) -> None:
        if self.released:
            return
        with self._meta.transaction(write=True) as tx:
            tx.delete_lease(self.id)
        self.released = True


def _uuid4_hex(raw: bytes) -> str:
    """``uuid.uuid4().hex`` of 16 random bytes, without importing uuid (~1.5 ms here)."""
    b = bytearray(raw)
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    return b.hex()


def _walk(source: ImageSource, store: LocalStore, root: Descriptor, options: PullOptions,
          result: PullResult, labels: dict[Digest, dict[str, str]],
          lease: Lease) -> list[Descriptor]:
    """Store the documents under ``root``; return the config and layer blobs to fetch."""
    blobs: dict[str, Descriptor] = {}
    pending = [root]
    while pending:
        desc = pending.pop(0)
        lease.protect([desc])
        data = fetch_document(source, store, desc, oci.MAX_MANIFEST_SIZE)
        if oci.is_index(desc.media_type):
            chosen = _choose(oci.parse_index(data, desc.media_type), options)
            labels[desc.digest] = {f"containerd.io/gc.ref.content.m.{i}": str(m.digest)
                            for i, m in enumerate(chosen)}
            lease.protect(chosen)
            pending.extend(chosen)
        elif oci.is_manifest(desc.media_type):
            manifest = oci.parse_manifest(data, desc.media_type)
            result.manifests.append(desc)
            lab = {"containerd.io/gc.ref.content.config": str(manifest.config.digest)}
            for i, layer in enumerate(manifest.layers):
                oci.layer_compression(layer.media_type)  # refuse unknown layer types early
                lab[f"containerd.io/gc.ref.content.l.{i}"] = str(layer.digest)
                blobs.setdefault(str(layer.digest), layer)
            # The config is small and an unpacker needs its diffIDs before layers land;
            # the layers are leased with it (one transaction).
            lease.protect([manifest.config, *manifest.layers])
            fetch_document(source, store, manifest.config, oci.MAX_CONFIG_SIZE)
            labels[desc.digest] = lab
        else:
            raise InvalidArgument(f"pull {desc.digest}: unsupported media type"
                                  f" {desc.media_type!r}")
    return list(blobs.values())


def _choose(index: oci.Index, options: PullOptions) -> list[Descriptor]:
    usable = [m for m in index.manifests if oci.is_manifest(m.media_type) or
              oci.is_index(m.media_type)]
    if options.all_platforms:
        return usable
    wanted = options.platform or Platform.host()
    chosen = oci.select_platforms(oci.Index(index.media_type, tuple(usable)), wanted)
    if not chosen:
        available = ", ".join(sorted({str(m.platform) for m in usable if m.platform})) or "none"
        raise NotFound(f"no image for platform {wanted} in the index (available: {available})",
                       hint="choose one with --platform, or use --all-platforms")
    return chosen[:1]


def fetch_document(source: ImageSource, store: LocalStore, desc: Descriptor, limit: int) -> bytes:
    """A small verified document, from the store when present, else fetched and stored."""
    if desc.size > limit:
        raise InvalidArgument(f"fetch {desc.digest}: {desc.size} bytes is over the"
                              f" {limit >> 20} MiB limit for {desc.media_type}")
    if store.exists(desc.digest):
        return store.read(desc)
    verifier = Verifier(desc.digest, desc.size)
    buf = bytearray()  # += copies each chunk: sources may reuse their buffer
    with source.fetch(desc) as chunks:
        for chunk in chunks:
            verifier.update(chunk)
            buf += chunk
    verifier.verify()
    data = bytes(buf)
    # The directory's fsync is the pull's (LocalStore.sync, before the image is recorded).
    store.write_blob(desc, data, sync_dir=False)
    return data


def _fetch_all(source: ImageSource, store: LocalStore, blobs: Iterable[Descriptor], jobs: int,
               emit: ProgressFn, result: PullResult, observer: BlobObserver | None = None) -> None:
    todo = []
    for desc in blobs:
        if store.exists(desc.digest):
            result.skipped += 1
            emit(ProgressEvent("skipped", desc, desc.size, desc.size))
            if observer is not None:
                observer.blob_ready(desc)
        else:
            todo.append(desc)
    if not todo:
        return
    lock = allocate_lock()
    cancelled = Flag()
    errors: list[BaseException] = []
    queue = iter(todo)

    # A few plain threads over a shared iterator, this one among them (a single
    # blob starts no thread): concurrent.futures would cost ~9 ms of imports for
    # nothing we need, threading ~2.5 ms.
    def worker() -> None:
        while not cancelled.is_set():
            with lock:
                desc = next(queue, None)
            if desc is None:
                return
            try:
                fetched = fetch_blob(source, store, desc, emit, cancelled)
                if observer is not None and not cancelled.is_set():
                    observer.blob_ready(desc)
            except BaseException as exc:
                with lock:
                    errors.append(exc)
                cancelled.set()  # the others stop at their next chunk; ingests stay
                if isinstance(exc, KeyboardInterrupt):
                    raise  # (this thread's) ^C: leave at once, as a join would
                return
            with lock:
                if fetched is None:
                    result.skipped += 1
                else:
                    result.fetched += 1
                    result.bytes_fetched += fetched

    others = [_start(worker) for _ in range(max(1, min(jobs, len(todo))) - 1)]
    worker()
    for finished in others:
        finished.acquire()  # a join (^C interrupts it)
    if errors:
        raise errors[0]


def _start(fn: Callable[[], None]) -> LockType:
    """Run ``fn`` on a new thread; the returned lock is released when it ends."""
    finished = allocate_lock()
    finished.acquire()

    def run() -> None:
        try:
            fn()
        finally:
            finished.release()

    start_new_thread(run, ())
    return finished


class Flag:
    """``threading.Event``'s ``set``/``is_set``, without threading."""

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


_REPORT_EVERY = 1 << 20


class _Cancelled(Exception):
    pass


def fetch_blob(source: ImageSource, store: LocalStore, desc: Descriptor, emit: ProgressFn,
               cancelled: Flag | None = None) -> int | None:
    """Fetch one blob into the store; bytes transferred, or None when it was already there.

    A resumed ingest whose bytes turn out wrong is retried once from zero: the
    partial file may predate a crash or come from a server that changed.
    """
    resumed_from = 0
    for attempt in range(2):
        try:
            with store.writer(str(desc.digest), desc,
                              on_wait=lambda: emit(ProgressEvent("waiting", desc, 0,
                                                                 desc.size))) as w:
                resumed_from = w.offset
                emit(ProgressEvent("start", desc, w.offset, desc.size))
                reported = w.offset
                with source.fetch(desc, w.offset) as chunks:
                    for chunk in chunks:
                        if cancelled is not None and cancelled.is_set():
                            raise _Cancelled
                        w.write(chunk)
                        # Report every 1 MiB, not every read: events cost CPU.
                        if w.offset - reported >= _REPORT_EVERY:
                            reported = w.offset
                            emit(ProgressEvent("progress", desc, w.offset, desc.size))
                w.commit(sync_dir=False)
            emit(ProgressEvent("done", desc, desc.size, desc.size))
            return desc.size - resumed_from
        except AlreadyExists:
            emit(ProgressEvent("skipped", desc, desc.size, desc.size))
            return None
        except IntegrityError:
            if attempt or not resumed_from:
                raise
        except _Cancelled:
            return 0
    raise AssertionError("unreachable")
