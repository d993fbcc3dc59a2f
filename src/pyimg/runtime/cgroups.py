"""Control groups for one container: v1, v2 (unified) and hybrid hosts.

Layouts
-------
The layout is read from ``/proc/self/mountinfo`` (which hierarchy is mounted
where, with which controllers) and ``/proc/self/cgroup`` (where this process
sits in each hierarchy); no path is hard-coded.

* ``"v1"``: one ``cgroup`` mount per hierarchy, each carrying one or more
  controllers (``cpu,cpuacct`` may be co-mounted) or a name
  (``name=systemd``).
* ``"v2"``: a single ``cgroup2`` mount (usually ``/sys/fs/cgroup``); the
  controllers listed in its ``cgroup.controllers`` are enabled down the tree
  through every ancestor's ``cgroup.subtree_control``.
* ``"hybrid"``: v1 mounts *and* a ``cgroup2`` mount (``/sys/fs/cgroup/unified``
  on Debian/systemd).  A controller is bound to exactly one hierarchy, so the
  cgroup2 mount offers only the controllers no v1 mount took (often none, or
  only ``hugetlb``).  crun 1.8 refuses such hosts; pyimg does what runc and
  systemd do: limits go to whichever hierarchy holds the controller, and the
  container *also* gets a directory in the cgroup2 tree (and in
  ``name=systemd``), so it is tracked, killed (``cgroup.kill``) and frozen
  (``cgroup.freeze``) as a unit everywhere.

A container's cgroup is one path (``linux.cgroupsPath``, e.g. ``/pyimg/<id>``)
created in *every* mounted hierarchy.  An absolute path is relative to each
hierarchy's mount; a relative one to this process's own cgroup in that
hierarchy (runc's rule).  runc's systemd form ``slice:prefix:name`` is refused.

What is enforced where
----------------------
::

    linux.resources          v1 file                               v2 file
    memory.limit             memory.limit_in_bytes                 memory.max
    memory.swap              memory.memsw.limit_in_bytes (total)   memory.swap.max (swap - limit)
    memory.reservation       memory.soft_limit_in_bytes            memory.low
    memory.swappiness        memory.swappiness                     (ignored, as runc)
    memory.disableOOMKiller  memory.oom_control = 1                (refused: not in v2)
    cpu.shares               cpu.shares                            cpu.weight (runc's formula)
    cpu.quota / period       cpu.cfs_quota_us / cpu.cfs_period_us  cpu.max
    cpu.realtime*            cpu.rt_runtime_us / cpu.rt_period_us  (refused: not in v2)
    cpu.cpus / mems          cpuset.cpus / cpuset.mems             cpuset.cpus / cpuset.mems
    pids.limit               pids.max                              pids.max
    hugepageLimits           hugetlb.<size>.limit_in_bytes         hugetlb.<size>.max
    devices                  devices.deny "a", then rules in order an eBPF program (see below)
    unified                  (refused: needs cgroup2)              written as given

The v1 or v2 column is chosen per controller, by where it is mounted (on a
hybrid host ``hugetlb`` may live in the cgroup2 tree while ``memory`` is v1).
Other fields (``blockIO``, ``network``, ``rdma``, ``kernel*``) are ignored.
A field whose controller is mounted nowhere raises :class:`FailedPrecondition`
naming the controller; a value the kernel rejects raises :class:`InvalidArgument`
(EINVAL, ERANGE) or :class:`CgroupError` (anything else), naming the file and
the value.

Devices: on v1 the rules are applied like runc: deny everything, then each
rule of ``linux.resources.devices`` in order, then runc's default allowed
devices (``/dev/null``, ``zero``, ``full``, ``random``, ``urandom``, ``tty``,
``ptmx``, ``pts/*``, ``mknod`` of anything).  cgroup v2 has no devices
controller: the same list becomes a ``BPF_CGROUP_DEVICE`` program attached to
the container's cgroup2 directory (:mod:`pyimg.runtime.devicefilter`; the last
matching rule decides, no match denies), on a pure v2 host and on a hybrid
host that mounts no v1 devices hierarchy.  A v1 host without one is refused
rather than silently unprotected.

A manager that must outlive its process (create in ``pyimg runtime create``,
destroy in ``delete``) is saved with :meth:`CgroupManager.to_state` and
restored with :meth:`CgroupManager.from_state`, which keeps the list of
directories it created so ``destroy`` never removes a pre-existing parent.
A parent it created but another container still uses (``/pyimg`` under
``/pyimg/<a>`` and ``/pyimg/<b>``) is left in place, as runc and docker leave
theirs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal as _signal
import time

from pyimg.errors import FailedPrecondition, InvalidArgument, Unavailable
from pyimg.record import Record
from pyimg.runtime.cgroup_layout import (
    UNIFIED as UNIFIED,
)
from pyimg.runtime.cgroup_layout import (
    Hierarchy as Hierarchy,
)
from pyimg.runtime.cgroup_layout import (
    Layout as Layout,
)
from pyimg.runtime.cgroup_layout import (
    detect_layout as detect_layout,
)
from pyimg.runtime.cgroup_layout import (
    parse_layout as parse_layout,
)

TYPE_CHECKING = False  # joined on every container start: no typing, pathlib, dataclasses
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping
    from typing import Any, Literal

    from pyimg.runtime.cgroup_layout import Mode as Mode

#: Controllers enabled in a pure-v2 tree even when no resource asks for them
#: (for stats and future updates), when the parent offers them.
_V2_BEST_EFFORT = ("cpu", "memory", "pids")

#: runc's ``AllowedDevices`` (libcontainer/specconv), appended after the spec's rules.
DEFAULT_ALLOWED_DEVICES: tuple[Mapping[str, Any], ...] = (
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},   # null
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},   # random
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},   # full
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},   # tty
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},   # zero
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},   # urandom
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},             # pts/*
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},   # ptmx
)


class CgroupError(FailedPrecondition):
    """A cgroup file or directory could not be read or written.

    ``path`` is the file, ``value`` what was written (``None`` for reads and
    directory operations), ``errno`` the kernel's answer.
    """

    def __init__(self, message: str, *, path: str, value: str | None = None,
                 err: int = 0, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path
        self.value = value
        self.errno = err


# --------------------------------------------------------------------------- helpers


def validate_cgroups_path(path: str) -> str:
    """Normalise ``linux.cgroupsPath``; refuse '..', NUL, the root and systemd's form."""
    if not isinstance(path, str) or not path:
        raise InvalidArgument(f"invalid cgroupsPath {path!r}: must be a non-empty path")
    if "\0" in path:
        raise InvalidArgument(f"invalid cgroupsPath {path!r}: contains a NUL byte")
    if ":" in path and not path.startswith("/") and path.count(":") == 2:
        raise InvalidArgument(
            f"invalid cgroupsPath {path!r}: the systemd cgroup driver "
            "('slice:prefix:name') is not supported",
            hint="use a filesystem path such as /pyimg/<id>")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"invalid cgroupsPath {path!r}: '..' is not allowed")
    if not parts:
        raise InvalidArgument(f"invalid cgroupsPath {path!r}: refers to the root cgroup")
    norm = "/".join(parts)
    return "/" + norm if path.startswith("/") else norm


def shares_to_weight(shares: int) -> int:
    """runc's cgroup v1 ``cpu.shares`` → v2 ``cpu.weight`` ([2, 262144] → [1, 10000])."""
    if shares == 0:
        return 0
    shares = min(max(shares, 2), 262144)
    return 1 + ((shares - 2) * 9999) // 262142


def swap_to_v2(swap: int, limit: int) -> int | None:
    """OCI ``memory.swap`` (memory+swap total, v1 semantics) → v2 ``memory.swap.max``.

    ``None`` = leave unset, ``-1`` = "max" (runc's ConvertMemorySwapToCgroupV2Value).
    """
    if limit == -1 and swap == 0:
        return -1  # "unlimited memory" means unlimited swap too, as on v1
    if swap == 0:
        return None
    if swap == -1:
        return -1
    if limit in (0, -1):
        raise InvalidArgument(f"invalid memory swap {swap}: a swap limit needs a memory limit")
    if swap < limit:
        raise InvalidArgument(
            f"invalid memory swap {swap}: must be at least the memory limit {limit} "
            "(it counts memory plus swap)")
    return swap - limit


def _int(res: Mapping[str, Any], key: str, where: str) -> int | None:
    v = res.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidArgument(f"invalid linux.resources.{where}.{key} {v!r}: expected an integer")
    return v


def _device_rule(rule: Mapping[str, Any]) -> str:
    typ = rule.get("type") or "a"
    if typ not in ("a", "b", "c"):
        raise InvalidArgument(f"invalid device rule type {typ!r}: expected a, b or c")
    access = rule.get("access") or "rwm"
    if not access or set(access) - set("rwm"):
        raise InvalidArgument(f"invalid device rule access {access!r}: letters r, w, m")
    if typ == "a":
        return "a"
    def num(key: str) -> str:
        v = rule.get(key)
        if v is None or v == -1:
            return "*"
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise InvalidArgument(f"invalid device rule {key} {v!r}")
        return str(v)
    return f"{typ} {num('major')}:{num('minor')} {access}"


def _write(path: str, value: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise CgroupError(f"cgroup file {path} does not exist (writing {value!r})",
                          path=path, value=value, err=errno.ENOENT,
                          hint="the kernel lacks this controller feature") from e
    except OSError as e:
        raise CgroupError(f"cannot open cgroup file {path}: {e.strerror}",
                          path=path, value=value, err=e.errno or 0) from e
    try:
        os.write(fd, value.encode())
    except OSError as e:
        msg = f"writing {value!r} to {path} failed: {e.strerror}"
        if e.errno in (errno.EINVAL, errno.ERANGE):
            raise InvalidArgument(msg, hint="the kernel rejected this value") from e
        raise CgroupError(msg, path=path, value=value, err=e.errno or 0) from e
    finally:
        os.close(fd)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        raise CgroupError(f"cannot read cgroup file {path}: {e.strerror}",
                          path=path, err=e.errno or 0) from e


def _keyed(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if v.strip().lstrip("-").isdigit():
            out[k] = int(v)
    return out


def _pids_in(d: str) -> Iterator[int]:
    """Members of cgroup ``d`` and all its descendants."""
    for dirpath, _dirs, files in os.walk(d):
        if "cgroup.procs" not in files:
            continue
        try:
            with open(os.path.join(dirpath, "cgroup.procs")) as f:
                text = f.read()
        except OSError:
            continue
        for line in text.split():
            yield int(line)


# --------------------------------------------------------------------------- manager


class CgroupStats(Record):
    _fields = ("memory_usage", "memory_max_usage", "memory_limit", "pids_current",
               "cpu_usage_ns", "oom_kills")
    __slots__ = _fields
    memory_usage: int | None   # bytes, now
    memory_max_usage: int | None  # bytes, peak (v1 max_usage_in_bytes / v2 memory.peak)
    memory_limit: int | None   # bytes, None = unlimited
    pids_current: int | None
    cpu_usage_ns: int | None   # total CPU time
    oom_kills: int | None

    def __init__(self, memory_usage: int | None, memory_max_usage: int | None,
                 memory_limit: int | None, pids_current: int | None,
                 cpu_usage_ns: int | None, oom_kills: int | None) -> None:
        self._set(memory_usage, memory_max_usage, memory_limit, pids_current, cpu_usage_ns,
                  oom_kills)


_UNLIMITED_V1 = 1 << 62  # v1 prints PAGE_COUNTER_MAX * PAGE_SIZE (~2^63) for "no limit"


class CgroupManager:
    """The cgroup of one container, in every mounted hierarchy.

    Lifecycle: :meth:`create` → :meth:`apply` → :meth:`add` (the container's
    init, before it execs) → … → :meth:`kill_all` → :meth:`destroy`.
    """

    def __init__(self, path: str, resources: Mapping[str, Any] | None = None, *,
                 layout: Layout | None = None) -> None:
        self.path = validate_cgroups_path(path)
        self.resources: Mapping[str, Any] = resources or {}
        self.layout = layout if layout is not None else detect_layout()
        #: hierarchy key ("memory", "cpu,cpuacct", "name=systemd", "" for cgroup2) → directory
        self.dirs: dict[str, str] = {h.key: h.resolve(self.path)
                                     for h in self.layout.hierarchies}
        #: directories this manager made, parents first
        self.created: list[str] = []

    # ---- construction

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], container_id: str, *,
                  layout: Layout | None = None) -> CgroupManager:
        """From an OCI ``config.json`` (``linux.cgroupsPath``, default ``/pyimg/<id>``)."""
        linux = spec.get("linux") or {}
        path = linux.get("cgroupsPath") or f"/pyimg/{container_id}"
        return cls(path, linux.get("resources") or {}, layout=layout)

    def to_state(self) -> dict[str, Any]:
        return {"path": self.path, "dirs": dict(self.dirs), "created": list(self.created)}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], *,
                   layout: Layout | None = None) -> CgroupManager:
        m = cls(state["path"], layout=layout)
        m.dirs = {k: str(v) for k, v in state.get("dirs", {}).items()}
        m.created = [str(p) for p in state.get("created", [])]
        return m

    def _hier(self, key: str) -> Hierarchy:
        return next(h for h in self.layout.hierarchies if h.key == key)

    def _dir_for(self, controller: str, field: str, *, required: bool = True) -> str | None:
        h = self.layout.controller(controller)
        if h is None:
            if not required:
                return None
            raise FailedPrecondition(
                f"cgroup controller {controller!r} is not available on this "
                f"{self.layout.mode} host (needed by linux.resources.{field})",
                hint="remove that limit or enable the controller")
        return self.dirs[h.key]

    def required_controllers(self, resources: Mapping[str, Any] | None = None) -> dict[str, str]:
        """Controller → the resource field that needs it."""
        res = self.resources if resources is None else resources
        need: dict[str, str] = {}
        mem = res.get("memory") or {}
        if any(mem.get(k) not in (None, 0) for k in
               ("limit", "reservation", "swap", "swappiness", "disableOOMKiller")):
            need["memory"] = "memory"
        cpu = res.get("cpu") or {}
        if any(cpu.get(k) not in (None, 0) for k in
               ("shares", "quota", "period", "realtimeRuntime", "realtimePeriod")):
            need["cpu"] = "cpu"
        if cpu.get("cpus") or cpu.get("mems"):
            need["cpuset"] = "cpu.cpus"
        if (res.get("pids") or {}).get("limit") not in (None, 0):
            need["pids"] = "pids"
        if res.get("hugepageLimits"):
            need["hugetlb"] = "hugepageLimits"
        if res.get("devices") and self.layout.unified is None:
            need["devices"] = "devices"
        return need

    # ---- create / apply / add

    def create(self) -> None:
        """Make the directory in every hierarchy (idempotent)."""
        needed = self.required_controllers()
        for controller, field in needed.items():
            self._dir_for(controller, field)
        for h in self.layout.hierarchies:
            target = self.dirs[h.key]
            if h.version == 2:
                required = [c for c in needed if self.layout.controller(c) is h]
                self._enable_v2(h, target, required, best_effort=self.layout.mode == "v2")
            self._mkdirs(h, target)
            if h.version == 1 and "cpuset" in h.controllers:
                self._init_cpuset(h, target)

    def _mkdirs(self, h: Hierarchy, target: str) -> None:
        missing: list[str] = []
        p = target
        while p != h.mountpoint and not os.path.isdir(p):
            missing.append(p)
            p = os.path.dirname(p)
        for d in reversed(missing):
            try:
                os.mkdir(d, 0o755)
            except FileExistsError:
                continue  # a concurrent container made the shared parent
            except OSError as e:
                raise CgroupError(f"cannot create cgroup {d}: {e.strerror}",
                                  path=d, err=e.errno or 0) from e
            self.created.append(d)

    def _enable_v2(self, h: Hierarchy, target: str, required: Iterable[str], *,
                   best_effort: bool) -> None:
        """Enable controllers in every ancestor's cgroup.subtree_control down to ``target``.

        ``required`` ones must succeed; on a pure v2 host cpu, memory and pids
        are also enabled when offered (stats, later updates).
        """
        required = list(required)
        wanted = list(dict.fromkeys([*required, *(_V2_BEST_EFFORT if best_effort else ())]))
        if not wanted:
            return
        ancestors: list[str] = []
        p = os.path.dirname(target)
        while True:
            ancestors.append(p)
            if p == h.mountpoint or p == os.path.dirname(p):
                break
            p = os.path.dirname(p)
        for anc in reversed(ancestors):
            if not os.path.isdir(anc):
                self._mkdirs(h, anc)
            avail = set(_read(f"{anc}/cgroup.controllers").split())
            on = set(_read(f"{anc}/cgroup.subtree_control").split())
            for c in wanted:
                if c in on:
                    continue
                if c not in avail:
                    if c in required:
                        raise FailedPrecondition(
                            f"cgroup2 controller {c!r} is not offered in {anc}/cgroup.controllers",
                            hint="enable it in the parent's cgroup.subtree_control")
                    continue
                try:
                    _write(f"{anc}/cgroup.subtree_control", f"+{c}")
                except (CgroupError, InvalidArgument) as e:
                    if c in required:
                        raise CgroupError(
                            f"cannot enable {c!r} in {anc}/cgroup.subtree_control: {e.message}",
                            path=f"{anc}/cgroup.subtree_control", value=f"+{c}",
                            hint="a cgroup with processes cannot delegate controllers "
                                 "(cgroup v2 'no internal processes' rule)") from e

    def _init_cpuset(self, h: Hierarchy, target: str) -> None:
        """v1 cpuset: a new cgroup has empty cpus/mems and refuses tasks; copy the parent's."""
        chain: list[str] = []
        p = target
        while p != h.mountpoint and p != os.path.dirname(p):
            chain.append(p)
            p = os.path.dirname(p)
        for d in reversed(chain):
            for f in ("cpuset.cpus", "cpuset.mems"):
                if _read(f"{d}/{f}").strip() == "":
                    _write(f"{d}/{f}", _read(f"{os.path.dirname(d)}/{f}").strip())

    def apply(self, resources: Mapping[str, Any] | None = None, *,
              default_devices: bool = True) -> None:
        """Write ``linux.resources`` into the cgroup (see the module table)."""
        res = self.resources if resources is None else resources
        if resources is not None:
            self.resources = resources
        for controller, field in self.required_controllers(res).items():
            self._dir_for(controller, field)
        if res.get("memory"):
            self._apply_memory(res["memory"])
        if res.get("cpu"):
            self._apply_cpu(res["cpu"])
        pids = res.get("pids") or {}
        limit = _int(pids, "limit", "pids")
        if limit:
            d = self._dir_for("pids", "pids.limit")
            assert d is not None
            _write(f"{d}/pids.max", str(limit) if limit > 0 else "max")
        for hp in res.get("hugepageLimits") or ():
            self._apply_hugetlb(hp)
        if "devices" in res or default_devices:
            self._apply_devices(list(res.get("devices") or ()), default_devices)
        unified = res.get("unified") or {}
        if unified:
            u = self.layout.unified
            if u is None:
                raise FailedPrecondition("linux.resources.unified needs a cgroup2 hierarchy; "
                                         "this host has only cgroup v1")
            for key, value in unified.items():
                if "/" in key or key.startswith(".") or not key:
                    raise InvalidArgument(f"invalid linux.resources.unified key {key!r}")
                _write(self.dirs[UNIFIED] / key, str(value))

    def _apply_memory(self, mem: Mapping[str, Any]) -> None:
        limit = _int(mem, "limit", "memory") or 0
        swap = _int(mem, "swap", "memory") or 0
        reservation = _int(mem, "reservation", "memory") or 0
        swappiness = _int(mem, "swappiness", "memory")
        d = self._dir_for("memory", "memory")
        assert d is not None
        h = self.layout.controller("memory")
        assert h is not None
        if h.version == 1:
            def v1(n: int) -> str:
                return "-1" if n < 0 else str(n)
            memsw = f"{d}/memory.memsw.limit_in_bytes"
            if limit == -1 and swap == 0 and os.path.exists(memsw):
                swap = -1  # unlimited memory means unlimited memory+swap (runc)
            if swap and not os.path.exists(memsw):
                raise FailedPrecondition(
                    f"linux.resources.memory.swap needs swap accounting ({memsw} is missing)",
                    hint="boot with swapaccount=1 or drop the swap limit")
            if limit and swap:
                cur = int(_read(f"{d}/memory.limit_in_bytes").strip())
                if swap == -1 or cur < swap:
                    _write(memsw, v1(swap))
                    _write(f"{d}/memory.limit_in_bytes", v1(limit))
                else:
                    _write(f"{d}/memory.limit_in_bytes", v1(limit))
                    _write(memsw, v1(swap))
            else:
                if limit:
                    _write(f"{d}/memory.limit_in_bytes", v1(limit))
                if swap:
                    _write(memsw, v1(swap))
            if reservation:
                _write(f"{d}/memory.soft_limit_in_bytes", v1(reservation))
            if swappiness is not None and swappiness != -1:
                if not 0 <= swappiness <= 100:
                    raise InvalidArgument(f"invalid memory swappiness {swappiness}: 0..100")
                _write(f"{d}/memory.swappiness", str(swappiness))
            if mem.get("disableOOMKiller"):
                _write(f"{d}/memory.oom_control", "1")
        else:
            def v2(n: int) -> str:
                return "max" if n < 0 else str(n)
            swap_max = swap_to_v2(swap, limit)
            if swap_max is not None:
                _write(f"{d}/memory.swap.max", v2(swap_max))
            if limit:
                _write(f"{d}/memory.max", v2(limit))
            if reservation:
                _write(f"{d}/memory.low", v2(reservation))
            if mem.get("disableOOMKiller"):
                raise FailedPrecondition(
                    "linux.resources.memory.disableOOMKiller is not available on cgroup v2")

    def _apply_cpu(self, cpu: Mapping[str, Any]) -> None:
        shares = _int(cpu, "shares", "cpu") or 0
        quota = _int(cpu, "quota", "cpu") or 0
        period = _int(cpu, "period", "cpu") or 0
        rt_runtime = _int(cpu, "realtimeRuntime", "cpu") or 0
        rt_period = _int(cpu, "realtimePeriod", "cpu") or 0
        h = self.layout.controller("cpu")
        if shares or quota or period or rt_runtime or rt_period:
            d = self._dir_for("cpu", "cpu")
            assert d is not None and h is not None
            if h.version == 1:
                if shares:
                    _write(f"{d}/cpu.shares", str(shares))
                if period and quota:
                    try:
                        _write(f"{d}/cpu.cfs_period_us", str(period))
                        _write(f"{d}/cpu.cfs_quota_us", str(quota))
                    except InvalidArgument:
                        # the new period conflicts with the old quota: other order (runc)
                        _write(f"{d}/cpu.cfs_quota_us", str(quota))
                        _write(f"{d}/cpu.cfs_period_us", str(period))
                elif period:
                    _write(f"{d}/cpu.cfs_period_us", str(period))
                elif quota:
                    _write(f"{d}/cpu.cfs_quota_us", str(quota))
                if rt_period:
                    _write(f"{d}/cpu.rt_period_us", str(rt_period))
                if rt_runtime:
                    _write(f"{d}/cpu.rt_runtime_us", str(rt_runtime))
            else:
                if rt_runtime or rt_period:
                    raise FailedPrecondition(
                        "linux.resources.cpu.realtimeRuntime/realtimePeriod are not "
                        "available on cgroup v2")
                if shares:
                    _write(f"{d}/cpu.weight", str(shares_to_weight(shares)))
                if quota or period:
                    value = "max" if quota <= 0 else str(quota)
                    if period:
                        value += f" {period}"
                    _write(f"{d}/cpu.max", value)
        for key in ("cpus", "mems"):
            v = cpu.get(key)
            if v:
                d = self._dir_for("cpuset", f"cpu.{key}")
                assert d is not None
                _write(f"{d}/cpuset.{key}", str(v))

    def _apply_hugetlb(self, hp: Mapping[str, Any]) -> None:
        size, limit = hp.get("pageSize"), hp.get("limit")
        if not isinstance(size, str) or not size.isalnum() or not isinstance(limit, int):
            raise InvalidArgument(f"invalid linux.resources.hugepageLimits entry {dict(hp)!r}")
        d = self._dir_for("hugetlb", "hugepageLimits")
        h = self.layout.controller("hugetlb")
        assert d is not None and h is not None
        if h.version == 1:
            _write(f"{d}/hugetlb.{size}.limit_in_bytes", str(limit))
        else:
            _write(f"{d}/hugetlb.{size}.max", str(limit))

    def _apply_devices(self, rules: list[Mapping[str, Any]], default_devices: bool) -> None:
        h = self.layout.controller("devices")
        if h is None or h.version == 2:
            if self.layout.unified is None:
                if not rules:
                    return
                raise FailedPrecondition(
                    "linux.resources.devices needs the v1 devices controller, which this "
                    "v1 host does not mount", hint="mount the devices hierarchy")
            # cgroup v2 has no devices controller: an eBPF program decides
            from pyimg.runtime import devicefilter

            devicefilter.attach(self.dirs[UNIFIED], [
                *rules, *(DEFAULT_ALLOWED_DEVICES if default_devices else ())])
            return
        d = self.dirs[h.key]
        _write(f"{d}/devices.deny", "a")
        for rule in [*rules, *(DEFAULT_ALLOWED_DEVICES if default_devices else ())]:
            line = _device_rule(rule)
            _write(f"{d}/devices.allow" if rule.get("allow") else f"{d}/devices.deny", line)

    def add(self, pid: int) -> None:
        """Move ``pid`` into the cgroup in every hierarchy (cpuset first)."""
        keys = sorted(self.dirs, key=lambda k: ("cpuset" not in k.split(","), k))
        for key in keys:
            _write(f"{self.dirs[key]}/cgroup.procs", str(pid))

    # ---- inspection

    def pids(self) -> list[int]:
        """Processes in the cgroup or its descendants, in any hierarchy."""
        found: set[int] = set()
        for d in self.dirs.values():
            if os.path.isdir(d):
                found.update(_pids_in(d))
        return sorted(found)

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer killed in this cgroup."""
        h = self.layout.controller("memory")
        if h is None:
            return 0
        d = self.dirs[h.key]
        name = "memory.oom_control" if h.version == 1 else "memory.events"
        try:
            text = _read(f"{d}/{name}")
        except CgroupError:
            return 0
        return _keyed(text).get("oom_kill", 0)

    def oom_killed(self) -> bool:
        return self.oom_kills() > 0

    def stats(self) -> CgroupStats:
        def num(path: str) -> int | None:
            try:
                text = _read(path).strip()
            except CgroupError:
                return None
            if text == "max":
                return None
            return int(text) if text.lstrip("-").isdigit() else None

        mem_usage = mem_peak = mem_limit = cpu_ns = None
        h = self.layout.controller("memory")
        if h is not None:
            d = self.dirs[h.key]
            if h.version == 1:
                mem_usage = num(f"{d}/memory.usage_in_bytes")
                mem_peak = num(f"{d}/memory.max_usage_in_bytes")
                mem_limit = num(f"{d}/memory.limit_in_bytes")
                if mem_limit is not None and mem_limit >= _UNLIMITED_V1:
                    mem_limit = None
            else:
                mem_usage = num(f"{d}/memory.current")
                mem_peak = num(f"{d}/memory.peak")
                mem_limit = num(f"{d}/memory.max")
        h = self.layout.controller("cpuacct")
        if h is not None and h.version == 1:
            cpu_ns = num(f"{self.dirs[h.key]}/cpuacct.usage")
        elif self.layout.unified is not None:
            try:
                usec = _keyed(_read(f"{self.dirs[UNIFIED]}/cpu.stat")).get("usage_usec")
            except CgroupError:
                usec = None
            cpu_ns = usec * 1000 if usec is not None else None
        h = self.layout.controller("pids")
        pids_current = num(f"{self.dirs[h.key]}/pids.current") if h is not None else None
        return CgroupStats(mem_usage, mem_peak, mem_limit, pids_current, cpu_ns,
                           self.oom_kills() if self.layout.controller("memory") else None)

    # ---- freeze / kill / destroy

    def _freezer(self) -> tuple[Literal[1, 2], str] | None:
        h = self.layout.controller("freezer")
        if h is not None and h.version == 1:
            return 1, self.dirs[h.key]
        if UNIFIED in self.dirs and os.path.exists(f"{self.dirs[UNIFIED]}/cgroup.freeze"):
            return 2, self.dirs[UNIFIED]
        return None

    def freeze(self, timeout: float = 5.0) -> None:
        """Stop every process of the cgroup (v1 freezer or v2 cgroup.freeze)."""
        fz = self._freezer()
        if fz is None:
            raise FailedPrecondition("no freezer: neither a v1 freezer hierarchy "
                                     "nor cgroup2's cgroup.freeze is available")
        version, d = fz
        deadline = time.monotonic() + timeout
        if version == 1:
            while True:
                _write(f"{d}/freezer.state", "FROZEN")
                if _read(f"{d}/freezer.state").strip() == "FROZEN":
                    return
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
        else:
            _write(f"{d}/cgroup.freeze", "1")
            while time.monotonic() <= deadline:
                if _keyed(_read(f"{d}/cgroup.events")).get("frozen") == 1:
                    return
                time.sleep(0.01)
        self.thaw()
        raise Unavailable(f"cgroup {d} did not freeze within {timeout:g}s")

    def thaw(self) -> None:
        fz = self._freezer()
        if fz is None:
            return
        version, d = fz
        if version == 1:
            _write(f"{d}/freezer.state", "THAWED")
        else:
            _write(f"{d}/cgroup.freeze", "0")

    def kill_all(self, sig: int = _signal.SIGKILL, *, timeout: float = 10.0) -> None:
        """Send ``sig`` to every member; for SIGKILL, repeat until the cgroup is empty.

        SIGKILL goes through cgroup2's ``cgroup.kill`` when there is one (atomic
        against forks), else the cgroup is frozen while the signals are sent.
        """
        if sig != _signal.SIGKILL:
            for pid in self.pids():
                _signal_pid(pid, sig)
            return
        deadline = time.monotonic() + timeout
        unified = self.dirs.get(UNIFIED)
        kill_file = f"{unified}/cgroup.kill" if unified is not None else None
        while self.pids():
            if time.monotonic() > deadline:
                raise Unavailable(f"processes {self.pids()} of cgroup {self.path} survived "
                                  f"SIGKILL for {timeout:g}s (stuck in the kernel?)")
            if kill_file is not None and os.path.exists(kill_file):
                _write(kill_file, "1")
                for pid in self.pids():  # members of a v1 hierarchy only, if any
                    _signal_pid(pid, _signal.SIGKILL)
            else:
                frozen = False
                if self._freezer() is not None:
                    try:
                        self.freeze(timeout=1.0)
                        frozen = True
                    except Unavailable:
                        pass
                try:
                    for pid in self.pids():
                        _signal_pid(pid, _signal.SIGKILL)
                finally:
                    if frozen:
                        self.thaw()
            time.sleep(0.005)

    def destroy(self, timeout: float = 5.0) -> None:
        """Remove the cgroup in every hierarchy (with any sub-cgroups the container made),
        then the parents this manager created if they are empty.  Idempotent."""
        deadline = time.monotonic() + timeout
        for d in self.dirs.values():
            _rmtree_cgroup(d, deadline)
        for d in sorted(self.created, key=lambda p: p.count("/"), reverse=True):
            if d in self.dirs.values():
                continue
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError as e:
                if e.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                    raise CgroupError(f"cannot remove cgroup {d}: {e.strerror}",
                                      path=d, err=e.errno or 0) from e
                # another container still uses this shared parent: leave it
        self.created = []


def _signal_pid(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _rmtree_cgroup(d: str, deadline: float) -> None:
    """rmdir ``d`` and its sub-cgroups deepest first, retrying on EBUSY while tasks exit."""
    try:
        subdirs = [dp for dp, _, _ in os.walk(d)]
    except OSError:
        subdirs = []
    for sub in sorted(subdirs, key=lambda p: p.count("/"), reverse=True) or [d]:
        while True:
            try:
                os.rmdir(sub)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise CgroupError(
                        f"cannot remove cgroup {sub}: {e.strerror}", path=sub,
                        err=e.errno or 0,
                        hint="processes are still in it: kill them first") from e
                time.sleep(0.02)
