"""The image's final filesystem as metadata only: layers merged, whiteouts applied.

:class:`MergedTree` applies layers' tar *headers* in order, as the native
snapshotter applies their contents (image-spec layer.md):

* ``.wh.NAME`` removes NAME (and everything under it) from the lower layers;
* ``.wh..wh..opq`` hides all lower content of its directory;
* both apply to lower layers only, whatever the entry order within the
  layer: what the layer writes itself stays (image-spec#1215), as in
  :mod:`pyimg.archive.whiteout`;
* an entry replaces what was at its path; a directory over a directory
  keeps the children and takes the new metadata.

Each :class:`Node` records the layer its entry came from.  Applying a
layer returns a :class:`LayerDelta` (what it added, changed and deleted
compared with the layers below), which ``pyimg layers`` reports.

Memory is one small object per path of the final tree (plus, per layer, the
set of paths it wrote).
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from dataclasses import dataclass

from pyimg.errors import InvalidArgument, NotFound
from pyimg.inspect.stream import DIR, FILE, HARDLINK, OPAQUE, SYMLINK, WHITEOUT, TarEntry

_MAX_LINK_HOPS = 40


@dataclass(slots=True)
class Node:
    kind: str  # file, dir, symlink, hardlink, other
    layer: int  # the layer this entry comes from (-1: the implicit root)
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime: int = 0
    target: str = ""  # symlink text, or a hardlink's root-relative target
    type_flag: bytes = b""
    children: dict[str, Node] | None = None

    @property
    def is_dir(self) -> bool:
        return self.children is not None

    @property
    def mode_string(self) -> str:
        """``ls -l`` style: ``drwxr-xr-x``."""
        kind = {"dir": stat.S_IFDIR, "symlink": stat.S_IFLNK}.get(self.kind, stat.S_IFREG)
        if self.kind == "other":
            kind = {b"3": stat.S_IFCHR, b"4": stat.S_IFBLK, b"6": stat.S_IFIFO}.get(
                self.type_flag, stat.S_IFREG)
        return stat.filemode(kind | (self.mode & 0o7777))


@dataclass(slots=True)
class LayerDelta:
    """What one layer did to the tree below it.

    Counts are of non-directory paths (regular files, symlinks, hardlinks,
    devices, FIFOs): *added* — absent below (or a directory there);
    *changed* — a non-directory below too; *deleted* — non-directory paths of
    the lower tree removed by its whiteouts, opaque markers, or by an entry
    replacing a lower directory.  Bytes are regular-file sizes (a hardlink
    counts 0: it shares its target's data).
    """

    entries: int = 0  # tar entries except whiteouts and opaque markers
    files: int = 0  # of which non-directories
    dirs: int = 0
    whiteouts: int = 0  # whiteout entries and opaque markers
    added: int = 0
    changed: int = 0
    deleted: int = 0
    added_bytes: int = 0
    changed_bytes: int = 0
    deleted_bytes: int = 0
    file_bytes: int = 0  # regular-file bytes this layer carries


def _new_dir(layer: int) -> Node:
    return Node(DIR, layer, children={})


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


class MergedTree:
    def __init__(self) -> None:
        self.root = _new_dir(-1)
        self.layers = 0

    # -- building --------------------------------------------------------------

    def apply(self, entries: Iterator[TarEntry]) -> LayerDelta:
        """Apply the next layer's entries; return what it did."""
        layer = self.layers
        self.layers += 1
        delta = LayerDelta()
        touched: set[str] = {""}
        for e in entries:
            if e.kind == WHITEOUT:
                delta.whiteouts += 1
                self._whiteout(e.target, touched, delta)
            elif e.kind == OPAQUE:
                delta.whiteouts += 1
                node = self._ensure_dir(e.target, layer, touched, delta)
                self._strip(node, e.target, touched, delta)
            else:
                self._put(e, layer, touched, delta)
        return delta

    def _touch(self, path: str, touched: set[str]) -> None:
        while path not in touched:
            touched.add(path)
            path = path.rpartition("/")[0]

    def _ensure_dir(self, path: str, layer: int, touched: set[str], delta: LayerDelta) -> Node:
        """The directory at ``path``, creating missing (or replacing non-dir) components."""
        node = self.root
        sofar = ""
        for part in _parts(path):
            sofar = f"{sofar}/{part}" if sofar else part
            assert node.children is not None
            child = node.children.get(part)
            if child is None or not child.is_dir:
                if child is not None and sofar not in touched:
                    self._count_removed(child, delta)
                child = node.children[part] = _new_dir(layer)
            node = child
        self._touch(path, touched)
        return node

    def _put(self, e: TarEntry, layer: int, touched: set[str], delta: LayerDelta) -> None:
        m = e.info
        delta.entries += 1
        if not e.path:  # the root directory's own entry
            self.root.mode, self.root.uid, self.root.gid = m.mode, m.uid, m.gid
            self.root.mtime, self.root.layer = int(m.mtime), layer
            delta.dirs += 1
            return
        head, _, base = e.path.rpartition("/")
        parent = self._ensure_dir(head, layer, touched, delta)
        assert parent.children is not None
        old = parent.children.get(base)
        first = e.path not in touched  # the same path twice in one layer counts once
        lower = old is not None and first
        if e.kind == DIR:
            delta.dirs += 1
            if old is not None and old.is_dir:
                node = old
                node.layer = layer
            else:
                if lower and old is not None:
                    self._count_removed(old, delta)
                node = parent.children[base] = _new_dir(layer)
        else:
            delta.files += 1
            if e.kind == FILE:
                delta.file_bytes += m.size
            if first:
                if old is None or old.is_dir:
                    delta.added += 1
                    delta.added_bytes += e.size
                    if old is not None:
                        self._count_removed(old, delta)
                else:
                    delta.changed += 1
                    delta.changed_bytes += e.size
            node = parent.children[base] = Node(e.kind, layer)
            node.size = e.size
            node.target = e.target
            node.type_flag = m.type
        node.mode, node.uid, node.gid, node.mtime = m.mode, m.uid, m.gid, int(m.mtime)
        self._touch(e.path, touched)

    def _whiteout(self, path: str, touched: set[str], delta: LayerDelta) -> None:
        parent = self.lookup(path.rpartition("/")[0], follow=False)
        if parent is None or parent.children is None:
            return
        base = path.rpartition("/")[2]
        node = parent.children.get(base)
        if node is None:
            return
        if path in touched:  # written by this layer: only its lower content goes
            if node.is_dir:
                self._strip(node, path, touched, delta)
            return
        del parent.children[base]
        self._count_removed(node, delta)

    def _strip(self, node: Node, path: str, touched: set[str], delta: LayerDelta) -> None:
        """Remove the lower content under directory ``node``, keeping what this layer wrote."""
        stack = [(node, path)]
        while stack:
            d, dpath = stack.pop()
            assert d.children is not None
            for name in list(d.children):
                child = d.children[name]
                cpath = f"{dpath}/{name}" if dpath else name
                if cpath not in touched:
                    del d.children[name]
                    self._count_removed(child, delta)
                elif child.is_dir:
                    stack.append((child, cpath))

    @staticmethod
    def _count_removed(node: Node, delta: LayerDelta) -> None:
        stack = [node]
        while stack:
            n = stack.pop()
            if n.children is not None:
                stack.extend(n.children.values())
            else:
                delta.deleted += 1
                if n.kind == FILE:
                    delta.deleted_bytes += n.size

    # -- reading ------------------------------------------------------------------

    def lookup(self, path: str, *, follow: bool = True) -> Node | None:
        """The node at ``path``; symlinks in the middle are always followed (inside
        the root), the last one only with ``follow``."""
        found = self.resolve(path, follow=follow)
        return found[1] if found else None

    def resolve(self, path: str, *, follow: bool = True) -> tuple[str, Node] | None:
        """``(real path, node)`` for ``path``, or None."""
        todo = _parts(path)
        todo.reverse()
        node, real = self.root, list[str]()
        hops = 0
        while todo:
            part = todo.pop()
            if part == ".":
                continue
            if part == "..":
                if real:
                    real.pop()
                node = self._at(real)
                continue
            if node.children is None:
                return None
            child = node.children.get(part)
            if child is None:
                return None
            if child.kind == SYMLINK and (todo or follow):
                hops += 1
                if hops > _MAX_LINK_HOPS:
                    raise InvalidArgument(f"{path}: too many levels of symbolic links")
                link = _parts(child.target)
                link.reverse()
                todo.extend(link)
                if child.target.startswith("/"):
                    real, node = [], self.root
                continue
            real.append(part)
            node = child
        return "/".join(real), node

    def _at(self, parts: list[str]) -> Node:
        node = self.root
        for p in parts:
            assert node.children is not None
            node = node.children[p]
        return node

    def walk(self, path: str = "", *, recursive: bool = False) -> Iterator[tuple[str, Node]]:
        """Entries under directory ``path`` (sorted; depth first with ``recursive``),
        or the entry itself when it is not a directory (a symlink to a directory is
        followed, as ``ls DIR/`` does; to anything else it is shown itself).
        Paths are root-relative."""
        found = self.resolve(path, follow=False)
        if found is not None and found[1].kind == SYMLINK:
            target = self.resolve(path, follow=True)
            if target is not None and target[1].is_dir:
                found = target
        if found is None:
            raise NotFound(f"{'/' + path.strip('/')}: no such file or directory in the image")
        real, node = found
        if node.children is None:
            yield real, node
            return
        stack = [(real, node)]
        while stack:
            dpath, d = stack.pop()
            assert d.children is not None
            subdirs = []
            for name in sorted(d.children):
                child = d.children[name]
                cpath = f"{dpath}/{name}" if dpath else name
                yield cpath, child
                if recursive and child.is_dir:
                    subdirs.append((cpath, child))
            stack.extend(reversed(subdirs))

    def hardlink_size(self, node: Node) -> int:
        """A hardlink's data size (its target's)."""
        for _ in range(_MAX_LINK_HOPS):
            if node.kind != HARDLINK:
                return node.size
            target = self.lookup(node.target, follow=False)
            if target is None:
                return 0
            node = target
        return 0

