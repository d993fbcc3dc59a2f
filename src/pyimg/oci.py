"""OCI image-spec and Docker v2s2 types, parsed strictly.

Manifests come from untrusted registries: parsing validates shape and types
and raises :class:`InvalidArgument` naming the offending field instead of
letting a ``KeyError`` or ``TypeError`` escape.
"""

from __future__ import annotations

import os

from pyimg import jsonc
from pyimg.digest import Digest
from pyimg.errors import FailedPrecondition, InvalidArgument
from pyimg.record import Record

TYPE_CHECKING = False  # import-light: `pyimg run` parses an image's documents
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

# Media types -------------------------------------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
SCHEMA1_TYPES = (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED)
#: What we send in Accept when resolving: all four, most preferred first.
ACCEPT_MANIFESTS = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)

#: containerd refuses manifests over 4 MiB; so do we (they are read into memory).
MAX_MANIFEST_SIZE = 4 * 1024 * 1024
MAX_CONFIG_SIZE = 16 * 1024 * 1024


def is_index(media_type: str) -> bool:
    return media_type in INDEX_TYPES


def is_manifest(media_type: str) -> bool:
    return media_type in MANIFEST_TYPES


def layer_compression(media_type: str) -> str:
    """``gzip``, ``zstd`` or ``none`` for a layer media type."""
    if media_type.endswith("+zstd") or media_type.endswith(".zstd"):
        return "zstd"
    if media_type.endswith("gzip"):
        return "gzip"
    if media_type.endswith(".tar") or media_type.endswith(".diff.tar"):
        return "none"
    raise FailedPrecondition(f"unsupported layer media type {media_type!r}")


# Platforms ---------------------------------------------------------------

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
         "armv7l": "arm", "armv6l": "arm", "i386": "386", "i686": "386",
         "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


class Platform(Record):
    _fields = ("os", "architecture", "variant", "os_version")
    __slots__ = _fields
    os: str
    architecture: str
    variant: str
    os_version: str

    def __init__(self, os: str, architecture: str, variant: str = "",
                 os_version: str = "") -> None:
        self._set(os, architecture, variant, os_version)

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.strip().lower().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidArgument(
                f"invalid platform {text!r}: expected OS/ARCH[/VARIANT], e.g. linux/arm64/v8"
            )
        arch = _ARCH.get(parts[1], parts[1])
        return cls(parts[0], arch, parts[2] if len(parts) == 3 else "").normalized()

    @classmethod
    def host(cls) -> Platform:
        machine = os.uname().machine.lower()
        arch = _ARCH.get(machine, machine)
        variant = "v8" if arch == "arm64" else ("v7" if machine == "armv7l" else "")
        return cls("linux", arch, variant)

    def normalized(self) -> Platform:
        # containerd's platforms.Normalize: arm64 defaults to v8, amd64 has
        # no variant unless one of v2..v4 is named.
        variant = self.variant
        if self.architecture == "arm64" and variant in ("", "8"):
            variant = "v8"
        if self.architecture == "amd64" and variant == "v1":
            variant = ""
        return Platform(self.os, self.architecture, variant, self.os_version)

    def matches(self, other: Platform) -> bool:
        """Does ``other`` (from an index) satisfy this requested platform?"""
        a, b = self.normalized(), other.normalized()
        if (a.os, a.architecture) != (b.os, b.architecture):
            return False
        return not a.variant or not b.variant or a.variant == b.variant

    def to_json(self) -> dict[str, str]:
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        if self.os_version:
            out["os.version"] = self.os_version
        return out

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


# Descriptors and documents -------------------------------------------------


class Descriptor(Record):
    _fields = ("media_type", "digest", "size", "annotations", "platform", "urls")
    __slots__ = _fields
    media_type: str
    digest: Digest
    size: int
    annotations: Mapping[str, str]
    platform: Platform | None
    urls: tuple[str, ...]

    def __init__(self, media_type: str, digest: Digest, size: int,
                 annotations: Mapping[str, str] | None = None, platform: Platform | None = None,
                 urls: tuple[str, ...] = ()) -> None:
        self._set(media_type, digest, size, {} if annotations is None else annotations,
                  platform, urls)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type, "digest": str(self.digest), "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform:
            out["platform"] = self.platform.to_json()
        if self.urls:
            out["urls"] = list(self.urls)
        return out


class Manifest(Record):
    _fields = ("media_type", "config", "layers", "annotations")
    __slots__ = _fields
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str]

    def __init__(self, media_type: str, config: Descriptor, layers: tuple[Descriptor, ...],
                 annotations: Mapping[str, str] | None = None) -> None:
        self._set(media_type, config, layers, {} if annotations is None else annotations)


class Index(Record):
    _fields = ("media_type", "manifests", "annotations")
    __slots__ = _fields
    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str]

    def __init__(self, media_type: str, manifests: tuple[Descriptor, ...],
                 annotations: Mapping[str, str] | None = None) -> None:
        self._set(media_type, manifests, {} if annotations is None else annotations)


class ImageConfig(Record):
    """The parts of the image config pyimg uses; ``raw`` keeps the rest."""

    _fields = ("architecture", "os", "variant", "diff_ids", "config", "created", "history",
               "raw")
    __slots__ = _fields
    architecture: str
    os: str
    variant: str
    diff_ids: tuple[Digest, ...]
    config: Mapping[str, Any]
    created: str | None
    history: tuple[Mapping[str, Any], ...]
    raw: Mapping[str, Any]

    def __init__(self, architecture: str, os: str, variant: str, diff_ids: tuple[Digest, ...],
                 config: Mapping[str, Any], created: str | None,
                 history: tuple[Mapping[str, Any], ...], raw: Mapping[str, Any]) -> None:
        self._set(architecture, os, variant, diff_ids, config, created, history, raw)

    @property
    def platform(self) -> Platform:
        return Platform(self.os, self.architecture, self.variant)


def _load(data: bytes, what: str) -> dict[str, Any]:
    try:
        obj = jsonc.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"malformed {what}: not valid JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise InvalidArgument(f"malformed {what}: expected a JSON object")
    return obj


def _get(obj: Mapping[str, Any], key: str, kind: type, what: str, default: Any = ...) -> Any:
    if key not in obj:
        if default is ...:
            raise InvalidArgument(f"malformed {what}: missing {key!r}")
        return default
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidArgument(f"malformed {what}: {key!r} must be {kind.__name__}")
    return value


def _str_map(obj: Mapping[str, Any], key: str, what: str) -> dict[str, str]:
    value = _get(obj, key, dict, what, None) or {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidArgument(f"malformed {what}: {key!r} must map strings to strings")
    return dict(value)


def parse_descriptor(obj: Any, what: str = "descriptor") -> Descriptor:
    if not isinstance(obj, dict):
        raise InvalidArgument(f"malformed {what}: expected an object")
    size = _get(obj, "size", int, what)
    if size < 0:
        raise InvalidArgument(f"malformed {what}: negative size")
    plat = None
    if "platform" in obj:
        p = _get(obj, "platform", dict, what)
        plat = Platform(
            _get(p, "os", str, what + " platform"),
            _get(p, "architecture", str, what + " platform"),
            _get(p, "variant", str, what + " platform", ""),
            _get(p, "os.version", str, what + " platform", ""),
        )
    urls = _get(obj, "urls", list, what, [])
    return Descriptor(
        media_type=_get(obj, "mediaType", str, what),
        digest=Digest.parse(_get(obj, "digest", str, what)),
        size=size,
        annotations=_str_map(obj, "annotations", what),
        platform=plat,
        urls=tuple(str(u) for u in urls),
    )


def detect_media_type(data: bytes, declared: str | None) -> str:
    """The media type of a manifest document.

    An OCI manifest may omit ``mediaType``; the body's shape then decides
    (``manifests`` → index, ``config`` → manifest), as containerd does.
    """
    obj = _load(data, "manifest")
    inner = obj.get("mediaType")
    if obj.get("schemaVersion") == 1 or inner in SCHEMA1_TYPES or declared in SCHEMA1_TYPES:
        raise FailedPrecondition(
            "unsupported manifest: Docker schema 1 is deprecated and not supported",
            hint="push the image again with a current docker or skopeo (schema 2 or OCI)",
        )
    if isinstance(inner, str) and inner:
        return inner
    if declared and declared.split(";")[0].strip() in (*MANIFEST_TYPES, *INDEX_TYPES):
        return declared.split(";")[0].strip()
    if "manifests" in obj:
        return OCI_INDEX
    if "config" in obj:
        return OCI_MANIFEST
    raise InvalidArgument("malformed manifest: cannot tell its media type")


def parse_manifest(data: bytes, media_type: str | None = None) -> Manifest:
    obj = _load(data, "manifest")
    mt = media_type or detect_media_type(data, None)
    if _get(obj, "schemaVersion", int, "manifest") != 2:
        raise InvalidArgument("malformed manifest: schemaVersion must be 2")
    layers = _get(obj, "layers", list, "manifest")
    return Manifest(
        media_type=mt,
        config=parse_descriptor(_get(obj, "config", dict, "manifest"), "manifest config"),
        layers=tuple(parse_descriptor(layer, f"manifest layer {i}") for i, layer in
                     enumerate(layers)),
        annotations=_str_map(obj, "annotations", "manifest"),
    )


def parse_index(data: bytes, media_type: str | None = None) -> Index:
    obj = _load(data, "index")
    mt = media_type or detect_media_type(data, None)
    if _get(obj, "schemaVersion", int, "index") != 2:
        raise InvalidArgument("malformed index: schemaVersion must be 2")
    manifests = _get(obj, "manifests", list, "index")
    return Index(
        media_type=mt,
        manifests=tuple(parse_descriptor(m, f"index entry {i}") for i, m in
                        enumerate(manifests)),
        annotations=_str_map(obj, "annotations", "index"),
    )


def parse_config(data: bytes) -> ImageConfig:
    obj = _load(data, "image config")
    what = "image config"
    rootfs = _get(obj, "rootfs", dict, what, {})
    diff_ids = _get(rootfs, "diff_ids", list, what + " rootfs", [])
    history = _get(obj, "history", list, what, [])
    return ImageConfig(
        architecture=_get(obj, "architecture", str, what, ""),
        os=_get(obj, "os", str, what, ""),
        variant=_get(obj, "variant", str, what, ""),
        diff_ids=tuple(Digest.parse(d) if isinstance(d, str) else _bad_diff_id() for d in
                       diff_ids),
        config=_get(obj, "config", dict, what, None) or {},
        created=_get(obj, "created", str, what, None),
        history=tuple(h for h in history if isinstance(h, dict)),
        raw=obj,
    )


def _bad_diff_id() -> Digest:
    raise InvalidArgument("malformed image config: diff_ids must be digest strings")


def select_platforms(index: Index, wanted: Platform | None) -> list[Descriptor]:
    """Manifests of ``index`` for ``wanted`` (all when None), best match first.

    Entries without a platform (attestations, nested indexes) are only
    returned for ``wanted=None``.  Ties keep index order, as containerd does.
    """
    if wanted is None:
        return list(index.manifests)
    hits = [d for d in index.manifests if d.platform and wanted.matches(d.platform)
            and d.platform.os != "unknown"]
    exact = [d for d in hits if d.platform and d.platform.normalized().variant ==
             wanted.normalized().variant]
    return exact + [d for d in hits if d not in exact]
