"""The container's root filesystem, set up by stage 2 (runc's ``rootfs_linux.go``).

Everything before ``pivot_root`` resolves paths *inside* the rootfs by file
descriptor (:func:`resolve`): a symlink in the image is followed as if the
rootfs were ``/`` and ``..`` stops at it, and the mount targets the resolved
``O_PATH`` descriptor through ``/proc/self/fd/N``, so swapping a path
component for a symlink between the check and the mount gains nothing (the
CVE-2021-30465 class).  After ``pivot_root`` the kernel confines every lookup
to the new root, so masked and read-only paths use plain paths, as runc does.
"""

from __future__ import annotations

import _socket  # socket.py costs ~3 ms to import; the C module is enough here
import contextlib
import os
import stat

from pyimg import linux
from pyimg.mount import split_options, unescape_mountinfo
from pyimg.runtime.inroot import fd_path as fd_path
from pyimg.runtime.inroot import resolve as resolve

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from typing import Any

#: runc's default devices, in runc's order (visible as bind mounts in a user
#: namespace): name → (major, minor)
DEFAULT_DEVICES: dict[str, tuple[int, int]] = {
    "null": (1, 3), "random": (1, 8), "full": (1, 7), "tty": (5, 0), "zero": (1, 5),
    "urandom": (1, 9),
}
DEV_SYMLINKS: tuple[tuple[str, str], ...] = (
    ("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"), ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"), ("/proc/kcore", "core"),
)


def make_parent_private(path: str) -> None:
    """Make the mount holding ``path`` private if it is shared (runc's
    ``rootfsParentMountPrivate``): pivot_root refuses a new root whose parent
    mount is shared, and the rootfs bind must not propagate to other namespaces."""
    best, shared = "", False
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split(b" - ", 1)[0].split()
            point = unescape_mountinfo(os.fsdecode(fields[4]))
            inside = path == point or path.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best):  # the last of equal ones is on top
                best, shared = point, any(o.startswith(b"shared:") for o in fields[6:])
    if shared:
        linux.mount(None, best, None, linux.MS_PRIVATE)


@contextlib.contextmanager
def resolved(root_fd: int, path: str, create: str | None = None) -> Iterator[str]:
    """``/proc/self/fd/N`` naming ``path`` resolved in the root, for mount(2)."""
    fd = resolve(root_fd, path, create)
    try:
        yield fd_path(fd)
    finally:
        os.close(fd)


# Mounts ------------------------------------------------------------------------------


def mount_entry(root_fd: int, bundle: str, m: Mapping[str, Any],
                userns: Mapping[str, Any] | None = None) -> None:
    """Perform one ``mounts[]`` entry of the spec under the root.

    ``userns`` is the spec's ``linux`` object when the container has a user
    namespace: devpts then drops a ``gid=``/``uid=`` the namespace does not
    map (runc does the same for gid=5), and a sysfs or mqueue the kernel
    refuses (sysfs needs a network namespace owned by the user namespace,
    mqueue an IPC one) becomes a recursive bind of the host's, as in runc.
    """
    dest = str(m["destination"])
    mtype = str(m.get("type") or "")
    options = [str(o) for o in m.get("options") or []]
    if userns is not None and mtype == "devpts":
        options = _mapped_owner_options(options, userns)
    flags, prop, data = split_options(options)
    source = str(m.get("source") or mtype or "none")
    if mtype == "bind" or flags & linux.MS_BIND:
        _bind(root_fd, bundle, dest, source, flags, prop)
        return
    if mtype == "cgroup":
        mount_cgroup(root_fd, dest, flags)
        return
    with resolved(root_fd, dest, "dir") as target:
        try:
            linux.mount(source, target, mtype, flags & ~linux.MS_REMOUNT, data or None)
        except PermissionError:
            fallback = _USERNS_BIND_FALLBACK.get(mtype)
            if userns is None or fallback is None:
                raise
            _bind(root_fd, bundle, dest, fallback, flags | linux.MS_BIND | linux.MS_REC, prop)
            return
    if prop:
        with resolved(root_fd, dest) as target:
            linux.mount(None, target, None, prop)


#: filesystem → host path bound instead when a user namespace may not mount it
_USERNS_BIND_FALLBACK = {"sysfs": "/sys", "mqueue": "/dev/mqueue"}


def _mapped_owner_options(options: Sequence[str], lx: Mapping[str, Any]) -> list[str]:
    """``options`` without ``uid=N``/``gid=N`` when N has no mapping (EINVAL else)."""
    out = []
    for opt in options:
        key, _, value = opt.partition("=")
        if key in ("uid", "gid") and value.isdigit():
            maps = lx.get(f"{key}Mappings") or []
            first_last = [(int(x["containerID"]), int(x["containerID"]) + int(x["size"]))
                          for x in maps]
            if not any(a <= int(value) < b for a, b in first_last):
                continue
        out.append(opt)
    return out


def _bind(root_fd: int, bundle: str, dest: str, source: str, flags: int, prop: int) -> None:
    source = os.path.join(bundle, source)  # a relative source is relative to the bundle
    kind = "dir" if os.path.isdir(source) else "file"
    with resolved(root_fd, dest, kind) as target:
        linux.mount(source, target, "bind", flags & (linux.MS_BIND | linux.MS_REC))
    extra = flags & ~(linux.MS_BIND | linux.MS_REC | linux.MS_REMOUNT)
    if extra:  # ro/nosuid/nodev/noexec apply only through a remount of the new mount
        with resolved(root_fd, dest) as target:
            # flags the source mount had stay: in a user namespace they are locked
            # and a remount without them fails with EPERM
            linux.mount(None, target, None, linux.MS_REMOUNT | linux.MS_BIND | extra
                        | locked_flags(target))
    if prop:
        with resolved(root_fd, dest) as target:
            linux.mount(None, target, None, prop)


def _host_cgroup_mounts() -> list[tuple[str, str, str]]:
    """(mountpoint, fstype, super options) of the host's cgroup hierarchies."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype, opts = fields[sep + 1], fields[sep + 3]
            point = fields[4]
            if fstype in ("cgroup", "cgroup2") and point.startswith("/sys/fs/cgroup"):
                out.append((point, fstype, opts))
    return out


def mount_cgroup(root_fd: int, dest: str, flags: int) -> None:
    """``/sys/fs/cgroup`` as runc mounts it with a cgroup namespace.

    On a v2 host: cgroup2 itself.  On a v1 or hybrid host: a tmpfs with one
    mount per host v1 hierarchy, each mounted afresh inside the container's
    cgroup namespace, so it shows the container's cgroup as its root.  The
    tmpfs is read-only too when asked (runc 1.1 leaves it writable).
    """
    base = flags & ~(linux.MS_RDONLY | linux.MS_REMOUNT | linux.MS_BIND | linux.MS_REC)
    hosts = _host_cgroup_mounts()
    if any(p == "/sys/fs/cgroup" and t == "cgroup2" for p, t, _ in hosts):
        with resolved(root_fd, dest, "dir") as target:
            linux.mount("cgroup", target, "cgroup2", base | (flags & linux.MS_RDONLY))
        return
    with resolved(root_fd, dest, "dir") as target:
        linux.mount("tmpfs", target, "tmpfs", base, "mode=755")
    for point, fstype, opts in hosts:
        if fstype == "cgroup2":  # hybrid host: like runc, only the v1 hierarchies
            continue
        name = os.path.basename(point)
        data = ",".join(o for o in opts.split(",") if o not in ("rw", "ro"))
        with resolved(root_fd, dest.rstrip("/") + "/" + name, "dir") as target:
            source = name if "name=" in data else "cgroup"  # runc's sources
            linux.mount(source, target, fstype, base | (flags & linux.MS_RDONLY), data or None)
    _cgroup_symlinks(root_fd, dest)
    if flags & linux.MS_RDONLY:
        with resolved(root_fd, dest) as target:
            linux.mount(None, target, None, linux.MS_REMOUNT | linux.MS_BIND | base
                        | linux.MS_RDONLY)


def _cgroup_symlinks(root_fd: int, dest: str) -> None:
    """The host's ``cpu -> cpu,cpuacct`` style links, recreated in the container."""
    with contextlib.suppress(OSError), os.scandir("/sys/fs/cgroup") as it:
        links = [(e.name, os.readlink(e.path)) for e in it if e.is_symlink()]
        fd = resolve(root_fd, dest)
        try:
            dir_fd = os.open(fd_path(fd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        finally:
            os.close(fd)
        try:
            for name, target in links:
                if "/" not in target:
                    with contextlib.suppress(FileExistsError):
                        os.symlink(target, name, dir_fd=dir_fd)
        finally:
            os.close(dir_fd)


# Devices -------------------------------------------------------------------------------


def _dev_dir(root_fd: int) -> int:
    fd = resolve(root_fd, "/dev", "dir")
    try:
        return os.open(fd_path(fd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    finally:
        os.close(fd)


def create_devices(root_fd: int, devices: Sequence[Mapping[str, Any]],
                   userns: bool = False) -> None:
    """runc's default devices, the spec's ``linux.devices``, /dev symlinks and ptmx.

    In a user namespace mknod(2) of a device is refused: each node is then a
    bind mount of the host's, as runc does.
    """
    dev = _dev_dir(root_fd)
    old = os.umask(0)
    try:
        for name, (major, minor) in DEFAULT_DEVICES.items():
            _mknod(dev, name, stat.S_IFCHR | 0o666, major, minor, 0, 0, f"/dev/{name}", userns)
        for target, name in DEV_SYMLINKS:
            if name == "core" and not os.path.exists("/proc/kcore"):
                continue  # runc links /dev/core only where the kernel has kcore
            with contextlib.suppress(FileExistsError):
                os.symlink(target, name, dir_fd=dev)
        with contextlib.suppress(FileNotFoundError):
            os.unlink("ptmx", dir_fd=dev)
        os.symlink("pts/ptmx", "ptmx", dir_fd=dev)
    finally:
        os.umask(old)
        os.close(dev)
    for d in devices:
        _spec_device(root_fd, d, userns)


def _mknod(dev_fd: int, name: str, mode: int, major: int, minor: int,
           uid: int, gid: int, host_path: str, userns: bool) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dev_fd)
    if not (userns and (stat.S_ISCHR(mode) or stat.S_ISBLK(mode))):
        try:
            os.mknod(name, mode, os.makedev(major, minor), dir_fd=dev_fd)
        except PermissionError:
            if not userns:
                raise
        else:
            os.chown(name, uid, gid, dir_fd=dev_fd, follow_symlinks=False)
            return
    _bind_device(dev_fd, name, host_path)


def _bind_device(dev_fd: int, name: str, host_path: str) -> None:
    """runc's ``bindMountDeviceNode``: an empty file with the host's node bound on it."""
    os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666,
                     dir_fd=dev_fd))
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dev_fd)
    try:
        linux.mount(host_path, fd_path(fd), "bind", linux.MS_BIND)
    finally:
        os.close(fd)


def _spec_device(root_fd: int, d: Mapping[str, Any], userns: bool) -> None:
    kinds = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}
    path = str(d["path"])
    parent, _, name = path.rstrip("/").rpartition("/")
    pfd = resolve(root_fd, parent or "/", "dir")
    try:
        dir_fd = os.open(fd_path(pfd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    finally:
        os.close(pfd)
    old = os.umask(0)
    try:
        mode = kinds[str(d.get("type", "c"))] | (int(d.get("fileMode", 0o666)) & 0o7777)
        _mknod(dir_fd, name, mode, int(d.get("major", 0)), int(d.get("minor", 0)),
               int(d.get("uid", 0)), int(d.get("gid", 0)), path, userns)
    finally:
        os.umask(old)
        os.close(dir_fd)


# pivot_root and what follows it -------------------------------------------------------


def pivot(root_fd: int) -> None:
    """runc's ``pivotRoot``: ``pivot_root(".", ".")``, then detach the old root.

    The old root is made rslave first so the detach cannot propagate to the
    host's mounts.
    """
    old_root = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fchdir(root_fd)
        linux.pivot_root(".", ".")
        os.fchdir(old_root)
        linux.mount(None, ".", None, linux.MS_SLAVE | linux.MS_REC)
        linux.umount(".", linux.MNT_DETACH)
    finally:
        os.close(old_root)
    os.chdir("/")


def mask_paths(paths: Sequence[str]) -> None:
    """/dev/null over files, an empty read-only tmpfs over directories."""
    for path in paths:
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISDIR(st.st_mode):
            linux.mount("tmpfs", path, "tmpfs", linux.MS_RDONLY)
        else:
            linux.mount("/dev/null", path, "bind", linux.MS_BIND)


def readonly_paths(paths: Sequence[str]) -> None:
    """Bind each path onto itself and remount it read-only."""
    for path in paths:
        try:
            linux.mount(path, path, "bind", linux.MS_BIND | linux.MS_REC)
        except (FileNotFoundError, NotADirectoryError):
            continue
        linux.mount(None, path, None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY
                    | linux.MS_REC | locked_flags(path))


_LOCKABLE = ((os.ST_NOSUID, linux.MS_NOSUID), (os.ST_NODEV, linux.MS_NODEV),
             (os.ST_NOEXEC, linux.MS_NOEXEC), (os.ST_NOATIME, linux.MS_NOATIME),
             (os.ST_NODIRATIME, linux.MS_NODIRATIME), (os.ST_RELATIME, linux.MS_RELATIME))


def locked_flags(path: str) -> int:
    """nosuid/nodev/noexec and the atime mode of the mount at ``path``.

    A bind remount must keep them: in a user namespace, flags of mounts
    inherited from the host are locked and dropping one fails with EPERM
    (runc ORs in the same statfs flags).  Keeping the atime mode as it is
    (strictatime when no atime flag is set) avoids the same EPERM for a
    host mount that is noatime or strictatime.
    """
    st = os.statvfs(path)
    flags = 0
    for bit, ms in _LOCKABLE:
        if st.f_flag & bit:
            flags |= ms
    if not flags & (linux.MS_NOATIME | linux.MS_RELATIME):
        flags |= linux.MS_STRICTATIME
    return flags


def readonly_root() -> None:
    linux.mount(None, "/", None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY
                | locked_flags("/"))


def write_sysctls(sysctl: Mapping[str, str]) -> None:
    for key, value in sysctl.items():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(str(value))


def set_hostname(name: str | None) -> None:
    if name:
        _socket.sethostname(name)


def loopback_up() -> None:
    """Bring ``lo`` up in a new network namespace, as runc's loopback strategy does."""
    import fcntl
    import struct
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC)
    try:
        req = struct.pack("16sH22x", b"lo", 0)  # struct ifreq: name + ifr_flags
        flags = struct.unpack("16sH22x", fcntl.ioctl(s.fileno(), siocgifflags, req))[1]
        fcntl.ioctl(s.fileno(), siocsifflags, struct.pack("16sH22x", b"lo", flags | iff_up))
    finally:
        s.close()
