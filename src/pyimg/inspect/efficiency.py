"""Layer efficiency (``pyimg check``): wasted bytes, duplicate content, a score.

Every layer is streamed once (:func:`content_walk`), its tar headers applied
to a :class:`~pyimg.inspect.tree.MergedTree` and the data of each regular
file hashed (sha256, 1 MiB pieces: memory stays bounded).  Every copy of a
regular file a layer carries is recorded as a :class:`Copy`; the copy still
visible in the final tree is the last one written at its path.

Definitions (docs/design.md, "How the efficiency score is computed"):

* ``total_bytes``  — sizes of all regular-file entries of all layers;
* ``final_bytes``  — sizes of the regular files of the final tree;
* ``wasted_bytes`` — ``total_bytes - final_bytes``: copies a later entry
  overwrote, or a whiteout, opaque marker or directory removed;
* ``efficiency``   — ``final_bytes / total_bytes`` (1.0 for no file bytes);
* ``wasted_ratio`` — ``wasted_bytes / user_bytes``, ``user_bytes`` being the
  file bytes of every layer but the first (dive's "user wasted percent");
* duplicates — the same content (digest, size > 0) carried by two or more
  layers, whether or not the copies survive.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pyimg.errors import InvalidArgument
from pyimg.inspect.content import ImageDocuments, ImageHandle, load_documents
from pyimg.inspect.layers import _check
from pyimg.inspect.stream import FILE, LayerTar, TarEntry, open_layer_tar
from pyimg.inspect.tree import MergedTree
from pyimg.oci import Platform


@dataclass(frozen=True, slots=True)
class Copy:
    """One regular-file entry of one layer."""

    layer: int
    size: int
    digest: str  # "sha256:..." of its data


@dataclass
class ContentTree:
    """The final tree plus every regular-file copy, by root-relative path."""

    tree: MergedTree
    docs: ImageDocuments
    copies: dict[str, list[Copy]] = field(default_factory=dict)
    layer_bytes: list[int] = field(default_factory=list)  # regular-file bytes per layer

    def final_copies(self) -> dict[str, Copy]:
        """The copy behind each regular file of the final tree, by root-relative path.

        The tree is walked without following symlinks: a path that only
        resolves through a later symlink is not the file written there."""
        out: dict[str, Copy] = {}
        for path, node in self.tree.walk("", recursive=True):
            if node.kind != FILE:
                continue
            copies = self.copies.get(path)
            if copies and copies[-1].layer == node.layer:
                out[path] = copies[-1]
        return out


def _hashing(layer: LayerTar, entries: Iterator[TarEntry], index: int,
             out: ContentTree) -> Iterator[TarEntry]:
    total = 0
    for e in entries:
        if e.kind == FILE:
            h = hashlib.sha256()
            for piece in layer.data():
                h.update(piece)
            out.copies.setdefault(e.path, []).append(
                Copy(index, e.size, f"sha256:{h.hexdigest()}"))
            total += e.size
        yield e
    out.layer_bytes.append(total)


def content_walk(handle: ImageHandle, platform: Platform | None = None,
                 upto: int | None = None) -> ContentTree:
    """Stream every layer once: the final tree, and a digest for every file copy.

    With ``upto``, stop after that layer (0-based): the tree as it stands
    once layer ``upto`` is applied, for diffs between layers.
    """
    docs = load_documents(handle, platform)
    _check(docs)
    out = ContentTree(MergedTree(), docs)
    n = len(docs.manifest.layers)
    if upto is not None and not 0 <= upto < n:
        raise InvalidArgument(f"layer {upto}: the image has layers 0 to {n - 1}")
    for i, desc in enumerate(docs.manifest.layers):
        if upto is not None and i > upto:
            break
        with open_layer_tar(handle.reader, desc,
                            label=f"layer {i + 1}/{n} {desc.digest.short}") as layer:
            out.tree.apply(_hashing(layer, iter(layer), i, out))
            layer.finish(docs.config.diff_ids[i])
    return out


# analysis ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WastedPath:
    path: str  # with a leading "/"
    copies: int  # copies carried by the layers that are not in the final image
    wasted_bytes: int
    layers: tuple[int, ...]  # the layers carrying those copies
    removed: bool  # True when no regular file is left at the path

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "copies": self.copies, "wastedBytes": self.wasted_bytes,
                "layers": list(self.layers), "removed": self.removed}


@dataclass(frozen=True)
class Duplicate:
    digest: str
    size: int
    copies: tuple[tuple[int, str], ...]  # (layer, "/path"), in layer order

    @property
    def extra_bytes(self) -> int:
        """Bytes carried beyond one copy."""
        return self.size * (len(self.copies) - 1)

    def to_json(self) -> dict[str, Any]:
        return {"digest": self.digest, "size": self.size, "extraBytes": self.extra_bytes,
                "copies": [{"layer": layer, "path": p} for layer, p in self.copies]}


@dataclass(frozen=True)
class Efficiency:
    layers: int
    total_bytes: int
    final_bytes: int
    user_bytes: int
    wasted_bytes: int
    efficiency: float
    wasted_ratio: float
    wasted: tuple[WastedPath, ...]  # largest first
    duplicates: tuple[Duplicate, ...]  # largest extra bytes first

    @property
    def duplicate_bytes(self) -> int:
        return sum(d.extra_bytes for d in self.duplicates)

    def to_json(self) -> dict[str, Any]:
        return {"layers": self.layers, "totalBytes": self.total_bytes,
                "finalBytes": self.final_bytes, "userBytes": self.user_bytes,
                "wastedBytes": self.wasted_bytes, "efficiency": self.efficiency,
                "wastedRatio": self.wasted_ratio, "duplicateBytes": self.duplicate_bytes,
                "wasted": [w.to_json() for w in self.wasted],
                "duplicates": [d.to_json() for d in self.duplicates]}


def analyze(ct: ContentTree) -> Efficiency:
    """Wasted bytes, duplicates and the score of a walked image."""
    total = sum(ct.layer_bytes)
    user = sum(ct.layer_bytes[1:])
    final = 0
    wasted: list[WastedPath] = []
    by_digest: dict[tuple[str, int], list[tuple[int, str]]] = {}
    kept = ct.final_copies()
    for path, copies in ct.copies.items():
        keep = kept.get(path)
        if keep is not None:
            final += keep.size
        lost = list(copies[:-1]) if keep is not None else list(copies)
        if lost:
            wasted.append(WastedPath("/" + path, len(lost), sum(c.size for c in lost),
                                     tuple(c.layer for c in lost), keep is None))
        for c in copies:
            if c.size:
                by_digest.setdefault((c.digest, c.size), []).append((c.layer, "/" + path))
    duplicates = []
    for (digest, size), where in by_digest.items():
        if len({layer for layer, _ in where}) > 1:
            duplicates.append(Duplicate(digest, size, tuple(sorted(where))))
    wasted.sort(key=lambda w: (-w.wasted_bytes, w.path))
    duplicates.sort(key=lambda d: (-d.extra_bytes, d.digest))
    waste = total - final
    return Efficiency(
        layers=len(ct.layer_bytes), total_bytes=total, final_bytes=final, user_bytes=user,
        wasted_bytes=waste, efficiency=final / total if total else 1.0,
        wasted_ratio=waste / user if user else 0.0, wasted=tuple(wasted),
        duplicates=tuple(duplicates))


@dataclass(frozen=True)
class Limits:
    """CI gates; None: not checked (dive's highestWastedBytes, highestUserWastedPercent,
    lowestEfficiency)."""

    max_wasted_bytes: int | None = None
    max_wasted_ratio: float | None = None
    min_efficiency: float | None = None


def violations(e: Efficiency, limits: Limits) -> list[str]:
    """One sentence per crossed limit (empty: the image passes)."""
    out = []
    if limits.max_wasted_bytes is not None and e.wasted_bytes > limits.max_wasted_bytes:
        out.append(f"wasted bytes {e.wasted_bytes} > {limits.max_wasted_bytes}")
    if limits.max_wasted_ratio is not None and e.wasted_ratio > limits.max_wasted_ratio:
        out.append(f"wasted ratio {e.wasted_ratio:.4f} > {limits.max_wasted_ratio}")
    if limits.min_efficiency is not None and e.efficiency < limits.min_efficiency:
        out.append(f"efficiency {e.efficiency:.4f} < {limits.min_efficiency}")
    return out


def check_image(handle: ImageHandle, platform: Platform | None = None) -> Efficiency:
    return analyze(content_walk(handle, platform))
