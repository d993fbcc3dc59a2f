"""``pyimg save`` and ``pyimg load``: images out of and into the store as files.

Save writes an OCI image layout (a directory, or a tar of one) or a
``docker save`` archive.  Output is built under ``PATH.tmp-*`` and renamed
into place, so ``PATH`` is either absent or complete.  Blobs are copied with
``os.sendfile``; docker-archive layers are decompressed while they stream
into the tar (docker-archive layers are plain tars named by their diffID).

Load is a pull from the file: every index entry of a layout, every image of
``manifest.json``, through the same sources and verification as ``pyimg pull``.
A tar is never extracted; members are looked up by name only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tarfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal, Protocol

from pyimg import oci
from pyimg import reference as refs
from pyimg.digest import Digest, Verifier
from pyimg.errors import AlreadyExists, IntegrityError, InvalidArgument, NotFound
from pyimg.fsutil import fsync_dir
from pyimg.oci import Descriptor
from pyimg.pull import ProgressFn, PullOptions
from pyimg.pull import pull as _pull
from pyimg.reference import Reference

if TYPE_CHECKING:
    from pyimg.api import Store
    from pyimg.sources import ImageSource

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
LAYOUT_VERSION = "1.0.0"
Format = Literal["oci", "docker-archive"]
_CHUNK = 1 << 20
_BLOCK = 512


# Tar output ---------------------------------------------------------------------------


def _header(name: str, size: int, kind: bytes = tarfile.REGTYPE, mode: int = 0o644) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode, info.mtime = size, kind, mode, 0
    info.uname = info.gname = "root"
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


def _copy_fd(src: int, dst: int, size: int) -> None:
    """``size`` bytes from ``src`` (at 0) appended to ``dst``: sendfile, else read/write."""
    offset = 0
    try:
        while offset < size:
            sent = os.sendfile(dst, src, offset, min(size - offset, 1 << 30))
            if sent == 0:
                raise IntegrityError(f"blob shrank while being copied ({offset} of {size})")
            offset += sent
        return
    except OSError:
        if offset:
            raise
    while offset < size:
        chunk = os.pread(src, min(_CHUNK, size - offset), offset)
        if not chunk:
            raise IntegrityError(f"blob shrank while being copied ({offset} of {size})")
        _write_all(dst, chunk)
        offset += len(chunk)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class _TarOut:
    """A plain tar written to a file descriptor, headers by hand so data can be sendfile'd."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.names: set[str] = set()

    def _pad(self, size: int) -> None:
        if size % _BLOCK:
            _write_all(self.fd, b"\0" * (_BLOCK - size % _BLOCK))

    def add_dir(self, name: str) -> None:
        _write_all(self.fd, _header(name, 0, tarfile.DIRTYPE, 0o755))
        self.names.add(name)

    def add_bytes(self, name: str, data: bytes) -> None:
        _write_all(self.fd, _header(name, len(data)) + data)
        self._pad(len(data))
        self.names.add(name)

    def add_blob(self, name: str, path: Path, size: int) -> None:
        src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if os.fstat(src).st_size != size:
                raise IntegrityError(f"{path}: size differs from its descriptor ({size})")
            _write_all(self.fd, _header(name, size))
            _copy_fd(src, self.fd, size)
        finally:
            os.close(src)
        self._pad(size)
        self.names.add(name)

    def add_stream(self, name: str, reader: _Readable) -> int:
        """Stream ``reader`` of unknown length; the header is patched once it is known."""
        start = os.lseek(self.fd, 0, os.SEEK_CUR)
        placeholder = _header(name, 0)
        if len(placeholder) != _BLOCK:
            raise InvalidArgument(f"tar member name {name!r} too long for a one-block header")
        _write_all(self.fd, placeholder)
        size = 0
        while chunk := reader.read(_CHUNK):
            _write_all(self.fd, chunk)
            size += len(chunk)
        # GNU headers stay one block for any size (base-256 above 8 GiB).
        os.pwrite(self.fd, _header(name, size), start)
        self._pad(size)
        self.names.add(name)
        return size

    def finish(self) -> None:
        _write_all(self.fd, b"\0" * (2 * _BLOCK))


@contextmanager
def _atomic_file(dest: Path) -> Iterator[int]:
    tmp = dest.with_name(f"{dest.name}.tmp-{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        try:
            yield fd
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        fsync_dir(dest.parent)


@contextmanager
def _atomic_dir(dest: Path) -> Iterator[Path]:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise AlreadyExists(f"save: {dest} exists", hint="remove it or choose another path")
    tmp = dest.with_name(f"{dest.name}.tmp-{os.urandom(4).hex()}")
    tmp.mkdir(mode=0o755)
    try:
        yield tmp
        for sub in (tmp / "blobs" / "sha256", tmp / "blobs", tmp):
            with contextlib.suppress(OSError):
                fsync_dir(sub)
        if dest.is_dir():
            dest.rmdir()  # empty, checked above
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    with contextlib.suppress(OSError):
        fsync_dir(dest.parent)


# Save -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Saved:
    name: str
    target: Descriptor


def _records(store: Store, names: list[str]) -> list[Saved]:
    from pyimg.api import resolve_local

    if not names:
        raise InvalidArgument("save: name at least one image")
    out: dict[str, Saved] = {}
    for name in names:
        rec = resolve_local(store, name)
        out.setdefault(rec.name, Saved(rec.name, rec.target))
    return list(out.values())


def _reachable(store: Store, desc: Descriptor, out: dict[Digest, Descriptor]) -> int:
    """Record ``desc`` and every present blob under it; return the manifests found."""
    content = store.content
    if not content.exists(desc.digest):
        raise NotFound(f"save: {desc.digest} is not in the store", hint="pull the image again")
    out.setdefault(desc.digest, desc)
    if oci.is_index(desc.media_type):
        found = 0
        for child in oci.parse_index(content.read(desc), desc.media_type).manifests:
            if content.exists(child.digest) and (oci.is_index(child.media_type)
                                                 or oci.is_manifest(child.media_type)):
                found += _reachable(store, child, out)
        return found
    if not oci.is_manifest(desc.media_type):
        return 0
    manifest = oci.parse_manifest(content.read(desc), desc.media_type)
    for blob in (manifest.config, *manifest.layers):
        if content.exists(blob.digest):
            out.setdefault(blob.digest, blob)
        elif not blob.urls:  # foreign layers may stay where their urls say
            raise NotFound(f"save: blob {blob.digest} of {desc.digest} is not in the store",
                           hint="pull the image again")
    return 1


def _index_entries(saved: list[Saved]) -> list[Descriptor]:
    """Index entries named like containerd: ``ref.name`` the tag, plus the full name.

    A tag shared by two saved images would be ambiguous (umoci refuses such a
    layout), so those entries use the full name as ``ref.name`` instead.
    """
    tags = [refs.parse(s.name).tag for s in saved]
    out = []
    for s, tag in zip(saved, tags, strict=True):
        annotations = dict(s.target.annotations)
        annotations[CONTAINERD_NAME] = s.name
        if tag:
            annotations[REF_NAME] = tag if tags.count(tag) == 1 else s.name
        out.append(replace(s.target, annotations=annotations))
    return out


def save(store: Store, names: list[str], dest: Path, fmt: Format = "oci") -> list[Saved]:
    """Write the named images to ``dest``; see the module docstring for the formats."""
    saved = _records(store, names)
    if fmt == "docker-archive":
        _save_docker_archive(store, saved, dest)
        return saved
    blobs: dict[Digest, Descriptor] = {}
    for s in saved:
        if _reachable(store, s.target, blobs) == 0:
            raise NotFound(f"save: {s.name}: no manifest in the store")
    index = {"schemaVersion": 2, "mediaType": oci.OCI_INDEX,
             "manifests": [d.to_json() for d in _index_entries(saved)]}
    index_bytes = json.dumps(index, indent=2).encode() + b"\n"
    marker = json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode()
    if dest.name.endswith(".tar"):
        with _atomic_file(dest) as fd:
            tar = _TarOut(fd)
            tar.add_bytes("oci-layout", marker)
            tar.add_bytes("index.json", index_bytes)
            tar.add_dir("blobs/")
            for alg in sorted({d.algorithm for d in blobs}):
                tar.add_dir(f"blobs/{alg}/")
            for digest, desc in blobs.items():
                tar.add_blob(f"blobs/{digest.algorithm}/{digest.hex}",
                             store.content.blob_path(digest), desc.size)
            tar.finish()
        return saved
    with _atomic_dir(dest) as tmp:
        for digest, desc in blobs.items():
            alg_dir = tmp / "blobs" / digest.algorithm
            alg_dir.mkdir(parents=True, exist_ok=True)
            _copy_blob(store.content.blob_path(digest), alg_dir / digest.hex, desc.size)
        (tmp / "oci-layout").write_bytes(marker)
        (tmp / "index.json").write_bytes(index_bytes)
    return saved


def _copy_blob(src_path: Path, dest: Path, size: int) -> None:
    part = dest.with_name(f".{dest.name}.part")
    src = os.open(src_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if os.fstat(src).st_size != size:
            raise IntegrityError(f"{src_path}: size differs from its descriptor ({size})")
        dst = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
        try:
            _copy_fd(src, dst, size)
            os.fsync(dst)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    os.rename(part, dest)


def _save_docker_archive(store: Store, saved: list[Saved], dest: Path) -> None:
    from pyimg.archive.compression import open_layer
    from pyimg.unpack import image_parts

    entries: dict[Digest, dict[str, object]] = {}
    with _atomic_file(dest) as fd:
        tar = _TarOut(fd)
        tar.add_dir("blobs/")
        tar.add_dir("blobs/sha256/")
        for s in saved:
            parts = image_parts(store.content, s.target)
            parts.check()
            cfg = parts.manifest.config
            ref = refs.parse(s.name)
            tags = [ref.familiar()] if ref.tag and not ref.digest else []
            if cfg.digest in entries:
                repo_tags = entries[cfg.digest]["RepoTags"]
                assert isinstance(repo_tags, list)
                repo_tags.extend(t for t in tags if t not in repo_tags)
                continue
            cfg_name = f"blobs/{cfg.digest.algorithm}/{cfg.digest.hex}"
            if cfg_name not in tar.names:
                tar.add_bytes(cfg_name, store.content.read(cfg))
            layers = []
            for layer, diff_id in zip(parts.manifest.layers, parts.config.diff_ids, strict=True):
                name = f"blobs/{diff_id.algorithm}/{diff_id.hex}"
                layers.append(name)
                if name in tar.names:
                    continue
                with store.content.open(layer.digest) as blob:
                    reader = open_layer(blob, oci.layer_compression(layer.media_type),
                                        label=f"layer {layer.digest}")
                    tar.add_stream(name, reader)
                    if reader.diff_id != diff_id:
                        raise IntegrityError(
                            f"save: layer {layer.digest} decompresses to {reader.diff_id},"
                            f" the config says {diff_id}")
            entries[cfg.digest] = {"Config": cfg_name, "RepoTags": tags, "Layers": layers}
        tar.add_bytes("manifest.json", json.dumps(list(entries.values())).encode())
        tar.finish()


# Load -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    names: tuple[str, ...]
    target: Descriptor


class _Reader:
    """Blobs of an OCI layout, as a directory or a tar."""

    label: str

    def index(self) -> oci.Index:
        raise NotImplementedError

    def fetch(self, desc: Descriptor, offset: int = 0) -> AbstractContextManager[Iterator[bytes]]:
        raise NotImplementedError

    def has(self, digest: Digest) -> bool:
        try:
            with self.fetch(Descriptor("", digest, 0)):
                return True
        except NotFound:
            return False

    def close(self) -> None:
        pass


class _DirReader(_Reader):
    def __init__(self, path: Path) -> None:
        from pyimg.sources.layout import LayoutSource

        self._src = LayoutSource(path)  # checks oci-layout, parses index.json (bounded)
        self.label = self._src.name
        self._index = oci.parse_index((path / "index.json").read_bytes())

    def index(self) -> oci.Index:
        return self._index

    def fetch(self, desc: Descriptor, offset: int = 0) -> AbstractContextManager[Iterator[bytes]]:
        return self._src.fetch(desc, offset)


class _TarReader(_Reader):
    """An OCI layout inside a plain tar; members found by name, never extracted."""

    def __init__(self, path: Path, tar: tarfile.TarFile, f: BinaryIO,
                 members: dict[str, tarfile.TarInfo]) -> None:
        self.label = f"oci-archive:{path}"
        self._f, self._members = f, members
        marker = json.loads(self._read_small("oci-layout", 64 * 1024) or b"{}")
        if not isinstance(marker, dict) or marker.get("imageLayoutVersion") != LAYOUT_VERSION:
            raise InvalidArgument(f"{self.label}: unsupported or missing oci-layout")
        self._index = oci.parse_index(self._read_small("index.json", oci.MAX_MANIFEST_SIZE))

    def _member(self, name: str) -> tarfile.TarInfo:
        info = self._members.get(name)
        if info is None:
            raise NotFound(f"{self.label}: {name} is missing from the archive")
        if not info.isreg() or info.sparse is not None:
            raise InvalidArgument(f"{self.label}: {name} is not a regular file")
        return info

    def _read_small(self, name: str, limit: int) -> bytes:
        info = self._member(name)
        if info.size > limit:
            raise InvalidArgument(f"{self.label}: {name} is larger than {limit} bytes")
        return os.pread(self._f.fileno(), info.size, info.offset_data)

    def index(self) -> oci.Index:
        return self._index

    @contextmanager
    def _fetch(self, desc: Descriptor, offset: int) -> Iterator[Iterator[bytes]]:
        safe = Digest.parse(str(desc.digest))
        info = self._member(f"blobs/{safe.algorithm}/{safe.hex}")
        yield self._chunks(info, offset)

    def _chunks(self, info: tarfile.TarInfo, offset: int) -> Iterator[bytes]:
        pos = max(offset, 0)
        while pos < info.size:
            chunk = os.pread(self._f.fileno(), min(_CHUNK, info.size - pos),
                             info.offset_data + pos)
            if not chunk:
                raise InvalidArgument(f"{self.label}: the archive is truncated")
            pos += len(chunk)
            yield chunk

    def fetch(self, desc: Descriptor, offset: int = 0) -> AbstractContextManager[Iterator[bytes]]:
        return self._fetch(desc, offset)


@dataclass
class _EntrySource:
    """One index entry of a layout as an :class:`ImageSource`."""

    reader: _Reader
    root: Descriptor
    ref: Reference | None

    @property
    def name(self) -> str:
        return self.reader.label

    @property
    def image_name(self) -> Reference | None:
        return self.ref

    def resolve(self) -> Descriptor:
        return self.root

    def fetch(self, desc: Descriptor, offset: int = 0) -> AbstractContextManager[Iterator[bytes]]:
        return self.reader.fetch(desc, offset)

    def close(self) -> None:
        pass


def _entry_name(desc: Descriptor, stem: str) -> Reference | None:
    from pyimg.sources.layout import repository_name

    for key in (CONTAINERD_NAME, REF_NAME):
        text = desc.annotations.get(key)
        if not text:
            continue
        first, sep, _ = text.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            with contextlib.suppress(InvalidArgument):
                return refs.parse(text)
        if key == REF_NAME:
            with contextlib.suppress(InvalidArgument):
                return refs.parse(f"localhost/{repository_name(stem)}:{text}")
    return None


def _options(reader: _Reader, root: Descriptor) -> PullOptions:
    """Every stored platform of an index when all are there, else the host's."""
    if not oci.is_index(root.media_type):
        return PullOptions()
    verifier = Verifier(root.digest, root.size)
    data = bytearray()
    with reader.fetch(root) as chunks:
        for chunk in chunks:
            verifier.update(chunk)
            data += chunk
    verifier.verify()
    children = [m for m in oci.parse_index(bytes(data), root.media_type).manifests
                if oci.is_manifest(m.media_type) or oci.is_index(m.media_type)]
    return PullOptions(all_platforms=all(reader.has(m.digest) for m in children))


def load(store: Store, path: Path, on_progress: ProgressFn | None = None) -> list[Loaded]:
    """Pull every image of an OCI layout (dir or tar) or docker-archive into the store."""
    if path.is_dir():
        reader: _Reader = _DirReader(path)
        return _load_layout(store, reader, path.name, on_progress)
    if not path.exists():
        raise NotFound(f"load: {path} does not exist")
    if not path.is_file():
        raise InvalidArgument(f"load: {path} is neither a directory nor a regular file")
    from pyimg.sources.docker_archive import _index_members

    with open(path, "rb") as f:
        magic = f.read(4)
        f.seek(0)
        if magic.startswith(b"\x1f\x8b") or magic.startswith(b"\x28\xb5\x2f\xfd"):
            raise InvalidArgument(f"load: {path} is compressed", hint="decompress it first")
        try:
            tar = tarfile.open(fileobj=f, mode="r:")  # noqa: SIM115 - closed below
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise InvalidArgument(f"load: {path}: not a tar archive ({exc})") from exc
        with tar:
            members = _index_members(tar)
            if "manifest.json" in members:
                return _load_docker_archive(store, path, on_progress)
            if "index.json" not in members:
                raise InvalidArgument(
                    f"load: {path}: neither a docker-archive (manifest.json) nor an OCI"
                    " layout (index.json)")
            reader = _TarReader(path, tar, f, members)
            stem = path.name.removesuffix(".tar")
            return _load_layout(store, reader, stem, on_progress)


def _load_layout(store: Store, reader: _Reader, stem: str,
                 on_progress: ProgressFn | None) -> list[Loaded]:
    from pyimg.sources.layout import _check_root

    entries = reader.index().manifests
    if not entries:
        raise NotFound(f"load: {reader.label}: the layout holds no images")
    loaded = []
    for desc in entries:
        _check_root(desc, reader.label)
        source = _EntrySource(reader, desc, _entry_name(desc, stem))
        _pull(source, store.content, store.meta, _options(reader, desc), on_progress)
        loaded.append(Loaded((str(source.ref),) if source.ref else (), desc))
    return loaded


def _load_docker_archive(store: Store, path: Path,
                         on_progress: ProgressFn | None) -> list[Loaded]:
    from pyimg.sources.docker_archive import DockerArchiveSource

    loaded = []
    i = 0
    while True:
        try:
            src: ImageSource = DockerArchiveSource(path, f"@{i}")
        except NotFound:
            if i == 0:
                raise
            break
        try:
            result = _pull(src, store.content, store.meta, PullOptions(), on_progress)
            tags = [str(t) for t in _repo_tags(src)]
            with store.meta.transaction(write=True) as tx:
                for t in tags:
                    tx.put_image(t, result.target)
            loaded.append(Loaded(tuple(tags), result.target))
        finally:
            src.close()
        i += 1
    return loaded


def _repo_tags(src: ImageSource) -> list[Reference]:
    entry = getattr(src, "_entry", None)
    out: list[Reference] = []
    for tag in getattr(entry, "repo_tags", ()):
        with contextlib.suppress(InvalidArgument):
            out.append(refs.parse(tag))
    return out
