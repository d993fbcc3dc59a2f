"""prune / gc / df against a real store: exact sets, races with pulls, containers."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from pyimg.digest import Digest
from pyimg.imageparts import chain_ids
from tests.cli import Pyimg
from tests.need import need_root


def _layout(layout: Path) -> tuple[set[str], set[str]]:
    """(blob hexes, snapshot chain ids) of the layout's ``latest`` manifest."""
    index = json.loads((layout / "index.json").read_text())
    desc = next(m for m in index["manifests"]
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "latest")
    blob = layout / "blobs" / "sha256"
    mhex = desc["digest"].split(":")[1]
    manifest = json.loads((blob / mhex).read_text())
    hexes = {mhex, manifest["config"]["digest"].split(":")[1]}
    hexes |= {layer["digest"].split(":")[1] for layer in manifest["layers"]}
    config = json.loads((blob / manifest["config"]["digest"].split(":")[1]).read_text())
    chains = {str(c) for c in chain_ids([Digest.parse(d) for d in config["rootfs"]["diff_ids"]])}
    return hexes, chains


def _snapshots(p: Pyimg) -> dict[str, str]:
    db = sqlite3.connect(p.root / "metadata.db")
    try:
        return {k: kind for k, kind in db.execute("SELECT key, kind FROM snapshots")}
    finally:
        db.close()


def _prune(p: Pyimg, *args: str) -> dict[str, object]:
    out: dict[str, object] = json.loads(p.run("prune", "--format", "json", *args).stdout)
    return out


def test_prune_removes_exactly_the_unshared(tmp_path: Path,
                                            fixture_layouts: dict[str, Path]) -> None:
    need_root()
    p = Pyimg(tmp_path)
    bb_blobs, bb_chains = _layout(fixture_layouts["busybox"])
    ml_blobs, ml_chains = _layout(fixture_layouts["multilayer"])
    assert bb_blobs & ml_blobs, "fixtures are expected to share the busybox layer"
    p.run("pull", "-q", f"oci:{fixture_layouts['busybox']}:latest")
    p.run("pull", "-q", f"oci:{fixture_layouts['multilayer']}:latest")
    assert set(p.blobs()) == bb_blobs | ml_blobs
    assert set(_snapshots(p)) == bb_chains | ml_chains
    assert _prune(p)["blobs"] == []  # nothing unreferenced yet

    p.run("rmi", "localhost/multilayer:latest")
    dry = _prune(p, "--dry-run")
    assert set(p.blobs()) == bb_blobs | ml_blobs  # dry run removes nothing
    res = _prune(p)
    assert {d.split(":")[1] for d in res["blobs"]} == ml_blobs - bb_blobs  # type: ignore[union-attr]
    assert {s.split("/", 1)[1] for s in res["snapshots"]} == ml_chains - bb_chains  # type: ignore[union-attr]
    assert dry["blobs"] == res["blobs"] and dry["snapshots"] == res["snapshots"]
    assert set(p.blobs()) == bb_blobs
    assert set(_snapshots(p)) == bb_chains
    # busybox still works: unpack reuses the chain, mount shows its files.
    p.run("unpack", "localhost/busybox:latest")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    p.run("mount", "localhost/busybox:latest", str(mnt))
    try:
        assert (mnt / "bin").exists()
    finally:
        p.run("umount", str(mnt))
    assert _prune(p)["blobs"] == []

    p.run("rmi", "localhost/busybox:latest")
    _prune(p)
    assert p.blobs() == {} and _snapshots(p) == {}


def test_prune_racing_a_pull_keeps_what_it_needs(tmp_path: Path,
                                                 fixture_layouts: dict[str, Path]) -> None:
    need_root()
    p = Pyimg(tmp_path)
    big_blobs, big_chains = _layout(fixture_layouts["big"])
    for unpack in ("--no-unpack", "--unpack"):
        proc = p.popen("pull", "-q", "-j", "2", unpack, f"oci:{fixture_layouts['big']}:latest")
        prunes = 0
        while proc.poll() is None:
            _prune(p)
            prunes += 1
        _out, err = proc.communicate()
        assert proc.returncode == 0, err
        assert prunes >= 1
        assert set(p.blobs()) == big_blobs  # every blob present and verified
        _prune(p)
        assert set(p.blobs()) == big_blobs
        if unpack == "--unpack":
            assert big_chains <= set(_snapshots(p))
        p.run("rmi", "localhost/big:latest")
        _prune(p)
        assert p.blobs() == {} and _snapshots(p) == {}


def test_running_container_snapshot_survives_prune(tmp_path: Path,
                                                   fixture_layouts: dict[str, Path]) -> None:
    need_root()
    p = Pyimg(tmp_path, env={"PYIMG_STATE": str(tmp_path / "state")})
    _, bb_chains = _layout(fixture_layouts["busybox"])
    p.run("pull", "-q", f"oci:{fixture_layouts['busybox']}:latest")
    cid = p.run("run", "-d", "localhost/busybox:latest", "sleep", "60").stdout.strip()
    try:
        p.run("rmi", "localhost/busybox:latest")
        res = _prune(p)
        assert res["snapshots"] == []  # the container's snapshot and its parents stay
        snaps = _snapshots(p)
        assert any(k.startswith("container:") and v == "active" for k, v in snaps.items())
        assert bb_chains <= set(snaps)
        assert p.run("exec", cid, "sh", "-c", "echo ok").stdout.strip() == "ok"
    finally:
        p.run("rm", "-f", cid, check=False)
    _prune(p)
    assert _snapshots(p) == {}


def test_df_matches_blobs_on_disk(tmp_path: Path, fixture_layouts: dict[str, Path]) -> None:
    need_root()
    p = Pyimg(tmp_path)
    p.run("pull", "-q", f"oci:{fixture_layouts['busybox']}:latest")
    p.run("pull", "-q", "--no-unpack", f"oci:{fixture_layouts['multilayer']}:latest")
    usage = json.loads(p.run("df", "--format", "json").stdout)
    blobs = p.blobs()
    assert usage["blobs"] == len(blobs) and usage["blobBytes"] == sum(blobs.values())
    assert usage["snapshots"] == len(_snapshots(p)) and usage["snapshotBytes"] > 0
    assert usage["containers"] == 0 and usage["reclaimable"] == 0
    bb_blobs, _ = _layout(fixture_layouts["busybox"])
    p.run("rmi", "localhost/multilayer:latest")
    usage = json.loads(p.run("df", "--format", "json").stdout)
    assert usage["reclaimable"] == sum(s for h, s in blobs.items() if h not in bb_blobs)
    before = time.monotonic()
    assert _prune(p)["reclaimed"] == usage["reclaimable"]
    assert time.monotonic() - before < 60
    assert "Reclaimable" in p.run("df").stdout
