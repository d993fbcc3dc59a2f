"""Layer tars for tests: a small builder DSL and a corpus of hostile layers.

``Layer`` builds a tar in memory (tarfile's writer, PAX format), in the
spirit of containerd's ``tartest``::

    tar = Layer().dir("etc").file("etc/hosts", b"127.0.0.1 x\\n", mode=0o600).tar()
    blob = compress(tar, "gzip")

``BREAKOUTS`` is a table of hostile layer sequences in the spirit of
containerd pkg/archive TestBreakouts, each a :class:`Breakout`: ``build(outside)``
returns the layers (tar bytes, applied in order into the same root) given the
absolute path of a directory *outside* the root holding a file ``canary``;
``expect`` is ``"unsafe"`` (UnsafeEntryError), ``"error"`` (UnpackError) or
``"ok"`` (applied, harmlessly inside the root; ``check(root, outside)``
asserts where things landed).  Whatever the outcome, nothing outside the root
may change: see ``snapshot_outside``.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

MTIME = 1_700_000_000


class Layer:
    """Chainable tar builder; every method returns ``self``."""

    def __init__(self, format: int = tarfile.PAX_FORMAT) -> None:
        self.format = format
        self._items: list[tuple[tarfile.TarInfo, bytes | None]] = []

    def _add(self, name: str, type: bytes, *, mode: int = 0o644, uid: int = 0, gid: int = 0,
             mtime: float = MTIME, linkname: str = "", data: bytes | None = None,
             pax: dict[str, str] | None = None, xattrs: dict[str, bytes] | None = None,
             devmajor: int = 0, devminor: int = 0) -> Layer:
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.uid, ti.gid, ti.mtime = type, mode, uid, gid, mtime
        ti.linkname, ti.devmajor, ti.devminor = linkname, devmajor, devminor
        ti.size = len(data) if data is not None else 0
        headers = dict(pax or {})
        for key, value in (xattrs or {}).items():
            headers["SCHILY.xattr." + key] = value.decode("utf-8", "surrogateescape")
        ti.pax_headers = headers
        self._items.append((ti, data))
        return self

    def file(self, name: str, data: bytes = b"", mode: int = 0o644, **kw: object) -> Layer:
        return self._add(name, tarfile.REGTYPE, mode=mode, data=data, **kw)  # type: ignore[arg-type]

    def dir(self, name: str, mode: int = 0o755, **kw: object) -> Layer:
        return self._add(name, tarfile.DIRTYPE, mode=mode, **kw)  # type: ignore[arg-type]

    def symlink(self, name: str, target: str, **kw: object) -> Layer:
        return self._add(name, tarfile.SYMTYPE, mode=0o777, linkname=target, **kw)  # type: ignore[arg-type]

    def hardlink(self, name: str, target: str, **kw: object) -> Layer:
        return self._add(name, tarfile.LNKTYPE, linkname=target, **kw)  # type: ignore[arg-type]

    def fifo(self, name: str, mode: int = 0o644, **kw: object) -> Layer:
        return self._add(name, tarfile.FIFOTYPE, mode=mode, **kw)  # type: ignore[arg-type]

    def device(self, name: str, kind: str = "chr", major: int = 1, minor: int = 3) -> Layer:
        t = tarfile.CHRTYPE if kind == "chr" else tarfile.BLKTYPE
        return self._add(name, t, mode=0o666, devmajor=major, devminor=minor)

    def whiteout(self, path: str) -> Layer:
        head, _, base = path.rpartition("/")
        return self.file(f"{head}/.wh.{base}" if head else f".wh.{base}")

    def opaque(self, dir: str) -> Layer:
        return self.file(f"{dir}/.wh..wh..opq" if dir else ".wh..wh..opq")

    def longname(self, depth: int = 30, leaf: str = "f", data: bytes = b"long") -> Layer:
        """A path longer than ustar's 255 bytes (PAX path or GNU longname)."""
        return self.file("/".join(["d" * 20] * depth + [leaf]), data)

    def tar(self, padding: int = 0) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=self.format) as tf:
            for ti, data in self._items:
                tf.addfile(ti, io.BytesIO(data) if data is not None else None)
        return buf.getvalue() + b"\0" * padding


def compress(tar: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(tar, mtime=0)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(tar)
    return tar


def snapshot_outside(*dirs: Path) -> dict[str, tuple[int, int, int, bytes]]:
    """(mode, size, mtime_ns, head of content) of everything under ``dirs``."""
    snap: dict[str, tuple[int, int, int, bytes]] = {}
    for d in dirs:
        for dirpath, dirnames, filenames in os.walk(d):
            for name in dirnames + filenames:
                p = os.path.join(dirpath, name)
                st = os.lstat(p)
                head = b""
                if os.path.isfile(p) and not os.path.islink(p):
                    head = Path(p).read_bytes()[:64]
                snap[p] = (st.st_mode, st.st_size, st.st_mtime_ns, head)
        st = os.lstat(d)
        snap[str(d)] = (st.st_mode, st.st_nlink, st.st_mtime_ns, b"")
    return snap


# -- the breakout corpus -------------------------------------------------------


@dataclass(frozen=True)
class Breakout:
    name: str
    build: Callable[[str], list[bytes]]
    expect: str  # "unsafe" | "error" | "ok"
    check: Callable[[Path, Path], None] | None = None
    modes: tuple[str, ...] = field(default=("overlay", "delete"))


def _one(layer: Layer) -> Callable[[str], list[bytes]]:
    return lambda outside: [layer.tar()]


def _exists(rel: str) -> Callable[[Path, Path], None]:
    def check(root: Path, outside: Path) -> None:
        assert (root / rel).exists() or (root / rel).is_symlink(), rel
    return check


def _nul_name(outside: str) -> list[bytes]:
    return [Layer().file("x", b"a", pax={"path": "a\0/../../etc/passwd"}).tar()]


def _abs_symlink_to_outside(outside: str) -> list[bytes]:
    return [Layer().symlink("l", outside).file("l/escaped", b"pwned").tar()]


def _two_layer_symlink(outside: str) -> list[bytes]:
    # GNU tar CVE-2025-45582 shape: the link comes in one archive, the write in the next
    return [Layer().symlink("l", outside).tar(), Layer().file("l/escaped", b"pwned").tar()]


def _two_layer_rel_symlink(outside: str) -> list[bytes]:
    return [Layer().symlink("l", "../outside").tar(), Layer().file("l/canary", b"pwned").tar()]


def _file_over_symlink(outside: str) -> list[bytes]:
    return [Layer().symlink("c", os.path.join(outside, "canary")).file("c", b"pwned").tar()]


def _file_over_symlink_2(outside: str) -> list[bytes]:
    return [Layer().symlink("c", os.path.join(outside, "canary")).tar(),
            Layer().file("c", b"pwned").tar()]


def _hardlink_abs_outside(outside: str) -> list[bytes]:
    return [Layer().hardlink("x", os.path.join(outside, "canary")).tar()]


def _hardlink_via_abs_symlink(outside: str) -> list[bytes]:
    return [Layer().symlink("d", outside).hardlink("x", "d/canary").tar()]


def _whiteout_via_symlink(outside: str) -> list[bytes]:
    return [Layer().symlink("l", outside).whiteout("l/canary").tar()]


def _opaque_via_symlink(outside: str) -> list[bytes]:
    return [Layer().symlink("l", outside).opaque("l").tar()]


def _dir_to_symlink(outside: str) -> list[bytes]:
    return [Layer().dir("d").file("d/a", b"1").symlink("d", outside).file("d/escaped", b"x").tar()]


def _landed(rel: str, outside_rel: bool = True) -> Callable[[Path, Path], None]:
    """``rel`` exists under root/<outside path> (an absolute link clamped into the root)."""
    def check(root: Path, outside: Path) -> None:
        p = root / str(outside).lstrip("/") / rel if outside_rel else root / rel
        assert p.exists(), p
    return check


BREAKOUTS: list[Breakout] = [
    Breakout("dotdot", _one(Layer().file("../x", b"x")), "unsafe"),
    Breakout("slash-dotdot", _one(Layer().file("/../x", b"x")), "unsafe"),
    Breakout("a-dotdot-dotdot", _one(Layer().file("a/../../x", b"x")), "unsafe"),
    Breakout("dot-dotdot-deep", _one(Layer().file("./a/./../../../x", b"x")), "unsafe"),
    Breakout("dotdot-in-middle-ok", _one(Layer().file("a/../b", b"x")), "ok", _exists("b")),
    Breakout("abs-name-clamped", _one(Layer().file("/abs", b"x")), "ok", _exists("abs")),
    Breakout("etc-self-symlink", _one(
        Layer().symlink("etc", "/etc").file("etc/pyimg-breakout-canary", b"x")), "unsafe"),
    Breakout("abs-symlink-etc", _one(
        Layer().symlink("hostetc", "/etc").file("hostetc/pyimg-breakout-canary", b"x")),
        "ok", _exists("etc/pyimg-breakout-canary")),
    Breakout("abs-symlink-outside", _abs_symlink_to_outside, "ok", _landed("escaped")),
    Breakout("rel-symlink-climb", _one(
        Layer().symlink("up", "../../..").file("up/canary", b"pwned")), "ok", _exists("canary")),
    Breakout("symlink-chain", _one(
        Layer().symlink("a", "b").symlink("b", "c").symlink("c", "../../outside")
        .file("a/x", b"pwned")), "ok", _exists("outside/x")),
    Breakout("symlink-to-root", _one(Layer().symlink("r", "/").file("r/x", b"1")), "ok",
             _exists("x")),
    Breakout("symlink-to-file-then-dir", _one(
        Layer().file("f", b"1").symlink("l", "f").file("l/x", b"2")), "unsafe"),
    Breakout("symlink-loop", _one(
        Layer().symlink("a", "b").symlink("b", "a").file("a/x", b"1")), "unsafe"),
    Breakout("symlink-self-loop", _one(Layer().symlink("a", "a").file("a/x", b"1")), "unsafe"),
    Breakout("dir-replaced-by-symlink", _dir_to_symlink, "ok", _landed("escaped")),
    Breakout("file-over-abs-symlink", _file_over_symlink, "ok", _exists("c")),
    Breakout("file-over-symlink-2-layers", _file_over_symlink_2, "ok", _exists("c"),
             modes=("delete",)),
    Breakout("two-layer-abs-symlink", _two_layer_symlink, "ok", _landed("escaped"),
             modes=("delete",)),
    Breakout("two-layer-rel-symlink", _two_layer_rel_symlink, "ok", _exists("outside/canary"),
             modes=("delete",)),
    Breakout("hardlink-dotdot", _one(Layer().hardlink("x", "../outside/canary")), "unsafe"),
    Breakout("hardlink-abs-etc-passwd-missing", _one(Layer().hardlink("x", "/etc/passwd")),
             "error", modes=("delete",)),
    Breakout("hardlink-abs-etc-passwd-inside", _one(
        Layer().dir("etc").file("etc/passwd", b"root:x:0:0::/:/bin/sh\n")
        .hardlink("x", "/etc/passwd")), "ok", _exists("x")),
    Breakout("hardlink-abs-outside", _hardlink_abs_outside, "error", modes=("delete",)),
    Breakout("hardlink-via-abs-symlink", _hardlink_via_abs_symlink, "error", modes=("delete",)),
    Breakout("hardlink-to-dir", _one(Layer().dir("d").hardlink("x", "d")), "unsafe"),
    Breakout("hardlink-to-root", _one(Layer().hardlink("x", "./")), "unsafe"),
    Breakout("hardlink-empty-target", _one(Layer().hardlink("x", "")), "unsafe"),
    Breakout("whiteout-dot", _one(Layer().file(".wh..", b"")), "unsafe"),
    Breakout("whiteout-dotdot", _one(Layer().file("a/.wh...", b"")), "unsafe"),
    Breakout("whiteout-bare", _one(Layer().file("a/.wh.", b"")), "unsafe"),
    Breakout("whiteout-climb", _one(Layer().file("../.wh.x", b"")), "unsafe"),
    Breakout("opaque-climb", _one(Layer().file("../.wh..wh..opq", b"")), "unsafe"),
    Breakout("whiteout-via-symlink", _whiteout_via_symlink, "ok"),
    Breakout("opaque-via-symlink", _opaque_via_symlink, "ok"),
    Breakout("very-long-path", _one(Layer().file("a/" * 2100 + "x", b"1")), "unsafe"),
    Breakout("nul-in-name", _nul_name, "unsafe"),
    Breakout("root-as-file", _one(Layer().file(".", b"x")), "unsafe"),
    Breakout("root-as-symlink", _one(Layer().symlink(".", "/etc")), "unsafe"),
    Breakout("root-as-symlink-slash", _one(Layer().symlink("./", "/")), "unsafe"),
    Breakout("root-dir-ok", _one(Layer().dir("./", mode=0o755).file("./a", b"1")), "ok",
             _exists("a")),
    Breakout("devices-skipped", _one(
        Layer().device("dev/null").device("dev/sda", "blk", 8, 0)), "ok"),
]
