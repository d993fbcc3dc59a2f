"""Source specs in skopeo's transport syntax.

``oci:PATH[:TAG]``, ``docker-archive:PATH[:REF|:@N]``, ``docker://REF`` and a
plain ``REF`` (a registry).  Parsing is pure; :func:`open_file_source` opens
the two file-backed transports (registry sources are built with a resolver
and credentials elsewhere).

Differences from skopeo, on purpose: ``oci:`` splits on the *last* colon, and
only when what follows is a valid tag, so a layout path may contain colons
(``oci:/mnt/a:b/layout:v1``); skopeo splits on the first colon.
"""

from __future__ import annotations

from pyimg import reference
from pyimg.errors import InvalidArgument
from pyimg.record import Record

# Import-light (every pull parses its spec, see docs/design.md): no dataclasses or
# typing; re and pathlib for the file transports only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Literal

    from pyimg.reference import Reference
    from pyimg.sources import ImageSource

    Transport = Literal["registry", "oci", "docker-archive"]

_TAG = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
_INDEX = r"^@[0-9]+$"
#: skopeo transports pyimg does not read, named so the error is not "bad reference".
_UNSUPPORTED = ("oci-archive", "dir", "containers-storage", "docker-daemon", "ostree",
                "sif", "tarball")


class SourceSpec(Record):
    _fields = ("transport", "path", "tag", "reference", "index")
    __slots__ = _fields
    transport: Transport
    path: Path | None
    tag: str | None
    reference: Reference | None
    #: ``docker-archive:PATH:@N``: the N-th image of manifest.json.
    index: int | None

    def __init__(self, transport: Transport, path: Path | None, tag: str | None,
                 reference: Reference | None, index: int | None = None) -> None:
        self._set(transport, path, tag, reference, index)


def parse_source_spec(text: str) -> SourceSpec:
    """Parse a spec; InvalidArgument saying what is wrong otherwise."""
    if not text or text != text.strip():
        raise InvalidArgument(f"invalid image source {text!r}: empty or surrounded by spaces")
    if text.startswith("oci:"):
        return _parse_oci(text, text[len("oci:"):])
    if text.startswith("docker-archive:"):
        return _parse_docker_archive(text, text[len("docker-archive:"):])
    if text.startswith("docker://"):
        return _registry(text, text[len("docker://"):])
    prefix, sep, _ = text.partition(":")
    if sep and prefix in (*_UNSUPPORTED, "docker"):
        raise InvalidArgument(
            f"invalid image source {text!r}: unsupported transport {prefix!r}",
            hint="use oci:PATH[:TAG], docker-archive:PATH[:REF], docker://REF or REF",
        )
    return _registry(text, text)


def open_file_source(spec: SourceSpec) -> ImageSource:
    """The source of an ``oci`` or ``docker-archive`` spec."""
    if spec.path is None or spec.transport == "registry":
        raise InvalidArgument(
            f"{spec.transport} sources are not file-backed: open them with a registry resolver"
        )
    if spec.transport == "oci":
        from pyimg.sources.layout import LayoutSource  # each source imports only itself

        return LayoutSource(spec.path, spec.tag)
    from pyimg.sources.docker_archive import DockerArchiveSource  # imports tarfile

    if spec.index is not None:
        return DockerArchiveSource(spec.path, f"@{spec.index}")
    return DockerArchiveSource(spec.path, str(spec.reference) if spec.reference else None)


def _parse_oci(text: str, rest: str) -> SourceSpec:
    import re
    from pathlib import Path

    path, tag = rest, None
    head, sep, tail = rest.rpartition(":")
    if sep and re.match(_TAG, tail):
        path, tag = head, tail
    elif sep and not tail:
        raise InvalidArgument(f"invalid image source {text!r}: empty tag after the last ':'")
    if not path:
        raise InvalidArgument(f"invalid image source {text!r}: missing layout path")
    return SourceSpec("oci", Path(path), tag, None)


def _parse_docker_archive(text: str, rest: str) -> SourceSpec:
    import re
    from pathlib import Path

    # The path ends at the first colon: a reference may contain colons
    # (``busybox:latest``, ``host:5000/x:v1``), a path is taken to not.
    path, sep, ref = rest.partition(":")
    if not path:
        raise InvalidArgument(f"invalid image source {text!r}: missing archive path")
    if not sep:
        return SourceSpec("docker-archive", Path(path), None, None)
    if not ref:
        raise InvalidArgument(f"invalid image source {text!r}: empty reference after ':'")
    if re.match(_INDEX, ref):
        return SourceSpec("docker-archive", Path(path), None, None, index=int(ref[1:]))
    if ref.startswith("@"):
        raise InvalidArgument(f"invalid image source {text!r}: expected @N with N a number")
    parsed = _reference(text, ref)
    if parsed.digest is not None:
        raise InvalidArgument(
            f"invalid image source {text!r}: docker-archive references cannot contain a digest"
        )
    return SourceSpec("docker-archive", Path(path), None, parsed)


def _registry(text: str, ref: str) -> SourceSpec:
    return SourceSpec("registry", None, None, _reference(text, ref))


def _reference(text: str, ref: str) -> Reference:
    try:
        return reference.parse(ref)
    except InvalidArgument as exc:
        raise InvalidArgument(f"invalid image source {text!r}: {exc.message}") from exc
