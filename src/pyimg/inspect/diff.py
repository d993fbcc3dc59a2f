"""``pyimg diff``: entries added, removed and changed between two images' final trees.

Both images are streamed once each (:func:`~pyimg.inspect.efficiency.content_walk`:
headers applied, regular-file data hashed in bounded pieces).  An entry is
*changed* when its type, permission bits, uid/gid, size, link target or
content digest differ; mtimes are ignored (rebuilt images differ there
without differing in content).  Directories count like any other entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyimg.inspect.content import ImageHandle
from pyimg.inspect.efficiency import ContentTree, Copy, content_walk
from pyimg.inspect.tree import Node
from pyimg.oci import Platform


@dataclass(frozen=True, slots=True)
class Entry:
    """What diff compares about one path."""

    kind: str
    mode: int
    uid: int
    gid: int
    size: int
    target: str
    digest: str
    type_flag: bytes

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.kind, "mode": oct(self.mode), "uid": self.uid,
                               "gid": self.gid, "size": self.size}
        if self.target:
            out["target"] = self.target
        if self.digest:
            out["digest"] = self.digest
        return out


_FIELDS = (("type", "kind"), ("type", "type_flag"), ("mode", "mode"), ("uid", "uid"),
           ("gid", "gid"), ("size", "size"), ("target", "target"), ("content", "digest"))


@dataclass(frozen=True)
class Change:
    path: str  # with a leading "/"
    status: str  # added, removed, changed
    before: Entry | None
    after: Entry | None

    @property
    def fields(self) -> tuple[str, ...]:
        """What differs (for a change): type, mode, uid, gid, size, target, content."""
        if self.before is None or self.after is None:
            return ()
        out: list[str] = []
        for name, attr in _FIELDS:
            if getattr(self.before, attr) != getattr(self.after, attr) and name not in out:
                out.append(name)
        return tuple(out)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "status": self.status}
        if self.status == "changed":
            out["fields"] = list(self.fields)
        if self.before is not None:
            out["before"] = self.before.to_json()
        if self.after is not None:
            out["after"] = self.after.to_json()
        return out


@dataclass(frozen=True)
class ImageDiff:
    changes: tuple[Change, ...]  # sorted by path

    def of(self, status: str) -> list[Change]:
        return [c for c in self.changes if c.status == status]

    def to_json(self) -> dict[str, Any]:
        summary = {}
        for status, side in (("added", "after"), ("removed", "before"), ("changed", "after")):
            items = self.of(status)
            summary[status] = {"count": len(items), "bytes": sum(
                getattr(c, side).size for c in items)}
        return {"summary": summary, "changes": [c.to_json() for c in self.changes]}


def _entries(ct: ContentTree) -> dict[str, Entry]:
    final = ct.final_copies()
    tree = ct.tree
    out: dict[str, Entry] = {}
    for path, node in tree.walk("", recursive=True):
        out[path] = _entry(ct, path, node, final)
    return out


def _entry(ct: ContentTree, path: str, node: Node, final: dict[str, Copy]) -> Entry:
    digest = ""
    target = node.target
    size = node.size
    if node.kind == "file":
        copy = final.get(path)
        digest = copy.digest if copy is not None else ""
    elif node.kind == "hardlink":
        size = ct.tree.hardlink_size(node)
        copy = final.get(node.target)
        digest = copy.digest if copy is not None else ""
        target = "/" + node.target
    return Entry(node.kind, node.mode & 0o7777, node.uid, node.gid, size, target, digest,
                 node.type_flag if node.kind == "other" else b"")


def diff_trees(a: ContentTree, b: ContentTree) -> ImageDiff:
    ea, eb = _entries(a), _entries(b)
    changes = []
    for path in sorted(ea.keys() | eb.keys()):
        before, after = ea.get(path), eb.get(path)
        if before is None:
            changes.append(Change("/" + path, "added", None, after))
        elif after is None:
            changes.append(Change("/" + path, "removed", before, None))
        elif before != after:
            changes.append(Change("/" + path, "changed", before, after))
    return ImageDiff(tuple(changes))


def diff_images(a: ImageHandle, b: ImageHandle, platform: Platform | None = None) -> ImageDiff:
    """The difference from image ``a`` to image ``b`` (each streamed once)."""
    return diff_trees(content_walk(a, platform), content_walk(b, platform))
