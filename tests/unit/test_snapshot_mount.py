"""Mount option handling that needs no privilege."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pyimg import linux
from pyimg.mount import compact_lowerdir, parse_options
from pyimg.mount import unescape_mountinfo as _unescape


def test_parse_options_splits_flags_from_data() -> None:
    flags, data = parse_options(["ro", "nosuid", "lowerdir=/a:/b", "upperdir=/u"])
    assert flags == linux.MS_RDONLY | linux.MS_NOSUID
    assert data == "lowerdir=/a:/b,upperdir=/u"
    assert parse_options(["ro", "rw"])[0] == 0  # later options win, as in mount(8)
    assert parse_options(["rbind"])[0] == linux.MS_BIND | linux.MS_REC


def test_compact_lowerdir_uses_common_parent() -> None:
    lowers = [f"/var/lib/pyimg/snapshots/overlay/{i}/fs" for i in range(3, 0, -1)]
    data = "workdir=/w,upperdir=/u,lowerdir=" + ":".join(lowers)
    compact, cwd = compact_lowerdir(data)
    assert cwd == "/var/lib/pyimg/snapshots/overlay"
    assert compact == "workdir=/w,upperdir=/u,lowerdir=3/fs:2/fs:1/fs"


def test_compact_lowerdir_without_common_parent_is_unchanged() -> None:
    data = "lowerdir=/a/fs:/b/fs"
    assert compact_lowerdir(data) == (data, "/")
    assert compact_lowerdir("upperdir=/u") == ("upperdir=/u", "/")


def test_mountinfo_unescape() -> None:
    assert _unescape(r"/tmp/a\040b\134c") == "/tmp/a b\\c"
    assert _unescape("/plain") == "/plain"


def test_linux_errors_name_call_and_path(tmp_path: Path) -> None:
    with pytest.raises(OSError) as exc:
        linux.umount(tmp_path / "missing")
    assert exc.value.errno in (errno.ENOENT, errno.EPERM)
    assert "umount2" in str(exc.value) and "missing" in str(exc.value)


def test_syncfs(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        linux.syncfs(fd)
    finally:
        os.close(fd)
    with pytest.raises(OSError) as exc:
        linux.syncfs(-1)
    assert exc.value.errno == errno.EBADF
