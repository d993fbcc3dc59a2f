"""Performing snapshotter :class:`~pyimg.snapshotters.Mount` descriptions.

Snapshotters only *describe* mounts; this module turns a description into
mount(2) calls, as containerd's ``core/mount`` does::

    with mounted(sn.prepare(key, parent), parent=scratch_dir) as rootfs:
        ...                                  # rootfs is a temp dir, mounted
    # unmounted and removed here, even on error

Options are split the way mount(8) splits them: words that are mount flags
(``ro``, ``nosuid``, ``bind``...) become flags, everything else
(``lowerdir=...``, ``upperdir=...``) is the filesystem's data string.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
from _thread import allocate_lock  # threading's Lock: `pyimg run` needs no threading

from pyimg import linux
from pyimg.errors import InvalidArgument

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from pyimg.snapshotters import Mount

# option -> (flags to clear, flags to set), as mount(8) reads them; later words win
FLAGS: dict[str, tuple[int, int]] = {
    "defaults": (0, 0),
    "ro": (0, linux.MS_RDONLY), "rw": (linux.MS_RDONLY, 0),
    "nosuid": (0, linux.MS_NOSUID), "suid": (linux.MS_NOSUID, 0),
    "nodev": (0, linux.MS_NODEV), "dev": (linux.MS_NODEV, 0),
    "noexec": (0, linux.MS_NOEXEC), "exec": (linux.MS_NOEXEC, 0),
    "sync": (0, linux.MS_SYNCHRONOUS), "async": (linux.MS_SYNCHRONOUS, 0),
    "dirsync": (0, linux.MS_DIRSYNC), "remount": (0, linux.MS_REMOUNT),
    "mand": (0, linux.MS_MANDLOCK), "nomand": (linux.MS_MANDLOCK, 0),
    "noatime": (0, linux.MS_NOATIME), "atime": (linux.MS_NOATIME, 0),
    "nodiratime": (0, linux.MS_NODIRATIME), "diratime": (linux.MS_NODIRATIME, 0),
    "relatime": (0, linux.MS_RELATIME), "norelatime": (linux.MS_RELATIME, 0),
    "strictatime": (0, linux.MS_STRICTATIME), "nostrictatime": (linux.MS_STRICTATIME, 0),
    "bind": (0, linux.MS_BIND), "rbind": (0, linux.MS_BIND | linux.MS_REC),
}
#: propagation words (an OCI spec's mounts and rootfsPropagation)
PROPAGATION: dict[str, int] = {
    "private": linux.MS_PRIVATE, "rprivate": linux.MS_PRIVATE | linux.MS_REC,
    "shared": linux.MS_SHARED, "rshared": linux.MS_SHARED | linux.MS_REC,
    "slave": linux.MS_SLAVE, "rslave": linux.MS_SLAVE | linux.MS_REC,
    "unbindable": linux.MS_UNBINDABLE, "runbindable": linux.MS_UNBINDABLE | linux.MS_REC,
}
# Per-mount-point flags a bind mount only takes from a second, remount call.
_BIND_REMOUNT = (linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC
                 | linux.MS_NOATIME | linux.MS_NODIRATIME | linux.MS_RELATIME
                 | linux.MS_STRICTATIME)

# The kernel copies at most one page of mount data (copy_mount_options), and
# overlay needs the terminating NUL inside it.  containerd keeps a margin too.
_PAGE = resource.getpagesize()
_DATA_LIMIT = _PAGE - 512

_CWD_LOCK = allocate_lock()


def split_options(options: Sequence[str], *, propagation: bool = True
                  ) -> tuple[int, int, str]:
    """Mount options as (mount(2) flags, propagation flags, the data string);
    without ``propagation`` its words stay in the data."""
    flags = prop = 0
    data: list[str] = []
    for opt in options:
        if opt in FLAGS:
            clear, set_ = FLAGS[opt]
            flags = (flags & ~clear) | set_
        elif propagation and opt in PROPAGATION:
            prop |= PROPAGATION[opt]
        else:
            data.append(opt)
    return flags, prop, ",".join(data)


def parse_options(options: Sequence[str]) -> tuple[int, str]:
    """Split a snapshot mount's options into mount(2) flags and the data string."""
    flags, _, data = split_options(options, propagation=False)
    return flags, data


def mount_all(mounts: Sequence[Mount], target: str | os.PathLike[str]) -> None:
    """Mount every description on ``target``, in order; all or nothing."""
    done = 0
    try:
        for m in mounts:
            _mount_one(m, os.fspath(target))
            done += 1
    except BaseException:
        for _ in range(done):
            with contextlib.suppress(OSError):
                linux.umount(target, linux.MNT_DETACH)
        raise


def _mount_one(m: Mount, target: str) -> None:
    flags, data = parse_options(m.options)
    if m.type == "bind" or flags & linux.MS_BIND:
        _bind(m.source, target, flags)
    elif m.type == "overlay":
        _overlay(m.source, target, flags, data)
    else:
        linux.mount(m.source, target, m.type, flags, data or None)


def _bind(source: str, target: str, flags: int) -> None:
    flags |= linux.MS_BIND
    linux.mount(source, target, None, flags & ~_BIND_REMOUNT)
    extra = flags & _BIND_REMOUNT
    if extra:
        # A bind mount ignores MS_RDONLY and friends: they need a remount.
        try:
            linux.mount(None, target, None, linux.MS_REMOUNT | linux.MS_BIND | extra)
        except BaseException:
            linux.umount(target, linux.MNT_DETACH)
            raise


def _overlay(source: str, target: str, flags: int, data: str) -> None:
    if len(data.encode()) < _DATA_LIMIT:
        linux.mount(source, target, "overlay", flags, data)
        return
    compact, cwd = compact_lowerdir(data)
    if len(compact.encode()) >= _PAGE:
        raise InvalidArgument(
            f"mount overlay on {target}: options are {len(compact)} bytes even with"
            f" relative lowerdirs, over the {_PAGE}-byte page limit",
            hint="use fewer layers",
        )
    # NOTE: the working directory is process-wide, so this is only safe while
    # no other thread resolves relative paths.  pyimg's CLI mounts from one
    # thread; the lock keeps two of our own mounts from racing, and the old
    # cwd comes back through an fd, even if its path has changed meanwhile.
    # containerd does the same (compactLowerdirOption) in a forked child.
    with _CWD_LOCK:
        saved = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.chdir(cwd)
            linux.mount(source, target, "overlay", flags, compact)
        finally:
            try:
                os.fchdir(saved)
            finally:
                os.close(saved)


def compact_lowerdir(data: str) -> tuple[str, str]:
    """Rewrite ``lowerdir=`` relative to the layers' common parent directory.

    Returns the new data string and the directory to mount from.  ``upperdir``
    and ``workdir`` stay absolute (the target path must be absolute too).
    """
    opts = data.split(",")
    idx = next((i for i, o in enumerate(opts) if o.startswith("lowerdir=")), None)
    if idx is None:
        return data, "/"
    lowers = opts[idx].removeprefix("lowerdir=").split(":")
    common = os.path.commonpath(lowers) if len(lowers) > 1 else os.path.dirname(lowers[0])
    if not os.path.isabs(common) or common == "/":
        return data, "/"
    opts[idx] = "lowerdir=" + ":".join(os.path.relpath(p, common) for p in lowers)
    return ",".join(opts), common


def unmount(target: str | os.PathLike[str], *, detach: bool = False) -> None:
    """Unmount everything stacked on ``target``; not mounted is not an error."""
    flags = linux.MNT_DETACH if detach else 0
    while True:
        try:
            linux.umount(target, flags | linux.UMOUNT_NOFOLLOW)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):
                return  # nothing (more) mounted there
            raise


@contextlib.contextmanager
def mounted(mounts: Sequence[Mount],
            parent: str | os.PathLike[str] | None = None) -> Iterator[str]:
    """Mount on a fresh temp dir under ``parent``; unmount and remove it on exit."""
    import tempfile

    target = tempfile.mkdtemp(prefix="pyimg-mount-", dir=parent)
    try:
        mount_all(mounts, target)
        try:
            yield target
        finally:
            try:
                unmount(target)
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                # Something still holds a file open inside: detach lazily so
                # the directory can go; the kernel frees it when released.
                unmount(target, detach=True)
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(target)


def mount_points_under(path: str | os.PathLike[str]) -> list[str]:
    """Mount points at or below ``path`` in this mount namespace."""
    root = os.path.realpath(path)
    found: list[str] = []
    with open("/proc/self/mountinfo") as f:
        mountinfo = f.read()
    for line in mountinfo.splitlines():
        point = unescape_mountinfo(line.split()[4])
        if point == root or point.startswith(root.rstrip("/") + "/"):
            found.append(point)
    return found


def unescape_mountinfo(field: str) -> str:
    """A /proc/self/mountinfo field: space, tab, newline and backslash are octal (\\040...)."""
    if "\\" not in field:
        return field
    out = bytearray()
    raw = os.fsencode(field)
    i = 0
    while i < len(raw):
        if raw[i] == 0x5C and i + 4 <= len(raw) and raw[i + 1:i + 4].isdigit():
            out.append(int(raw[i + 1:i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return os.fsdecode(bytes(out))
