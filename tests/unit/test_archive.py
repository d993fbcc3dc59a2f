"""archive: decompression, diffID, entry types, metadata, whiteouts, limits."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import struct
import subprocess
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from pyimg.archive import ApplyResult, Limits, WhiteoutMode
from pyimg.archive.apply import apply_layer
from pyimg.archive.compression import open_layer
from pyimg.errors import UnpackError
from tests.hostile import MTIME, Layer, compress
from tests.need import need_root, need_tool

OVERLAY, DELETE = WhiteoutMode.OVERLAY, WhiteoutMode.DELETE
ROOT = os.geteuid() == 0
needs_root = pytest.mark.usefixtures("_root")


@pytest.fixture
def _root() -> None:
    need_root()  # chown, mknod, trusted.* xattrs: fail loudly, never skip


@pytest.fixture
def _gnu_tar() -> None:
    need_tool("tar")  # GNU tar writes the sparse members
#: struct vfs_cap_data v2: cap_net_bind_service in permitted+effective
CAP_NET_BIND = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)


def apply(root: Path, blob: bytes, compression: str = "none",
          mode: WhiteoutMode = DELETE, **kw: object) -> ApplyResult:
    root.mkdir(exist_ok=True)
    return apply_layer(io.BytesIO(blob), compression, root, whiteouts=mode, **kw)  # type: ignore[arg-type]


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


# -- decompression and diffID ----------------------------------------------------


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_diff_id_is_sha256_of_uncompressed_tar(tmp_path: Path, compression: str) -> None:
    tar = Layer().dir("a").file("a/b", b"hello" * 1000).tar()
    res = apply(tmp_path / "r", compress(tar, compression), compression)
    assert res.diff_id.hex == hashlib.sha256(tar).hexdigest()
    assert res.size == len(tar)
    assert res.entries == 2
    assert (tmp_path / "r/a/b").read_bytes() == b"hello" * 1000


def test_diff_id_hashes_padding_after_tar_end(tmp_path: Path) -> None:
    tar = Layer().file("f", b"x").tar(padding=8192)
    res = apply(tmp_path / "r", compress(tar, "gzip"), "gzip")
    assert res.diff_id.hex == hashlib.sha256(tar).hexdigest()


def test_gzip_trailing_nul_padding_is_ignored(tmp_path: Path) -> None:
    tar = Layer().file("f", b"x").tar()
    res = apply(tmp_path / "r", compress(tar, "gzip") + b"\0" * 1000, "gzip")
    assert res.diff_id.hex == hashlib.sha256(tar).hexdigest()


def test_gzip_multi_member(tmp_path: Path) -> None:
    tar = Layer().file("f", os.urandom(300_000)).file("g", b"y" * 100_000).tar()
    blob = b"".join(gzip.compress(tar[i:i + 70_001]) for i in range(0, len(tar), 70_001))
    res = apply(tmp_path / "r", blob + b"\0" * 17, "gzip")
    assert res.diff_id.hex == hashlib.sha256(tar).hexdigest()
    assert (tmp_path / "r/g").read_bytes() == b"y" * 100_000


def test_gzip_garbage_after_stream_is_refused() -> None:
    reader = open_layer(io.BytesIO(gzip.compress(b"abc") + b"junk"), "gzip", Limits())
    with pytest.raises(UnpackError, match="trailing garbage"):
        reader.drain()


def test_truncated_gzip_is_refused(tmp_path: Path) -> None:
    blob = compress(Layer().file("f", os.urandom(100_000)).tar(), "gzip")
    with pytest.raises(UnpackError):
        apply(tmp_path / "r", blob[: len(blob) // 2], "gzip")


def test_truncated_tar_data_is_refused(tmp_path: Path) -> None:
    tar = Layer().file("f", os.urandom(100_000)).tar()
    with pytest.raises(UnpackError, match=r"truncated|ends early"):
        apply(tmp_path / "r", tar[:50_000])


def test_reader_read_is_bounded() -> None:
    blob = compress(b"\0" * (8 << 20), "gzip")
    reader = open_layer(io.BytesIO(blob), "gzip", Limits())
    assert len(reader.read(4096)) <= 4096


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_decompression_bomb_fails_fast_in_bounded_memory(tmp_path: Path,
                                                         compression: str) -> None:
    # a tar whose one file is 200 MB of zeros: ~200 KB of gzip
    ti = tarfile.TarInfo("zeros")
    ti.size = 200 << 20
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        tf.addfile(ti, _Zeros(ti.size))
    blob = compress(buf.getvalue(), compression)
    assert len(blob) < 2 << 20
    tracemalloc.start()
    try:
        with pytest.raises(UnpackError, match="more than 10485760 bytes"):
            apply(tmp_path / "r", blob, compression, limits=Limits(max_bytes=10 << 20),
                  label="layer sha256:bomb")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 24 << 20


def test_raw_zeros_bomb(tmp_path: Path) -> None:
    blob = gzip.compress(b"\0" * (200 << 20), compresslevel=1)
    with pytest.raises(UnpackError, match="decompresses to more than"):
        apply(tmp_path / "r", blob, "gzip", limits=Limits(max_bytes=10 << 20))


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


def test_entry_limit(tmp_path: Path) -> None:
    tar = Layer().file("a").file("b").file("c").tar()
    with pytest.raises(UnpackError, match="more than 2 entries"):
        apply(tmp_path / "r", tar, limits=Limits(max_entries=2))


# -- entry types and metadata --------------------------------------------------------


@needs_root
def test_metadata(tmp_path: Path) -> None:
    tar = (Layer()
           .dir("bin", mode=0o755, uid=0, gid=0)
           .file("bin/su", b"#!", mode=0o4755, uid=0, gid=0)
           .file("bin/sg", b"#!", mode=0o2711, uid=1000, gid=50)
           .dir("tmp", mode=0o1777)
           .file("ping", b"elf", mode=0o755, uid=0, gid=0,
                 xattrs={"security.capability": CAP_NET_BIND, "user.note": b"\xff\x00bin"})
           .file("ns", b"", pax={"mtime": "1700000000.123456789"})
           .symlink("link", "bin/su", uid=7, gid=8, mtime=MTIME - 5)
           .fifo("fifo", mode=0o640, uid=3, gid=4)
           .tar())
    r = tmp_path / "r"
    apply(r, tar)
    assert stat.S_IMODE(os.stat(r / "bin/su").st_mode) == 0o4755
    st = os.stat(r / "bin/sg")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o2711, 1000, 50)
    assert stat.S_IMODE(os.stat(r / "tmp").st_mode) == 0o1777
    assert os.getxattr(r / "ping", "security.capability") == CAP_NET_BIND
    assert os.getxattr(r / "ping", "user.note") == b"\xff\x00bin"
    assert os.stat(r / "ns").st_mtime_ns == 1_700_000_000_123_456_789
    assert os.stat(r / "bin").st_mtime == MTIME  # children written, time restored after
    assert os.stat(r / "bin/su").st_mtime == MTIME
    lst = os.lstat(r / "link")
    assert os.readlink(r / "link") == "bin/su"
    assert (lst.st_uid, lst.st_gid, lst.st_mtime) == (7, 8, MTIME - 5)
    st = os.lstat(r / "fifo")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640
    assert (st.st_uid, st.st_gid) == (3, 4)


def test_longnames(tmp_path: Path) -> None:
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        r = tmp_path / str(fmt)
        apply(r, Layer(format=fmt).longname(depth=20, leaf="leaf")
              .symlink("ln", "/".join(["t" * 50] * 6)).tar())
        assert (r / "/".join(["d" * 20] * 20) / "leaf").read_bytes() == b"long"
        assert os.readlink(r / "ln") == "/".join(["t" * 50] * 6)


def test_hardlinks_share_inode(tmp_path: Path) -> None:
    r = tmp_path / "r"
    apply(r, Layer().dir("a").file("a/f", b"data").hardlink("b", "a/f").hardlink("c", "/a/f")
          .tar())
    assert os.stat(r / "b").st_ino == os.stat(r / "a/f").st_ino == os.stat(r / "c").st_ino
    assert os.stat(r / "a/f").st_nlink == 3


def test_hardlink_to_earlier_layer_in_delete_mode(tmp_path: Path) -> None:
    r = tmp_path / "r"
    apply(r, Layer().file("f", b"lower").tar())
    apply(r, Layer().hardlink("g", "f").tar())
    assert os.stat(r / "g").st_ino == os.stat(r / "f").st_ino


def test_hardlink_overlay_deferred_without_lowers(tmp_path: Path) -> None:
    res = apply(tmp_path / "up", Layer().hardlink("g", "lib/f").tar(), mode=OVERLAY)
    assert res.deferred == [("g", "lib/f")]
    assert not (tmp_path / "up/g").exists()


@needs_root
def test_hardlink_overlay_copies_from_first_lower(tmp_path: Path) -> None:
    l1, l2 = tmp_path / "l1", tmp_path / "l2"
    apply(l1, Layer().dir("lib").file("lib/f", b"old", mode=0o751, uid=5, gid=6).tar(),
          mode=OVERLAY)
    apply(l2, Layer().dir("lib").file("lib/f", b"new", mode=0o640, uid=7, gid=8).tar(),
          mode=OVERLAY)
    res = apply(tmp_path / "up", Layer().hardlink("g", "lib/f").tar(), mode=OVERLAY,
                lowers=[l2, l1])
    st = os.stat(tmp_path / "up/g")
    assert (tmp_path / "up/g").read_bytes() == b"new"
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime) == (0o640, 7, 8, MTIME)
    assert res.deferred == []


def test_replacements(tmp_path: Path) -> None:
    r = tmp_path / "r"
    apply(r, Layer().dir("d").file("d/keep", b"1").file("f", b"file").dir("gone")
          .file("gone/x", b"x").symlink("s", "d").tar())
    apply(r, Layer().dir("d", mode=0o700).dir("f").file("f/now-a-dir", b"2")
          .file("gone", b"now file").file("s", b"was a link").tar())
    assert (r / "d/keep").read_bytes() == b"1"  # dir over dir keeps its contents
    assert stat.S_IMODE(os.stat(r / "d").st_mode) == 0o700
    assert (r / "f/now-a-dir").read_bytes() == b"2"
    assert (r / "gone").read_bytes() == b"now file"
    assert not (r / "s").is_symlink() and (r / "s").read_bytes() == b"was a link"


@needs_root
def test_devices_are_skipped(tmp_path: Path) -> None:
    notes: list[str] = []
    res = apply(tmp_path / "r", Layer().dir("dev").device("dev/null").device("dev/sda", "blk")
                .tar(), verbose=notes.append)
    assert res.skipped_devices == ["dev/null", "dev/sda"]
    assert os.listdir(tmp_path / "r/dev") == []
    assert len(notes) == 2


@needs_root
def test_layer_cannot_forge_overlay_xattrs(tmp_path: Path) -> None:
    notes: list[str] = []
    apply(tmp_path / "r", Layer().dir("d", xattrs={"trusted.overlay.opaque": b"y",
                                                   "trusted.overlay.redirect": b"/etc",
                                                   "user.ok": b"1"}).tar(),
          mode=OVERLAY, verbose=notes.append)
    names = os.listxattr(tmp_path / "r/d")
    assert "user.ok" in names
    assert not [n for n in names if n.startswith("trusted.overlay.")]
    assert any("trusted.overlay.opaque" in n for n in notes)


def _sparse_tar(tmp_path: Path, fmt: str) -> bytes:
    src = tmp_path / f"src-{fmt}"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.write(b"A" * 4096)
        f.seek(32 << 20)
        f.write(b"B" * 4096)
        f.truncate(64 << 20)
    return subprocess.run(["tar", "--sparse", f"--format={fmt}", "-cf", "-", "-C", src,
                           "sparse"], check=True, capture_output=True).stdout


@pytest.mark.usefixtures("_gnu_tar")
@pytest.mark.parametrize("fmt", ["gnu", "pax"])
def test_sparse_file_keeps_holes(tmp_path: Path, fmt: str) -> None:
    tar = _sparse_tar(tmp_path, fmt)
    assert len(tar) < 1 << 20
    res = apply(tmp_path / "r", compress(tar, "gzip"), "gzip")
    assert res.diff_id.hex == hashlib.sha256(tar).hexdigest()
    p = tmp_path / "r/sparse"
    st = os.stat(p)
    assert st.st_size == 64 << 20
    assert st.st_blocks * 512 < 1 << 20  # `du` is small: the holes stayed holes
    with open(p, "rb") as f:
        assert f.read(4096) == b"A" * 4096
        f.seek(32 << 20)
        assert f.read(4097) == b"B" * 4096 + b"\0"


# -- whiteouts ------------------------------------------------------------------------


def _lower(r: Path) -> None:
    apply(r, Layer().dir("etc").file("etc/a", b"a").file("etc/b", b"b").dir("etc/sub")
          .file("etc/sub/c", b"c").dir("opq").file("opq/old1").dir("opq/olddir")
          .file("opq/olddir/x").file("opq/same", b"lower").dir("opq/keepdir")
          .file("opq/keepdir/lower").tar())


@pytest.mark.parametrize("opaque_first", [True, False])
def test_delete_mode_whiteouts(tmp_path: Path, opaque_first: bool) -> None:
    r = tmp_path / "r"
    _lower(r)
    layer = Layer().whiteout("etc/a").whiteout("etc/sub")
    if opaque_first:
        layer.opaque("opq")
    layer.file("opq/new", b"n").file("opq/same", b"upper").dir("opq/keepdir")
    layer.file("opq/keepdir/mine", b"m")
    if not opaque_first:
        layer.opaque("opq")
    apply(r, layer.tar())
    assert sorted(os.listdir(r / "etc")) == ["b"]
    assert sorted(os.listdir(r / "opq")) == ["keepdir", "new", "same"]
    assert (r / "opq/same").read_bytes() == b"upper"
    assert os.listdir(r / "opq/keepdir") == ["mine"]  # lower children of a kept dir go too
    assert not list(r.rglob(".wh.*"))


def test_delete_mode_whiteout_of_missing_path_is_noop(tmp_path: Path) -> None:
    r = tmp_path / "r"
    apply(r, Layer().whiteout("nope/x").opaque("nope2").tar())
    assert os.listdir(r) == []


@needs_root
def test_overlay_mode_whiteouts(tmp_path: Path) -> None:
    r = tmp_path / "up"
    notes: list[str] = []
    res = apply(r, Layer().whiteout("etc/a").opaque("opq").file("opq/new", b"n")
                .file("x", b"1").whiteout("x").whiteout("y").dir("y")
                .file(".wh..wh.plnk", b"").tar(), mode=OVERLAY, verbose=notes.append)
    st = os.lstat(r / "etc/a")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert os.getxattr(r / "opq", "trusted.overlay.opaque") == b"y"
    assert stat.S_ISCHR(os.lstat(r / "x").st_mode)  # the whiteout replaced this layer's x
    # a whiteout then a directory of the same name: the new dir must not merge
    assert os.getxattr(r / "y", "trusted.overlay.opaque") == b"y"
    assert not list(r.rglob(".wh.*"))
    assert "opq" in res.dirs and "etc" in res.dirs


# -- robustness ---------------------------------------------------------------------


def test_no_fd_leak_on_success_and_error(tmp_path: Path) -> None:
    before = open_fds()
    apply(tmp_path / "a", Layer().dir("a/b/c").file("a/b/c/d", b"1").symlink("l", "a")
          .file("l/b/e", b"2").tar())
    with pytest.raises(UnpackError):
        apply(tmp_path / "b", Layer().dir("x/y").file("x/y/z").file("../evil").tar())
    assert open_fds() == before


def test_many_dirs_exceed_fd_cache(tmp_path: Path) -> None:
    layer = Layer()
    for i in range(600):
        layer.dir(f"d{i}").file(f"d{i}/f", b"x")
    for i in range(600):
        layer.file(f"d{i}/g", b"y")
    res = apply(tmp_path / "r", layer.tar())
    assert res.entries == 1800
    assert (tmp_path / "r/d0/g").read_bytes() == b"y"
    assert os.stat(tmp_path / "r/d599").st_mtime == MTIME


def test_unknown_entry_type_is_refused(tmp_path: Path) -> None:
    ti = tarfile.TarInfo("vol")
    ti.type = tarfile.GNUTYPE_LONGNAME.replace(b"L", b"V")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        tf.addfile(ti)
    with pytest.raises(UnpackError, match="unsupported tar entry type"):
        apply(tmp_path / "r", buf.getvalue())


# -- the tar parser ----------------------------------------------------------------------


def _fields(tf: tarfile.TarFile) -> list[tuple[object, ...]]:
    out = []
    while (m := tf.next()) is not None:
        out.append((m.name, m.type, m.mode, m.uid, m.gid, m.size, m.mtime, m.linkname,
                    m.uname, m.gname, m.devmajor, m.devminor, m.sparse,
                    sorted(m.pax_headers.items())))
        tf.members.clear()  # type: ignore[attr-defined]
    return out


def _gnu_tar_of_tree(tmp_path: Path) -> bytes:
    src = tmp_path / "tree"
    deep = src / ("x" * 90) / ("y" * 90) / ("z" * 90)
    deep.mkdir(parents=True)
    (deep / ("f" * 120)).write_bytes(b"long")
    (src / "h1").write_bytes(b"h")
    os.link(src / "h1", src / "h2")
    os.symlink("t" * 150, src / "ln")
    os.mkfifo(src / "fifo")
    return subprocess.run(["tar", "--format=gnu", "-cf", "-", "-C", src, "."], check=True,
                          capture_output=True).stdout


@pytest.mark.usefixtures("_gnu_tar")
def test_fast_header_parser_matches_tarfile(tmp_path: Path) -> None:
    from pyimg.archive.tarstream import open_tar

    tars = [
        _gnu_tar_of_tree(tmp_path),
        _sparse_tar(tmp_path, "gnu"), _sparse_tar(tmp_path, "pax"),
        Layer(format=tarfile.GNU_FORMAT).file("big-ids", b"1", uid=3_000_000, gid=-1 & 0xFFFFFFF)
        .longname().symlink("s", "l" * 200).tar(),
        Layer().file("pax-ids", b"1", uid=3_000_000, gid=4_000_000)
        .file("ns", pax={"mtime": "1.5"}).longname().tar(),
        Layer(format=tarfile.USTAR_FORMAT).file("/".join(["p" * 60] * 3), b"prefix").tar(),
    ]
    for tar in tars:
        with tarfile.open(fileobj=io.BytesIO(tar), mode="r|") as ref:
            expected = _fields(ref)
        with open_tar(io.BytesIO(tar)) as fast:
            assert _fields(fast) == expected


def test_large_ids_gnu_base256_and_pax(tmp_path: Path) -> None:
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        r = tmp_path / str(fmt)
        apply(r, Layer(format=fmt).file("f", b"1", uid=3_000_000, gid=4_000_000).tar())
        st = os.stat(r / "f")
        assert (st.st_uid, st.st_gid) == (3_000_000, 4_000_000)


@pytest.mark.parametrize("cut", ["mid-header", "garbage-header"])
def test_broken_header_after_first_entry_is_refused(tmp_path: Path, cut: str) -> None:
    tar = Layer().file("a", b"1").file("b", b"2").tar()
    second = 1024  # header of a (512) + its data block (512)
    broken = tar[:second + 100] if cut == "mid-header" else \
        tar[:second] + b"\x7f" * 512 + tar[second + 512:]
    with pytest.raises(UnpackError, match="malformed or truncated tar header"):
        apply(tmp_path / "r", broken)


def test_zstd_multiple_frames(tmp_path: Path) -> None:
    import zstandard

    tar = Layer().file("f", os.urandom(200_000)).file("g", b"z" * 50_000).tar()
    cctx = zstandard.ZstdCompressor()
    blob = cctx.compress(tar[:100_000]) + cctx.compress(tar[100_000:])
    res = apply(tmp_path / "r", blob, "zstd")
    assert res.diff_id.hex == hashlib.sha256(tar).hexdigest()
    assert (tmp_path / "r/g").read_bytes() == b"z" * 50_000
