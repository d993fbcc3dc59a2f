"""Where the cgroup hierarchies are: v1 controllers, cgroup2, or both (hybrid).

Read from /proc/self/mountinfo and /proc/self/cgroup, never hard-coded:
cgroup2 may sit at /sys/fs/cgroup or /sys/fs/cgroup/unified, v1 controllers
may be co-mounted (cpu,cpuacct), mount points may be escaped (``\\040``).
"""

from __future__ import annotations

import posixpath

from pyimg.errors import FailedPrecondition
from pyimg.mount import unescape_mountinfo
from pyimg.record import Record

TYPE_CHECKING = False  # read on every container start: no typing, pathlib, dataclasses
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Literal

    Mode = Literal["v1", "v2", "hybrid"]

UNIFIED = ""  # key of the cgroup2 hierarchy in :attr:`CgroupManager.dirs`

#: v1 super options that are mount flags, not controllers.
_V1_MOUNT_OPTIONS = frozenset({
    "rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode", "none", "all",
    "favordynmods", "nofavordynmods",
})


class Hierarchy(Record):
    """One mounted cgroup hierarchy.

    ``key`` names it in :attr:`CgroupManager.dirs`: the v1 controller list as
    ``/proc/self/cgroup`` prints it (``cpu,cpuacct``, ``name=systemd``), or
    ``""`` for cgroup2.  ``root`` is the mount's root inside the hierarchy
    (mountinfo field 4), ``current`` this process's cgroup in it.
    """

    _fields = ("version", "mountpoint", "root", "controllers", "current")
    __slots__ = _fields
    version: Literal[1, 2]
    mountpoint: str
    root: str
    controllers: frozenset[str]
    current: str

    def __init__(self, version: Literal[1, 2], mountpoint: str, root: str,
                 controllers: frozenset[str], current: str) -> None:
        self._set(version, str(mountpoint), root, controllers, current)

    @property
    def key(self) -> str:
        if self.version == 2:
            return UNIFIED
        return ",".join(sorted(self.controllers))

    def resolve(self, cgroup_path: str) -> str:
        """The directory of ``cgroup_path`` (absolute or relative) in this mount."""
        if cgroup_path.startswith("/"):
            rel = cgroup_path.lstrip("/")
        else:
            own = self.current
            if self.root != "/" and (own == self.root or own.startswith(self.root + "/")):
                own = own[len(self.root):]
            rel = posixpath.join(own.lstrip("/"), cgroup_path)
        return posixpath.join(self.mountpoint, rel) if rel else self.mountpoint


class Layout(Record):
    _fields = ("mode", "hierarchies")
    __slots__ = _fields
    mode: Mode
    hierarchies: tuple[Hierarchy, ...]

    def __init__(self, mode: Mode, hierarchies: tuple[Hierarchy, ...]) -> None:
        self._set(mode, hierarchies)

    @property
    def unified(self) -> Hierarchy | None:
        return next((h for h in self.hierarchies if h.version == 2), None)

    @property
    def v1(self) -> tuple[Hierarchy, ...]:
        return tuple(h for h in self.hierarchies if h.version == 1)

    def controller(self, name: str) -> Hierarchy | None:
        """The hierarchy holding controller ``name`` (a v1 mount first, then cgroup2)."""
        for h in self.v1:
            if name in h.controllers:
                return h
        u = self.unified
        if u is not None and name in u.controllers:
            return u
        return None


def _proc_cgroups(text: str) -> tuple[dict[frozenset[str], str], str | None]:
    """Parse /proc/<pid>/cgroup: v1 controller set → path, and the cgroup2 path."""
    v1: dict[frozenset[str], str] = {}
    v2: str | None = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, ctrls, path = parts
        if hid == "0" and ctrls == "":
            v2 = path
        else:
            v1[frozenset(c for c in ctrls.split(",") if c)] = path
    return v1, v2


def parse_layout(mountinfo: str, proc_cgroup: str,
                 read_controllers: Callable[[str], frozenset[str]] | None = None) -> Layout:
    """Build a :class:`Layout` from mountinfo and /proc/self/cgroup text.

    ``read_controllers(mountpoint: str) -> frozenset[str]`` lists a cgroup2
    mount's controllers (default: read its ``cgroup.controllers``); tests pass
    a fake.
    """
    if read_controllers is None:
        read_controllers = _read_v2_controllers
    v1_paths, v2_path = _proc_cgroups(proc_cgroup)
    seen: set[Any] = set()
    hierarchies: list[Hierarchy] = []
    for line in mountinfo.splitlines():
        fields = line.split()
        try:
            sep = fields.index("-")
        except ValueError:
            continue
        if len(fields) < sep + 4 or sep < 6:
            continue
        fstype, super_opts = fields[sep + 1], fields[sep + 3]
        root, mountpoint = unescape_mountinfo(fields[3]), unescape_mountinfo(fields[4])
        if fstype == "cgroup":
            ctrls = frozenset(
                o for o in super_opts.split(",")
                if o and o not in _V1_MOUNT_OPTIONS
                and ("=" not in o or o.startswith("name="))
            )
            if not ctrls or ctrls in seen:
                continue  # a second mount (bind) of a hierarchy: the first one wins
            seen.add(ctrls)
            hierarchies.append(Hierarchy(1, mountpoint, root, ctrls, v1_paths.get(ctrls, "/")))
        elif fstype == "cgroup2":
            if "cgroup2" in seen:
                continue
            seen.add("cgroup2")
            hierarchies.append(Hierarchy(2, mountpoint, root, frozenset(
                read_controllers(mountpoint)), v2_path if v2_path is not None else "/"))
    has_v1 = any(h.version == 1 for h in hierarchies)
    has_v2 = any(h.version == 2 for h in hierarchies)
    if not hierarchies:
        raise FailedPrecondition(
            "no cgroup filesystem is mounted (none in /proc/self/mountinfo)",
            hint="mount cgroup2 on /sys/fs/cgroup or the v1 controllers under it")
    mode: Mode = "hybrid" if has_v1 and has_v2 else ("v1" if has_v1 else "v2")
    return Layout(mode, tuple(hierarchies))


def _read_v2_controllers(mountpoint: str) -> frozenset[str]:
    try:
        with open(f"{mountpoint}/cgroup.controllers") as f:
            return frozenset(f.read().split())
    except OSError:
        return frozenset()


def detect_layout() -> Layout:
    """The layout of this host, as this process sees it."""
    try:
        with open("/proc/self/mountinfo") as f:
            mountinfo = f.read()
        with open("/proc/self/cgroup") as f:
            proc_cgroup = f.read()
    except OSError as e:
        raise FailedPrecondition(f"cannot read the cgroup layout from /proc: {e}",
                                 hint="is /proc mounted?") from e
    return parse_layout(mountinfo, proc_cgroup)
