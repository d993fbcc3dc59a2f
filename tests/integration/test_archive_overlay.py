"""OVERLAY-mode layers mounted as a real overlayfs show the image-spec result."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest

from pyimg.archive import WhiteoutMode
from pyimg.archive.apply import apply_layer
from tests.hostile import Layer, compress
from tests.need import need_overlay


@pytest.fixture(autouse=True)
def _needs() -> None:
    need_overlay()

LAYERS = [
    Layer().dir("etc").file("etc/keep", b"1").file("etc/gone", b"2").dir("etc/dropdir")
    .file("etc/dropdir/x", b"x").dir("opq").file("opq/old", b"old").dir("opq/olddir")
    .file("opq/olddir/y", b"y").file("becomes-dir", b"file").dir("lib")
    .file("lib/libc.so", b"libc"),
    # layer 2: file and dir whiteouts, opaque dir with new content, file -> dir
    Layer().whiteout("etc/gone").whiteout("etc/dropdir").opaque("opq")
    .file("opq/new", b"new").dir("becomes-dir").file("becomes-dir/inside", b"in")
    .hardlink("lib/libc.so.6", "lib/libc.so"),
    # layer 3: recreate a deleted name, delete in a lower-lower dir
    Layer().file("etc/gone", b"back").whiteout("lib/libc.so"),
]


def test_overlay_mount_of_applied_layers(tmp_path: Path) -> None:
    uppers = []
    lowers: list[Path] = []
    for i, layer in enumerate(LAYERS):
        upper = tmp_path / f"l{i + 1}"
        upper.mkdir()
        apply_layer(io.BytesIO(compress(layer.tar(), "gzip")), "gzip", upper,
                    whiteouts=WhiteoutMode.OVERLAY, lowers=list(reversed(lowers)))
        uppers.append(upper)
        lowers.append(upper)
    target = tmp_path / "merged"
    target.mkdir()
    lowerdir = ":".join(str(u) for u in reversed(uppers))  # top-most first
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lowerdir}",
                    str(target)], check=True)
    try:
        assert sorted(os.listdir(target / "etc")) == ["gone", "keep"]
        assert (target / "etc/gone").read_bytes() == b"back"
        assert sorted(os.listdir(target / "opq")) == ["new"]
        assert (target / "becomes-dir").is_dir()
        assert os.listdir(target / "becomes-dir") == ["inside"]
        assert sorted(os.listdir(target / "lib")) == ["libc.so.6"]
        assert (target / "lib/libc.so.6").read_bytes() == b"libc"
        assert not [p for p in target.rglob("*") if p.name.startswith(".wh.")]
    finally:
        subprocess.run(["umount", str(target)], check=True)


HIDDEN = [
    Layer().dir("a").file("a/f", b"old").dir("b").file("b/g", b"gee").symlink("b/s", "g"),
    # a/ becomes opaque without f: a/f is gone from the merged view; b/g deleted
    Layer().opaque("a").file("a/other", b"o").whiteout("b/g"),
]


@pytest.mark.parametrize("deferred", [False, True], ids=["with-lowers", "copy-up-later"])
def test_hardlinks_into_lowers_see_what_overlay_shows(tmp_path: Path, deferred: bool) -> None:
    """A hardlink to a file hidden by an opaque directory or a whiteout in a nearer
    layer must fail as on a real overlay mount; a link to a lower symlink copies it."""
    from pyimg.archive.lowers import copy_up
    from pyimg.errors import UnpackError

    lowers: list[Path] = []
    for i, layer in enumerate(HIDDEN):
        upper = tmp_path / f"l{i}"
        upper.mkdir()
        apply_layer(io.BytesIO(layer.tar()), "none", upper, whiteouts=WhiteoutMode.OVERLAY)
        lowers.insert(0, upper)  # top-first

    def link(name: str, target: str) -> None:
        upper = tmp_path / name
        upper.mkdir()
        blob = io.BytesIO(Layer().hardlink(f"{name}-link", target).tar())
        if deferred:
            result = apply_layer(blob, "none", upper, whiteouts=WhiteoutMode.OVERLAY)
            copy_up(upper, lowers, result.deferred)
        else:
            apply_layer(blob, "none", upper, whiteouts=WhiteoutMode.OVERLAY, lowers=lowers)

    for name, target in (("opaque", "a/f"), ("whiteout", "b/g")):
        with pytest.raises(UnpackError, match="not found"):
            link(name, target)
        merged = tmp_path / f"m-{name}"
        merged.mkdir()
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        "lowerdir=" + ":".join(map(str, lowers)), str(merged)], check=True)
        try:
            assert not (merged / target).exists()  # what overlay shows agrees
        finally:
            subprocess.run(["umount", str(merged)], check=True)
    link("sym", "b/s")
    assert os.readlink(tmp_path / "sym" / "sym-link") == "g"
