"""pyimg.mount and the snapshotter factory against the real kernel (root)."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyimg.errors import InvalidArgument
from pyimg.metadata import MetaStore
from pyimg.mount import mount_all, mount_points_under, mounted, unmount
from pyimg.snapshotters import Mount, open_snapshotter, overlay_supported
from tests.need import need_root


@pytest.fixture(autouse=True)
def _needs() -> None:
    need_root()


@pytest.fixture(autouse=True)
def _no_leftover_mounts(tmp_path: Path) -> Iterator[None]:
    cwd = os.getcwd()
    yield
    left = mount_points_under(tmp_path)
    for point in reversed(left):
        unmount(point, detach=True)
    assert left == []
    assert os.getcwd() == cwd


def layers(root: Path, count: int, name: str = "fs") -> list[str]:
    dirs = []
    for i in range(count):
        d = root / str(i) / name
        d.mkdir(parents=True)
        (d / f"f{i}").write_text(str(i))
        (d / "top").write_text(str(i))
        dirs.append(str(d))
    return dirs[::-1]  # nearest (highest) layer first


def test_overlay_with_200_lowerdirs(tmp_path: Path) -> None:
    lowers = layers(tmp_path / "layers", 200)
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    m = Mount("overlay", "overlay", (f"upperdir={upper}", f"workdir={work}",
                                     "lowerdir=" + ":".join(lowers)))
    assert len(",".join(m.options)) > 4096
    with mounted([m], tmp_path) as target:
        assert Path(target, "top").read_text() == "199"
        assert len(os.listdir(target)) == 201
        Path(target, "new").write_text("x")
    assert os.listdir(upper) == ["new"]
    assert not Path(target).exists()


def test_overlay_options_too_long_even_relative(tmp_path: Path) -> None:
    lowers = layers(tmp_path / "layers", 20, name="x" * 250)
    m = Mount("overlay", "overlay", ("lowerdir=" + ":".join(lowers),))
    with pytest.raises(InvalidArgument, match="page limit"), mounted([m], tmp_path):
        pass


def test_bind_read_only_and_nosuid(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with mounted([Mount("bind", str(src), ("ro", "nosuid", "bind"))], tmp_path) as target:
        st = os.statvfs(target)
        assert st.f_flag & os.ST_RDONLY and st.f_flag & os.ST_NOSUID
        with pytest.raises(OSError) as exc:
            Path(target, "x").write_text("")
        assert exc.value.errno == errno.EROFS


def test_mounted_cleans_up_on_error(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with pytest.raises(ZeroDivisionError), mounted([Mount("bind", str(src), ("bind",))],
                                                   tmp_path) as target:
        assert mount_points_under(target) == [target]
        _ = 1 / 0
    assert not Path(target).exists()


def test_mount_all_is_all_or_nothing(tmp_path: Path) -> None:
    src, target = tmp_path / "src", tmp_path / "target"
    src.mkdir()
    target.mkdir()
    good = Mount("bind", str(src), ("bind",))
    bad = Mount("bind", str(tmp_path / "missing"), ("bind",))
    with pytest.raises(OSError) as exc:
        mount_all([good, bad], target)
    assert exc.value.errno == errno.ENOENT and "missing" in str(exc.value)
    assert mount_points_under(target) == []


def test_unmount_not_mounted_is_a_no_op(tmp_path: Path) -> None:
    unmount(tmp_path)
    unmount(tmp_path / "missing")


def test_overlay_supported_probe_is_cached_and_tidy(tmp_path: Path) -> None:
    root = tmp_path / "snapshots"
    assert overlay_supported(root) is True
    assert os.listdir(root) == []
    root.rmdir()
    assert overlay_supported(root) is True  # cached: no new probe
    assert not root.exists()


def test_open_snapshotter(tmp_path: Path) -> None:
    with MetaStore(tmp_path / "m.db") as meta:
        sn = open_snapshotter("overlay", tmp_path, meta)
        assert sn.name == "overlay" and sn.supports_rebase
        native = open_snapshotter("native", tmp_path, meta)
        assert native.name == "native" and not native.supports_rebase
        for d in ("snapshots", "snapshots/overlay", "snapshots/native"):
            assert stat.S_IMODE((tmp_path / d).stat().st_mode) == 0o700
        with pytest.raises(InvalidArgument):
            open_snapshotter("btrfs", tmp_path, meta)
