"""The snapshotter conformance suite (containerd's snapshots/testsuite), run
against every implementation.  Mounts are real: each case mounts what the
snapshotter describes (``pyimg.mount.mounted``) and looks at the result.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyimg.errors import AlreadyExists, FailedPrecondition, NotFound
from pyimg.metadata import MetaStore
from pyimg.mount import mounted
from pyimg.snapshotters import Kind, Mount, Snapshotter, open_snapshotter, overlay_supported
from pyimg.snapshotters import base as snbase
from tests.conformance.conftest import requires, requires_root

IMPLEMENTATIONS = ["native", "overlay"]


@pytest.fixture(params=IMPLEMENTATIONS)
def sn(request: pytest.FixtureRequest, tmp_path: Path, meta: MetaStore) -> Snapshotter:
    requires_root()
    store = tmp_path / "store"
    if request.param == "overlay":
        requires(overlay_supported(store / "snapshots"), "overlayfs")
    return open_snapshotter(request.param, store, meta)


@pytest.fixture
def mnt(tmp_path: Path) -> Path:
    path = tmp_path / "mnt"
    path.mkdir()
    return path


def write(path: Path, data: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data)


def layer(sn: Snapshotter, name: str, parent: str | None, files: dict[str, str]) -> None:
    """A committed snapshot ``name`` on ``parent`` with ``files`` written into it."""
    key = f"extract-{name}"
    sn.prepare(key, parent)
    upper = Path(sn.upper_dir(key))
    for rel, data in files.items():
        write(upper / rel, data)
    sn.commit(name, key)


def tree(root: str | Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath, f)
            if p.is_file():
                out[str(p.relative_to(root))] = p.read_text()
    return out


def view_tree(sn: Snapshotter, parent: str, mnt: Path, key: str = "check") -> dict[str, str]:
    try:
        with mounted(sn.view(key, parent), mnt) as target:
            return tree(target)
    finally:
        sn.remove(key)


# prepare / commit / view -------------------------------------------------

def test_prepare_commit_chain_mounts_parent_content(sn: Snapshotter, mnt: Path) -> None:
    layer(sn, "base", None, {"etc/os-release": "base", "bin/sh": "sh"})
    mounts = sn.prepare("ctr", "base")
    with mounted(mounts, mnt) as target:
        assert tree(target) == {"etc/os-release": "base", "bin/sh": "sh"}
        write(Path(target, "etc/os-release"), "changed")
        write(Path(target, "new"), "new")
    upper = tree(sn.upper_dir("ctr"))
    assert upper["new"] == "new"
    assert upper["etc/os-release"] == "changed"
    if sn.name == "overlay":
        assert upper == {"new": "new", "etc/os-release": "changed"}  # only the changes
    assert view_tree(sn, "base", mnt) == {"etc/os-release": "base", "bin/sh": "sh"}


def test_active_without_parent_is_writable_bind(sn: Snapshotter, mnt: Path) -> None:
    mounts = sn.prepare("a", None)
    assert [m.type for m in mounts] == ["bind"]
    assert "rw" in mounts[0].options
    with mounted(mounts, mnt) as target:
        write(Path(target, "f"), "x")
    assert tree(sn.upper_dir("a")) == {"f": "x"}


def test_view_is_read_only(sn: Snapshotter, mnt: Path) -> None:
    layer(sn, "base", None, {"f": "base"})
    with mounted(sn.view("v", "base"), mnt) as target:
        assert Path(target, "f").read_text() == "base"
        with pytest.raises(OSError) as exc:
            Path(target, "g").write_text("x")
        assert exc.value.errno == errno.EROFS
    assert sn.stat("v").kind == Kind.VIEW


def test_view_without_parent_is_empty_and_read_only(sn: Snapshotter, mnt: Path) -> None:
    with mounted(sn.view("v", None), mnt) as target:
        assert os.listdir(target) == []
        with pytest.raises(OSError):
            Path(target, "g").write_text("x")


def test_view_of_chain_shows_union(sn: Snapshotter, mnt: Path) -> None:
    layer(sn, "l1", None, {"a": "1", "shared": "1"})
    layer(sn, "l2", "l1", {"b": "2", "shared": "2"})
    layer(sn, "l3", "l2", {"c": "3"})
    mounts = sn.view("v", "l3")
    if sn.name == "overlay":
        assert mounts[0].type == "overlay"
        assert not any(o.startswith("upperdir=") for o in mounts[0].options)
    with mounted(mounts, mnt) as target:
        assert tree(target) == {"a": "1", "b": "2", "c": "3", "shared": "2"}


def test_mounts_repeats_prepare_and_refuses_committed(sn: Snapshotter) -> None:
    layer(sn, "base", None, {"f": ""})
    mounts = sn.prepare("k", "base")
    assert sn.mounts("k") == mounts
    with pytest.raises(FailedPrecondition):
        sn.mounts("base")


# stat / walk / usage -----------------------------------------------------

def test_stat_values(sn: Snapshotter) -> None:
    sn.prepare("k", None, labels={"a": "1"})
    info = sn.stat("k")
    assert (info.key, info.kind, info.parent, dict(info.labels)) == ("k", Kind.ACTIVE, None,
                                                                      {"a": "1"})
    assert info.created_at > 0
    sn.commit("n", "k", labels={"b": "2"})
    info = sn.stat("n")
    assert (info.kind, dict(info.labels)) == (Kind.COMMITTED, {"a": "1", "b": "2"})
    assert Path(info.path).name.isdigit()  # a key never becomes a path
    with pytest.raises(NotFound):
        sn.stat("k")


def test_walk_lists_every_snapshot(sn: Snapshotter) -> None:
    layer(sn, "base", None, {})
    sn.prepare("active", "base")
    sn.view("view", "base")
    found = {i.key: (i.kind, i.parent) for i in sn.walk()}
    assert found == {"base": (Kind.COMMITTED, None), "active": (Kind.ACTIVE, "base"),
                     "view": (Kind.VIEW, "base")}


def test_usage_counts_own_blocks_and_inodes(sn: Snapshotter) -> None:
    sn.prepare("k", None)
    upper = Path(sn.upper_dir("k"))
    empty = sn.usage("k")
    assert empty.inodes == 1  # the fs directory itself
    (upper / "big").write_bytes(os.urandom(1 << 20))
    os.link(upper / "big", upper / "big-link")  # one inode, counted once
    (upper / "d").mkdir()
    sn.commit("n", "k")
    used = sn.usage("n")
    assert used.inodes == 3
    assert (1 << 20) <= used.size - empty.size <= (1 << 20) + 64 * 1024


# refusals ----------------------------------------------------------------

def test_commit_of_view_or_committed_refused(sn: Snapshotter) -> None:
    layer(sn, "base", None, {})
    sn.view("v", "base")
    with pytest.raises(FailedPrecondition):
        sn.commit("x", "v")
    with pytest.raises(FailedPrecondition):
        sn.commit("y", "base")
    with pytest.raises(NotFound):
        sn.commit("z", "missing")


def test_duplicate_key_refused(sn: Snapshotter) -> None:
    sn.prepare("k", None)
    with pytest.raises(AlreadyExists):
        sn.prepare("k", None)
    with pytest.raises(AlreadyExists):
        sn.view("k", None)
    sn.prepare("k2", None)
    sn.commit("n", "k2")
    with pytest.raises(AlreadyExists):
        sn.commit("n", "k")
    assert sn.stat("k").kind == Kind.ACTIVE  # the failed commit changed nothing
    assert not [p for p in sn_root(sn).iterdir() if p.name.startswith("tmp-")]


def test_parent_must_exist_and_be_committed(sn: Snapshotter) -> None:
    with pytest.raises(NotFound):
        sn.prepare("k", "missing")
    sn.prepare("active", None)
    with pytest.raises(FailedPrecondition):
        sn.prepare("k", "active")
    assert len(list(sn.walk())) == 1
    assert [p.name for p in sn_root(sn).iterdir()] == [Path(sn.stat("active").path).name]


def test_remove_refused_with_children_then_in_order(sn: Snapshotter) -> None:
    layer(sn, "l1", None, {"a": ""})
    layer(sn, "l2", "l1", {"b": ""})
    sn.prepare("ctr", "l2")
    dirs = {k: Path(sn.stat(k).path) for k in ("l1", "l2", "ctr")}
    for key in ("l1", "l2"):
        with pytest.raises(FailedPrecondition):
            sn.remove(key)
    for key in ("ctr", "l2", "l1"):
        sn.remove(key)
        assert not dirs[key].exists()
        with pytest.raises(NotFound):
            sn.stat(key)
    with pytest.raises(NotFound):
        sn.remove("l1")
    assert list(sn.walk()) == []


def test_upper_dir_of_committed_holds_its_files_and_views_have_none(sn: Snapshotter) -> None:
    layer(sn, "base", None, {"f": "x"})
    assert tree(sn.upper_dir("base")) == {"f": "x"}
    sn.view("v", "base")
    with pytest.raises(FailedPrecondition):
        sn.upper_dir("v")


# filesystem behaviour ----------------------------------------------------

def test_remove_directory_in_lower_layer(sn: Snapshotter, mnt: Path) -> None:
    layer(sn, "base", None, {"lib/a/one": "1", "lib/a/two": "2", "lib/keep": "k"})
    sn.prepare("ctr", "base")
    with mounted(sn.mounts("ctr"), mnt) as target:
        import shutil

        shutil.rmtree(Path(target, "lib/a"))
        assert not Path(target, "lib/a").exists()
    with mounted(sn.mounts("ctr"), mnt) as target:  # gone after a remount too
        assert tree(target) == {"lib/keep": "k"}
    sn.commit("top", "ctr")
    assert view_tree(sn, "top", mnt) == {"lib/keep": "k"}
    assert view_tree(sn, "base", mnt) == {"lib/a/one": "1", "lib/a/two": "2", "lib/keep": "k"}


@pytest.mark.parametrize("kind", ["active", "view"])
def test_128_layers_mount(sn: Snapshotter, mnt: Path, kind: str) -> None:
    parent = None
    for i in range(128):
        layer(sn, f"sha256:{i:064x}", parent, {f"layer-{i}": str(i), "top": str(i)})
        parent = f"sha256:{i:064x}"
    assert parent is not None
    mounts = sn.prepare("ctr", parent) if kind == "active" else sn.view("ctr", parent)
    if sn.name == "overlay":
        assert len(",".join(mounts[0].options)) > 4096  # needs relative lowerdirs
    cwd = os.getcwd()
    with mounted(mounts, mnt) as target:
        assert os.getcwd() == cwd
        seen = tree(target)
    assert seen["top"] == "127"
    assert {k for k in seen if k.startswith("layer-")} == {f"layer-{i}" for i in range(128)}


def test_keys_are_never_paths(sn: Snapshotter, mnt: Path) -> None:
    key = "../../escape sha256:" + "a" * 64
    layer(sn, key, None, {"f": "x"})
    assert Path(sn.stat(key).path).parent == sn_root(sn)
    assert view_tree(sn, key, mnt) == {"f": "x"}
    assert not (sn_root(sn).parent.parent / "escape sha256:").exists()


def test_rebase(sn: Snapshotter, mnt: Path) -> None:
    layer(sn, "lower", None, {"a": "lower", "shared": "lower"})
    sn.prepare("k", None)  # built before (or while) its parent is extracted
    write(Path(sn.upper_dir("k"), "b"), "upper")
    write(Path(sn.upper_dir("k"), "shared"), "upper")
    if not sn.supports_rebase:
        with pytest.raises(FailedPrecondition):
            sn.commit("upper", "k", parent="lower")
        assert sn.stat("k").kind == Kind.ACTIVE
        return
    sn.commit("upper", "k", parent="lower")
    assert sn.stat("upper").parent == "lower"
    assert view_tree(sn, "upper", mnt) == {"a": "lower", "b": "upper", "shared": "upper"}
    with pytest.raises(FailedPrecondition):
        sn.remove("lower")


def test_commit_with_same_parent_is_not_a_rebase(sn: Snapshotter) -> None:
    layer(sn, "base", None, {})
    sn.prepare("k", "base")
    sn.commit("n", "k", parent="base")
    assert sn.stat("n").parent == "base"


def test_commit_syncs_before_it_is_recorded(sn: Snapshotter, meta: MetaStore,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    sn.prepare("k", None)
    seen: list[str] = []

    def sync(path: Path) -> None:
        with meta.transaction() as tx:
            seen.append(tx.get_snapshot(sn.name, "k").kind)
        real_sync(path)

    real_sync = snbase.sync_filesystem
    monkeypatch.setattr(snbase, "sync_filesystem", sync)
    sn.commit("n", "k")
    assert seen == ["active"]


def test_cleanup_after_crash(sn: Snapshotter) -> None:
    layer(sn, "base", None, {"f": "x"})
    sn.prepare("ctr", "base")
    root = sn_root(sn)
    stray_tmp = root / "tmp-crashed"
    write(stray_tmp / "fs" / "half-extracted", "x")
    no_row = root / "99999"
    write(no_row / "fs" / "file", "x")
    (root / "99999" / "work").mkdir()
    removed = sn.cleanup()
    assert sorted(removed) == sorted([str(stray_tmp), str(no_row)])
    assert not stray_tmp.exists() and not no_row.exists()
    assert {i.key for i in sn.walk()} == {"base", "ctr"}
    assert tree(Path(sn.stat("base").path) / "fs") == {"f": "x"}
    assert sn.cleanup() == []


def test_cleanup_spares_a_directory_being_built(sn: Snapshotter) -> None:
    with snbase.build_dir(sn_root(sn)) as tmp:
        assert sn.cleanup() == []
        assert tmp.exists()
    assert sn.cleanup() == [str(tmp)]


def test_failed_build_leaves_nothing(sn: Snapshotter, monkeypatch: pytest.MonkeyPatch) -> None:
    layer(sn, "base", None, {"f": "x"})

    def boom(*args: object) -> list[Mount]:
        raise RuntimeError("boom")

    monkeypatch.setattr(type(sn), "_mounts", boom)
    with pytest.raises(RuntimeError):
        sn.prepare("k", "base")  # fails inside the transaction, after the rename
    monkeypatch.undo()
    assert [i.key for i in sn.walk()] == ["base"]
    assert [p.name for p in sn_root(sn).iterdir()] == [Path(sn.stat("base").path).name]


def test_snapshot_tree_is_private(sn: Snapshotter) -> None:
    root = sn_root(sn)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE(root.parent.stat().st_mode) == 0o700


# fidelity: what a layer holds survives the snapshotter ---------------------

def make_special_tree(root: Path) -> None:
    write(root / "etc/passwd", "root:x:0:0")
    os.link(root / "etc/passwd", root / "etc/passwd-link")
    os.symlink("../etc/passwd", root / "etc/link")
    os.symlink("/nonexistent", root / "dangling")
    write(root / "bin/su", "su")
    os.chown(root / "bin/su", 0, 0)
    os.chmod(root / "bin/su", 0o4755)
    write(root / "home/user/file", "u")
    os.chown(root / "home/user/file", 1234, 5678)
    os.chown(root / "home/user", 1234, 5678)
    os.chmod(root / "home/user", 0o750)
    os.setxattr(root / "etc/passwd", "user.pyimg", b"xattr-value")
    os.setxattr(root / "bin/su", "trusted.pyimg", b"trusted")
    os.mkfifo(root / "fifo", 0o640)
    os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    with open(root / "sparse", "wb") as f:
        f.seek(64 << 20)
        f.write(b"end")
    os.utime(root / "etc/passwd", ns=(1_000_000_000, 1_500_000_000_000_000_000))
    os.utime(root / "etc", ns=(1_000_000_000, 1_400_000_000_000_000_000))


def check_special_tree(root: Path) -> None:
    passwd, link = (root / "etc/passwd").stat(), (root / "etc/passwd-link").stat()
    assert (passwd.st_ino, passwd.st_nlink) == (link.st_ino, 2)
    assert os.readlink(root / "etc/link") == "../etc/passwd"
    assert os.readlink(root / "dangling") == "/nonexistent"
    su = (root / "bin/su").stat()
    assert stat.S_IMODE(su.st_mode) == 0o4755
    home = (root / "home/user").stat()
    assert (home.st_uid, home.st_gid, stat.S_IMODE(home.st_mode)) == (1234, 5678, 0o750)
    assert (root / "home/user/file").stat().st_uid == 1234
    assert os.getxattr(root / "etc/passwd", "user.pyimg") == b"xattr-value"
    assert os.getxattr(root / "bin/su", "trusted.pyimg") == b"trusted"
    assert stat.S_ISFIFO((root / "fifo").lstat().st_mode)
    assert stat.S_IMODE((root / "fifo").lstat().st_mode) == 0o640
    null = (root / "null").lstat()
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    sparse = (root / "sparse").stat()
    assert sparse.st_size == (64 << 20) + 3
    assert sparse.st_blocks * 512 < 1 << 20  # the hole stayed a hole
    assert passwd.st_mtime_ns == 1_500_000_000_000_000_000
    assert (root / "etc").stat().st_mtime_ns == 1_400_000_000_000_000_000


def test_layer_fidelity(sn: Snapshotter, mnt: Path) -> None:
    sn.prepare("k", None)
    make_special_tree(Path(sn.upper_dir("k")))
    sn.commit("base", "k")
    sn.prepare("ctr", "base")
    if sn.name == "native":
        check_special_tree(Path(sn.upper_dir("ctr")))  # the copy itself
    with mounted(sn.mounts("ctr"), mnt) as target:
        check_special_tree(Path(target))


def sn_root(sn: Snapshotter) -> Path:
    root = getattr(sn, "root", None)
    assert isinstance(root, Path)
    return root


@pytest.fixture(autouse=True)
def _restore_cwd() -> Iterator[None]:
    cwd = os.getcwd()
    yield
    assert os.getcwd() == cwd
