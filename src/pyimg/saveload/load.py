"""``pyimg load``: every image of a layout or docker-archive, pulled and verified."""


from __future__ import annotations

import contextlib
import json
import os
import tarfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from pyimg import oci
from pyimg import reference as refs
from pyimg.digest import Digest, Verifier
from pyimg.errors import InvalidArgument, NotFound
from pyimg.oci import Descriptor
from pyimg.pull import PullOptions
from pyimg.pull import pull as _pull
from pyimg.reference import Reference

if TYPE_CHECKING:
    from pyimg.api import Store
    from pyimg.pull import ProgressFn
    from pyimg.sources import ImageSource

from pyimg.saveload.common import (
    _CHUNK,
    CONTAINERD_NAME,
    LAYOUT_VERSION,
    REF_NAME,
)

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
