"""The fixture images and the real-registry harness work as advertised."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from fixtures.registry import build_image, inspect_raw
from fixtures.registry.server import Registry

pytestmark = pytest.mark.registry

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST])


def _layout_manifest(layout: Path) -> dict[str, object]:
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":", 1)[1]
    manifest: dict[str, object] = json.loads((layout / "blobs" / "sha256" / digest).read_text())
    return manifest


def _layer_digests(manifest: dict[str, object]) -> list[str]:
    return [layer["digest"] for layer in manifest["layers"]]  # type: ignore[attr-defined]


def test_plain_registry_serves_oci_manifest(registry: Registry,
                                            fixture_layouts: dict[str, Path]) -> None:
    status, headers, body = registry.request("/v2/pyimg/busybox/manifests/latest",
                                             headers={"Accept": ACCEPT})
    assert status == 200
    assert headers["Content-Type"] == OCI_MANIFEST
    assert headers["Docker-Content-Digest"] == "sha256:" + hashlib.sha256(body).hexdigest()
    manifest = json.loads(body)
    assert manifest == _layout_manifest(fixture_layouts["busybox"])
    layer = manifest["layers"][0]
    status, _, blob = registry.request(f"/v2/pyimg/busybox/blobs/{layer['digest']}")
    assert status == 200
    assert "sha256:" + hashlib.sha256(blob).hexdigest() == layer["digest"]
    assert blob[:2] == b"\x1f\x8b"


def test_multilayer_has_five_layers(registry: Registry) -> None:
    manifest = inspect_raw(f"{registry.host}/pyimg/multilayer:latest")
    assert len(manifest["layers"]) == 5  # type: ignore[arg-type]


def test_zstd_layer_kept_as_zstd(registry: Registry, fixture_layouts: dict[str, Path]) -> None:
    manifest = inspect_raw(f"{registry.host}/pyimg/zstd:latest")
    layers = manifest["layers"]
    assert [layer["mediaType"] for layer in layers] == [  # type: ignore[attr-defined]
        "application/vnd.oci.image.layer.v1.tar+zstd"]
    assert _layer_digests(manifest) == _layer_digests(_layout_manifest(fixture_layouts["zstd"]))


def test_docker_image_is_schema2(registry: Registry, fixture_layouts: dict[str, Path]) -> None:
    manifest = inspect_raw(f"{registry.host}/pyimg/docker:latest")
    assert manifest["mediaType"] == DOCKER_MANIFEST
    assert manifest["config"]["mediaType"] == (  # type: ignore[index]
        "application/vnd.docker.container.image.v1+json")
    assert [layer["mediaType"] for layer in manifest["layers"]] == [  # type: ignore[attr-defined]
        "application/vnd.docker.image.rootfs.diff.tar.gzip"]
    # the gzip layer was not recompressed
    assert _layer_digests(manifest) == _layer_digests(_layout_manifest(fixture_layouts["docker"]))


def test_multiarch_is_index_with_two_platforms(registry: Registry) -> None:
    index = inspect_raw(f"{registry.host}/pyimg/multiarch:latest")
    assert index["mediaType"] == OCI_INDEX
    platforms = sorted((m["platform"]["os"], m["platform"]["architecture"],  # type: ignore[index]
                        m["platform"].get("variant", ""))  # type: ignore[index]
                       for m in index["manifests"])  # type: ignore[attr-defined]
    assert platforms == [("linux", "amd64", ""), ("linux", "arm64", "v8")]
    digests = {m["digest"] for m in index["manifests"]}  # type: ignore[attr-defined]
    assert len(digests) == 2
    for digest in digests:
        status, headers, _ = registry.request(f"/v2/pyimg/multiarch/manifests/{digest}",
                                              headers={"Accept": ACCEPT})
        assert status == 200 and headers["Content-Type"] == OCI_MANIFEST


def test_tls_registry_requires_basic_auth(tls_registry: Registry) -> None:
    assert tls_registry.ca_path is not None and tls_registry.scheme == "https"
    status, headers, _ = tls_registry.request("/v2/", auth=False)
    assert status == 401
    assert headers["Www-Authenticate"].startswith("Basic ")
    status, _, _ = tls_registry.request("/v2/")
    assert status == 200
    status, headers, _ = tls_registry.request("/v2/pyimg/busybox/manifests/latest",
                                              headers={"Accept": ACCEPT})
    assert status == 200 and headers["Content-Type"] == OCI_MANIFEST
    manifest = inspect_raw(f"{tls_registry.host}/pyimg/busybox:latest", tls_verify=True,
                           creds=tls_registry.creds, cert_dir=tls_registry.cert_dir)
    assert manifest["mediaType"] == OCI_MANIFEST


def test_proxy_registry_pulls_through(proxy_registry: Registry, registry: Registry) -> None:
    path = "/v2/pyimg/busybox/manifests/latest"
    status, headers, body = proxy_registry.request(path, headers={"Accept": ACCEPT})
    assert status == 200 and headers["Content-Type"] == OCI_MANIFEST
    assert body == registry.request(path, headers={"Accept": ACCEPT})[2]
    layer = json.loads(body)["layers"][0]["digest"]
    status, _, blob = proxy_registry.request(f"/v2/pyimg/busybox/blobs/{layer}")
    assert status == 200
    assert "sha256:" + hashlib.sha256(blob).hexdigest() == layer


@pytest.mark.parametrize("name", ["multilayer", "multiarch"])
def test_build_is_deterministic(tmp_path: Path, name: str) -> None:
    def snapshot(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes()
                for p in sorted(root.rglob("*")) if p.is_file()}

    first = snapshot(build_image(name, tmp_path / "a"))
    second = snapshot(build_image(name, tmp_path / "b"))
    assert first == second
    assert any(k.startswith("blobs/sha256/") for k in first)
    for rel, data in first.items():
        if rel.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == Path(rel).name


def test_build_cache_is_reused(tmp_path: Path) -> None:
    path = build_image("busybox", tmp_path)
    stamp = path / ".pyimg-fixture-stamp"
    mtime = stamp.stat().st_mtime_ns
    assert build_image("busybox", tmp_path) == path
    assert stamp.stat().st_mtime_ns == mtime
    stamp.write_text("stale")
    build_image("busybox", tmp_path)
    assert stamp.read_text() != "stale"
