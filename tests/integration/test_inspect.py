"""`pyimg inspect / layers / ls / cat` against the fixture registry and layouts.

Ground truth is computed here, independently: the fixture layouts' layer tars
are read with plain ``tarfile`` and applied to a dict of paths.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from fixtures.registry.server import Registry
from tests.cli import Pyimg, one_error_line

pytestmark = pytest.mark.registry
HOST_ARCH = "amd64" if os.uname().machine == "x86_64" else "arm64"


@pytest.fixture
def p(tmp_path: Path) -> Pyimg:
    return Pyimg(tmp_path, env={"PYIMG_STATE": str(tmp_path / "state")})


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


def _manifest(layout: Path) -> dict[str, Any]:
    index = json.loads((layout / "index.json").read_text())
    doc: dict[str, Any] = json.loads(_blob(layout, index["manifests"][0]["digest"]))
    if "manifests" in doc:  # multiarch: the host's
        desc = next(m for m in doc["manifests"] if m["platform"]["architecture"] == HOST_ARCH)
        doc = json.loads(_blob(layout, desc["digest"]))
    return doc


# independent model -------------------------------------------------------------------


def _members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return list(tf)


def _norm(name: str) -> str:
    return "/".join(x for x in name.split("/") if x not in ("", "."))


def truth(layout: Path) -> tuple[list[dict[str, int]], dict[str, tuple[str, int]]]:
    """Per-layer counts and the final tree {path: (kind, layer)}, from the raw tars."""
    tree: dict[str, tuple[str, int]] = {}
    sizes: dict[str, int] = {}
    rows = []
    for i, layer in enumerate(_manifest(layout)["layers"]):
        raw = _blob(layout, layer["digest"])
        data = gzip.decompress(raw) if layer["mediaType"].endswith("gzip") else raw
        members = _members(data)
        lower = dict(tree)
        own = {_norm(m.name) for m in members if not _norm(m.name).rpartition("/")[2]
               .startswith(".wh.")}
        row = {"uncompressed": len(data), "files": 0, "added": 0, "changed": 0, "deleted": 0}
        gone: set[str] = set()
        for m in members:
            path = _norm(m.name)
            head, _, base = path.rpartition("/")
            if base == ".wh..wh..opq":
                gone |= {q for q in lower if q.startswith(head + "/") and q not in own}
            elif base.startswith(".wh."):
                target = f"{head}/{base[4:]}" if head else base[4:]
                gone |= {q for q in lower if q == target or q.startswith(target + "/")}
        for q in gone:
            tree.pop(q, None)
        row["deleted"] = sum(1 for q in gone if lower[q][0] != "dir")
        for m in members:
            path = _norm(m.name)
            if path.rpartition("/")[2].startswith(".wh."):
                continue
            kind = ("dir" if m.isdir() else "symlink" if m.issym() else
                    "hardlink" if m.islnk() else "file")
            if kind != "dir":
                row["files"] += 1
                if path in lower and lower[path][0] != "dir":
                    row["changed"] += 1
                else:
                    row["added"] += 1
                sizes[path] = m.size
            parts = path.split("/")
            for j in range(1, len(parts)):
                tree.setdefault("/".join(parts[:j]), ("dir", i))
            tree[path] = (kind, i)
        rows.append(row)
    return rows, tree


# inspect ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "media_type", "layer_type"), [
    ("busybox", "application/vnd.oci.image.manifest.v1+json",
     "application/vnd.oci.image.layer.v1.tar+gzip"),
    ("zstd", "application/vnd.oci.image.manifest.v1+json",
     "application/vnd.oci.image.layer.v1.tar+zstd"),
    ("docker", "application/vnd.docker.distribution.manifest.v2+json",
     "application/vnd.docker.image.rootfs.diff.tar.gzip"),
    ("multiarch", "application/vnd.oci.image.index.v1+json",
     "application/vnd.oci.image.layer.v1.tar+gzip"),
])
def test_inspect_remote_fetches_documents_only(p: Pyimg, registry: Registry, name: str,
                                               media_type: str, layer_type: str,
                                               fixture_layouts: dict[str, Path]) -> None:
    ref = f"{registry.host}/pyimg/{name}"
    info = json.loads(p.run("inspect", ref).stdout)
    assert info["Name"] == f"{ref}:latest" and info["Local"] is False
    assert info["MediaType"] == media_type
    assert info["Architecture"] == HOST_ARCH and info["Os"] == "linux"
    assert info["Config"]["Cmd"] == ["sh"] and info["Labels"] == {"org.pyimg.fixture": name}
    assert {x["MediaType"] for x in info["Layers"]} == {layer_type}
    manifest = _manifest(fixture_layouts[name])
    assert [x["Size"] for x in info["Layers"]] == [x["size"] for x in manifest["layers"]]
    assert [x["CreatedBy"] for x in info["History"]] == [
        f"pyimg fixture layer {i}" for i in range(len(manifest["layers"]))]
    if name == "multiarch":
        assert [x["Platform"] for x in info["Platforms"]] == ["linux/amd64", "linux/arm64/v8"]
        assert info["ManifestDigest"] != info["Digest"]
    else:
        assert info["Platforms"] == [] and info["ManifestDigest"] == info["Digest"]
    assert not p.root.exists()  # nothing stored, not even an empty store


def test_inspect_fetches_no_layer_blob(registry: Registry, tmp_path: Path) -> None:
    """In-process: every blob/manifest GET the registry source makes is recorded."""
    from pyimg.inspect import inspect_image, open_image
    from pyimg.oci import Platform
    from pyimg.remote.registry import RegistrySource
    from pyimg.settings import Settings

    requested: list[str] = []
    original = RegistrySource._open

    def spy(self: RegistrySource, desc: Any, pos: int) -> Any:
        requested.append(desc.media_type)
        return original(self, desc, pos)

    RegistrySource._open = spy  # type: ignore[method-assign]
    try:
        with open_image(Settings(root=tmp_path / "r"), f"{registry.host}/pyimg/multiarch") as img:
            info = inspect_image(img, Platform.parse("linux/arm64"))
    finally:
        RegistrySource._open = original  # type: ignore[method-assign]
    assert info.variant == "v8"
    assert not any("layer" in t for t in requested)
    assert "application/vnd.oci.image.config.v1+json" in requested


def test_platform_and_raw(p: Pyimg, registry: Registry) -> None:
    ref = f"{registry.host}/pyimg/multiarch"
    arm = json.loads(p.run("inspect", "--platform", "linux/arm64", ref).stdout)
    assert (arm["Architecture"], arm["Variant"]) == ("arm64", "v8")
    raw = subprocess.run(p.cmd("inspect", "--raw", "manifest", ref), env=p.env,
                         capture_output=True, check=True).stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == arm["Digest"]
    cfg = subprocess.run(p.cmd("inspect", "--raw", "config", "--platform", "linux/arm64", ref),
                         env=p.env, capture_output=True, check=True).stdout
    assert "sha256:" + hashlib.sha256(cfg).hexdigest() == arm["ConfigDigest"]
    assert json.loads(cfg)["architecture"] == "arm64"
    proc = p.run("inspect", "--platform", "linux/s390x", ref, check=False)
    assert proc.returncode == 3 and "linux/arm64/v8" in one_error_line(proc)


def test_format_selectors(p: Pyimg, registry: Registry) -> None:
    ref = f"{registry.host}/pyimg/busybox"
    fmt = "{{.Architecture}} {{.Config.Cmd}} {{json .Config.Cmd}} {{.Labels.org.pyimg.fixture}}"
    assert p.run("inspect", "--format", fmt, ref).stdout == f'{HOST_ARCH} [sh] ["sh"] busybox\n'
    assert p.run("inspect", "-f", "{{.Layers.0.MediaType}}", ref).stdout.strip().endswith("gzip")
    assert p.run("inspect", "--field", "Config.Cmd", ref).stdout == '["sh"]\n'
    assert p.run("inspect", "--field", "Config.WorkingDir", ref).stdout == "/\n"
    table = p.run("inspect", "--format", "table", ref).stdout
    assert "Cmd:" in table and "pyimg fixture layer 0" in table
    bad = p.run("inspect", "--format", "{{.Nope}}", ref, check=False)
    assert bad.returncode == 2 and "Nope" in one_error_line(bad)


def test_local_inspect_after_pull(p: Pyimg, registry: Registry) -> None:
    ref = f"{registry.host}/pyimg/multiarch"
    remote = json.loads(p.run("inspect", ref).stdout)
    p.run("pull", "--no-unpack", ref)
    local = json.loads(p.run("inspect", ref).stdout)
    assert local["Local"] is True and local["Source"] == "store"
    for key in ("Digest", "ManifestDigest", "ConfigDigest", "Layers", "History", "Platforms"):
        assert local[key] == remote[key]
    by_digest = json.loads(p.run("inspect", "--type", "image", remote["Digest"][7:19]).stdout)
    assert by_digest["Digest"] == remote["Digest"]
    # only the host platform was pulled: another one is a clear NotFound
    other = "linux/arm64" if HOST_ARCH == "amd64" else "linux/amd64"
    proc = p.run("inspect", "--platform", other, ref, check=False)
    assert proc.returncode == 3 and "--platform" in one_error_line(proc)
    assert json.loads(p.run("inspect", "--remote", "--platform", other, ref).stdout)["Local"] \
        is False


def test_inspect_unknown_is_not_found(p: Pyimg, registry: Registry) -> None:
    proc = p.run("inspect", f"{registry.host}/pyimg/missing", check=False)
    assert proc.returncode == 3
    one_error_line(proc)
    proc = p.run("inspect", "--type", "container", "nothing", check=False)
    assert proc.returncode == 3 and "no such container" in one_error_line(proc)


def test_inspect_docker_archive(p: Pyimg, fixture_layouts: dict[str, Path],
                                tmp_path: Path) -> None:
    archive = tmp_path / "busybox.tar"
    subprocess.run(["skopeo", "--insecure-policy", "copy", "-q",
                    f"oci:{fixture_layouts['busybox']}:latest",
                    f"docker-archive:{archive}:example.com/tools/busybox:1"], check=True)
    info = json.loads(p.run("inspect", f"docker-archive:{archive}").stdout)
    assert info["Name"] == "example.com/tools/busybox:1"
    assert info["Config"]["Cmd"] == ["sh"] and len(info["Layers"]) == 1
    assert p.run("cat", f"docker-archive:{archive}", "/etc/hostname").stdout == "pyimg\n"


# layers -------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["remote", "local", "layout"])
def test_layers_match_ground_truth(p: Pyimg, registry: Registry, where: str,
                                   fixture_layouts: dict[str, Path]) -> None:
    layout = fixture_layouts["multilayer"]
    ref = f"{registry.host}/pyimg/multilayer"
    if where == "local":
        p.run("pull", "--no-unpack", ref)
    elif where == "layout":
        ref = f"oci:{layout}:latest"
    rows = json.loads(p.run("layers", "--format", "json", ref).stdout)
    expected, _ = truth(layout)
    assert len(rows) == 5
    for row, want in zip(rows, expected, strict=True):
        got = {"uncompressed": row["uncompressedSize"], "files": row["files"],
               "added": row["added"], "changed": row["changed"], "deleted": row["deleted"]}
        assert got == want, row
    manifest = _manifest(layout)
    assert [r["size"] for r in rows] == [x["size"] for x in manifest["layers"]]
    assert [r["createdBy"] for r in rows] == [f"pyimg fixture layer {i}" for i in range(5)]
    # the whiteout layer: a.txt changed, todelete.txt + opq/old1 + opq/old2 gone, opq/new1 new
    assert (rows[2]["changed"], rows[2]["deleted"], rows[2]["added"]) == (1, 3, 1)
    if where == "remote":
        assert not p.root.exists()
    table = p.run("layers", ref).stdout
    assert "UNCOMPRESSED" in table and len(table.splitlines()) == 6


def test_layers_zstd(p: Pyimg, registry: Registry, fixture_layouts: dict[str, Path]) -> None:
    import zstandard

    rows = json.loads(p.run("layers", "--format", "json",
                            f"{registry.host}/pyimg/zstd").stdout)
    layer = _manifest(fixture_layouts["zstd"])["layers"][0]
    data = zstandard.ZstdDecompressor().decompressobj().decompress(
        _blob(fixture_layouts["zstd"], layer["digest"]))
    members = _members(data)
    assert rows[0]["uncompressedSize"] == len(data)
    assert rows[0]["files"] == sum(1 for m in members if not m.isdir())


# ls and cat --------------------------------------------------------------------------


def test_ls_is_the_final_tree(p: Pyimg, registry: Registry,
                              fixture_layouts: dict[str, Path]) -> None:
    ref = f"{registry.host}/pyimg/multilayer"
    entries = json.loads(p.run("ls", "-R", "--format", "json", ref).stdout)
    got = {e["path"].lstrip("/"): (e["type"], e["layer"]) for e in entries}
    _, want = truth(fixture_layouts["multilayer"])
    assert {k: v[0] for k, v in got.items()} == {k: v[0] for k, v in want.items()}
    assert {k: v[1] for k, v in got.items() if v[0] != "dir"} == \
        {k: v[1] for k, v in want.items() if v[0] != "dir"}
    assert "data/todelete.txt" not in got
    assert [k for k in got if k.startswith("opq/")] == ["opq/new1"]
    opq = p.run("ls", ref, "/opq").stdout.splitlines()
    assert len(opq) == 2 and opq[1].endswith("/opq/new1")
    data = {e["path"]: e for e in json.loads(p.run("ls", "--format", "json", ref,
                                                   "data").stdout)}
    assert data["/data/a.txt"]["layer"] == 2 and data["/data/a.txt"]["size"] == 20
    links = {e["path"]: e for e in json.loads(p.run("ls", "--format", "json", ref,
                                                    "/links").stdout)}
    assert links["/links/absolute"]["target"] == "/data/a.txt"
    assert links["/links/z-hardlink"]["size"] == len("hardlink and symlink target\n")
    proc = p.run("ls", ref, "/data/todelete.txt", check=False)
    assert proc.returncode == 3
    one_error_line(proc)


def test_cat(p: Pyimg, registry: Registry, fixture_layouts: dict[str, Path]) -> None:
    ref = f"{registry.host}/pyimg/multilayer"
    assert p.run("cat", ref, "/data/a.txt").stdout == "second version of a\n"
    assert p.run("cat", ref, "data/b.txt").stdout == "b stays\n" * 100
    assert p.run("cat", ref, "/links/z-hardlink").stdout == "hardlink and symlink target\n"
    assert p.run("cat", ref, "/links/relative").stdout == "hardlink and symlink target\n"
    assert p.run("cat", ref, "/links/absolute").stdout == "second version of a\n"
    assert p.run("cat", ref, "/opq/new1").stdout == "only file visible in /opq\n"
    assert p.run("cat", ref, "/etc/passwd").stdout.startswith("root:x:0:0:")
    binary = subprocess.run(p.cmd("cat", ref, "/blobs/zeros.bin"), env=p.env,
                            capture_output=True, check=True).stdout
    assert binary == bytes(256 * 1024)
    for path, words in [("/data/todelete.txt", "whiteout"), ("/opq/old1", "opaque"),
                        ("/nope", "no such file")]:
        proc = p.run("cat", ref, path, check=False)
        assert proc.returncode == 3, proc.stderr
        assert words in one_error_line(proc) and path in proc.stderr
    proc = p.run("cat", ref, "/links/dangling", check=False)
    assert proc.returncode == 3
    proc = p.run("cat", ref, "/data", check=False)
    assert proc.returncode == 2 and "is a directory" in one_error_line(proc)
    assert not p.root.exists()


def test_cat_multiarch_platform(p: Pyimg, registry: Registry) -> None:
    ref = f"{registry.host}/pyimg/multiarch"
    assert p.run("cat", "--platform", "linux/arm64", ref, "/etc/arch").stdout == "arm64\n"
    assert p.run("cat", "--platform", "linux/amd64", ref, "/etc/arch").stdout == "amd64\n"
