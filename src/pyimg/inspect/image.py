"""``pyimg inspect`` for images: typed results from the index, manifest and config only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pyimg.digest import Digest
from pyimg.inspect.content import ImageDocuments, ImageHandle, load_documents
from pyimg.inspect.select import Struct
from pyimg.oci import Descriptor, Platform


@dataclass(frozen=True)
class PlatformEntry:
    """One manifest of an index."""

    platform: str  # "" when the entry has none (attestations, nested indexes)
    digest: Digest
    media_type: str
    size: int


@dataclass(frozen=True)
class LayerEntry:
    index: int
    digest: Digest
    media_type: str
    size: int  # compressed bytes, as the manifest says
    diff_id: Digest | None  # from the config (None when it lists fewer)


@dataclass(frozen=True)
class HistoryEntry:
    created: str | None
    created_by: str
    comment: str
    author: str
    empty_layer: bool
    layer: int | None  # the layer this step produced (None for empty_layer steps)


@dataclass(frozen=True)
class RunConfig:
    """The image config's ``config`` object (what a container starts with)."""

    entrypoint: tuple[str, ...] | None
    cmd: tuple[str, ...] | None
    env: tuple[str, ...]
    working_dir: str
    user: str
    labels: Mapping[str, str]
    exposed_ports: tuple[str, ...]
    volumes: tuple[str, ...]
    stop_signal: str


@dataclass(frozen=True)
class ImageInfo:
    name: str
    source: str  # "store" or the source's label
    local: bool
    digest: Digest  # of the document the reference names (index or manifest)
    media_type: str
    platforms: tuple[PlatformEntry, ...]  # empty unless the reference names an index
    manifest: Descriptor  # the chosen platform's image manifest
    config_descriptor: Descriptor
    created: str | None
    author: str
    architecture: str
    os: str
    variant: str
    config: RunConfig
    layers: tuple[LayerEntry, ...]
    history: tuple[HistoryEntry, ...]
    raw_root: bytes
    raw_manifest: bytes
    raw_config: bytes

    @property
    def platform(self) -> Platform:
        return Platform(self.os, self.architecture, self.variant)

    @property
    def size(self) -> int:
        """Compressed bytes of the manifest, config and layers."""
        return self.manifest.size + self.config_descriptor.size + sum(x.size for x in
                                                                      self.layers)

    def to_json(self) -> Struct:
        """The JSON view (``--format json`` and the ``{{.Field}}`` selectors)."""
        c = self.config
        return Struct({
            "Name": self.name,
            "Source": self.source,
            "Local": self.local,
            "Digest": str(self.digest),
            "MediaType": self.media_type,
            "Platforms": [Struct({"Platform": p.platform, "Digest": str(p.digest),
                                  "MediaType": p.media_type, "Size": p.size})
                          for p in self.platforms],
            "ManifestDigest": str(self.manifest.digest),
            "ManifestMediaType": self.manifest.media_type,
            "ConfigDigest": str(self.config_descriptor.digest),
            "Created": self.created,
            "Author": self.author,
            "Architecture": self.architecture,
            "Os": self.os,
            "Variant": self.variant,
            "Platform": str(self.platform),
            "Size": self.size,
            "Config": Struct({
                "Entrypoint": list(c.entrypoint) if c.entrypoint is not None else None,
                "Cmd": list(c.cmd) if c.cmd is not None else None,
                "Env": list(c.env),
                "WorkingDir": c.working_dir,
                "User": c.user,
                "Labels": dict(c.labels),
                "ExposedPorts": list(c.exposed_ports),
                "Volumes": list(c.volumes),
                "StopSignal": c.stop_signal,
            }),
            "Labels": dict(c.labels),
            "Layers": [Struct({"Index": x.index, "Digest": str(x.digest),
                               "MediaType": x.media_type, "Size": x.size,
                               "DiffID": str(x.diff_id) if x.diff_id else None})
                       for x in self.layers],
            "History": [Struct({"Created": h.created, "CreatedBy": h.created_by,
                                "Comment": h.comment, "Author": h.author,
                                "EmptyLayer": h.empty_layer, "Layer": h.layer})
                        for h in self.history],
        })


def inspect_image(handle: ImageHandle, platform: Platform | None = None) -> ImageInfo:
    """Read the index (if any), the platform's manifest and its config; nothing else."""
    return image_info(handle, load_documents(handle, platform))


def image_info(handle: ImageHandle, docs: ImageDocuments) -> ImageInfo:
    cfg = docs.config
    raw_cfg = cfg.config
    diff_ids = cfg.diff_ids
    layers = tuple(LayerEntry(i, d.digest, d.media_type, d.size,
                              diff_ids[i] if i < len(diff_ids) else None)
                   for i, d in enumerate(docs.manifest.layers))
    platforms = tuple(PlatformEntry(str(m.platform) if m.platform else "", m.digest,
                                    m.media_type, m.size)
                      for m in docs.index.manifests) if docs.index else ()
    return ImageInfo(
        name=handle.name, source=handle.reader.label, local=handle.local,
        digest=docs.root.digest, media_type=docs.root.media_type, platforms=platforms,
        manifest=docs.manifest_desc, config_descriptor=docs.manifest.config,
        created=cfg.created, author=_str(cfg.raw.get("author")),
        architecture=cfg.architecture, os=cfg.os, variant=cfg.variant,
        config=RunConfig(
            entrypoint=_str_tuple(raw_cfg.get("Entrypoint")),
            cmd=_str_tuple(raw_cfg.get("Cmd")),
            env=_str_tuple(raw_cfg.get("Env")) or (),
            working_dir=_str(raw_cfg.get("WorkingDir")),
            user=_str(raw_cfg.get("User")),
            labels=_labels(raw_cfg.get("Labels")),
            exposed_ports=_keys(raw_cfg.get("ExposedPorts")),
            volumes=_keys(raw_cfg.get("Volumes")),
            stop_signal=_str(raw_cfg.get("StopSignal")),
        ),
        layers=layers, history=history_entries(cfg.history),
        raw_root=docs.root_bytes, raw_manifest=docs.manifest_bytes, raw_config=docs.config_bytes,
    )


def history_entries(history: tuple[Mapping[str, Any], ...]) -> tuple[HistoryEntry, ...]:
    """History steps; non-empty ones are numbered with the layer they produced, in order."""
    out = []
    layer = 0
    for h in history:
        empty = h.get("empty_layer") is True
        out.append(HistoryEntry(
            created=h["created"] if isinstance(h.get("created"), str) else None,
            created_by=_str(h.get("created_by")), comment=_str(h.get("comment")),
            author=_str(h.get("author")), empty_layer=empty,
            layer=None if empty else layer))
        if not empty:
            layer += 1
    return tuple(out)


def created_by_layer(history: tuple[HistoryEntry, ...]) -> dict[int, str]:
    """Layer index → the ``created_by`` of the step that produced it."""
    return {h.layer: h.created_by for h in history if h.layer is not None}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _str_tuple(value: Any) -> tuple[str, ...] | None:
    if not isinstance(value, list):
        return None
    return tuple(v for v in value if isinstance(v, str))


def _labels(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _keys(value: Any) -> tuple[str, ...]:
    return tuple(sorted(k for k in value if isinstance(k, str))) if isinstance(value,
                                                                            dict) else ()
