"""The :class:`ImageSource` protocol (see :mod:`pyimg.sources`); its own module
because ``typing`` costs ~3 ms to import here and a pull needs only the sources."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from pyimg.sources import Chunk

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from pyimg.oci import Descriptor
    from pyimg.reference import Reference


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
