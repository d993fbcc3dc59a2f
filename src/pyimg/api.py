"""The library facade: what the CLI calls, and what Python users import.

Every function takes explicit settings; nothing here reads the environment
except :meth:`Settings.from_env`, which the CLI uses to build defaults.
"""

from __future__ import annotations

import os

from pyimg import oci
from pyimg import reference as refs
from pyimg.content import LocalStore
from pyimg.errors import InvalidArgument, NotFound
from pyimg.metadata import MetaStore
from pyimg.record import Record
from pyimg.settings import Settings

# Import-light (`pyimg run` opens the store through this module): pulls, registries
# and credentials are imported by the functions that need them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from pyimg.fsutil import StrPath
    from pyimg.metadata import ImageRecord
    from pyimg.oci import Descriptor, Platform
    from pyimg.pull import ProgressFn, PullOptions, PullResult
    from pyimg.remote.credentials import DockerConfig
    from pyimg.snapshotters import Snapshotter
    from pyimg.sources import ImageSource
    from pyimg.unpack import ImageParts, Unpacker, UnpackResult
    from pyimg.unpack.pool import ApplyPool

    Note = Callable[[str], None]


class Store:
    """The content store and metadata under one root; a context manager."""

    def __init__(self, root: StrPath) -> None:
        os.makedirs(root, 0o700, exist_ok=True)
        self.root_dir = os.fspath(root)
        self.content = LocalStore(os.path.join(root, "content"))
        self.meta = MetaStore(os.path.join(root, "metadata.db"))

    @property
    def root(self) -> Path:
        from pathlib import Path

        return Path(self.root_dir)

    def close(self) -> None:
        self.meta.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_source(text: str, settings: Settings, *, max_connections: int = 8) -> ImageSource:
    from pyimg.sources.spec import open_file_source, parse_source_spec

    spec = parse_source_spec(text)
    if spec.transport != "registry":
        return open_file_source(spec)
    from pyimg.remote.credentials import DockerConfig
    from pyimg.remote.registry import RegistryOptions, RegistrySource

    assert spec.reference is not None
    docker_config = settings.docker_config_location
    return RegistrySource(spec.reference, RegistryOptions(
        config_dir=settings.config_location,
        docker_config=DockerConfig.load(docker_config) if docker_config else None,
        retry=settings.retry, max_connections=max_connections))


def pull(store: Store, text: str, settings: Settings, options: PullOptions | None = None,
         on_progress: ProgressFn | None = None, *, unpack: bool = True,
         snapshotter_name: str | None = None, note: Note | None = None) -> PullResult:
    """Pull into the store; with ``unpack``, layers are extracted while they arrive."""
    from pyimg.pull import PullOptions
    from pyimg.pull import pull as _pull

    options = options or PullOptions()
    source = open_source(text, settings, max_connections=max(options.jobs, 2) + 2)
    session = _UnpackSession(store, options, snapshotter_name, note) if unpack else None
    try:
        result = _pull(source, store.content, store.meta, options, on_progress,
                       observe=session.observe if session else None)
        if session is not None:
            result.unpacked = session.finish()
        return result
    except BaseException:
        if session is not None:
            session.abort()
        raise
    finally:
        source.close()
        if session is not None:
            session.close()


class _UnpackSession:
    """Unpack during a pull: created once the manifests and configs are stored."""

    def __init__(self, store: Store, options: PullOptions, snapshotter_name: str | None,
                 note: Note | None) -> None:
        self.store, self.options, self.sn_name, self.note = store, options, snapshotter_name, note
        self.unpacker: Unpacker | None = None
        self.pool: ApplyPool | None = None
        self.indices: dict[str, list[int]] = {}

    def observe(self, result: PullResult) -> _UnpackSession | None:
        from pyimg.unpack import Unpacker, cleanup_stale, image_parts
        from pyimg.unpack.pool import ApplyPool, workers_for

        try:
            parts = image_parts(self.store.content, result.target, self.options.platform)
        except NotFound:
            return None  # e.g. --platform of another OS: stored, not unpacked
        sn = snapshotter(self.store, self.sn_name)
        cleanup_stale(sn, _lock_dir(self.store))
        self.pool = ApplyPool(workers_for(len(parts.manifest.layers), sn.supports_rebase))
        self.unpacker = Unpacker(self.store.content, sn, parts, self.pool,
                                 _lock_dir(self.store), note=self.note)
        for i, layer in enumerate(parts.manifest.layers):
            self.indices.setdefault(str(layer.digest), []).append(i)
        return self

    def blob_ready(self, desc: Descriptor) -> None:
        assert self.unpacker is not None
        for i in self.indices.get(str(desc.digest), ()):
            self.unpacker.layer_ready(i)

    def finish(self) -> UnpackResult | None:
        if self.unpacker is None:
            return None
        result = self.unpacker.finish()
        _label_snapshot(self.store, self.unpacker.parts, self.unpacker.sn.name,
                        str(result.chain_id))
        return result

    def abort(self) -> None:
        if self.unpacker is not None:
            self.unpacker.abort()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


# images ------------------------------------------------------------------


class ImageSummary(Record):
    _fields = ("name", "target", "size", "platforms", "created_at")
    __slots__ = _fields
    name: str
    target: Descriptor
    size: int  # compressed bytes of the stored manifests, configs and layers
    platforms: tuple[str, ...]
    created_at: float

    def __init__(self, name: str, target: Descriptor, size: int, platforms: tuple[str, ...],
                 created_at: float) -> None:
        self._set(name, target, size, platforms, created_at)


def list_images(store: Store) -> list[ImageSummary]:
    with store.meta.transaction() as tx:
        records = tx.list_images()
    return [_summary(store, r) for r in records]


def _summary(store: Store, rec: ImageRecord) -> ImageSummary:
    size, platforms = 0, []
    for manifest_desc, manifest in present_manifests(store, rec.target):
        size += manifest_desc.size + manifest.config.size + sum(x.size for x in manifest.layers)
        cfg = oci.parse_config(store.content.read(manifest.config))
        platforms.append(str(cfg.platform))
    return ImageSummary(rec.name, rec.target, size, tuple(platforms), rec.created_at)


def present_manifests(store: Store, target: Descriptor) -> Iterator[tuple[Descriptor,
                                                                          oci.Manifest]]:
    """Manifests under ``target`` whose documents are in the store."""
    from pyimg.imageparts import present_manifests as walk

    return walk(store.content, target)


def resolve_local(store: Store, name: str) -> ImageRecord:
    """A stored image by name (normalised like docker) or by digest (prefix)."""
    with store.meta.transaction() as tx:
        if name.startswith("sha256:") or (len(name) >= 12 and all(
                c in "0123456789abcdef" for c in name)):
            prefix = name.removeprefix("sha256:")
            hits = {r.target.digest: r for r in tx.list_images()
                    if r.target.digest.hex.startswith(prefix)}
            if len(hits) == 1:
                return next(iter(hits.values()))
            if len(hits) > 1:
                raise InvalidArgument(f"image {name}: ambiguous digest prefix")
        return tx.get_image(str(refs.parse(name)))


def remove_image(store: Store, name: str) -> list[str]:
    """Untag; with a digest, every name pointing at it.  Blobs stay until gc."""
    rec = resolve_local(store, name)
    with store.meta.transaction(write=True) as tx:
        if name.startswith("sha256:") or rec.name != str(refs.parse(name)):
            names = [r.name for r in tx.images_by_digest(rec.target.digest)]
        else:
            names = [rec.name]
        for n in names:
            tx.delete_image(n)
    return names


def tag_image(store: Store, source: str, target: str) -> str:
    rec = resolve_local(store, source)
    new = refs.parse(target)
    if new.digest is not None:
        raise InvalidArgument(f"tag {target}: a tag cannot contain a digest")
    with store.meta.transaction(write=True) as tx:
        tx.put_image(str(new), rec.target)
    return str(new)


# credentials ---------------------------------------------------------------


def _docker_config(settings: Settings) -> DockerConfig:
    from pyimg.remote.credentials import DockerConfig

    if settings.docker_config is None:
        raise NotFound("no docker config.json location", hint="set DOCKER_CONFIG")
    return DockerConfig.load(settings.docker_config)


def login(settings: Settings, host: str, username: str, password: str) -> None:
    """Check the credentials against the registry, then store them as docker does."""
    from pyimg.remote.credentials import Credential
    from pyimg.remote.login import check_credentials

    host = refs.parse(f"{host}/x").domain if "/" not in host else host
    cred = Credential(username, password)
    check_credentials(host, cred, settings.config_dir, settings.retry)
    _docker_config(settings).store(host, cred)


def logout(settings: Settings, host: str) -> None:
    host = refs.parse(f"{host}/x").domain if "/" not in host else host
    _docker_config(settings).erase(host)


# unpack, snapshots, mounts ---------------------------------------------------


def snapshotter(store: Store, name: str | None = None) -> Snapshotter:
    """The named snapshotter, or overlay when the store's filesystem supports it."""
    from pyimg.snapshotters import open_snapshotter, overlay_supported

    root = os.path.join(store.root_dir, "snapshots")
    try:  # noqa: SIM105 - contextlib costs ~2 ms to import here
        os.mkdir(root, 0o700)
    except FileExistsError:
        pass
    if name is None:
        name = os.environ.get("PYIMG_SNAPSHOTTER") or (
            "overlay" if overlay_supported(root) else "native")
    if name not in ("overlay", "native"):
        raise InvalidArgument(f"unknown snapshotter {name!r}: use overlay or native")
    return open_snapshotter(name, store.root_dir, store.meta)


def _lock_dir(store: Store) -> str:
    return os.path.join(store.root_dir, "snapshots", "locks")


def local_parts(store: Store, name: str, platform: Platform | None = None) -> ImageParts:
    from pyimg.unpack import image_parts

    return image_parts(store.content, resolve_local(store, name).target, platform)


def unpack_image(store: Store, name: str, *, platform: Platform | None = None,
                 snapshotter_name: str | None = None, note: Note | None = None) -> UnpackResult:
    """Ensure the image's snapshot chain exists (layers already there are reused)."""
    from pyimg.unpack import cleanup_stale, unpack

    parts = local_parts(store, name, platform)
    sn = snapshotter(store, snapshotter_name)
    cleanup_stale(sn, _lock_dir(store))
    result = unpack(store.content, sn, parts, _lock_dir(store), note=note)
    _label_snapshot(store, parts, sn.name, str(result.chain_id))
    return result


def _label_snapshot(store: Store, parts: ImageParts, sn_name: str, chain_id: str) -> None:
    # containerd's convention: the config references the unpacked chain, so a
    # garbage collector keeps the snapshot while the image exists.
    with store.meta.transaction(write=True) as tx:
        tx.set_labels(parts.manifest.config.digest,
                      {f"containerd.io/gc.ref.snapshot.{sn_name}": chain_id})


def flatten_image(store: Store, name: str, dest: Path, *, platform: Platform | None = None,
                  note: Note | None = None) -> ImageParts:
    """Write the image's root filesystem as a plain tree into ``dest`` (new or empty)."""
    from pyimg.unpack.flatten import flatten, prepare_dest

    parts = local_parts(store, name, platform)
    prepare_dest(dest)
    flatten(store.content, parts, dest, note=note)
    return parts


def write_bundle(store: Store, name: str, bundle: Path, *, platform: Platform | None = None,
                 note: Note | None = None) -> Path:
    """An OCI runtime bundle (``rootfs/`` + ``config.json``) that runc runs unchanged."""
    from pyimg.runtime.bundle import write_bundle as _write
    from pyimg.runtime.spec import RunOptions
    from pyimg.unpack.flatten import flatten, prepare_dest

    parts = local_parts(store, name, platform)
    prepare_dest(bundle)
    return _write(bundle, parts.config,
                  lambda rootfs: flatten(store.content, parts, rootfs, note=note), RunOptions())


def _mount_key(target: Path) -> str:
    return f"mount:{target.resolve()}"


def mount_image(store: Store, name: str, target: Path, *,
                platform: Platform | None = None) -> str:
    """Mount a read-only view of the image at ``target`` (unpacking it if needed)."""
    from pyimg.mount import mount_all

    result = unpack_image(store, name, platform=platform)
    sn = snapshotter(store)
    if not target.is_dir():
        raise NotFound(f"mount target {target}: not a directory")
    key = _mount_key(target)
    mounts = sn.view(key, str(result.chain_id))
    try:
        mount_all(mounts, str(target))
    except BaseException:
        sn.remove(key)
        raise
    return key


def umount_image(store: Store, target: Path) -> None:
    """Undo :func:`mount_image`: unmount and drop the view."""
    from pyimg.mount import unmount

    sn = snapshotter(store)
    key = _mount_key(target)
    sn.stat(key)  # NotFound when pyimg did not mount it
    unmount(str(target))
    sn.remove(key)
