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

from enum import StrEnum

from pyimg.record import Record

# Import-light (a pull that unpacks imports this before its layers download, see
# docs/design.md): records, not dataclasses (~9 ms to import here).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyimg.digest import Digest


class WhiteoutMode(StrEnum):
    OVERLAY = "overlay"
    DELETE = "delete"


class Limits(Record):
    """Bounds against decompression bombs and hostile archives."""

    _fields = ("max_bytes", "max_entries", "max_path")
    __slots__ = _fields
    max_bytes: int  # uncompressed tar bytes per layer
    max_entries: int
    max_path: int

    def __init__(self, max_bytes: int = 64 << 30, max_entries: int = 5_000_000,
                 max_path: int = 4096) -> None:
        self._set(max_bytes, max_entries, max_path)


class ApplyResult(Record):
    _fields = ("diff_id", "size", "entries", "deferred", "dirs", "skipped_devices")
    __slots__ = _fields
    diff_id: Digest
    size: int  # uncompressed tar bytes
    entries: int
    #: (link path, target path), both relative to the root, for hardlinks
    #: whose target is not in this layer (OVERLAY mode without ``lowers``).
    deferred: list[tuple[str, str]]
    #: directories this layer created or changed (relative paths), for the
    #: parallel unpacker's check against symlinks in lower layers.
    dirs: list[str]
    skipped_devices: list[str]

    def __init__(self, diff_id: Digest, size: int, entries: int,
                 deferred: list[tuple[str, str]] | None = None, dirs: list[str] | None = None,
                 skipped_devices: list[str] | None = None) -> None:
        self._set(diff_id, size, entries, [] if deferred is None else deferred,
                  [] if dirs is None else dirs,
                  [] if skipped_devices is None else skipped_devices)
