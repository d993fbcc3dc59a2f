"""A plain root filesystem tree (``unpack --dest``/``--bundle``): every layer in
order, whiteouts applied as deletions, as ``umoci unpack`` produces."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from pyimg import oci
from pyimg.archive import Limits, WhiteoutMode
from pyimg.content import LocalStore
from pyimg.errors import AlreadyExists, UnpackError
from pyimg.imageparts import ImageParts


def prepare_dest(dest: Path) -> None:
    """Create ``dest`` 0700 (setuid files inside must not be reachable by others,
    as umoci does); an existing non-empty directory is refused."""
    if dest.exists():
        if not dest.is_dir() or any(dest.iterdir()):
            raise AlreadyExists(f"unpack destination {dest}: exists and is not empty",
                                hint="choose a new directory")
        os.chmod(dest, 0o700)
    else:
        dest.mkdir(mode=0o700, parents=True)


def flatten(content: LocalStore, parts: ImageParts, rootfs: Path, *,
            limits: Limits | None = None, note: Callable[[str], None] | None = None) -> None:
    """Apply every layer of ``parts`` into ``rootfs``; removed again on failure."""
    from pyimg.archive.apply import apply_layer

    try:
        for i, layer in enumerate(parts.manifest.layers):
            with content.open(layer.digest) as blob:
                result = apply_layer(blob, oci.layer_compression(layer.media_type), rootfs,
                                     whiteouts=WhiteoutMode.DELETE, limits=limits or Limits(),
                                     verbose=note)
            if result.diff_id != parts.config.diff_ids[i]:
                raise UnpackError(f"layer {i} ({layer.digest}): diffID {result.diff_id} does"
                                  f" not match {parts.config.diff_ids[i]} in the image config",
                                  hint="the image is corrupt or was tampered with")
    except BaseException:
        shutil.rmtree(rootfs, ignore_errors=True)
        raise
