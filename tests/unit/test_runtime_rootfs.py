"""Mount option parsing and resolving paths inside a root (no privileges needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyimg import linux
from pyimg.mount import split_options
from pyimg.runtime import caps, init, rootfs


def test_parse_options() -> None:
    flags, prop, data = split_options(
        ["nosuid", "rbind", "ro", "rw", "noexec", "rprivate", "mode=755", "size=1m"])
    assert flags == linux.MS_NOSUID | linux.MS_BIND | linux.MS_REC | linux.MS_NOEXEC
    assert prop == linux.MS_PRIVATE | linux.MS_REC
    assert data == "mode=755,size=1m"


def _real(fd: int) -> str:
    try:
        return os.readlink(rootfs.fd_path(fd))
    finally:
        os.close(fd)


@pytest.mark.parametrize(("link", "path", "want"), [
    ("/etc", "/escape/passwd", "etc/passwd"),
    ("../../../../etc", "/escape/passwd", "etc/passwd"),
    ("/", "/escape/../../etc/passwd", "etc/passwd"),
])
def test_resolve_stays_in_root(tmp_path: Path, link: str, path: str, want: str) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("x")
    os.symlink(link, root / "escape")
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        assert _real(rootfs.resolve(root_fd, path)) == str(root / want)
    finally:
        os.close(root_fd)


def test_resolve_creates_inside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    os.symlink("/../../../outside", root / "dev")
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        assert _real(rootfs.resolve(root_fd, "/dev/pts", "dir")) == str(root / "outside/pts")
        assert _real(rootfs.resolve(root_fd, "/a/file", "file")) == str(root / "a/file")
        assert (root / "a" / "file").is_file()
        with pytest.raises(FileNotFoundError):
            rootfs.resolve(root_fd, "/missing")
        os.symlink("loop", root / "loop")
        with pytest.raises(OSError, match="symbolic links"):
            rootfs.resolve(root_fd, "/loop")
    finally:
        os.close(root_fd)
    assert not (tmp_path / "outside").exists()


def test_caps_masks() -> None:
    m = caps.mask(["CAP_CHOWN", "kill", "CAP_NOT_A_CAP", "CAP_SYS_ADMIN"])
    assert m == 1 << 0 | 1 << 5 | 1 << 21
    assert caps.names(m) == ["CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN"]
    assert caps.mask(["CAP_CHECKPOINT_RESTORE"], last=39) == 0  # newer than the kernel
    sets = caps.CapSets.from_spec({"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]})
    assert (sets.bounding, sets.effective, sets.permitted, sets.ambient) == (32, 32, 0, 0)


def test_exit_codes_and_rlimit_clamp() -> None:
    import errno
    import resource
    assert init.exit_code_for("exec", errno.ENOENT) == 127
    assert init.exit_code_for("exec", errno.EACCES) == 126
    assert init.exit_code_for("rootfs", errno.ENOENT) == 125
    inf = resource.RLIM_INFINITY
    assert init.clamp_rlimit(2**64 - 1, 4096) == 4096
    assert init.clamp_rlimit(1024, 4096) == 1024
    assert init.clamp_rlimit(8192, 4096) == 4096
    assert init.clamp_rlimit(2**64 - 1, inf) == inf


def test_caps_table_matches_spec() -> None:
    from pyimg.runtime.spec import ALL_CAPABILITIES
    assert caps.ALL_CAPABILITIES == ALL_CAPABILITIES
