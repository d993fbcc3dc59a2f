"""Applying layers: decompress, parse tar, write entries safely, whiteouts.

API (see :mod:`pyimg.archive.apply` for the implementation)::

    result = apply_layer(blob_file, "gzip", Path(upper), whiteouts=WhiteoutMode.OVERLAY)
    result.diff_id      # sha256 of the uncompressed tar, computed while extracting
    result.deferred     # hardlinks whose targets live in lower layers (overlay mode)

``WhiteoutMode.OVERLAY`` writes whiteouts as overlayfs expects them in an
upperdir (0/0 character devices, ``trusted.overlay.opaque=y``);
``WhiteoutMode.DELETE`` applies them as deletions to a full tree (native
snapshotter, ``unpack --dest``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from pyimg.digest import Digest


class WhiteoutMode(StrEnum):
    OVERLAY = "overlay"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds against decompression bombs and hostile archives."""

    max_bytes: int = 64 << 30  # uncompressed tar bytes per layer
    max_entries: int = 5_000_000
    max_path: int = 4096


@dataclass(slots=True)
class ApplyResult:
    diff_id: Digest
    size: int  # uncompressed tar bytes
    entries: int
    #: (link path, target path), both relative to the root, for hardlinks
    #: whose target is not in this layer (OVERLAY mode without ``lowers``).
    deferred: list[tuple[str, str]] = field(default_factory=list)
    #: directories this layer created or changed (relative paths), for the
    #: parallel unpacker's check against symlinks in lower layers.
    dirs: list[str] = field(default_factory=list)
    skipped_devices: list[str] = field(default_factory=list)
