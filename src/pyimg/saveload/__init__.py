"""``pyimg save`` and ``pyimg load``: images out of and into the store as files.

Save writes an OCI image layout (a directory, or a tar of one) or a
``docker save`` archive.  Output is built under ``PATH.tmp-*`` and renamed
into place, so ``PATH`` is either absent or complete.  Blobs are copied with
``os.sendfile``; docker-archive layers are decompressed while they stream
into the tar (docker-archive layers are plain tars named by their diffID).

Load is a pull from the file: every index entry of a layout, every image of
``manifest.json``, through the same sources and verification as ``pyimg pull``.
A tar is never extracted; members are looked up by name only.
"""

from __future__ import annotations

from pyimg.saveload.common import Format
from pyimg.saveload.load import Loaded, load
from pyimg.saveload.save import Saved, save

__all__ = ["Format", "Loaded", "Saved", "load", "save"]
