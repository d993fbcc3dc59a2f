"""Image sources: one protocol over a registry, an OCI layout directory and a
docker-archive tar, so pull, inspect and load share one code path.

Lifecycle::

    with open_source("oci:/tmp/layout:v1", ...) as src:
        root = src.resolve()                  # Descriptor of the index or manifest
        with src.fetch(root) as chunks:       # raw bytes, NOT verified here:
            data = b"".join(chunks)           # callers verify against the descriptor
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Protocol

from pyimg.oci import Descriptor
from pyimg.reference import Reference

Chunk = bytes | memoryview


class ImageSource(Protocol):
    @property
    def name(self) -> str:
        """A human label for messages: ``registry 127.0.0.1:5000``, ``oci:/path``."""
        ...

    @property
    def image_name(self) -> Reference | None:
        """The name the pulled image is stored under (None: digest only)."""
        ...

    def resolve(self) -> Descriptor:
        """The root descriptor (index or manifest) the source points at."""
        ...

    def fetch(self, desc: Descriptor, offset: int = 0) -> AbstractContextManager[Iterator[Chunk]]:
        """Stream the blob's bytes from ``offset``; unverified. NotFound if absent.

        A chunk is valid only until the next one is requested: sources may
        reuse one buffer (the registry does, to keep the hot loop copy-free).
        Copy a chunk to keep it.
        """
        ...

    def close(self) -> None: ...
