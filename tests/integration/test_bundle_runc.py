"""Bundles written by pyimg run unchanged under the real runc (as root)."""

from __future__ import annotations

import json
import subprocess
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from pyimg import oci
from pyimg.runtime import MountSpec, RunOptions, generate_spec, parse_size, write_bundle
from tests.need import need_root, need_tool


@pytest.fixture(autouse=True)
def _needs() -> None:
    need_root()
    need_tool("runc")


def _blob(layout: Path, digest: str) -> Path:
    algo, hexd = digest.split(":", 1)
    return layout / "blobs" / algo / hexd


def _manifest(layout: Path) -> dict[str, Any]:
    index = json.loads((layout / "index.json").read_text())
    manifest: dict[str, Any] = json.loads(_blob(layout, index["manifests"][0]["digest"])
                                          .read_text())
    return manifest


def _image_config(layout: Path) -> oci.ImageConfig:
    return oci.parse_config(_blob(layout, _manifest(layout)["config"]["digest"]).read_bytes())


def _umoci_bundle(layout: Path, bundle: Path) -> None:
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:latest", str(bundle)],
                   check=True, capture_output=True, timeout=120)


SCRIPT = ("echo hello; hostname; id -u; cat /proc/self/status | grep NoNewPrivs; "
          "grep CapEff /proc/self/status; exit 3")


def test_runc_runs_bundle(busybox: Path, tmp_path: Path, runc: Any) -> None:
    bundle = tmp_path / "bundle"
    _umoci_bundle(busybox, bundle)
    config = write_bundle(bundle, _image_config(busybox), None,
                          RunOptions(args=("sh", "-c", SCRIPT), hostname="pyimg-box"))
    assert config == bundle / "config.json"
    assert (bundle.stat().st_mode & 0o777) == 0o700
    r = runc(bundle)
    assert r.returncode == 3, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:4] == ["hello", "pyimg-box", "0", "NoNewPrivs:\t1"], r.stdout
    assert lines[4] == "CapEff:\t00000000a80425fb"  # exactly Docker's 14 default caps


def test_runc_runs_as_nobody(busybox: Path, tmp_path: Path, runc: Any) -> None:
    bundle = tmp_path / "bundle"
    _umoci_bundle(busybox, bundle)
    write_bundle(bundle, _image_config(busybox), None,
                 RunOptions(args=("sh", "-c", "id -u; id -g; echo $HOME; "
                                  "grep CapEff /proc/self/status"), user="nobody"))
    r = runc(bundle)
    assert r.returncode == 0, r.stderr
    # a non-root user keeps no effective capabilities across execve
    assert r.stdout.splitlines() == ["65534", "65534", "/nonexistent",
                                     "CapEff:\t0000000000000000"]


def test_runc_readonly_rootfs(busybox: Path, tmp_path: Path, runc: Any) -> None:
    bundle = tmp_path / "bundle"

    def fill(rootfs: Path) -> None:  # the callback path: extract the layer ourselves
        layer = _manifest(busybox)["layers"][0]
        with tarfile.open(_blob(busybox, layer["digest"])) as tar:
            tar.extractall(rootfs, filter="tar")

    write_bundle(bundle, _image_config(busybox), fill,
                 RunOptions(args=("sh", "-c", "touch /x || echo refused; touch /tmp/y; "
                                  "echo $?"), readonly_rootfs=True))
    r = runc(bundle)
    assert r.returncode == 0, r.stderr
    assert "refused" in r.stdout and "Read-only file system" in r.stdout + r.stderr
    # /tmp is part of the read-only rootfs too (no tmpfs asked for)
    assert r.stdout.splitlines()[-1] == "1"
    assert not (bundle / "rootfs" / "x").exists()


def test_runc_limits_mounts_and_network(busybox: Path, tmp_path: Path, runc: Any) -> None:
    bundle = tmp_path / "bundle"
    _umoci_bundle(busybox, bundle)
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("from host\n")
    cid_cg = f"/pyimg-test-{uuid.uuid4().hex[:12]}"
    script = ("cat /data/in.txt; touch /data/new 2>/dev/null || echo data-ro; "
              "touch /scratch/ok && echo tmpfs-rw; "
              "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; "
              "ls /sys/class/net")
    write_bundle(bundle, _image_config(busybox), None, RunOptions(
        args=("sh", "-c", script), memory=parse_size("64m"), pids_limit=50, cpus=0.5,
        cgroups_path=cid_cg,
        mounts=(MountSpec("bind", "/data", source=str(data), readonly=True),
                MountSpec("tmpfs", "/scratch", options=("size=1m",)))))
    r = runc(bundle)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[:5] == ["from host", "data-ro", "tmpfs-rw", str(64 << 20), "50"], r.stdout
    assert out[5:] == ["lo"]  # network "none": a fresh namespace with loopback only


def test_spec_agrees_with_umoci(busybox: Path, tmp_path: Path) -> None:
    """The image-derived parts match what ``umoci unpack`` generates."""
    bundle = tmp_path / "bundle"
    _umoci_bundle(busybox, bundle)
    theirs = json.loads((bundle / "config.json").read_text())
    ours = generate_spec(_image_config(busybox), bundle / "rootfs")
    assert ours["process"]["args"] == theirs["process"]["args"]
    assert ours["process"]["cwd"] == theirs["process"]["cwd"]
    assert ours["process"]["user"] == theirs["process"]["user"]
    assert ours["process"]["rlimits"] == theirs["process"]["rlimits"]
    assert ours["root"]["path"] == theirs["root"]["path"]
    assert ours["mounts"] == theirs["mounts"]
    assert ours["linux"]["resources"] == theirs["linux"]["resources"]
    assert set(ours["process"]["env"]) <= set(theirs["process"]["env"])
    assert set(ours["annotations"].items()) <= set(theirs["annotations"].items())
