"""Looking into the lower layers of an overlay chain, without following links.

Lower layer directories hold what earlier (possibly hostile) layers wrote,
so every lookup walks component by component with ``O_NOFOLLOW``: a
symlink in a lower layer is reported, never traversed.  Whiteouts (0/0
character devices) end a lookup: the path was deleted at that layer; an
opaque directory (``trusted.overlay.opaque=y``) hides everything below it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from pyimg.errors import UnpackError

_OPAQUE = "trusted.overlay.opaque"


def _lookup(layer: Path, rel: str) -> tuple[str, os.stat_result | None]:
    """('found'|'absent'|'deleted'|'opaque'|'symlink', stat) of ``rel`` in one layer dir."""
    parts = [p for p in rel.split("/") if p and p != "."]
    fd = os.open(layer, os.O_PATH | os.O_DIRECTORY)
    try:
        for n, part in enumerate(parts):
            try:
                st = os.stat(part, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return "absent", None
            except NotADirectoryError:
                return "absent", None
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                return "deleted", None
            if stat.S_ISLNK(st.st_mode):
                return "symlink", st
            if n == len(parts) - 1:
                return "found", st
            if not stat.S_ISDIR(st.st_mode):
                return "absent", None
            nfd = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
            if _is_opaque(fd):
                return "opaque", None
        return "found", os.stat(fd)
    finally:
        os.close(fd)


def _is_opaque(fd: int) -> bool:
    try:
        return os.getxattr(f"/proc/self/fd/{fd}", _OPAQUE) == b"y"
    except OSError:
        return False


def symlink_conflicts(dirs: Iterable[str], lowers: Sequence[Path]) -> list[str]:
    """Directories of an upper layer that the lower chain shows as symlinks.

    Overlay would let the upper directory hide the symlink, whereas a
    sequential unpack writes through it: those layers must be re-applied.
    """
    conflicts = []
    for rel in sorted(set(dirs)):
        if not rel.strip("/."):
            continue
        for layer in lowers:
            state, _ = _lookup(layer, rel)
            if state == "symlink":
                conflicts.append(rel)
                break
            if state != "absent":
                break
    return conflicts


def copy_up_hardlinks(upper: Path, lowers: Sequence[Path],
                      links: Iterable[tuple[str, str]]) -> None:
    """Materialise hardlinks to lower-layer files as copies in ``upper``.

    Overlay cannot link across layers; a copy is what the merged view must
    show (containerd does the same when applying onto an upperdir).
    """
    for link, target in links:
        source = _find_file(lowers, target)
        if source is None:
            raise UnpackError(f"hardlink {link} -> {target}: target not found in this layer"
                              " or the layers below it")
        dest = _safe_dest(upper, link)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(dest)
        shutil.copy2(source, dest, follow_symlinks=False)
        st = os.stat(source, follow_symlinks=False)
        os.chown(dest, st.st_uid, st.st_gid, follow_symlinks=False)
        os.chmod(dest, stat.S_IMODE(st.st_mode))


def _find_file(lowers: Sequence[Path], rel: str) -> Path | None:
    for layer in lowers:
        state, st = _lookup(layer, rel)
        if state == "found" and st is not None and stat.S_ISREG(st.st_mode):
            return layer / rel.lstrip("/")
        if state != "absent":
            return None  # deleted, hidden or not a regular file at the nearest layer
    return None


def _safe_dest(upper: Path, rel: str) -> Path:
    """``upper/rel`` after checking that no component of it is a symlink."""
    parts = [p for p in rel.split("/") if p and p != "."]
    if not parts or ".." in parts:
        raise UnpackError(f"hardlink {rel}: unsafe path")
    current = upper
    for part in parts[:-1]:
        current = current / part
        if current.is_symlink():
            raise UnpackError(f"hardlink {rel}: parent {part} is a symlink")
        current.mkdir(mode=0o755, exist_ok=True)
    return current / parts[-1]
