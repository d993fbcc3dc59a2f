"""`pyimg pull` (unpacking), `unpack`, `mount`, `snapshots` on the real kernel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from fixtures.registry.server import Registry
from tests.cli import Pyimg, one_error_line
from tests.imagebuild import layout_from_tars, tar_of
from tests.treecmp import describe, diff

IMAGES = ["busybox", "multilayer", "zstd", "docker", "multiarch"]


def _mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [ln.split()[4] for ln in f if ln.split()[4].startswith(str(path))]


def _snapshots(p: Pyimg) -> list[dict[str, object]]:
    out: list[dict[str, object]] = json.loads(p.run("snapshots", "ls", "--format", "json").stdout)
    return out


@pytest.fixture
def umoci_tree(tmp_path: Path, fixture_layouts: dict[str, Path]):  # type: ignore[no-untyped-def]
    def unpack(name: str) -> Path:
        bundle = tmp_path / f"umoci-{name}"
        # Debian's umoci 0.4.7 reads no zstd (the zstd image has busybox's content)
        # and no index (skopeo picks this host's platform out of it first).
        source = fixture_layouts["busybox" if name == "zstd" else name]
        if name == "multiarch":
            single = tmp_path / "single"
            subprocess.run(["skopeo", "--insecure-policy", "copy", "-q", f"oci:{source}:latest",
                            f"oci:{single}:latest"], check=True)
            source = single
        subprocess.run(["umoci", "unpack", "--image", f"{source}:latest",
                        str(bundle)], check=True, capture_output=True)
        return bundle / "rootfs"
    return unpack


@pytest.mark.parametrize("name", IMAGES)
def test_dest_matches_umoci(tmp_path: Path, registry: Registry, umoci_tree, name: str) -> None:  # type: ignore[no-untyped-def]
    p = Pyimg(tmp_path / "p")
    ref = f"{registry.host}/pyimg/{name}"
    p.run("pull", "--no-unpack", ref)
    p.run("unpack", "--dest", str(tmp_path / "dest"), ref)
    assert not diff(describe(tmp_path / "dest"), describe(umoci_tree(name)))
    assert (tmp_path / "dest").stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("snapshotter", ["overlay", "native"])
@pytest.mark.parametrize("name", ["multilayer", "busybox"])
def test_mounted_snapshot_matches_umoci(tmp_path: Path, registry: Registry, umoci_tree,  # type: ignore[no-untyped-def]
                                        name: str, snapshotter: str) -> None:
    p = Pyimg(tmp_path / "p", env={"PYIMG_SNAPSHOTTER": snapshotter})
    ref = f"{registry.host}/pyimg/{name}"
    p.run("pull", ref)  # unpacks while pulling
    target = tmp_path / "mnt"
    target.mkdir()
    p.run("mount", ref, str(target))
    try:
        assert not diff(describe(target), describe(umoci_tree(name)))
        if name == "multilayer":  # whiteout and opaque directory seen through the kernel
            assert not (target / "data/todelete.txt").exists()
            assert sorted(os.listdir(target / "opq")) == ["new1"]
            assert (target / "data/a.txt").read_text() == "second version of a\n"
    finally:
        p.run("umount", str(target))
    assert _mounts_under(tmp_path) == []
    kinds = {s["kind"] for s in _snapshots(p)}
    assert kinds == {"committed"}


def test_layers_shared_between_images_unpack_once(tmp_path: Path, registry: Registry) -> None:
    p = Pyimg(tmp_path)
    p.run("pull", f"{registry.host}/pyimg/busybox")
    first = {s["key"] for s in _snapshots(p)}
    out = p.run("pull", "--no-unpack", f"{registry.host}/pyimg/multilayer").stdout
    assert out
    out = p.run("unpack", f"{registry.host}/pyimg/multilayer").stdout
    assert "4 layers extracted, 1 reused" in out
    assert first <= {s["key"] for s in _snapshots(p)}
    again = p.run("unpack", f"{registry.host}/pyimg/multilayer").stdout
    assert "0 layers extracted, 5 reused" in again


def test_bundle_runs_under_runc(tmp_path: Path, registry: Registry) -> None:
    p = Pyimg(tmp_path / "p")
    ref = f"{registry.host}/pyimg/multilayer"
    p.run("pull", "--no-unpack", ref)
    bundle = tmp_path / "bundle"
    p.run("unpack", "--bundle", str(bundle), ref)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["args"] = ["sh", "-c", "cat /data/a.txt; /usr/local/bin/hello; exit 7"]
    (bundle / "config.json").write_text(json.dumps(spec))
    cid = f"pyimg-test-{uuid.uuid4().hex[:8]}"
    state = tmp_path / "runc-state"
    try:
        proc = subprocess.run(["runc", "--root", str(state), "run", "--bundle", str(bundle), cid],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=60)
    finally:
        subprocess.run(["runc", "--root", str(state), "delete", "-f", cid], capture_output=True)
    assert proc.returncode == 7, proc.stderr
    assert proc.stdout == "second version of a\nhello from pyimg\n"


def test_hostile_layer_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    canary.write_text("untouched")
    layout = layout_from_tars(tmp_path / "evil", [
        tar_of([("etc", "dir", ""), ("etc/ok", "file", "fine")]),
        tar_of([("escape", "symlink", str(tmp_path)), ("escape/canary", "file", "pwned"),
                ("../canary", "file", "pwned")]),
    ])
    p = Pyimg(tmp_path / "p")
    proc = p.run("pull", f"oci:{layout}:latest", check=False)
    assert proc.returncode != 0
    line = one_error_line(proc)
    assert "canary" in line or "escape" in line
    assert canary.read_text() == "untouched"
    assert [s for s in _snapshots(p) if str(s["key"]).startswith("extract-")] == []
    assert _mounts_under(tmp_path) == []


def test_diff_id_mismatch_is_refused(tmp_path: Path) -> None:
    layout = layout_from_tars(tmp_path / "img", [tar_of([("a", "file", "1")])],
                              diff_ids=["sha256:" + "0" * 64])
    p = Pyimg(tmp_path / "p")
    proc = p.run("pull", f"oci:{layout}:latest", check=False)
    assert proc.returncode == 14
    assert "diffID" in one_error_line(proc)
    assert [s for s in _snapshots(p) if str(s["key"]).startswith("extract-")] == []


def test_unpack_survives_kill_9(tmp_path: Path) -> None:
    files = [(f"d{i // 100}/f{i}", "file", f"content {i}\n" * 20) for i in range(6000)]
    layout = layout_from_tars(tmp_path / "many", [tar_of(files[:3000]), tar_of(files[3000:])])
    p = Pyimg(tmp_path / "p")
    p.run("pull", "--no-unpack", f"oci:{layout}:latest")
    for delay in (0.05, 0.15, 0.3):
        proc = p.popen("unpack", "localhost/many:latest")
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    p.run("unpack", "localhost/many:latest")
    snaps = _snapshots(p)
    assert {s["kind"] for s in snaps} == {"committed"} and len(snaps) == 2
    assert _mounts_under(p.root) == []
    dest = tmp_path / "check"
    p.run("mount", "localhost/many:latest", str(dest.mkdir() or dest))
    try:
        assert len(list(dest.rglob("f*"))) == 6000
    finally:
        p.run("umount", str(dest))
