"""Users and groups of an image: ``/etc/passwd`` and ``/etc/group`` read inside
the rootfs (never through a symlink out of it), as docker resolves ``--user``."""

from __future__ import annotations

import errno
import os
import re
import stat

from pyimg.errors import InvalidArgument
from pyimg.record import Record
from pyimg.runtime.inroot import fd_path, resolve

TYPE_CHECKING = False  # import-light: `pyimg run` (no dataclasses, pathlib)
if TYPE_CHECKING:
    from pyimg.fsutil import StrPath

MAX_ID = 2**32 - 2  # (uid_t)-1 is "no change" for the kernel
MAX_ETC_FILE = 16 * 1024 * 1024


# Reading files inside the rootfs -----------------------------------------------

def open_in_root(root: StrPath, path: str) -> int:
    """Open ``path`` read-only as seen from inside ``root`` (like ``chroot``).

    Resolution is :func:`pyimg.runtime.inroot.resolve`: nothing outside
    ``root`` is ever opened.  The final file must be a regular file.  Raises
    ``FileNotFoundError`` (or another ``OSError``) like ``open``.
    """
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        path_fd = resolve(root_fd, path)
    finally:
        os.close(root_fd)
    try:
        if stat.S_ISDIR(os.fstat(path_fd).st_mode):
            raise OSError(errno.EISDIR, "is a directory", path)
        fd = os.open(fd_path(path_fd), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    finally:
        os.close(path_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", path)
    return fd


def _read_etc(rootfs: StrPath, name: str) -> list[list[str]] | None:
    """The colon-separated lines of ``/etc/<name>`` in ``rootfs``; None if absent."""
    try:
        fd = open_in_root(rootfs, f"/etc/{name}")
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    except OSError as exc:
        raise InvalidArgument(f"cannot read /etc/{name} of the image: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_ETC_FILE + 1)
    if len(data) > MAX_ETC_FILE:
        raise InvalidArgument(f"/etc/{name} of the image is larger than 16 MiB")
    out = []
    for line in data.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line[0] in "+-":
            continue
        out.append(line.split(":"))
    return out


class _Passwd(Record):
    _fields = ("name", "uid", "gid", "home")
    __slots__ = _fields
    name: str
    uid: int
    gid: int
    home: str

    def __init__(self, name: str, uid: int, gid: int, home: str) -> None:
        self._set(name, uid, gid, home)


def _passwd(rootfs: StrPath) -> list[_Passwd] | None:
    rows = _read_etc(rootfs, "passwd")
    if rows is None:
        return None
    out = []
    for r in rows:
        if len(r) >= 4 and r[2].isdigit() and r[3].isdigit():
            out.append(_Passwd(r[0], int(r[2]), int(r[3]), r[5] if len(r) > 5 else ""))
    return out


def _groups(rootfs: StrPath) -> list[tuple[str, int, list[str]]] | None:
    rows = _read_etc(rootfs, "group")
    if rows is None:
        return None
    return [(r[0], int(r[2]), [m.strip() for m in r[3].split(",") if m.strip()]
             if len(r) > 3 else []) for r in rows if len(r) >= 3 and r[2].isdigit()]


def _numeric_id(text: str, what: str, spec: str) -> int | None:
    if not text.isdigit() or not text.isascii():
        return None
    value = int(text)
    if value > MAX_ID:
        raise InvalidArgument(f"invalid user {spec!r}: {what} {value} is out of range")
    return value


class ResolvedUser(Record):
    _fields = ("uid", "gid", "additional_gids", "home")
    __slots__ = _fields
    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    home: str | None

    def __init__(self, uid: int, gid: int, additional_gids: tuple[int, ...],
                 home: str | None) -> None:
        self._set(uid, gid, additional_gids, home)


_USER_PART = r"^[A-Za-z0-9_.][A-Za-z0-9_.@$-]*$"  # compiled on first use (re caches it)


def resolve_user(rootfs: StrPath, spec: str) -> ResolvedUser:
    """``uid[:gid]`` / ``name[:group]`` → ids, as runc's ``GetExecUser`` does.

    A numeric uid needs no passwd entry (gid then defaults to 0); a name must
    exist in the image's ``/etc/passwd``, a group name in ``/etc/group``.
    Supplementary groups are those listing the user's name as a member.
    """
    spec = spec.strip() if spec else ""
    if not spec:
        spec = "0"
    user_part, sep, group_part = spec.partition(":")
    checks = [(user_part, "user")] + ([(group_part, "group")] if sep else [])
    for part, what in checks:
        if not re.match(_USER_PART, part):
            raise InvalidArgument(
                f"invalid user {spec!r}: {what} {part!r} is not a valid name or id",
                hint="use uid[:gid] or name[:group], e.g. 1000:1000 or nobody",
            )
    passwd = _passwd(rootfs)
    uid = _numeric_id(user_part, "uid", spec)
    entry: _Passwd | None = None
    if uid is None:
        if passwd is None:
            raise InvalidArgument(f"unable to find user {user_part}: the image has no "
                                  "/etc/passwd", hint="use a numeric uid[:gid]")
        entry = next((p for p in passwd if p.name == user_part), None)
        if entry is None:
            raise InvalidArgument(f"unable to find user {user_part}: no matching entries in "
                                  "the image's /etc/passwd", hint="use a numeric uid[:gid]")
        uid = entry.uid
    elif passwd is not None:
        entry = next((p for p in passwd if p.uid == uid), None)
    gid = entry.gid if entry else 0
    groups = _groups(rootfs)
    if sep:
        num = _numeric_id(group_part, "gid", spec)
        if num is not None:
            gid = num
        else:
            match = next((g for g in groups or [] if g[0] == group_part), None)
            if match is None:
                raise InvalidArgument(f"unable to find group {group_part}: no matching "
                                      "entries in the image's /etc/group",
                                      hint="use a numeric gid")
            gid = match[1]
    extra: list[int] = []
    if entry is not None and groups:
        for _name, g, members in groups:
            if entry.name in members and g != gid and g not in extra:
                extra.append(g)
    return ResolvedUser(uid, gid, tuple(extra), entry.home if entry and entry.home else None)
