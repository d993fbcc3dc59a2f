"""``pyimg cat``: one file's bytes, read from the topmost layer that has it.

Layers are searched from the top down.  Each is streamed (headers only)
until the path shows up; a layer without it is read to its end, because a
whiteout, an opaque marker or a non-directory ancestor anywhere in it
decides whether the lower layers can still provide the file.  The layer
that holds the file is read only up to (and through) that entry.

* whiteout or opaque directory hiding the path → :class:`NotFound` naming the layer;
* symlinks (the file itself or a directory on the way) are followed inside
  the root, and the search restarts from the top with the resolved path;
* a hardlink is resolved to its target, searched from the hardlink's own
  layer down (tar hardlinks name content of the same or lower layers).

Data read this way is not verified against the layer digest: only part of
the blob is read.  ``pyimg layers`` reads layers whole and checks them.
Within one layer the first entry of a path is taken (a tar naming the same
path twice would have the last one win on extraction).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass

from pyimg.errors import FailedPrecondition, InvalidArgument, NotFound
from pyimg.inspect.content import ImageDocuments, ImageHandle, load_documents
from pyimg.inspect.stream import (
    DIR,
    FILE,
    HARDLINK,
    OPAQUE,
    SYMLINK,
    WHITEOUT,
    open_layer_tar,
)
from pyimg.oci import Descriptor, Platform

_MAX_HOPS = 40


@dataclass(frozen=True)
class _Next:
    kind: str  # "absent", "done", "symlink", "hardlink"
    path: str = ""


def normalize(base: str, path: str) -> str:
    """``path`` as a root-relative path, resolved from directory ``base`` (``..`` stops at /)."""
    out = [] if path.startswith("/") else [p for p in base.split("/") if p]
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out:
                out.pop()
        else:
            out.append(part)
    return "/".join(out)


def read_file(handle: ImageHandle, path: str, platform: Platform | None = None
              ) -> Iterator[bytes]:
    """The bytes of ``path`` in the image's final tree, streamed."""
    return cat_file(handle, load_documents(handle, platform), path)


def cat_file(handle: ImageHandle, docs: ImageDocuments, path: str) -> Iterator[bytes]:
    layers = docs.manifest.layers
    shown = "/" + normalize("", path)
    target = normalize("", path)
    start = len(layers) - 1
    hops = 0
    while True:
        if not target:
            raise InvalidArgument(f"cat {shown}: is a directory")
        for i in range(start, -1, -1):
            step = yield from _scan(handle, layers[i], i, target, shown)
            if step.kind == "done":
                return
            if step.kind == "absent":
                continue
            hops += 1
            if hops > _MAX_HOPS:
                raise InvalidArgument(f"cat {shown}: too many levels of links")
            # a symlink resolves in the final tree; a hardlink in its layer and below
            start = len(layers) - 1 if step.kind == "symlink" else i
            target = step.path
            break
        else:
            raise NotFound(f"cat {shown}: no such file in the image")


def _scan(handle: ImageHandle, desc: Descriptor, i: int, path: str, shown: str
          ) -> Generator[bytes, None, _Next]:
    prefix = path + "/"
    link: tuple[str, str] | None = None  # the shallowest symlink among the ancestors
    not_dir = ""
    hidden = ""
    with open_layer_tar(handle.reader, desc, label=f"layer {i} {desc.digest.short}") as layer:
        for e in layer:
            if e.kind == WHITEOUT:
                if e.target == path or path.startswith(e.target + "/"):
                    hidden = hidden or f"deleted by the whiteout {e.path!r}"
            elif e.kind == OPAQUE:
                if not e.target or path.startswith(e.target + "/"):
                    hidden = hidden or f"hidden by the opaque directory {'/' + e.target!r}"
            elif e.path == path:
                if e.kind == FILE:
                    yield from layer.data()
                    return _Next("done")
                if e.kind == HARDLINK:
                    return _Next("hardlink", e.target)
                if e.kind == SYMLINK:
                    return _Next("symlink", normalize(path.rpartition("/")[0], e.target))
                if e.kind == DIR:
                    raise InvalidArgument(f"cat {shown}: is a directory")
                raise FailedPrecondition(f"cat {shown}: not a regular file (a device or FIFO)")
            elif e.path and prefix.startswith(e.path + "/"):
                if e.kind == SYMLINK:
                    if link is None or len(e.path) < len(link[0]):
                        link = (e.path, e.target)
                elif e.kind != DIR:
                    not_dir = not_dir or e.path
    if link is not None:
        anc, text = link
        resolved = normalize(anc.rpartition("/")[0], text)
        rest = path[len(anc) + 1:]
        return _Next("symlink", f"{resolved}/{rest}" if resolved else rest)
    if not_dir:
        raise NotFound(f"cat {shown}: /{not_dir} is not a directory (layer {i})")
    if hidden:
        raise NotFound(f"cat {shown}: {hidden} in layer {i} ({desc.digest.short})")
    return _Next("absent")
