"""``pyimg save``: an OCI layout (directory or tar) or a docker-archive."""


from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pyimg import oci
from pyimg import reference as refs
from pyimg.digest import Digest
from pyimg.errors import IntegrityError, InvalidArgument, NotFound
from pyimg.oci import Descriptor

if TYPE_CHECKING:
    from pyimg.api import Store

from pyimg.saveload.common import (
    CONTAINERD_NAME,
    LAYOUT_VERSION,
    REF_NAME,
    Format,
    _atomic_dir,
    _atomic_file,
    _copy_fd,
    _TarOut,
)

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
        out.append(s.target.replace(annotations=annotations))
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


