import json

import pytest

from pyimg import oci
from pyimg.digest import Digest, verify_bytes
from pyimg.errors import DigestMismatch, FailedPrecondition, InvalidArgument, SizeMismatch

D = "sha256:" + "b" * 64


def desc(**kw: object) -> dict[str, object]:
    return {"mediaType": oci.OCI_LAYER_GZIP, "digest": D, "size": 3, **kw}


def test_manifest_parses() -> None:
    body = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
                       "config": desc(mediaType=oci.OCI_CONFIG), "layers": [desc()]}).encode()
    m = oci.parse_manifest(body)
    assert m.media_type == oci.OCI_MANIFEST
    assert m.layers[0].digest == Digest.parse(D)


def test_media_type_detected_from_shape_when_missing() -> None:
    assert oci.detect_media_type(b'{"schemaVersion":2,"manifests":[]}', None) == oci.OCI_INDEX
    assert oci.detect_media_type(b'{"schemaVersion":2,"config":{}}', None) == oci.OCI_MANIFEST


@pytest.mark.parametrize("body", [
    b"not json", b"[]", b'{"schemaVersion":2}',
    b'{"schemaVersion":2,"config":{"digest":"x","size":1,"mediaType":"a"},"layers":[]}',
    json.dumps({"schemaVersion": 2, "config": desc(size=-1), "layers": []}).encode(),
    json.dumps({"schemaVersion": 2, "config": desc(size="3"), "layers": []}).encode(),
    json.dumps({"schemaVersion": 2, "config": desc(), "layers": {}}).encode(),
    json.dumps({"schemaVersion": 2, "config": desc(), "layers": [1]}).encode(),
    b"\xff\xfe",
])
def test_malformed_manifests_raise_invalid_argument(body: bytes) -> None:
    with pytest.raises(InvalidArgument):
        oci.parse_manifest(body, oci.OCI_MANIFEST)


def test_schema1_refused_with_message() -> None:
    with pytest.raises(FailedPrecondition, match="schema 1"):
        oci.detect_media_type(b'{"schemaVersion":1,"fsLayers":[]}', None)


def test_platform_selection_prefers_exact_variant() -> None:
    entries = tuple(oci.Descriptor(oci.OCI_MANIFEST, Digest.parse("sha256:" + c * 64), 1,
                                   platform=p) for c, p in [
        ("1", oci.Platform("linux", "amd64")), ("2", oci.Platform("linux", "arm", "v6")),
        ("3", oci.Platform("linux", "arm", "v7")), ("4", oci.Platform("linux", "arm64", "v8")),
        ("5", oci.Platform("unknown", "unknown"))])
    index = oci.Index(oci.OCI_INDEX, entries)
    assert oci.select_platforms(index, oci.Platform.parse("linux/arm/v7"))[0] is entries[2]
    assert oci.select_platforms(index, oci.Platform.parse("linux/aarch64"))[0] is entries[3]
    assert oci.select_platforms(index, oci.Platform.parse("linux/x86_64"))[0] is entries[0]
    assert oci.select_platforms(index, oci.Platform.parse("linux/s390x")) == []
    assert len(oci.select_platforms(index, None)) == 5


@pytest.mark.parametrize("bad", ["linux", "linux/", "a/b/c/d", ""])
def test_bad_platform(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        oci.Platform.parse(bad)


def test_digest_verification() -> None:
    data = b"hello"
    d = Digest.of(data)
    verify_bytes(data, d, 5)
    with pytest.raises(DigestMismatch):
        verify_bytes(b"hellp", d, 5)
    with pytest.raises(SizeMismatch):
        verify_bytes(data, d, 4)
    with pytest.raises(InvalidArgument):
        Digest.parse("sha256:" + "A" * 64)
