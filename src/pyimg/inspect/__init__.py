"""Image inspection without unpacking: ``inspect``, ``layers``, ``ls``, ``cat``.

Library API (the CLI in :mod:`pyimg.cli.inspect` only renders these)::

    from pyimg.inspect import open_image, inspect_image, layer_stats, build_tree, read_file

    with open_image(settings, "127.0.0.1:5000/pyimg/busybox") as img:
        info = inspect_image(img)           # ImageInfo: index, manifest, config only
        for st in layer_stats(img):         # LayerStats per layer, streamed
            ...
        tree, docs = build_tree(img)        # MergedTree: final tree, layer of each entry
        for chunk in read_file(img, "/etc/passwd"):
            ...

Modules: :mod:`.content` (store or source, verified documents, streamed
blobs), :mod:`.image` (typed inspect result), :mod:`.select` (the
``{{.Field}}`` selector), :mod:`.stream` (a layer as tar entries),
:mod:`.tree` (whiteouts applied, per-layer deltas), :mod:`.layers`,
:mod:`.cat`.
"""

from __future__ import annotations

from pyimg.inspect.cat import read_file
from pyimg.inspect.content import (
    ImageDocuments,
    ImageHandle,
    SourceReader,
    StoreReader,
    load_documents,
    open_image,
)
from pyimg.inspect.image import ImageInfo, inspect_image
from pyimg.inspect.layers import LayerStats, build_tree, layer_stats
from pyimg.inspect.tree import LayerDelta, MergedTree, Node

__all__ = [
    "ImageDocuments",
    "ImageHandle",
    "ImageInfo",
    "LayerDelta",
    "LayerStats",
    "MergedTree",
    "Node",
    "SourceReader",
    "StoreReader",
    "build_tree",
    "inspect_image",
    "layer_stats",
    "load_documents",
    "open_image",
    "read_file",
]
