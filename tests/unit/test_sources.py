"""LayoutSource, DockerArchiveSource and the source spec parser, on hand-built inputs."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pyimg import reference
from pyimg.digest import Digest
from pyimg.errors import (
    FailedPrecondition,
    IntegrityError,
    InvalidArgument,
    NotFound,
    PyimgError,
)
from pyimg.oci import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Descriptor,
    parse_manifest,
)
from pyimg.sources import ImageSource
from pyimg.sources.docker_archive import DockerArchiveSource
from pyimg.sources.layout import CHUNK_SIZE, REF_NAME, LayoutSource, repository_name
from pyimg.sources.spec import SourceSpec, open_file_source, parse_source_spec

# Builders ------------------------------------------------------------------


def make_layer(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sha(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


def config_for(layers: list[bytes]) -> bytes:
    diff_ids = [str(sha(layer)) for layer in layers]
    doc = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
           "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    return json.dumps(doc).encode()


@dataclass
class Image:
    """One image: an uncompressed and a gzip layer, config, manifest."""

    plain: bytes
    zipped: bytes
    config: bytes
    manifest: bytes = b""
    blobs: dict[Digest, bytes] = field(default_factory=dict)

    @classmethod
    def build(cls, seed: str) -> Image:
        plain = make_layer({"a.txt": f"plain {seed}\n".encode()})
        unzipped = make_layer({"b.txt": f"zipped {seed}\n".encode()})
        zipped = gzip.compress(unzipped, mtime=0)
        config = config_for([plain, unzipped])
        img = cls(plain, zipped, config)
        manifest = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": desc_json(OCI_CONFIG, config),
            "layers": [desc_json(OCI_LAYER, plain), desc_json(OCI_LAYER_GZIP, zipped)],
        }
        img.manifest = json.dumps(manifest).encode()
        img.blobs = {sha(b): b for b in (plain, zipped, config, img.manifest)}
        return img


def desc_json(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": str(sha(data)), "size": len(data), **extra}


def write_layout(root: Path, images: dict[str | None, Image]) -> Path:
    """A layout whose index names each image by its key (None: no ref.name)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    entries = []
    for tag, img in images.items():
        for digest, data in img.blobs.items():
            blob = root / "blobs" / digest.algorithm / digest.hex
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
        annotations = {REF_NAME: tag} if tag is not None else {}
        entries.append(desc_json(OCI_MANIFEST, img.manifest, annotations=annotations))
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    (root / "index.json").write_text(json.dumps(index))
    return root


def fetch_all(src: ImageSource, desc: Descriptor, offset: int = 0) -> bytes:
    with src.fetch(desc, offset) as chunks:
        return b"".join(chunks)


# LayoutSource ----------------------------------------------------------------


@pytest.fixture
def one(tmp_path: Path) -> tuple[Path, Image]:
    img = Image.build("one")
    return write_layout(tmp_path / "My Layout", {"v1": img}), img


def test_layout_resolve_single_and_fetch(one: tuple[Path, Image]) -> None:
    path, img = one
    with LayoutSource(path, None) as src:
        root = src.resolve()
        assert root.media_type == OCI_MANIFEST
        assert root.digest == sha(img.manifest)
        manifest = parse_manifest(fetch_all(src, root))
        for desc in (manifest.config, *manifest.layers):
            assert fetch_all(src, desc) == img.blobs[desc.digest]
        assert fetch_all(src, manifest.config, 5) == img.config[5:]
        assert fetch_all(src, manifest.config, len(img.config) + 10) == b""
        assert src.name == f"oci:{path}"


def test_layout_by_tag_among_several(tmp_path: Path) -> None:
    a, b = Image.build("a"), Image.build("b")
    path = write_layout(tmp_path / "lay", {"a": a, "b": b})
    assert LayoutSource(path, "b").resolve().digest == sha(b.manifest)
    with pytest.raises(InvalidArgument, match="layout has 2 images: name one with oci:"):
        LayoutSource(path, None).resolve()
    with pytest.raises(NotFound, match=r"no image tagged 'c' \(available tags: a, b\)"):
        LayoutSource(path, "c").resolve()


def test_layout_empty_index(tmp_path: Path) -> None:
    path = write_layout(tmp_path / "lay", {})
    with pytest.raises(NotFound, match="no images"):
        LayoutSource(path, None).resolve()


def test_layout_returns_nested_index_descriptor(tmp_path: Path) -> None:
    img = Image.build("n")
    path = write_layout(tmp_path / "lay", {"x": img})
    inner = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [desc_json(OCI_MANIFEST, img.manifest)]}
    inner_bytes = json.dumps(inner).encode()
    (path / "blobs" / "sha256" / sha(inner_bytes).hex).write_bytes(inner_bytes)
    index = {"schemaVersion": 2, "manifests": [
        desc_json(OCI_INDEX, inner_bytes, annotations={REF_NAME: "multi"})]}
    (path / "index.json").write_text(json.dumps(index))
    root = LayoutSource(path, "multi").resolve()
    assert root.media_type == OCI_INDEX
    assert root.digest == sha(inner_bytes)


def test_layout_large_blob_is_chunked(tmp_path: Path) -> None:
    img = Image.build("big")
    path = write_layout(tmp_path / "lay", {"v1": img})
    big = os.urandom(CHUNK_SIZE * 2 + 17)
    (path / "blobs" / "sha256" / sha(big).hex).write_bytes(big)
    desc = Descriptor(OCI_LAYER, sha(big), len(big))
    with LayoutSource(path, "v1").fetch(desc, 3) as chunks:
        sizes = [len(c) for c in chunks]
    assert sizes == [CHUNK_SIZE, CHUNK_SIZE, 14]


@pytest.mark.parametrize(
    ("ref_name", "tag", "expected"),
    [
        ("example.com/foo:v2", "example.com/foo:v2", "example.com/foo:v2"),
        ("localhost:5000/a/b:c", "localhost:5000/a/b:c", "localhost:5000/a/b:c"),
        ("v1", "v1", "localhost/my-layout:v1"),
        ("v1", None, "localhost/my-layout:v1"),
        ("foo/bar:v1", "foo/bar:v1", "localhost/my-layout:foo/bar:v1"),
        (None, None, "localhost/my-layout:latest"),
    ],
)
def test_layout_image_name(
    tmp_path: Path, ref_name: str | None, tag: str | None, expected: str
) -> None:
    path = write_layout(tmp_path / "My Layout", {ref_name: Image.build("n")})
    if "foo/bar" in expected:
        # Not a valid tag and no registry host: no name can be made from it.
        with pytest.raises(InvalidArgument):
            _ = LayoutSource(path, tag).image_name
        return
    assert str(LayoutSource(path, tag).image_name) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("My Layout", "my-layout"), ("a..b", "a-b"), ("__x__", "x"), ("a__b", "a__b"),
     ("a---b", "a---b"), ("!!!", "image"), ("Ubuntu_22.04", "ubuntu_22.04"), ("a._b", "a-b")],
)
def test_repository_name(text: str, expected: str) -> None:
    name = repository_name(text)
    assert name == expected
    reference.parse(f"localhost/{name}:latest")


def test_layout_missing_blob(one: tuple[Path, Image]) -> None:
    path, img = one
    (path / "blobs" / "sha256" / sha(img.zipped).hex).unlink()
    src = LayoutSource(path, "v1")
    desc = Descriptor(OCI_LAYER_GZIP, sha(img.zipped), len(img.zipped))
    with pytest.raises(NotFound, match=f"blob {sha(img.zipped)} not found in OCI layout {path}"):
        fetch_all(src, desc)


def test_layout_refuses_unvalidated_digest_and_escaping_link(
    one: tuple[Path, Image], tmp_path: Path
) -> None:
    path, img = one
    src = LayoutSource(path, "v1")
    with pytest.raises(InvalidArgument):
        fetch_all(src, Descriptor(OCI_LAYER, Digest("sha256", "../../etc/passwd"), 1))
    with pytest.raises(InvalidArgument):
        fetch_all(src, Descriptor(OCI_LAYER, Digest("..", "a" * 64), 1))
    outside = tmp_path / "secret"
    outside.write_bytes(b"secret")
    blob = path / "blobs" / "sha256" / sha(img.plain).hex
    blob.unlink()
    blob.symlink_to(outside)
    with pytest.raises(InvalidArgument, match="outside the layout"):
        fetch_all(src, Descriptor(OCI_LAYER, sha(img.plain), len(img.plain)))


def test_layout_refuses_directory_blob(one: tuple[Path, Image]) -> None:
    path, img = one
    blob = path / "blobs" / "sha256" / sha(img.plain).hex
    blob.unlink()
    blob.mkdir()
    with pytest.raises(InvalidArgument, match="not a regular file"):
        fetch_all(LayoutSource(path, "v1"), Descriptor(OCI_LAYER, sha(img.plain), 1))


def test_layout_negative_offset(one: tuple[Path, Image]) -> None:
    path, img = one
    with pytest.raises(InvalidArgument, match="negative offset"):
        fetch_all(LayoutSource(path, "v1"), Descriptor(OCI_CONFIG, sha(img.config), 1), -1)


@pytest.mark.parametrize(
    ("marker", "error", "message"),
    [
        (None, NotFound, "oci-layout is missing"),
        ("not json", InvalidArgument, "malformed oci-layout"),
        ("[]", InvalidArgument, "lacks imageLayoutVersion"),
        ('{"imageLayoutVersion": 1}', InvalidArgument, "lacks imageLayoutVersion"),
        ('{"imageLayoutVersion": "2.0.0"}', FailedPrecondition, "unsupported image layout"),
    ],
)
def test_layout_bad_marker(
    one: tuple[Path, Image], marker: str | None, error: type[PyimgError], message: str
) -> None:
    path, _ = one
    if marker is None:
        (path / "oci-layout").unlink()
    else:
        (path / "oci-layout").write_text(marker)
    with pytest.raises(error, match=message):
        LayoutSource(path, None)


@pytest.mark.parametrize(
    "index",
    [
        "",
        "{",
        "[]",
        '{"schemaVersion": 2}',
        '{"schemaVersion": 1, "manifests": []}',
        '{"schemaVersion": 2, "manifests": [{"mediaType": "x"}]}',
        '{"schemaVersion": 2, "manifests": [{"mediaType": "x", "size": 1, "digest": "md5:00"}]}',
        '{"schemaVersion": 2, "manifests": [{"mediaType": "x", "size": -1, "digest": "sha256:'
        + "a" * 64 + '"}]}',
    ],
)
def test_layout_bad_index(one: tuple[Path, Image], index: str) -> None:
    path, _ = one
    (path / "index.json").write_text(index)
    with pytest.raises((InvalidArgument, FailedPrecondition)):
        LayoutSource(path, None)


def test_layout_unsupported_root_media_type(one: tuple[Path, Image]) -> None:
    path, img = one
    index = {"schemaVersion": 2, "manifests": [desc_json("text/plain", img.config)]}
    (path / "index.json").write_text(json.dumps(index))
    with pytest.raises(FailedPrecondition, match="unsupported media type"):
        LayoutSource(path, None).resolve()


def test_layout_missing_or_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        LayoutSource(tmp_path / "nope", None)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidArgument, match="not a directory"):
        LayoutSource(tmp_path / "file", None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFound, match="not an OCI layout"):
        LayoutSource(tmp_path / "empty", None)


# DockerArchiveSource -------------------------------------------------------


Opener = Callable[[Path, str | None], DockerArchiveSource]


@pytest.fixture
def open_archive() -> Iterator[Opener]:
    """Open archive sources that are closed at teardown (an open file warns)."""
    with ExitStack() as stack:
        def opener(path: Path, ref: str | None) -> DockerArchiveSource:
            return stack.enter_context(DockerArchiveSource(path, ref))
        yield opener


def add_member(tar: tarfile.TarFile, name: str, data: bytes | None = None, *,
               symlink: str | None = None, hardlink: str | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    if symlink is not None:
        info.type, info.linkname = tarfile.SYMTYPE, symlink
    elif hardlink is not None:
        info.type, info.linkname = tarfile.LNKTYPE, hardlink
    else:
        info.size = len(data or b"")
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def write_archive(path: Path, images: list[tuple[Image, list[str]]],
                  manifest: Any = None) -> Path:
    """A docker-save style tar: ``<hex>.json`` configs, ``<n>/layer.tar`` layers."""
    entries = []
    with tarfile.open(path, "w") as tar:
        for i, (img, tags) in enumerate(images):
            config_name = f"{sha(img.config).hex}.json"
            add_member(tar, config_name, img.config)
            layers = []
            for j, data in enumerate((img.plain, img.zipped)):
                name = f"img{i}-{j}/layer.tar"
                add_member(tar, name, data)
                layers.append(name)
            entries.append({"Config": config_name, "RepoTags": tags, "Layers": layers})
        body = json.dumps(entries if manifest is None else manifest).encode()
        add_member(tar, "manifest.json", body)
    return path


@pytest.fixture
def archive(tmp_path: Path) -> tuple[Path, Image]:
    img = Image.build("arch")
    return write_archive(tmp_path / "x.tar", [(img, ["busybox:latest", "example.com/b:v1"])]), img


def test_archive_synthesised_manifest(archive: tuple[Path, Image]) -> None:
    path, img = archive
    with DockerArchiveSource(path, None) as src:
        root = src.resolve()
        body = fetch_all(src, root)
        assert root.media_type == OCI_MANIFEST
        assert root.digest == sha(body) and root.size == len(body)
        assert body == json.dumps(json.loads(body), sort_keys=True,
                                  separators=(",", ":")).encode()
        manifest = parse_manifest(body)
        assert manifest.config == Descriptor(OCI_CONFIG, sha(img.config), len(img.config))
        assert [(d.media_type, d.digest) for d in manifest.layers] == [
            (OCI_LAYER, sha(img.plain)), (OCI_LAYER_GZIP, sha(img.zipped))]
        for desc in (manifest.config, *manifest.layers):
            assert fetch_all(src, desc) == img.blobs[desc.digest]
        assert fetch_all(src, manifest.layers[1], 7) == img.zipped[7:]
        assert fetch_all(src, root, 3) == body[3:]
        assert fetch_all(src, root, len(body)) == b""
        assert str(src.image_name) == "docker.io/library/busybox:latest"
        assert src.name == f"docker-archive:{path}"
        with pytest.raises(NotFound, match="not found in docker-archive"):
            fetch_all(src, Descriptor(OCI_LAYER, sha(b"other"), 5))
        assert src.resolve() == root


def test_archive_zstd_layer_is_sniffed(open_archive: Opener, tmp_path: Path) -> None:
    img = Image.build("z")
    img.zipped = b"\x28\xb5\x2f\xfd" + b"not really zstd"
    path = write_archive(tmp_path / "z.tar", [(img, [])])
    src = open_archive(path, None)
    manifest = parse_manifest(fetch_all(src, src.resolve()))
    assert manifest.layers[1].media_type == "application/vnd.oci.image.layer.v1.tar+zstd"
    assert src.image_name is None


def test_archive_select_by_ref_and_index(open_archive: Opener, tmp_path: Path) -> None:
    a, b = Image.build("a"), Image.build("b")
    path = write_archive(tmp_path / "x.tar", [(a, ["a:1"]), (b, ["docker.io/library/b:2"])])

    def config_of(src: DockerArchiveSource) -> Digest:
        return parse_manifest(fetch_all(src, src.resolve())).config.digest

    assert config_of(open_archive(path, "b:2")) == sha(b.config)
    assert config_of(open_archive(path, "docker.io/library/a:1")) == sha(a.config)
    assert config_of(open_archive(path, "@1")) == sha(b.config)
    assert str(open_archive(path, "@0").image_name) == "docker.io/library/a:1"
    assert str(open_archive(path, "b:2").image_name) == "docker.io/library/b:2"
    with pytest.raises(InvalidArgument, match="archive has 2 images"):
        open_archive(path, None)
    with pytest.raises(NotFound, match=r"no image tagged 'c:3' \(available: a:1, docker.io"):
        open_archive(path, "c:3")
    with pytest.raises(NotFound, match="no image @2, the archive has 2"):
        open_archive(path, "@2")
    with pytest.raises(InvalidArgument, match="invalid image index"):
        open_archive(path, "@x")
    with pytest.raises(InvalidArgument, match="digests are not supported"):
        open_archive(path, "a:1@sha256:" + "a" * 64)


def test_archive_follows_links_inside_only(open_archive: Opener, tmp_path: Path) -> None:
    img = Image.build("l")
    config_name = f"{sha(img.config).hex}.json"
    manifest = [{"Config": config_name, "RepoTags": None,
                 "Layers": ["one/layer.tar", "two/layer.tar"]}]
    path = tmp_path / "l.tar"
    with tarfile.open(path, "w") as tar:
        add_member(tar, "./" + config_name, img.config)
        add_member(tar, "blobs/sha256/p", img.plain)
        add_member(tar, "blobs/sha256/z", img.zipped)
        add_member(tar, "one/layer.tar", symlink="../blobs/sha256/p")
        add_member(tar, "two/layer.tar", hardlink="blobs/sha256/z")
        add_member(tar, "manifest.json", json.dumps(manifest).encode())
    src = open_archive(path, None)
    layers = parse_manifest(fetch_all(src, src.resolve())).layers
    assert [fetch_all(src, d) for d in layers] == [img.plain, img.zipped]

    for bad in ("../../etc/passwd", "/etc/passwd"):
        with tarfile.open(path, "a") as tar:
            add_member(tar, "one/layer.tar", symlink=bad)
        with pytest.raises(InvalidArgument, match="links outside the archive"):
            open_archive(path, None).resolve()

    with tarfile.open(path, "a") as tar:
        add_member(tar, "one/layer.tar", symlink="layer.tar")
    with pytest.raises(InvalidArgument, match="too many levels of links"):
        open_archive(path, None).resolve()

    with tarfile.open(path, "a") as tar:
        info = tarfile.TarInfo("one/layer.tar")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    with pytest.raises(InvalidArgument, match=r"'one/layer\.tar' is not a file"):
        open_archive(path, None).resolve()


def test_archive_docker25_layout_format(open_archive: Opener, tmp_path: Path) -> None:
    """docker >= 25 saves an OCI layout too; manifest.json then names blobs/sha256/<hex>."""
    img = Image.build("d25")
    names = {data: f"blobs/sha256/{sha(data).hex}" for data in (img.config, img.plain, img.zipped)}
    manifest = [{"Config": names[img.config], "RepoTags": ["d:25"],
                 "Layers": [names[img.plain], names[img.zipped]]}]
    path = tmp_path / "d25.tar"
    with tarfile.open(path, "w") as tar:
        add_member(tar, "blobs/sha256/" + sha(img.manifest).hex, img.manifest)
        for data, name in names.items():
            add_member(tar, name, data)
        add_member(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        index = {"schemaVersion": 2, "manifests": [desc_json(OCI_MANIFEST, img.manifest)]}
        add_member(tar, "index.json", json.dumps(index).encode())
        add_member(tar, "manifest.json", json.dumps(manifest).encode())
    src = open_archive(path, "d:25")
    layers = parse_manifest(fetch_all(src, src.resolve())).layers
    # The synthesised manifest has the same layers as the one docker stored.
    assert [d.digest for d in layers] == [d.digest for d in parse_manifest(img.manifest).layers]
    assert [fetch_all(src, d) for d in layers] == [img.plain, img.zipped]


@pytest.mark.parametrize(
    ("config", "layers", "error", "message"),
    [
        ("../x.json", [], InvalidArgument, "leaves the archive root"),
        ("/x.json", [], InvalidArgument, "unsafe member name"),
        ("a/../../x.json", [], InvalidArgument, "leaves the archive root"),
        ("CONFIG", ["../img0-0/layer.tar", "img0-1/layer.tar"], InvalidArgument,
         "leaves the archive root"),
        ("CONFIG", ["missing.tar", "img0-1/layer.tar"], NotFound, "'missing.tar' is missing"),
        ("missing.json", [], NotFound, "is missing"),
        ("CONFIG", ["img0-0/layer.tar"], InvalidArgument, "2 diff_ids but manifest.json lists 1"),
        ("CONFIG", ["img0-1/layer.tar", "img0-0/layer.tar"], IntegrityError, "hashes to"),
    ],
)
def test_archive_bad_members(open_archive: Opener,
    tmp_path: Path, config: str, layers: list[str], error: type[PyimgError], message: str
) -> None:
    img = Image.build("bad")
    config = config.replace("CONFIG", f"{sha(img.config).hex}.json")
    manifest = [{"Config": config, "RepoTags": [], "Layers": layers}]
    path = write_archive(tmp_path / "bad.tar", [(img, [])], manifest)
    with pytest.raises(error, match=message):
        open_archive(path, None).resolve()


@pytest.mark.parametrize(
    "manifest",
    [b"", b"{", b"{}", b"[1]", b'[{"Config": 1}]', b'[{"Config": "c", "Layers": "x"}]',
     b'[{"Config": "c", "RepoTags": [1]}]', b'[{"Config": "c", "LayerSources": []}]',
     b'[{"Config": "c", "LayerSources": {"a": {"size": 1}}}]'],
)
def test_archive_bad_manifest_json(open_archive: Opener, tmp_path: Path, manifest: bytes) -> None:
    path = tmp_path / "m.tar"
    with tarfile.open(path, "w") as tar:
        add_member(tar, "manifest.json", manifest)
    with pytest.raises(InvalidArgument, match=r"manifest\.json|descriptor|LayerSources"):
        open_archive(path, None)


def test_archive_foreign_layer_from_layer_sources(open_archive: Opener, tmp_path: Path) -> None:
    img = Image.build("f")
    unzipped = gzip.decompress(img.zipped)
    foreign = desc_json("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                        img.zipped, urls=["https://example.com/layer"])
    config_name = f"{sha(img.config).hex}.json"
    manifest = [{"Config": config_name, "RepoTags": [],
                 "Layers": ["img0-0/layer.tar", "absent/layer.tar"],
                 "LayerSources": {str(sha(unzipped)): foreign}}]
    path = write_archive(tmp_path / "f.tar", [(img, [])], manifest)
    src = open_archive(path, None)
    layers = parse_manifest(fetch_all(src, src.resolve())).layers
    assert layers[1].urls == ("https://example.com/layer",)
    with pytest.raises(NotFound):
        fetch_all(src, layers[1])


def test_archive_not_a_tar(open_archive: Opener, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        open_archive(tmp_path / "nope.tar", None)
    with pytest.raises(InvalidArgument, match="not a regular file"):
        open_archive(tmp_path, None)
    (tmp_path / "junk.tar").write_bytes(b"junk" * 300)
    with pytest.raises(InvalidArgument, match="not a tar archive"):
        open_archive(tmp_path / "junk.tar", None)
    (tmp_path / "z.tar.gz").write_bytes(gzip.compress(b"x"))
    with pytest.raises(InvalidArgument, match="gzip-compressed"):
        open_archive(tmp_path / "z.tar.gz", None)
    with tarfile.open(tmp_path / "empty.tar", "w"):
        pass
    with pytest.raises(NotFound, match=r"'manifest\.json' is missing"):
        open_archive(tmp_path / "empty.tar", None)


def test_archive_truncated(open_archive: Opener, archive: tuple[Path, Image]) -> None:
    path, _ = archive
    data = path.read_bytes()
    # Cut inside the last member (manifest.json comes last) so headers still parse.
    path.write_bytes(data[: data.rfind(b"busybox:latest") - 300])
    with pytest.raises(PyimgError):
        open_archive(path, None).resolve()


def test_archive_close_closes_file(open_archive: Opener, archive: tuple[Path, Image]) -> None:
    path, _ = archive
    src = open_archive(path, None)
    src.close()
    assert src._file.closed


# Specs -----------------------------------------------------------------------


BUSYBOX = reference.parse("busybox")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("oci:/tmp/lay", SourceSpec("oci", Path("/tmp/lay"), None, None)),
        ("oci:/tmp/lay:v1", SourceSpec("oci", Path("/tmp/lay"), "v1", None)),
        ("oci:lay:1.0_rc-1", SourceSpec("oci", Path("lay"), "1.0_rc-1", None)),
        ("oci:/mnt/a:b/lay", SourceSpec("oci", Path("/mnt/a:b/lay"), None, None)),
        ("oci:/mnt/a:b/lay:v2", SourceSpec("oci", Path("/mnt/a:b/lay"), "v2", None)),
        ("oci:/x:example.com/foo:v1", SourceSpec("oci", Path("/x:example.com/foo"), "v1", None)),
        ("docker-archive:/x.tar", SourceSpec("docker-archive", Path("/x.tar"), None, None)),
        ("docker-archive:/x.tar:busybox:latest",
         SourceSpec("docker-archive", Path("/x.tar"), None, BUSYBOX)),
        ("docker-archive:/x.tar:busybox",
         SourceSpec("docker-archive", Path("/x.tar"), None, BUSYBOX)),
        ("docker-archive:/x.tar:localhost:5000/a/b:c",
         SourceSpec("docker-archive", Path("/x.tar"), None,
                    reference.parse("localhost:5000/a/b:c"))),
        ("docker-archive:x.tar:@3", SourceSpec("docker-archive", Path("x.tar"), None, None, 3)),
        ("docker://busybox", SourceSpec("registry", None, None, BUSYBOX)),
        ("busybox", SourceSpec("registry", None, None, BUSYBOX)),
        ("localhost:5000/x:1",
         SourceSpec("registry", None, None, reference.parse("localhost:5000/x:1"))),
        ("docker://busybox@sha256:" + "a" * 64,
         SourceSpec("registry", None, None, reference.parse("busybox@sha256:" + "a" * 64))),
    ],
)
def test_parse_source_spec(text: str, expected: SourceSpec) -> None:
    assert parse_source_spec(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        (" busybox", "surrounded by spaces"),
        ("oci:", "missing layout path"),
        ("oci::v1", "missing layout path"),
        ("oci:/x:", "empty tag"),
        ("docker-archive:", "missing archive path"),
        ("docker-archive::busybox", "missing archive path"),
        ("docker-archive:/x.tar:", "empty reference"),
        ("docker-archive:/x.tar:@", "expected @N"),
        ("docker-archive:/x.tar:@-1", "expected @N"),
        ("docker-archive:/x.tar:Busybox", "must be lowercase"),
        ("docker-archive:/x.tar:b@sha256:" + "a" * 64, "cannot contain a digest"),
        ("docker://", "invalid image source"),
        ("docker:busybox", "unsupported transport 'docker'"),
        ("dir:/tmp/x", "unsupported transport 'dir'"),
        ("oci-archive:/tmp/x.tar", "unsupported transport 'oci-archive'"),
        ("Busybox", "must be lowercase"),
    ],
)
def test_parse_source_spec_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_source_spec(text)


def test_open_file_source(tmp_path: Path, archive: tuple[Path, Image]) -> None:
    lay = write_layout(tmp_path / "lay", {"v1": Image.build("o")})
    src = open_file_source(parse_source_spec(f"oci:{lay}:v1"))
    assert isinstance(src, LayoutSource) and src.resolve().media_type == OCI_MANIFEST
    path, img = archive
    for spec in (f"docker-archive:{path}", f"docker-archive:{path}:busybox",
                 f"docker-archive:{path}:@0"):
        src = open_file_source(parse_source_spec(spec))
        assert isinstance(src, DockerArchiveSource)
        assert parse_manifest(fetch_all(src, src.resolve())).config.digest == sha(img.config)
        src.close()
    with pytest.raises(InvalidArgument, match="not file-backed"):
        open_file_source(parse_source_spec("busybox"))
