"""LayoutSource and DockerArchiveSource on layouts and archives written by real skopeo."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from pyimg.digest import Digest, verify_bytes
from pyimg.errors import InvalidArgument, NotFound, PyimgError
from pyimg.oci import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Descriptor,
    Manifest,
    is_manifest,
    parse_config,
    parse_index,
    parse_manifest,
)
from pyimg.sources import ImageSource
from pyimg.sources.docker_archive import DockerArchiveSource
from pyimg.sources.layout import LayoutSource
from pyimg.sources.spec import open_file_source, parse_source_spec
from tests.need import need_tool

SKOPEO = shutil.which("skopeo")
BUSYBOX = Path("/bin/busybox")
@pytest.fixture(autouse=True)
def _needs() -> None:
    need_tool("skopeo")


# A hand-built layout: busybox in a gzip layer, a file in an uncompressed one ---


def _tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _desc(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
            "size": len(data), **extra}


def build_layout(root: Path) -> Path:
    busybox = BUSYBOX.read_bytes() if BUSYBOX.exists() else b"#!/bin/sh\n"
    bin_layer = _tar({"bin/busybox": (busybox, 0o755)})
    etc_layer = _tar({"etc/hostname": (b"pyimg\n", 0o644)})
    zipped = gzip.compress(bin_layer, mtime=0)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/busybox", "sh"]},
        "rootfs": {"type": "layers", "diff_ids": [
            "sha256:" + hashlib.sha256(layer).hexdigest() for layer in (bin_layer, etc_layer)]},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": _desc(OCI_CONFIG, config),
        "layers": [_desc(OCI_LAYER_GZIP, zipped), _desc(OCI_LAYER, etc_layer)],
    }).encode()
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for blob in (zipped, etc_layer, config, manifest):
        (blobs / hashlib.sha256(blob).hexdigest()).write_bytes(blob)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        _desc(OCI_MANIFEST, manifest, annotations={"org.opencontainers.image.ref.name": "v1"})]}
    (root / "index.json").write_text(json.dumps(index))
    return root


def skopeo_copy(src: str, dst: str) -> None:
    assert SKOPEO is not None
    # --insecure-policy: no signature policy is involved in copying local files.
    subprocess.run([SKOPEO, "--insecure-policy", "copy", "-q", src, dst], check=True,
                   capture_output=True, timeout=120)


@pytest.fixture
def src_layout(tmp_path: Path) -> Path:
    return build_layout(tmp_path / "src")


# Helpers -------------------------------------------------------------------


def fetch(source: ImageSource, desc: Descriptor, offset: int = 0) -> bytes:
    with source.fetch(desc, offset) as chunks:
        return b"".join(chunks)


def fetch_verified(source: ImageSource, desc: Descriptor) -> bytes:
    data = fetch(source, desc)
    verify_bytes(data, desc.digest, desc.size)
    return data


def walk(source: ImageSource) -> Iterator[tuple[Manifest, bytes]]:
    """Every manifest under the root with its config bytes, every blob verified."""
    pending = [source.resolve()]
    while pending:
        desc = pending.pop()
        data = fetch_verified(source, desc)
        if not is_manifest(desc.media_type):
            pending.extend(parse_index(data).manifests)
            continue
        manifest = parse_manifest(data, desc.media_type)
        config = fetch_verified(source, manifest.config)
        for layer in manifest.layers:
            fetch_verified(source, layer)
            if layer.size > 10:
                assert fetch(source, layer, 10) == fetch(source, layer)[10:]
        yield manifest, config


def uncompressed_digest(data: bytes, media_type: str) -> Digest:
    raw = gzip.decompress(data) if media_type in (OCI_LAYER_GZIP,) else data
    return Digest.of(raw)


# Interop -------------------------------------------------------------------


def test_layout_written_by_skopeo(src_layout: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    skopeo_copy(f"oci:{src_layout}:v1", f"oci:{dst}:v2")
    skopeo_copy(f"oci:{src_layout}:v1", f"oci:{dst}:v3")

    with closing(open_file_source(parse_source_spec(f"oci:{dst}:v2"))) as source:
        assert isinstance(source, LayoutSource)
        assert source.tags == ["v2", "v3"]
        assert str(source.image_name) == "localhost/dst:v2"
        [(manifest, config)] = list(walk(source))
        diff_ids = parse_config(config).diff_ids
        for layer, diff_id in zip(manifest.layers, diff_ids, strict=True):
            data = fetch(source, layer)
            assert uncompressed_digest(data, layer.media_type) == diff_id
    with pytest.raises(InvalidArgument, match="layout has 2 images"):
        LayoutSource(dst, None).resolve()

    # skopeo kept our config (it only compressed the uncompressed layer).
    [(ours, _)] = list(walk(LayoutSource(src_layout, "v1")))
    assert ours.config.digest == manifest.config.digest
    assert ours.layers[0].digest == manifest.layers[0].digest


def test_docker_archive_written_by_skopeo(src_layout: Path, tmp_path: Path) -> None:
    archive = tmp_path / "x.tar"
    skopeo_copy(f"oci:{src_layout}:v1", f"docker-archive:{archive}:example.com/foo:v1")

    spec = parse_source_spec(f"docker-archive:{archive}:example.com/foo:v1")
    with closing(open_file_source(spec)) as source:
        assert isinstance(source, DockerArchiveSource)
        assert str(source.image_name) == "example.com/foo:v1"
        root = source.resolve()
        assert root.media_type == OCI_MANIFEST
        [(manifest, config)] = list(walk(source))
        diff_ids = parse_config(config).diff_ids
        assert [layer.media_type for layer in manifest.layers] == [OCI_LAYER, OCI_LAYER]
        assert [layer.digest for layer in manifest.layers] == list(diff_ids)
        for layer, diff_id in zip(manifest.layers, diff_ids, strict=True):
            assert uncompressed_digest(fetch(source, layer), layer.media_type) == diff_id

    # skopeo, reading the same archive into a layout, sees the same layer
    # contents (it rewrites the config and compresses layers on the way).
    back = tmp_path / "back"
    skopeo_copy(f"docker-archive:{archive}", f"oci:{back}:r")
    with LayoutSource(back, "r") as theirs_source:
        [(theirs, their_config)] = list(walk(theirs_source))
        assert parse_config(their_config).diff_ids == diff_ids
        assert [uncompressed_digest(fetch(theirs_source, d), d.media_type)
                for d in theirs.layers] == list(diff_ids)

    for ref in (None, "@0"):
        with DockerArchiveSource(archive, ref) as again:
            assert again.resolve() == root


# Malformed inputs: always a PyimgError (InvalidArgument/NotFound), no other traceback --


def test_skopeo_layout_malformed(src_layout: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    skopeo_copy(f"oci:{src_layout}:v1", f"oci:{dst}:v2")
    index = (dst / "index.json").read_bytes()

    (dst / "index.json").write_bytes(index[: len(index) // 2])
    with pytest.raises(InvalidArgument, match="malformed index"):
        LayoutSource(dst, "v2")

    (dst / "index.json").write_bytes(index)
    root = LayoutSource(dst, "v2").resolve()
    (dst / "blobs" / root.digest.algorithm / root.digest.hex).unlink()
    with pytest.raises(NotFound, match=f"blob {root.digest} not found in OCI layout {dst}"):
        fetch(LayoutSource(dst, "v2"), root)


def test_skopeo_archive_malformed(src_layout: Path, tmp_path: Path) -> None:
    archive = tmp_path / "x.tar"
    skopeo_copy(f"oci:{src_layout}:v1", f"docker-archive:{archive}:example.com/foo:v1")
    members = _read_tar(archive)
    manifest = json.loads(members["manifest.json"])

    evil = [dict(manifest[0], Layers=["../" + name for name in manifest[0]["Layers"]])]
    _write_tar(archive, {**members, "manifest.json": json.dumps(evil).encode()})
    with pytest.raises(InvalidArgument, match="leaves the archive root"), \
            DockerArchiveSource(archive, None) as source:
        source.resolve()

    del members[manifest[0]["Layers"][1]]
    _write_tar(archive, members)
    with pytest.raises(NotFound, match="is missing from the archive"), \
            DockerArchiveSource(archive, None) as source:
        source.resolve()


@pytest.fixture(scope="module")
def skopeo_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A hand-built layout and the docker-archive skopeo made of it (made once)."""
    root = tmp_path_factory.mktemp("skopeo")
    layout = build_layout(root / "src")
    archive = root / "x.tar"
    skopeo_copy(f"oci:{layout}:v1", f"docker-archive:{archive}:example.com/foo:v1")
    return layout, archive


@pytest.mark.parametrize("seed", range(150))
def test_corrupted_metadata_never_escapes(
    skopeo_archive: tuple[Path, Path], tmp_path: Path, seed: int
) -> None:
    """Random byte damage to index.json / manifest.json / config: only PyimgError."""
    rng = random.Random(seed)
    src_layout, src_archive = skopeo_archive
    layout = tmp_path / "lay"
    shutil.copytree(src_layout, layout)
    archive = tmp_path / "x.tar"
    members = _read_tar(src_archive)
    config_name = json.loads(members["manifest.json"])[0]["Config"]

    (layout / "index.json").write_bytes(_damage((layout / "index.json").read_bytes(), rng))
    member = rng.choice(["manifest.json", config_name])
    _write_tar(archive, {**members, member: _damage(members[member], rng)})

    for open_source in (lambda: LayoutSource(layout, None),
                        lambda: DockerArchiveSource(archive, None)):
        try:
            with open_source() as source:
                list(walk(source))
        except PyimgError:
            pass


def _damage(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        pos = rng.randrange(len(buf))
        choice = rng.random()
        if choice < 0.4:
            buf[pos] = rng.choice(b'{}[]":,0123456789abcdef./ \x00\xff')
        elif choice < 0.7:
            del buf[pos:pos + rng.randint(1, 20)]
        else:
            buf[pos:pos] = rng.choice([b'"../x"', b"null", b"-1", b"[]", b"{}", b'"'])
    return bytes(buf)


def _read_tar(path: Path) -> dict[str, bytes]:
    """Regular members only (skopeo's legacy ``<id>/layer.tar`` links are dropped)."""
    out = {}
    with tarfile.open(path) as tar:
        for info in tar.getmembers():
            f = tar.extractfile(info) if info.isreg() else None
            if f is not None:
                out[info.name] = f.read()
    return out


def _write_tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
