"""An OCI image layout directory as an :class:`ImageSource`.

The layout format is image-spec ``image-layout.md``: an ``oci-layout`` marker,
an ``index.json`` whose entries name images through the
``org.opencontainers.image.ref.name`` annotation, and ``blobs/<alg>/<hex>``.
The directory may come from anywhere, so every file is read with a size bound
and no blob path is ever built from anything but a validated digest.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from pyimg import reference
from pyimg.digest import Digest
from pyimg.errors import FailedPrecondition, InvalidArgument, NotFound, PyimgError
from pyimg.oci import INDEX_TYPES, MANIFEST_TYPES, MAX_MANIFEST_SIZE, Descriptor, parse_index
from pyimg.reference import Reference

REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_VERSION = "1.0.0"
CHUNK_SIZE = 1024 * 1024
#: The ``oci-layout`` marker is a one-line JSON object; anything big is not one.
_MAX_MARKER_SIZE = 64 * 1024
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_SEPARATOR = re.compile(r"^(?:[._]|__|-+)$")


class LayoutSource:
    """Images of one OCI layout directory, selected by ``ref.name`` tag."""

    def __init__(self, path: Path, tag: str | None = None) -> None:
        self._path = Path(path)
        self._tag = tag
        self._check_marker()
        self._index = parse_index(self._read_small("index.json", MAX_MANIFEST_SIZE))
        self._selected: Descriptor | None = None

    # ImageSource ----------------------------------------------------------

    @property
    def name(self) -> str:
        return f"oci:{self._path}"

    @property
    def image_name(self) -> Reference | None:
        ref_name = self.resolve().annotations.get(REF_NAME)
        full = _full_reference(ref_name) if ref_name else None
        if full is not None:
            return full
        tag = self._tag or (ref_name if ref_name and _TAG.match(ref_name) else None)
        repo = repository_name(Path(os.path.abspath(self._path)).name)
        return reference.parse(f"localhost/{repo}:{tag or reference.DEFAULT_TAG}")

    def resolve(self) -> Descriptor:
        if self._selected is None:
            self._selected = self._select()
        return self._selected

    def fetch(self, desc: Descriptor, offset: int = 0) -> AbstractContextManager[Iterator[bytes]]:
        return self._fetch(desc, offset)

    def close(self) -> None:
        # Blob files are opened per fetch and closed with it: nothing is held.
        pass

    def __enter__(self) -> LayoutSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Selection ------------------------------------------------------------

    @property
    def tags(self) -> list[str]:
        """The ``ref.name`` annotations of the index entries, in index order."""
        return [d.annotations[REF_NAME] for d in self._index.manifests if REF_NAME in d.annotations]

    def _select(self) -> Descriptor:
        entries = self._index.manifests
        if self._tag is not None:
            hits = [d for d in entries if d.annotations.get(REF_NAME) == self._tag]
            if not hits:
                available = ", ".join(self.tags) or "none"
                raise NotFound(
                    f"{self.name}: no image tagged {self._tag!r} (available tags: {available})"
                )
            # Like containers/image, the first match wins when names repeat.
            return _check_root(hits[0], self.name)
        if not entries:
            raise NotFound(f"{self.name}: the layout holds no images")
        if len(entries) > 1:
            raise InvalidArgument(
                f"layout has {len(entries)} images: name one with oci:{self._path}:TAG",
                hint=f"available tags: {', '.join(self.tags) or 'none'}",
            )
        return _check_root(entries[0], self.name)

    # Files ----------------------------------------------------------------

    def _check_marker(self) -> None:
        if not self._path.exists():
            raise NotFound(f"OCI layout {self._path} does not exist")
        if not self._path.is_dir():
            raise InvalidArgument(f"OCI layout {self._path} is not a directory")
        data = self._read_small("oci-layout", _MAX_MARKER_SIZE)
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"{self.name}: malformed oci-layout file ({exc})") from exc
        version = obj.get("imageLayoutVersion") if isinstance(obj, dict) else None
        if not isinstance(version, str):
            raise InvalidArgument(f"{self.name}: oci-layout lacks imageLayoutVersion")
        if version != LAYOUT_VERSION:
            raise FailedPrecondition(
                f"{self.name}: unsupported image layout version {version!r}",
                hint=f"only {LAYOUT_VERSION} is supported",
            )

    def _read_small(self, filename: str, limit: int) -> bytes:
        """A bounded read of a fixed top-level file (the names are ours, not input)."""
        path = os.path.join(self._path, filename)
        try:
            with _open_regular(path) as f:
                data = f.read(limit + 1)
        except FileNotFoundError as exc:
            raise NotFound(f"{self.name}: not an OCI layout, {filename} is missing") from exc
        except OSError as exc:
            raise InvalidArgument(f"{self.name}: cannot read {filename}: {exc.strerror}") from exc
        if len(data) > limit:
            raise InvalidArgument(f"{self.name}: {filename} is larger than {limit} bytes")
        return data

    def _blob_path(self, digest: Digest) -> str:
        # A Digest can be built without validation; re-parse so that only a
        # known algorithm and lowercase hex ever reach the path.
        safe = Digest.parse(str(digest))
        path = os.path.join(self._path, "blobs", safe.algorithm, safe.hex)
        root = os.path.realpath(self._path)
        real = os.path.realpath(path)
        if os.path.commonpath([root, real]) != root:
            raise InvalidArgument(
                f"{self.name}: blob {safe} is a link to {real}, outside the layout"
            )
        return real

    @contextmanager
    def _fetch(self, desc: Descriptor, offset: int) -> Iterator[Iterator[bytes]]:
        if offset < 0:
            raise InvalidArgument(f"{self.name}: negative offset {offset} for {desc.digest}")
        path = self._blob_path(desc.digest)
        try:
            f = _open_regular(path)
        except FileNotFoundError as exc:
            raise NotFound(
                f"blob {desc.digest} not found in OCI layout {self._path}"
            ) from exc
        except OSError as exc:
            raise InvalidArgument(
                f"{self.name}: cannot read blob {desc.digest}: {exc.strerror}"
            ) from exc
        with f:
            f.seek(offset)
            yield _chunks(f)


def _open_regular(path: str) -> BinaryIO:
    """Open ``path`` for reading, refusing directories, FIFOs and devices.

    A FIFO would block forever and a device could be endless; O_NONBLOCK
    keeps the open itself from hanging on a FIFO before fstat can refuse it.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _chunks(f: BinaryIO) -> Iterator[bytes]:
    while chunk := f.read(CHUNK_SIZE):
        yield chunk


def _check_root(desc: Descriptor, where: str) -> Descriptor:
    if desc.media_type not in (*INDEX_TYPES, *MANIFEST_TYPES):
        raise FailedPrecondition(
            f"{where}: index entry {desc.digest} has unsupported media type {desc.media_type!r}"
        )
    return desc


def _full_reference(text: str) -> Reference | None:
    """``text`` as a reference if it names its registry host, else None.

    ``ref.name`` is usually a bare tag (``v1``); only a name whose first
    component is a host (``example.com/foo:v1``) says where it came from.
    """
    first, sep, _ = text.partition("/")
    if not sep or not ("." in first or ":" in first or first == "localhost"):
        return None
    try:
        return reference.parse(text)
    except PyimgError:
        return None


def repository_name(text: str) -> str:
    """``text`` (a directory name) as one valid repository path component."""
    parts = re.split(r"([^a-z0-9]+)", text.lower())
    out = []
    for i, part in enumerate(parts):
        if i % 2 == 0:
            out.append(part)
        elif 0 < i < len(parts) - 1 and parts[i - 1] and parts[i + 1]:
            # Keep separators the grammar allows (``.``, ``_``, ``__``,
            # dashes) and turn anything else into a single dash.
            out.append(part if _SEPARATOR.match(part) else "-")
    return "".join(out) or "image"
