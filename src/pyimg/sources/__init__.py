"""Image sources: one protocol over a registry, an OCI layout directory and a
docker-archive tar, so pull, inspect and load share one code path.

Lifecycle::

    with open_source("oci:/tmp/layout:v1", ...) as src:
        root = src.resolve()                  # Descriptor of the index or manifest
        with src.fetch(root) as chunks:       # raw bytes, NOT verified here:
            data = b"".join(chunks)           # callers verify against the descriptor
"""

from __future__ import annotations

TYPE_CHECKING = False  # import-light: the protocol (typing) is loaded on first use
if TYPE_CHECKING:
    from pyimg.sources.protocol import ImageSource as ImageSource

Chunk = bytes | memoryview


def __getattr__(name: str) -> object:
    if name == "ImageSource":
        from pyimg.sources.protocol import ImageSource

        return ImageSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
