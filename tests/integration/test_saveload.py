"""`pyimg save` / `pyimg load`, checked against skopeo and umoci."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.cli import Pyimg, one_error_line

BUSYBOX = "localhost/busybox:latest"
MULTILAYER = "localhost/multilayer:latest"


def _skopeo(*args: str) -> str:
    return subprocess.run(["skopeo", "--insecure-policy", *args], check=True,
                          capture_output=True, text=True).stdout


def _digest(p: Pyimg, name: str) -> str:
    return next(str(i["digest"]) for i in p.images() if i["name"] == name)


def _config(p: Pyimg, name: str) -> tuple[str, list[str]]:
    """(config digest, diff_ids) of a stored single-manifest image."""
    blobs = p.root / "content" / "blobs" / "sha256"
    manifest = json.loads((blobs / _digest(p, name).removeprefix("sha256:")).read_bytes())
    digest = manifest["config"]["digest"]
    config = json.loads((blobs / digest.removeprefix("sha256:")).read_bytes())
    return digest, config["rootfs"]["diff_ids"]


@pytest.fixture
def store(tmp_path: Path, fixture_layouts: dict[str, Path]) -> Pyimg:
    p = Pyimg(tmp_path / "src")
    for name in ("busybox", "multilayer"):
        p.run("pull", "--no-unpack", f"oci:{fixture_layouts[name]}:latest")
    return p


@pytest.mark.parametrize("image", [BUSYBOX, MULTILAYER])
def test_save_oci_dir_read_by_umoci_and_skopeo(tmp_path: Path, store: Pyimg, image: str) -> None:
    out = tmp_path / "layout"
    store.run("save", image, "-o", str(out))
    assert not list(tmp_path.glob("layout.tmp-*"))
    index = json.loads((out / "index.json").read_text())
    [entry] = index["manifests"]
    assert entry["annotations"] == {"org.opencontainers.image.ref.name": "latest",
                                    "io.containerd.image.name": image}
    info = json.loads(_skopeo("inspect", f"oci:{out}:latest"))
    assert info["Digest"] == _digest(store, image)
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{out}:latest", str(bundle)],
                   check=True, capture_output=True)
    assert (bundle / "rootfs" / "bin").is_dir()


def test_save_two_images_sharing_a_tag_uses_full_names(tmp_path: Path, store: Pyimg) -> None:
    out = tmp_path / "both"
    store.run("save", BUSYBOX, MULTILAYER, "-o", str(out))
    for image in (BUSYBOX, MULTILAYER):
        info = json.loads(_skopeo("inspect", f"oci:{out}:{image}"))
        assert info["Digest"] == _digest(store, image)
    # Shared blobs are written once: 2 manifests, 2 configs, 5 layers (1 shared).
    assert len(list((out / "blobs" / "sha256").iterdir())) == 9


def test_save_oci_tar(tmp_path: Path, store: Pyimg) -> None:
    out = tmp_path / "ml.tar"
    store.run("save", MULTILAYER, "-o", str(out))
    with tarfile.open(out) as tar:
        names = tar.getnames()
        layout = tmp_path / "extracted"
        tar.extractall(layout, filter="data")
    assert {"oci-layout", "index.json"} <= set(names)
    info = json.loads(_skopeo("inspect", f"oci:{layout}:latest"))
    assert info["Digest"] == _digest(store, MULTILAYER)


def test_save_docker_archive_read_by_skopeo(tmp_path: Path, store: Pyimg) -> None:
    out = tmp_path / "da.tar"
    store.run("save", "--format", "docker-archive", MULTILAYER, BUSYBOX, "-o", str(out))
    config_digest, diff_ids = _config(store, MULTILAYER)
    info = json.loads(_skopeo("inspect", "--config", f"docker-archive:{out}:{MULTILAYER}"))
    assert info["rootfs"]["diff_ids"] == diff_ids
    _skopeo("copy", "-q", f"docker-archive:{out}:{BUSYBOX}", f"oci:{tmp_path}/copy:x")
    _skopeo("copy", "-q", f"docker-archive:{out}:{MULTILAYER}", f"oci:{tmp_path}/copy:y")
    # The layers are the uncompressed tars the config's diff_ids name.
    with tarfile.open(out) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    entry = next(e for e in manifest if e["RepoTags"] == [MULTILAYER])
    assert entry["Config"] == f"blobs/sha256/{config_digest.removeprefix('sha256:')}"
    assert entry["Layers"] == [f"blobs/sha256/{d.removeprefix('sha256:')}" for d in diff_ids]


@pytest.mark.parametrize("suffix", ["", ".tar"])
def test_round_trip_oci(tmp_path: Path, store: Pyimg, suffix: str) -> None:
    out = tmp_path / f"both{suffix}"
    store.run("save", BUSYBOX, MULTILAYER, "-o", str(out))
    fresh = Pyimg(tmp_path / "fresh")
    proc = fresh.run("load", "-i", str(out))
    assert proc.stdout.splitlines() == [f"Loaded image: {BUSYBOX}",
                                        f"Loaded image: {MULTILAYER}"]
    for image in (BUSYBOX, MULTILAYER):
        assert _digest(fresh, image) == _digest(store, image)
    assert fresh.blobs() == {k: v for k, v in store.blobs().items()}


def test_round_trip_docker_archive(tmp_path: Path, store: Pyimg) -> None:
    out = tmp_path / "da.tar"
    store.run("save", "--format", "docker-archive", BUSYBOX, MULTILAYER, "-o", str(out))
    fresh = Pyimg(tmp_path / "fresh")
    proc = fresh.run("load", "-i", str(out))
    assert proc.stdout.splitlines() == [f"Loaded image: {BUSYBOX}",
                                        f"Loaded image: {MULTILAYER}"]
    for image in (BUSYBOX, MULTILAYER):
        assert _config(fresh, image) == _config(store, image)
    fresh.blobs()


def test_load_what_skopeo_writes(tmp_path: Path, fixture_layouts: dict[str, Path]) -> None:
    archive, layout = tmp_path / "x.tar", tmp_path / "y"
    _skopeo("copy", "-q", f"oci:{fixture_layouts['busybox']}:latest",
            f"docker-archive:{archive}:example.com/a:1")
    _skopeo("copy", "-q", f"oci:{fixture_layouts['multilayer']}:latest", f"oci:{layout}:tag")
    p = Pyimg(tmp_path / "p")
    assert p.run("load", "-i", str(archive)).stdout == "Loaded image: example.com/a:1\n"
    assert p.run("load", "-i", str(layout)).stdout == "Loaded image: localhost/y:tag\n"
    src = Pyimg(tmp_path / "src")
    src.run("pull", "--no-unpack", f"oci:{fixture_layouts['multilayer']}:latest")
    assert _digest(p, "localhost/y:tag") == _digest(src, MULTILAYER)
    p.blobs()


def test_load_corrupt_blob_fails_with_integrity_error(tmp_path: Path, store: Pyimg) -> None:
    out = tmp_path / "layout"
    store.run("save", MULTILAYER, "-o", str(out))
    biggest = max((out / "blobs" / "sha256").iterdir(), key=lambda f: f.stat().st_size)
    os.chmod(biggest, 0o644)
    data = bytearray(biggest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    biggest.write_bytes(bytes(data))
    fresh = Pyimg(tmp_path / "fresh")
    proc = fresh.run("load", "-i", str(out), check=False)
    assert proc.returncode == 7, proc.stderr
    one_error_line(proc)
    assert fresh.images() == []


def test_save_unknown_image_and_existing_output(tmp_path: Path, store: Pyimg) -> None:
    proc = store.run("save", "nope:1", "-o", str(tmp_path / "x"), check=False)
    assert proc.returncode == 3
    one_error_line(proc)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    proc = store.run("save", BUSYBOX, "-o", str(tmp_path / "full"), check=False)
    assert proc.returncode == 4
    one_error_line(proc)


def test_partial_multiarch_index(tmp_path: Path, fixture_layouts: dict[str, Path]) -> None:
    """Only the host platform is stored: the index and that manifest are saved."""
    p = Pyimg(tmp_path / "p")
    p.run("pull", "--no-unpack", f"oci:{fixture_layouts['multiarch']}:latest")
    [image] = p.images()
    name, digest = str(image["name"]), str(image["digest"])
    out = tmp_path / "layout"
    p.run("save", name, "-o", str(out))
    [entry] = json.loads((out / "index.json").read_text())["manifests"]
    assert entry["digest"] == digest and "index" in entry["mediaType"]
    host = json.loads(_skopeo("inspect", "--raw", f"oci:{out}:latest"))
    assert len(host["manifests"]) > 1  # the whole index, though not every manifest
    _skopeo("inspect", f"oci:{out}:latest")  # resolves the host platform's manifest
    # (umoci 0.4 cannot unpack any multi-platform index, the fixture's own included.)
    fresh = Pyimg(tmp_path / "fresh")
    fresh.run("load", "-i", str(out))
    assert fresh.images()[0]["digest"] == digest
    assert fresh.images()[0]["platforms"] == image["platforms"]
    archive = tmp_path / "da.tar"
    p.run("save", "--format", "docker-archive", name, "-o", str(archive))
    _skopeo("inspect", f"docker-archive:{archive}")


def test_oci_tar_read_by_skopeo_oci_archive(tmp_path: Path, store: Pyimg) -> None:
    out = tmp_path / "bb.tar"
    store.run("save", BUSYBOX, "-o", str(out))
    info = json.loads(_skopeo("inspect", f"oci-archive:{out}:latest"))
    assert info["Digest"] == _digest(store, BUSYBOX)
