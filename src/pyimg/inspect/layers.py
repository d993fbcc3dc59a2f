"""``pyimg layers`` and the merged tree behind ``pyimg ls``: every layer streamed once.

Layers are read in order, one at a time, from the store or straight from
the source (nothing is stored); each is decompressed and its tar headers
applied to a :class:`~pyimg.inspect.tree.MergedTree`, file data skipped.
Each layer is read to its end, so its diffID is checked against the config
(and, from a source, its compressed digest too).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pyimg.digest import Digest
from pyimg.errors import FailedPrecondition
from pyimg.inspect.content import ImageDocuments, ImageHandle, load_documents
from pyimg.inspect.image import created_by_layer, history_entries
from pyimg.inspect.stream import open_layer_tar
from pyimg.inspect.tree import LayerDelta, MergedTree
from pyimg.oci import Platform


@dataclass(frozen=True)
class LayerStats:
    index: int
    digest: Digest
    media_type: str
    created_by: str
    compressed_size: int
    uncompressed_size: int
    diff_id: Digest
    delta: LayerDelta

    def to_json(self) -> dict[str, Any]:
        d = self.delta
        return {
            "index": self.index, "digest": str(self.digest), "mediaType": self.media_type,
            "createdBy": self.created_by, "size": self.compressed_size,
            "uncompressedSize": self.uncompressed_size, "diffID": str(self.diff_id),
            "entries": d.entries, "files": d.files, "dirs": d.dirs, "whiteouts": d.whiteouts,
            "added": d.added, "changed": d.changed, "deleted": d.deleted,
            "addedBytes": d.added_bytes, "changedBytes": d.changed_bytes,
            "deletedBytes": d.deleted_bytes, "fileBytes": d.file_bytes,
        }


def _check(docs: ImageDocuments) -> None:
    if len(docs.manifest.layers) != len(docs.config.diff_ids):
        raise FailedPrecondition(f"image {docs.manifest_desc.digest}:"
                                 f" {len(docs.manifest.layers)} layers but"
                                 f" {len(docs.config.diff_ids)} diff_ids in its config")


def walk_layers(handle: ImageHandle, docs: ImageDocuments,
                tree: MergedTree | None = None) -> Iterator[LayerStats]:
    """Apply each layer to ``tree`` (a new one by default), yielding its stats as it ends."""
    _check(docs)
    tree = tree if tree is not None else MergedTree()
    created_by = created_by_layer(history_entries(docs.config.history))
    n = len(docs.manifest.layers)
    for i, desc in enumerate(docs.manifest.layers):
        diff_id = docs.config.diff_ids[i]
        with open_layer_tar(handle.reader, desc,
                            label=f"layer {i + 1}/{n} {desc.digest.short}") as layer:
            delta = tree.apply(iter(layer))
            layer.finish(diff_id)
            size = layer.uncompressed_size
        yield LayerStats(i, desc.digest, desc.media_type, created_by.get(i, ""), desc.size,
                         size, diff_id, delta)


def layer_stats(handle: ImageHandle, platform: Platform | None = None) -> Iterator[LayerStats]:
    """One :class:`LayerStats` per layer, bottom first, each as soon as it is read."""
    return walk_layers(handle, load_documents(handle, platform))


def build_tree(handle: ImageHandle, platform: Platform | None = None
               ) -> tuple[MergedTree, ImageDocuments]:
    """The image's final tree (metadata only) and its documents."""
    docs = load_documents(handle, platform)
    tree = MergedTree()
    for _ in walk_layers(handle, docs, tree):
        pass
    return tree, docs
