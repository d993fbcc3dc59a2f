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
