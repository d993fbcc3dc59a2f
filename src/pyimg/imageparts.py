"""An image's parts in the store: its manifests, the one for a platform, its config,
its chain IDs (image-spec config.md#layer-chainid).

Import-light (no unpack machinery): `pyimg run` reads these before deciding
whether anything must be unpacked.
"""

from __future__ import annotations

from pyimg import oci
from pyimg.digest import Digest
from pyimg.errors import FailedPrecondition, NotFound
from pyimg.oci import Descriptor, Platform
from pyimg.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from pyimg.content import LocalStore


def chain_ids(diff_ids: Sequence[Digest]) -> list[Digest]:
    """ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[Digest] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append(Digest.of(f"{out[-1]} {diff_id}".encode()))
    return out


class ImageParts(Record):
    _fields = ("manifest_desc", "manifest", "config")
    __slots__ = _fields
    manifest_desc: Descriptor
    manifest: oci.Manifest
    config: oci.ImageConfig

    def __init__(self, manifest_desc: Descriptor, manifest: oci.Manifest,
                 config: oci.ImageConfig) -> None:
        self._set(manifest_desc, manifest, config)

    @property
    def chain(self) -> list[Digest]:
        return chain_ids(self.config.diff_ids)

    def check(self) -> None:
        if len(self.manifest.layers) != len(self.config.diff_ids):
            raise FailedPrecondition(
                f"image {self.manifest_desc.digest}: {len(self.manifest.layers)} layers but"
                f" {len(self.config.diff_ids)} diff_ids in its config")


def image_parts(store: LocalStore, target: Descriptor, platform: Platform | None = None
                ) -> ImageParts:
    """The manifest and config of ``target`` for ``platform`` (host default) from the store."""
    wanted = platform or Platform.host()
    candidates = list(present_manifests(store, target))
    if not candidates:
        raise NotFound(f"image {target.digest}: no manifest in the store",
                       hint="pull the image again")
    for desc, manifest in candidates:
        if desc.platform is None or wanted.matches(desc.platform):
            config = oci.parse_config(store.read(manifest.config))
            if desc.platform is not None or wanted.matches(config.platform) or len(
                    candidates) == 1:
                parts = ImageParts(desc, manifest, config)
                parts.check()
                return parts
    available = ", ".join(sorted({str(d.platform) for d, _ in candidates if d.platform}))
    raise NotFound(f"image {target.digest}: no manifest for {wanted} in the store"
                   f" (present: {available or 'none'})",
                   hint=f"pull it with --platform {wanted}")


def present_manifests(store: LocalStore, target: Descriptor
                      ) -> Iterator[tuple[Descriptor, oci.Manifest]]:
    """Manifests under ``target`` (an index or a manifest) whose documents are stored."""
    if not store.exists(target.digest):
        return
    data = store.read(target)
    if oci.is_manifest(target.media_type):
        yield target, oci.parse_manifest(data, target.media_type)
    elif oci.is_index(target.media_type):
        for child in oci.parse_index(data, target.media_type).manifests:
            if oci.is_manifest(child.media_type) or oci.is_index(child.media_type):
                yield from present_manifests(store, child)
