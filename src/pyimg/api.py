"""The library facade: what the CLI calls, and what Python users import.

Every function takes explicit settings; nothing here reads the environment
except :meth:`Settings.from_env`, which the CLI uses to build defaults.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pyimg import oci
from pyimg import reference as refs
from pyimg.content import LocalStore
from pyimg.errors import InvalidArgument, NotFound
from pyimg.metadata import ImageRecord, MetaStore
from pyimg.oci import Descriptor
from pyimg.pull import ProgressFn, PullOptions, PullResult
from pyimg.pull import pull as _pull
from pyimg.remote.credentials import Credential, DockerConfig, default_config_path
from pyimg.remote.transport import RetryPolicy
from pyimg.sources import ImageSource


@dataclass(frozen=True)
class Settings:
    root: Path
    config_dir: Path | None = None
    docker_config: Path | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, root: str | None = None,
                 config: str | None = None) -> Settings:
        env = os.environ if env is None else env
        is_root = os.geteuid() == 0
        home = Path(env.get("HOME", str(Path.home())))
        default_root = Path("/var/lib/pyimg") if is_root else Path(
            env.get("XDG_DATA_HOME", str(home / ".local/share"))) / "pyimg"
        default_config = Path("/etc/pyimg") if is_root else Path(
            env.get("XDG_CONFIG_HOME", str(home / ".config"))) / "pyimg"
        retry = RetryPolicy()
        if "PYIMG_RETRY_BASE" in env:  # tests make backoff fast without changing semantics
            retry = RetryPolicy(base=float(env["PYIMG_RETRY_BASE"]), cap=float(
                env["PYIMG_RETRY_BASE"]) * 4, max_retry_after=float(env.get(
                    "PYIMG_MAX_RETRY_AFTER", "60")))
        return cls(
            root=Path(root or env.get("PYIMG_ROOT") or default_root),
            config_dir=Path(config or env.get("PYIMG_CONFIG") or default_config),
            docker_config=default_config_path(env),
            retry=retry,
        )


class Store:
    """The content store and metadata under one root; a context manager."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.root = root
        self.content = LocalStore(root / "content")
        self.meta = MetaStore(root / "metadata.db")

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
    from pyimg.remote.registry import RegistryOptions, RegistrySource

    assert spec.reference is not None
    return RegistrySource(spec.reference, RegistryOptions(
        config_dir=settings.config_dir,
        docker_config=DockerConfig.load(settings.docker_config) if settings.docker_config
        else None,
        retry=settings.retry, max_connections=max_connections))


def pull(store: Store, text: str, settings: Settings, options: PullOptions | None = None,
         on_progress: ProgressFn | None = None) -> PullResult:
    options = options or PullOptions()
    source = open_source(text, settings, max_connections=max(options.jobs, 2) + 2)
    try:
        return _pull(source, store.content, store.meta, options, on_progress)
    finally:
        source.close()


# images ------------------------------------------------------------------


@dataclass(frozen=True)
class ImageSummary:
    name: str
    target: Descriptor
    size: int  # compressed bytes of the stored manifests, configs and layers
    platforms: tuple[str, ...]
    created_at: float


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
    if not store.content.exists(target.digest):
        return
    data = store.content.read(target)
    if oci.is_manifest(target.media_type):
        yield target, oci.parse_manifest(data, target.media_type)
    elif oci.is_index(target.media_type):
        for child in oci.parse_index(data, target.media_type).manifests:
            if oci.is_manifest(child.media_type) or oci.is_index(child.media_type):
                yield from present_manifests(store, child)


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
    if settings.docker_config is None:
        raise NotFound("no docker config.json location", hint="set DOCKER_CONFIG")
    return DockerConfig.load(settings.docker_config)


def login(settings: Settings, host: str, username: str, password: str) -> None:
    """Check the credentials against the registry, then store them as docker does."""
    from pyimg.remote.login import check_credentials

    host = refs.parse(f"{host}/x").domain if "/" not in host else host
    cred = Credential(username, password)
    check_credentials(host, cred, settings.config_dir, settings.retry)
    _docker_config(settings).store(host, cred)


def logout(settings: Settings, host: str) -> None:
    host = refs.parse(f"{host}/x").domain if "/" not in host else host
    _docker_config(settings).erase(host)
