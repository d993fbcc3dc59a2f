"""A ``docker save`` tar as an :class:`ImageSource`.

``manifest.json`` lists images as ``{Config, RepoTags, Layers}`` with member
names inside the tar.  There is no registry manifest in the archive, so one is
synthesised (OCI, with digests computed by hashing each member) and served
like any other blob.  The archive is untrusted: it is never extracted, members
are only looked up by the names ``manifest.json`` gives, and links are only
followed to other members.

Reads go through ``os.pread`` on the archive's descriptor rather than the
``TarFile`` stream, so a pool of workers can fetch layers concurrently without
sharing a file position.  That needs an uncompressed archive, which is what
``docker save`` and skopeo write.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import tarfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from pyimg import reference
from pyimg.digest import Digest
from pyimg.errors import IntegrityError, InvalidArgument, NotFound, PyimgError
from pyimg.oci import (
    MAX_CONFIG_SIZE,
    MAX_MANIFEST_SIZE,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    Descriptor,
    parse_config,
    parse_descriptor,
)
from pyimg.reference import Reference

CHUNK_SIZE = 1024 * 1024
_MAX_LINK_HOPS = 16
_COMPRESSED_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
}


@dataclass(frozen=True, slots=True)
class _Entry:
    """One image of ``manifest.json``."""

    config: str
    repo_tags: tuple[str, ...]
    layers: tuple[str, ...]
    layer_sources: Mapping[str, Descriptor]


@dataclass(frozen=True, slots=True)
class _Span:
    """Where a member's bytes are in the archive file."""

    offset: int
    size: int


class DockerArchiveSource:
    """One image of a ``docker save`` / ``skopeo copy docker-archive:`` tar."""

    def __init__(self, path: Path, ref: str | None = None) -> None:
        self._path = Path(path)
        self._ref = ref
        self._file = self._open_file()
        try:
            self._tar = self._open_tar()
            self._members = _index_members(self._tar)
            entries = _parse_manifest_json(self._read_member("manifest.json", MAX_MANIFEST_SIZE))
            self._entry = self._select(entries)
        except BaseException:
            self.close()
            raise
        self._manifest: bytes | None = None
        self._manifest_digest: Digest | None = None
        self._blobs: dict[Digest, _Span] = {}
        # Synthesis hashes every layer once; concurrent first fetches wait for it.
        self._lock = threading.Lock()

    # ImageSource ----------------------------------------------------------

    @property
    def name(self) -> str:
        return f"docker-archive:{self._path}"

    @property
    def image_name(self) -> Reference | None:
        if self._ref is not None and not self._ref.startswith("@"):
            return _parse_ref(self._ref)
        for tag in self._entry.repo_tags:
            try:
                return reference.parse(tag)
            except PyimgError:
                continue  # docker never writes a bad tag; skip one rather than fail
        return None

    def resolve(self) -> Descriptor:
        manifest, digest = self._synthesise()
        return Descriptor(OCI_MANIFEST, digest, len(manifest))

    def fetch(self, desc: Descriptor, offset: int = 0) -> AbstractContextManager[Iterator[bytes]]:
        return self._fetch(desc, offset)

    def close(self) -> None:
        tar = getattr(self, "_tar", None)
        if tar is not None:
            tar.close()
        self._file.close()

    def __enter__(self) -> DockerArchiveSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Opening --------------------------------------------------------------

    def _open_file(self) -> BinaryIO:
        # Checked before opening: opening a FIFO would block.
        if self._path.exists() and not self._path.is_file():
            raise InvalidArgument(f"docker archive {self._path} is not a regular file")
        try:
            # Owned by the source: close() closes it.
            return open(self._path, "rb")
        except FileNotFoundError as exc:
            raise NotFound(f"docker archive {self._path} does not exist") from exc
        except OSError as exc:
            raise InvalidArgument(f"cannot read docker archive {self._path}: {exc}") from exc

    def _open_tar(self) -> tarfile.TarFile:
        magic = self._file.read(6)
        self._file.seek(0)
        for prefix, kind in _COMPRESSED_MAGIC.items():
            if magic.startswith(prefix):
                raise InvalidArgument(
                    f"{self.name}: the archive is {kind}-compressed",
                    hint="decompress it first (docker save writes a plain tar)",
                )
        try:
            return tarfile.open(fileobj=self._file, mode="r:")
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise InvalidArgument(f"{self.name}: not a tar archive ({exc})") from exc

    def _select(self, entries: list[_Entry]) -> _Entry:
        if self._ref is not None and self._ref.startswith("@"):
            return self._select_index(entries, self._ref[1:])
        if self._ref is not None:
            wanted = str(_parse_ref(self._ref))
            for entry in entries:
                if wanted in (str(r) for r in _parse_tags(entry.repo_tags)):
                    return entry
            tags = ", ".join(t for e in entries for t in e.repo_tags) or "none"
            raise NotFound(f"{self.name}: no image tagged {self._ref!r} (available: {tags})")
        if not entries:
            raise NotFound(f"{self.name}: manifest.json lists no images")
        if len(entries) > 1:
            raise InvalidArgument(
                f"archive has {len(entries)} images: name one with"
                f" docker-archive:{self._path}:REF or :@N"
            )
        return entries[0]

    def _select_index(self, entries: list[_Entry], text: str) -> _Entry:
        if not text.isdigit():
            raise InvalidArgument(f"{self.name}: invalid image index {'@' + text!r}")
        index = int(text)
        if index >= len(entries):
            raise NotFound(
                f"{self.name}: no image @{index}, the archive has {len(entries)} image(s)"
            )
        return entries[index]

    # Members ----------------------------------------------------------------

    def _span(self, name: str) -> _Span:
        """Locate the member ``manifest.json`` calls ``name``, following links."""
        key = _safe_name(name, self.name)
        for _ in range(_MAX_LINK_HOPS):
            info = self._members.get(key)
            if info is None:
                raise NotFound(f"{self.name}: member {name!r} is missing from the archive")
            if info.isreg():
                if info.sparse is not None:
                    raise InvalidArgument(f"{self.name}: member {name!r} is a sparse file")
                return _Span(info.offset_data, info.size)
            if info.issym():
                # Symlink targets are relative to the link's directory.
                key = _link_target(posixpath.join(posixpath.dirname(key), info.linkname),
                                   name, self.name)
            elif info.islnk():
                key = _link_target(info.linkname, name, self.name)
            else:
                raise InvalidArgument(f"{self.name}: member {name!r} is not a file")
        raise InvalidArgument(f"{self.name}: member {name!r}: too many levels of links")

    def _read_member(self, name: str, limit: int) -> bytes:
        span = self._span(name)
        if span.size > limit:
            raise InvalidArgument(f"{self.name}: {name} is larger than {limit} bytes")
        return b"".join(self._read_span(span, 0))

    def _read_span(self, span: _Span, offset: int) -> Iterator[bytes]:
        fd = self._file.fileno()
        pos = offset
        while pos < span.size:
            chunk = os.pread(fd, min(CHUNK_SIZE, span.size - pos), span.offset + pos)
            if not chunk:
                raise InvalidArgument(f"{self.name}: the archive is truncated")
            pos += len(chunk)
            yield chunk

    # The synthesised manifest ---------------------------------------------

    def _synthesise(self) -> tuple[bytes, Digest]:
        with self._lock:
            if self._manifest is None or self._manifest_digest is None:
                self._manifest = self._build_manifest()
                self._manifest_digest = Digest.of(self._manifest)
            return self._manifest, self._manifest_digest

    def _build_manifest(self) -> bytes:
        config_bytes = self._read_member(self._entry.config, MAX_CONFIG_SIZE)
        config_desc = Descriptor(OCI_CONFIG, Digest.of(config_bytes), len(config_bytes))
        diff_ids = parse_config(config_bytes).diff_ids
        if len(diff_ids) != len(self._entry.layers):
            raise InvalidArgument(
                f"{self.name}: the config has {len(diff_ids)} diff_ids but manifest.json"
                f" lists {len(self._entry.layers)} layers"
            )
        blobs = {config_desc.digest: self._span(self._entry.config)}
        layers = [self._layer(name, diff_id, blobs) for name, diff_id in
                  zip(self._entry.layers, diff_ids, strict=True)]
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_desc.to_json(),
            "layers": [layer.to_json() for layer in layers],
        }
        self._blobs = blobs
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    def _layer(self, name: str, diff_id: Digest, blobs: dict[Digest, _Span]) -> Descriptor:
        try:
            span = self._span(name)
        except NotFound:
            # A foreign (non-distributable) layer may be absent; docker then
            # records where it lives in LayerSources, keyed by its diff_id.
            foreign = self._entry.layer_sources.get(str(diff_id))
            if foreign is None:
                raise
            return foreign
        digest, magic = self._hash(span)
        media_type = _sniff(magic)
        if media_type == OCI_LAYER and digest != diff_id:
            raise IntegrityError(
                f"{self.name}: layer {name!r} hashes to {digest}, the config says {diff_id}"
            )
        blobs[digest] = span
        return Descriptor(media_type, digest, span.size)

    def _hash(self, span: _Span) -> tuple[Digest, bytes]:
        hasher = hashlib.sha256()
        magic = b""
        for chunk in self._read_span(span, 0):
            if len(magic) < 4:
                magic += chunk[: 4 - len(magic)]
            hasher.update(chunk)
        return Digest("sha256", hasher.hexdigest()), magic

    @contextmanager
    def _fetch(self, desc: Descriptor, offset: int) -> Iterator[Iterator[bytes]]:
        if offset < 0:
            raise InvalidArgument(f"{self.name}: negative offset {offset} for {desc.digest}")
        manifest, digest = self._synthesise()
        if desc.digest == digest:
            yield iter([manifest[offset:]] if offset < len(manifest) else [])
            return
        span = self._blobs.get(desc.digest)
        if span is None:
            raise NotFound(f"blob {desc.digest} not found in {self.name}")
        yield self._read_span(span, offset)


def _sniff(magic: bytes) -> str:
    if magic.startswith(b"\x1f\x8b"):
        return OCI_LAYER_GZIP
    if magic.startswith(b"\x28\xb5\x2f\xfd"):
        return OCI_LAYER_ZSTD
    return OCI_LAYER


def _index_members(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    """Members by normalised name; a later duplicate wins, as when extracting."""
    try:
        infos = tar.getmembers()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidArgument(f"malformed tar archive ({exc})") from exc
    members: dict[str, tarfile.TarInfo] = {}
    for info in infos:
        # These keys are only compared with names we validated; no member
        # name is ever used as a filesystem path.
        members[posixpath.normpath(info.name.lstrip("/"))] = info
    return members


def _safe_name(name: str, where: str) -> str:
    """``name`` normalised, refusing absolute paths and ``..`` components."""
    if not name or "\x00" in name or name.startswith("/"):
        raise InvalidArgument(f"{where}: unsafe member name {name!r} in the archive")
    if ".." in name.split("/"):
        raise InvalidArgument(f"{where}: member name {name!r} leaves the archive root")
    return posixpath.normpath(name)


def _link_target(target: str, name: str, where: str) -> str:
    """A link's target as a member name, refusing targets outside the archive.

    Unlike names from manifest.json, ``..`` is normal here (old docker
    archives link ``<id>/layer.tar`` to ``../<other>/layer.tar``), so the
    target is normalised first and only then checked.
    """
    key = posixpath.normpath(target)
    if target.startswith("/") or key == ".." or key.startswith("../") or "\x00" in key:
        raise InvalidArgument(f"{where}: member {name!r} links outside the archive")
    return key


def _parse_ref(text: str) -> Reference:
    ref = reference.parse(text)
    if ref.digest is not None:
        raise InvalidArgument(
            f"invalid docker-archive reference {text!r}: digests are not supported, use a tag"
        )
    return ref


def _parse_tags(tags: tuple[str, ...]) -> Iterator[Reference]:
    for tag in tags:
        try:
            yield reference.parse(tag)
        except PyimgError:
            continue


def _parse_manifest_json(data: bytes) -> list[_Entry]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"malformed manifest.json: not valid JSON ({exc})") from exc
    if not isinstance(obj, list):
        raise InvalidArgument("malformed manifest.json: expected a list of images")
    return [_parse_entry(item, i) for i, item in enumerate(obj)]


def _parse_entry(item: Any, i: int) -> _Entry:
    what = f"manifest.json image {i}"
    if not isinstance(item, dict):
        raise InvalidArgument(f"malformed {what}: expected an object")
    config = item.get("Config")
    if not isinstance(config, str):
        raise InvalidArgument(f"malformed {what}: 'Config' must be a string")
    return _Entry(
        config=config,
        repo_tags=_str_list(item.get("RepoTags"), what, "RepoTags"),
        layers=_str_list(item.get("Layers"), what, "Layers"),
        layer_sources=_layer_sources(item.get("LayerSources"), what),
    )


def _str_list(value: Any, what: str, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"malformed {what}: {key!r} must be a list of strings")
    return tuple(value)


def _layer_sources(value: Any, what: str) -> dict[str, Descriptor]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"malformed {what}: 'LayerSources' must be an object")
    return {str(k): parse_descriptor(v, f"{what} LayerSources[{k}]") for k, v in value.items()}
