"""Where inspection reads an image from: the local store, or a source without storing.

:func:`open_image` turns a user's ``REF`` into an :class:`ImageHandle`:

* ``oci:PATH[:TAG]``, ``docker-archive:PATH[:REF]`` and ``docker://REF``
  are always read from the source;
* a plain ``REF`` (name or digest prefix) is read from the store when an
  image of that name is stored there, else from the registry.

Either way a :class:`ContentReader` gives verified small documents
(:meth:`~ContentReader.document`, size-bounded) and layer blobs as forward
streams (:meth:`~ContentReader.open_blob`).  A source reader never writes to
the store: inspecting a remote image fetches only what is asked for.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from pyimg import oci
from pyimg.digest import Verifier
from pyimg.errors import IntegrityError, InvalidArgument, NotFound
from pyimg.oci import Descriptor, Platform

if TYPE_CHECKING:
    from pyimg.content import LocalStore
    from pyimg.settings import Settings
    from pyimg.sources import Chunk, ImageSource


class BlobStream(Protocol):
    def read(self, n: int) -> bytes: ...


class ContentReader(Protocol):
    """Verified documents and streamed blobs of one image."""

    @property
    def label(self) -> str:
        """Where the content comes from, for messages: ``store``, ``registry HOST``..."""
        ...

    def document(self, desc: Descriptor, limit: int) -> bytes:
        """The whole blob, verified against ``desc``; refused when over ``limit`` bytes."""
        ...

    def open_blob(self, desc: Descriptor) -> AbstractContextManager[BlobStream]:
        """A forward stream of the blob's bytes.

        From a source, the digest and size are checked when the stream is
        read to its end (a reader that stops early has checked nothing: the
        bytes it used came unverified).  Store blobs were verified when they
        were committed.
        """
        ...


def _check_limit(desc: Descriptor, limit: int) -> None:
    if desc.size > limit:
        raise InvalidArgument(f"{desc.digest}: {desc.size} bytes is over the {limit >> 20} MiB"
                              f" limit for {desc.media_type}")


class StoreReader:
    """Content of the local store (never fetches)."""

    label = "store"

    def __init__(self, store: LocalStore) -> None:
        self.store = store

    def document(self, desc: Descriptor, limit: int) -> bytes:
        _check_limit(desc, limit)
        if not self.store.exists(desc.digest):
            raise NotFound(f"{desc.media_type} {desc.digest}: not in the store",
                           hint="pull the image (or this platform of it) again")
        return self.store.read(desc)

    @contextmanager
    def open_blob(self, desc: Descriptor) -> Iterator[BlobStream]:
        if not self.store.exists(desc.digest):
            raise NotFound(f"layer {desc.digest}: not in the store", hint="pull the image again")
        with self.store.open(desc.digest) as f:
            yield f


class _ChunkStream:
    """``read(n)`` over a source's chunk iterator; verifies at the end.

    Chunks may be views of a buffer the source reuses, so what is kept is
    copied.  At most one chunk is held.  A failed check is also kept in
    ``error``: decompressors wrap what their input raises, and the caller
    wants the :class:`IntegrityError` back.
    """

    def __init__(self, chunks: Iterator[Chunk], desc: Descriptor) -> None:
        self._chunks = chunks
        self._verifier = Verifier(desc.digest, desc.size)
        self._buf = b""
        self._off = 0
        self._done = False
        self.error: IntegrityError | None = None

    def read(self, n: int = -1) -> bytes:
        if self._off >= len(self._buf):
            if self._done:
                return b""
            chunk = next(self._chunks, None)
            try:
                if chunk is None:
                    self._done = True
                    self._verifier.verify()
                    return b""
                self._verifier.update(chunk)
            except IntegrityError as exc:
                self.error = exc
                raise
            self._buf, self._off = bytes(chunk), 0
        if n is None or n < 0:
            n = len(self._buf) - self._off
        out = self._buf[self._off:self._off + n]
        self._off += len(out)
        return out


class SourceReader:
    """Content of an :class:`ImageSource`, fetched on demand and never stored.

    ``fetched`` lists every descriptor asked for, in order (tests and
    ``--debug`` use it to show what an inspection cost).
    """

    def __init__(self, source: ImageSource) -> None:
        self.source = source
        self.fetched: list[Descriptor] = []

    @property
    def label(self) -> str:
        return self.source.name

    def document(self, desc: Descriptor, limit: int) -> bytes:
        _check_limit(desc, limit)
        self.fetched.append(desc)
        verifier = Verifier(desc.digest, desc.size)
        buf = bytearray()  # += copies: sources may reuse their chunk buffer
        with self.source.fetch(desc) as chunks:
            for chunk in chunks:
                verifier.update(chunk)  # refuses bytes beyond desc.size as they come
                buf += chunk
        verifier.verify()
        return bytes(buf)

    @contextmanager
    def open_blob(self, desc: Descriptor) -> Iterator[BlobStream]:
        self.fetched.append(desc)
        with self.source.fetch(desc) as chunks:
            yield _ChunkStream(iter(chunks), desc)


@dataclass
class ImageHandle:
    """An opened image: its root descriptor and where its content comes from."""

    name: str
    root: Descriptor
    reader: ContentReader
    local: bool
    _source: ImageSource | None = field(default=None, repr=False)

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None

    def __enter__(self) -> ImageHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_FILE_TRANSPORTS = ("oci:", "docker-archive:")


def open_image(settings: Settings, text: str, *, remote: bool | None = None) -> ImageHandle:
    """Open ``text`` for inspection.

    ``remote=None``: a stored image of that name first, then the registry;
    ``True``: never the store; ``False``: only the store.  File transports
    (``oci:``, ``docker-archive:``) and ``docker://`` are always remote.
    """
    always_remote = text.startswith((*_FILE_TRANSPORTS, "docker://"))
    if remote is False and always_remote:
        raise InvalidArgument(f"{text}: not a stored image name")
    if not always_remote and remote is not True:
        handle = _open_local(settings.root, text)
        if handle is not None:
            return handle
        if remote is False:
            raise NotFound(f"no such image in the store: {text}")
    from pyimg.api import open_source

    source = open_source(text, settings)
    try:
        root = source.resolve()
        name = str(source.image_name) if source.image_name else text
        return ImageHandle(name, root, SourceReader(source), False, source)
    except BaseException:
        source.close()
        raise


def _open_local(root: Path, text: str) -> ImageHandle | None:
    # Never create a store just to look into it.
    if not (root / "metadata.db").is_file():
        return None
    from pyimg.api import Store, resolve_local

    with Store(root) as store:
        try:
            rec = resolve_local(store, text)
        except NotFound:
            return None
        except InvalidArgument:
            if text.startswith("sha256:"):
                raise
            return None  # not a docker name: let the source parser say why
        return ImageHandle(rec.name, rec.target, StoreReader(store.content), True)


# Walking index → manifest ------------------------------------------------


@dataclass(frozen=True)
class ImageDocuments:
    """The documents of one platform's image, verified, with their raw bytes."""

    root: Descriptor
    root_bytes: bytes
    index: oci.Index | None  # when ``root`` is an index (the outermost one)
    manifest_desc: Descriptor
    manifest_bytes: bytes
    manifest: oci.Manifest
    config_bytes: bytes
    config: oci.ImageConfig


def load_documents(handle: ImageHandle, platform: Platform | None = None) -> ImageDocuments:
    """Root, manifest and config for ``platform`` (the host's by default).

    Reads nothing but those documents (plus nested indexes on the way).
    """
    reader = handle.reader
    root = handle.root
    root_bytes = reader.document(root, oci.MAX_MANIFEST_SIZE)
    desc, data = root, root_bytes
    outer: oci.Index | None = None
    for _ in range(8):  # nested indexes, bounded
        if oci.is_manifest(desc.media_type):
            manifest = oci.parse_manifest(data, desc.media_type)
            config_bytes = reader.document(manifest.config, oci.MAX_CONFIG_SIZE)
            return ImageDocuments(root, root_bytes, outer, desc, data, manifest, config_bytes,
                                  oci.parse_config(config_bytes))
        if not oci.is_index(desc.media_type):
            raise InvalidArgument(f"{handle.name}: unsupported media type {desc.media_type!r}")
        index = oci.parse_index(data, desc.media_type)
        outer = outer or index
        desc = choose_manifest(handle, index, platform)
        data = reader.document(desc, oci.MAX_MANIFEST_SIZE)
    raise InvalidArgument(f"{handle.name}: indexes nested too deeply")


def choose_manifest(handle: ImageHandle, index: oci.Index,
                    platform: Platform | None) -> Descriptor:
    usable = [m for m in index.manifests if oci.is_manifest(m.media_type) or
              oci.is_index(m.media_type)]
    wanted = platform or Platform.host()
    chosen = oci.select_platforms(oci.Index(index.media_type, tuple(usable)), wanted)
    if handle.local:
        store = handle.reader
        assert isinstance(store, StoreReader)
        present = [m for m in chosen if store.store.exists(m.digest)]
        if not present and platform is None:
            # pulled for another platform only: that one is the image here
            present = [m for m in usable if m.platform and m.platform.os != "unknown"
                       and store.store.exists(m.digest)][:1]
        if present:
            return present[0]
        if chosen:
            raise NotFound(f"{handle.name}: the {wanted} image is not in the store",
                           hint=f"pull it with --platform {wanted}")
    elif chosen:
        return chosen[0]
    available = ", ".join(sorted({str(m.platform) for m in usable if m.platform})) or "none"
    raise NotFound(f"{handle.name}: no image for platform {wanted} in the index"
                   f" (available: {available})", hint="choose one with --platform")
