"""Image config + run options → OCI runtime-spec 1.0.2 ``config.json``.

The result is what containerd's default Unix spec plus ``oci.WithImageConfig``
(and Docker's defaults on top) would produce, and it is run unchanged by
``runc run``:

* ``process.args``: Docker's rules — ``--entrypoint`` replaces the image
  Entrypoint *and* clears its Cmd; run arguments replace Cmd.
* ``process.env``: the image Env, a default ``PATH`` when the image has none,
  the caller's additions (same key → replaced in place), ``HOME`` from the
  user's passwd entry and ``TERM=xterm`` for a tty when not set.
* ``process.user``: resolved from the image's ``/etc/passwd`` and
  ``/etc/group``, read through :func:`open_in_root` so a symlink in the image
  can never make us read a file of the host.
* mounts, namespaces, masked/read-only paths, capabilities (Docker's default
  14), ``RLIMIT_NOFILE`` 1024 (clamped to the host's hard limit),
  ``noNewPrivileges``, a deny-all device cgroup rule (runc adds its default
  allowed devices itself) and resources from the limits.

Seccomp: Docker's default profile for the process's capabilities
(:mod:`pyimg.runtime.seccomp`) unless ``RunOptions.seccomp`` gives another
one; ``seccomp={}`` means unconfined (``--security-opt seccomp=unconfined``).
"""

from __future__ import annotations

import math
import os
import posixpath
import re
import resource

from pyimg.errors import InvalidArgument
from pyimg.record import Record
from pyimg.runtime.capnames import ALL_CAPABILITIES
from pyimg.runtime.user import resolve_user

TYPE_CHECKING = False  # import-light: `pyimg run` (no typing, dataclasses, decimal, pathlib)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any, Literal

    from pyimg.fsutil import StrPath
    from pyimg.oci import ImageConfig

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ROOTFS_DIR = "rootfs"
CPU_PERIOD = 100_000  # µs, Docker's and the kernel's default CFS period
MIN_MEMORY = 6 * 1024 * 1024  # Docker refuses less: the container would not start
NOFILE = 1024

#: Docker's default capability set (moby oci/caps/defaults.go), in its order.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)


#: runc ``spec`` / containerd default masked and read-only paths.
MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
    "/proc/scsi",
)
READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
)


def default_mounts() -> list[dict[str, Any]]:
    """The mount set of ``runc spec`` (and containerd's default spec)."""
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                     "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ]


# Option types ----------------------------------------------------------------


class MountSpec(Record):
    """One extra mount: ``bind`` (host ``source`` → ``destination``) or ``tmpfs``."""

    _fields = ("type", "destination", "source", "readonly", "options")
    __slots__ = _fields
    type: Literal["bind", "tmpfs"]
    destination: str
    source: str
    readonly: bool
    #: extra mount options; for tmpfs e.g. ``("size=64m", "mode=1777")``
    options: tuple[str, ...]

    def __init__(self, type: Literal["bind", "tmpfs"], destination: str, source: str = "",
                 readonly: bool = False, options: tuple[str, ...] = ()) -> None:
        self._set(type, destination, source, readonly, options)


class RunOptions(Record):
    """What ``pyimg run`` may change about the image's defaults.

    ``args`` replaces the image Cmd; ``entrypoint`` (when not None) replaces the
    image Entrypoint and clears its Cmd unless ``args`` is given (``()`` as
    entrypoint clears it, like ``--entrypoint ""``).  ``env`` entries are
    ``KEY=VALUE``.  ``user`` is ``uid[:gid]`` or ``name[:group]`` (mixing is
    fine).  ``memory`` is bytes, ``cpus`` a fraction of CPUs, ``pids_limit`` a
    count (see :func:`parse_size`, :func:`parse_cpus`).
    """

    _fields = ("args", "entrypoint", "env", "workdir", "user", "hostname", "tty",
               "console_size", "readonly_rootfs", "memory", "cpus", "pids_limit", "network",
               "mounts", "cap_add", "cap_drop", "cgroups_path", "seccomp")
    __slots__ = _fields
    args: tuple[str, ...] | None
    entrypoint: tuple[str, ...] | None
    env: tuple[str, ...]
    workdir: str | None
    user: str | None
    hostname: str | None
    tty: bool
    console_size: tuple[int, int] | None  # (height, width) when tty
    readonly_rootfs: bool
    memory: int | None
    cpus: float | None
    pids_limit: int | None
    network: Literal["none", "host"]
    mounts: tuple[MountSpec, ...]
    cap_add: tuple[str, ...]
    cap_drop: tuple[str, ...]
    cgroups_path: str | None
    seccomp: Mapping[str, Any] | None  # not hashed

    def __init__(self, args: tuple[str, ...] | None = None,
                 entrypoint: tuple[str, ...] | None = None, env: tuple[str, ...] = (),
                 workdir: str | None = None, user: str | None = None,
                 hostname: str | None = None, tty: bool = False,
                 console_size: tuple[int, int] | None = None, readonly_rootfs: bool = False,
                 memory: int | None = None, cpus: float | None = None,
                 pids_limit: int | None = None, network: Literal["none", "host"] = "none",
                 mounts: tuple[MountSpec, ...] = (), cap_add: tuple[str, ...] = (),
                 cap_drop: tuple[str, ...] = (), cgroups_path: str | None = None,
                 seccomp: Mapping[str, Any] | None = None) -> None:
        self._set(args, entrypoint, env, workdir, user, hostname, tty, console_size,
                  readonly_rootfs, memory, cpus, pids_limit, network, mounts, cap_add,
                  cap_drop, cgroups_path, seccomp)

    def __hash__(self) -> int:
        return hash(self._values()[:-1])

    @property
    def terminal(self) -> bool:
        """Alias of ``tty`` (the spec calls it ``process.terminal``)."""
        return self.tty


def default_cgroups_path(container_id: str) -> str:
    """``/pyimg/<id>``: the cgroup a container lives in unless told otherwise."""
    return f"/pyimg/{container_id}"


# Size and CPU parsing ------------------------------------------------------------

# Patterns are compiled on first use (re caches them): most runs need few of them.
_SIZE = r"(?i)^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*$"
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(text: str) -> int:
    """Docker's ``RAMInBytes``: ``1024``, ``512k``, ``64m``, ``1.5g``, ``2GiB`` → bytes.

    Units are binary (k = 1024) and case-insensitive; ``b``/``ib`` may follow.
    """
    from decimal import Decimal

    m = re.match(_SIZE, text) if isinstance(text, str) else None
    if not m or (m.group(3) and m.group(3).lower() == "ib" and not m.group(2)):
        raise InvalidArgument(
            f"invalid size {text!r}: expected a number with an optional unit, e.g. 64m or 1g"
        )
    value = Decimal(m.group(1)) * _UNITS[m.group(2).lower()]
    return int(value)


def parse_cpus(text: str) -> float:
    """``"0.5"`` → 0.5 CPUs; must be a positive decimal number (at most 2 decimals
    count: the CFS quota resolution is 1 ms of a 100 ms period)."""
    from decimal import Decimal, InvalidOperation

    try:
        value = Decimal(text.strip())
    except (InvalidOperation, AttributeError) as exc:
        raise InvalidArgument(
            f"invalid cpus {text!r}: expected a decimal number of CPUs, e.g. 0.5 or 2"
        ) from exc
    if not value.is_finite() or value < Decimal("0.01"):
        raise InvalidArgument(f"invalid cpus {text!r}: must be at least 0.01")
    return float(value)


# Validation helpers ------------------------------------------------------------

_HOSTNAME = (
    r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_ENV_KEY = r"^[^=\x00]+$"
_MOUNT_OPT = r"^[a-z_]+(=[A-Za-z0-9._-]+)?$"
_SYSTEMD_CGROUP = r"^[A-Za-z0-9_.@-]+:[A-Za-z0-9_.@-]*:[A-Za-z0-9_.@-]+$"


def _clean_abs(path: str, what: str) -> str:
    if not isinstance(path, str) or not path.startswith("/") or "\x00" in path:
        raise InvalidArgument(f"invalid {what} {path!r}: must be an absolute path")
    return posixpath.normpath(path).replace("//", "/")


def _str_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"malformed image config: {what} must be a list of strings")
    return list(value)


def _check_args(args: Sequence[str], what: str) -> None:
    for a in args:
        if not isinstance(a, str) or "\x00" in a:
            raise InvalidArgument(f"invalid {what} {a!r}: arguments are strings without NUL")


def _env_key(entry: str) -> str:
    return entry.partition("=")[0]


def _merge_env(base: list[str], extra: Sequence[str]) -> list[str]:
    """Docker's ReplaceOrAppendEnvValues: same key → replaced in place."""
    out = list(base)
    index = {_env_key(e): i for i, e in enumerate(out)}
    for e in extra:
        k = _env_key(e)
        if k in index:
            out[index[k]] = e
        else:
            index[k] = len(out)
            out.append(e)
    return out


def _caps(add: Sequence[str], drop: Sequence[str]) -> list[str]:
    def norm(names: Sequence[str], what: str) -> list[str]:
        out = []
        for n in names:
            c = n.strip().upper()
            if c != "ALL" and not c.startswith("CAP_"):
                c = "CAP_" + c
            if c != "ALL" and c not in ALL_CAPABILITIES:
                raise InvalidArgument(f"invalid {what} {n!r}: unknown capability",
                                      hint="use a name like NET_ADMIN or CAP_SYS_PTRACE")
            out.append(c)
        return out

    adds, drops = norm(add, "cap-add"), norm(drop, "cap-drop")
    if "ALL" in adds:
        base = list(ALL_CAPABILITIES)
    else:
        base = [] if "ALL" in drops else list(DEFAULT_CAPABILITIES)
        base += [c for c in ALL_CAPABILITIES if c in adds and c not in base]
    if "ALL" in drops:
        return [c for c in base if c in adds]  # ALL dropped: only the explicit adds
    return [c for c in base if c not in drops or c in adds]


def _nofile() -> dict[str, Any]:
    soft = hard = NOFILE
    _, host_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if host_hard != resource.RLIM_INFINITY and host_hard < hard:
        soft = hard = host_hard
    return {"type": "RLIMIT_NOFILE", "hard": hard, "soft": soft}


def _mount_json(m: MountSpec) -> dict[str, Any]:
    dest = _clean_abs(m.destination, "mount destination")
    if dest == "/":
        raise InvalidArgument("invalid mount destination '/': cannot mount over the rootfs")
    for o in m.options:
        if not re.match(_MOUNT_OPT, o):
            raise InvalidArgument(f"invalid mount option {o!r} for {dest}")
    if m.type == "bind":
        src = _clean_abs(m.source, "bind mount source")
        if not os.path.exists(src):
            raise InvalidArgument(f"bind mount source {src} does not exist",
                                  hint="create it first or fix the path")
        opts = ["rbind", "rprivate", "ro" if m.readonly else "rw", *m.options]
        return {"destination": dest, "type": "bind", "source": src, "options": opts}
    if m.type == "tmpfs":
        opts = ["nosuid", "nodev", "noexec", *m.options]
        if not any(o.startswith("mode=") for o in m.options):
            opts.append("mode=1777")
        if m.readonly:
            opts.append("ro")
        return {"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": opts}
    raise InvalidArgument(f"invalid mount type {m.type!r}: expected bind or tmpfs")


def parse_volume(text: str) -> MountSpec:
    """``SRC:DST[:ro|rw]`` (``-v``) → a bind :class:`MountSpec`."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1] or (
            len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise InvalidArgument(f"invalid volume {text!r}: expected SRC:DST[:ro|rw] "
                              "with absolute paths")
    return MountSpec("bind", _clean_abs(parts[1], "mount destination"),
                     source=_clean_abs(parts[0], "bind mount source"),
                     readonly=len(parts) == 3 and parts[2] == "ro")


def parse_tmpfs(text: str) -> MountSpec:
    """``DST[:opt,opt]`` (``--tmpfs``) → a tmpfs :class:`MountSpec`."""
    dest, _, opts = text.partition(":")
    options = tuple(o for o in opts.split(",") if o) if opts else ()
    readonly = "ro" in options
    return MountSpec("tmpfs", _clean_abs(dest, "tmpfs destination"), readonly=readonly,
                     options=tuple(o for o in options if o not in ("ro", "rw")))


def _annotations(config: ImageConfig) -> dict[str, str]:
    cfg = config.config
    labels = cfg.get("Labels") or {}
    out = {k: v for k, v in labels.items() if isinstance(k, str) and k and isinstance(v, str)} \
        if isinstance(labels, dict) else {}
    extra = {
        "org.opencontainers.image.os": config.os,
        "org.opencontainers.image.architecture": config.architecture,
        "org.opencontainers.image.created": config.created or "",
        "org.opencontainers.image.stopSignal": cfg.get("StopSignal") or "",
        "org.opencontainers.image.author": config.raw.get("author") or "",
    }
    out.update({k: v for k, v in extra.items() if isinstance(v, str) and v})
    return out


# The spec --------------------------------------------------------------------------


def _process_args(cfg: Mapping[str, Any], options: RunOptions) -> list[str]:
    entrypoint = _str_list(cfg.get("Entrypoint"), "Entrypoint")
    cmd = _str_list(cfg.get("Cmd"), "Cmd")
    if options.entrypoint is not None:
        _check_args(options.entrypoint, "entrypoint")
        entrypoint = list(options.entrypoint)
        cmd = []
    if options.args:
        _check_args(options.args, "argument")
        cmd = list(options.args)
    args = entrypoint + cmd
    if not args or not args[0]:
        raise InvalidArgument("no command specified: the image has no Entrypoint or Cmd",
                              hint="give the command to run after the image name")
    return args


def _resources(options: RunOptions) -> dict[str, Any]:
    res: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if options.memory is not None:
        if isinstance(options.memory, bool) or options.memory < MIN_MEMORY:
            raise InvalidArgument(f"invalid memory limit {options.memory}: the minimum is 6 MiB")
        res["memory"] = {"limit": int(options.memory)}
    if options.cpus is not None:
        ncpu = os.cpu_count() or 1
        if not math.isfinite(options.cpus) or not 0.01 <= options.cpus <= ncpu:
            raise InvalidArgument(f"invalid cpus {options.cpus}: the range is 0.01 to {ncpu} "
                                  "on this machine")
        res["cpu"] = {"quota": round(options.cpus * CPU_PERIOD), "period": CPU_PERIOD}
    if options.pids_limit is not None:
        if isinstance(options.pids_limit, bool) or options.pids_limit < 1:
            raise InvalidArgument(f"invalid pids limit {options.pids_limit}: must be positive")
        res["pids"] = {"limit": int(options.pids_limit)}
    return res


def _mounts(options: RunOptions) -> list[dict[str, Any]]:
    extra = [_mount_json(m) for m in options.mounts]
    dests = [m["destination"] for m in extra]
    if len(set(dests)) != len(dests):
        raise InvalidArgument("duplicate mount destination: "
                              + ", ".join(sorted({d for d in dests if dests.count(d) > 1})))
    # like Docker, a user mount replaces a default mount at the same place
    return [m for m in default_mounts() if m["destination"] not in dests] + extra


def generate_spec(config: ImageConfig, rootfs: StrPath,
                  options: RunOptions = RunOptions()) -> dict[str, Any]:  # noqa: B008 (immutable)
    """The ``config.json`` for running ``config`` over the filled ``rootfs``.

    ``rootfs`` is only read (the image's ``/etc/passwd`` and ``/etc/group``);
    the spec names it as the bundle-relative ``rootfs``.  Raises
    :class:`InvalidArgument` for a bad option or an unusable image config.
    """
    cfg = config.config
    args = _process_args(cfg, options)

    user_spec = options.user if options.user is not None else cfg.get("User") or ""
    if not isinstance(user_spec, str):
        raise InvalidArgument("malformed image config: User must be a string")
    user = resolve_user(rootfs, user_spec)

    for e in options.env:
        if not isinstance(e, str) or "=" not in e or not re.match(_ENV_KEY, _env_key(e)) \
                or "\x00" in e:
            raise InvalidArgument(f"invalid environment variable {e!r}: expected KEY=VALUE")
    image_env = [e for e in _str_list(cfg.get("Env"), "Env") if "=" in e and "\x00" not in e
                 and _env_key(e)]
    env = image_env if any(_env_key(e) == "PATH" for e in image_env) else \
        [f"PATH={DEFAULT_PATH}", *image_env]
    env = _merge_env(env, options.env)
    keys = {_env_key(e) for e in env}
    if "HOME" not in keys:
        env.append(f"HOME={user.home or '/'}")
    if options.tty and "TERM" not in keys:
        env.append("TERM=xterm")

    if options.workdir is not None:
        cwd = _clean_abs(options.workdir, "working directory")
    else:
        wd = cfg.get("WorkingDir") or "/"
        if not isinstance(wd, str) or "\x00" in wd:
            raise InvalidArgument("malformed image config: WorkingDir must be a path")
        cwd = posixpath.normpath(posixpath.join("/", wd)).replace("//", "/")

    caps = _caps(options.cap_add, options.cap_drop)
    process: dict[str, Any] = {
        "terminal": bool(options.tty),
        "user": {"uid": user.uid, "gid": user.gid},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": list(caps), "permitted": list(caps)},
        "rlimits": [_nofile()],
        "noNewPrivileges": True,
    }
    if user.additional_gids:
        process["user"]["additionalGids"] = list(user.additional_gids)
    if options.tty and options.console_size is not None:
        h, w = options.console_size
        process["consoleSize"] = {"height": int(h), "width": int(w)}

    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if options.network == "none":
        namespaces.append({"type": "network"})
    elif options.network != "host":
        raise InvalidArgument(f"invalid network mode {options.network!r}: expected none or host")
    namespaces.append({"type": "cgroup"})

    linux: dict[str, Any] = {
        "resources": _resources(options),
        "namespaces": namespaces,
        "maskedPaths": list(MASKED_PATHS),
        "readonlyPaths": list(READONLY_PATHS),
    }
    if options.cgroups_path is not None:
        cp = options.cgroups_path
        if not ((cp.startswith("/") and "\x00" not in cp and ".." not in cp.split("/")
                 and cp != "/") or re.match(_SYSTEMD_CGROUP, cp)):
            raise InvalidArgument(f"invalid cgroups path {cp!r}: expected an absolute path "
                                  "like /pyimg/<id> or slice:prefix:name")
        linux["cgroupsPath"] = cp
    if options.seccomp is None:
        from pyimg.runtime.seccomp import default_profile

        linux["seccomp"] = default_profile(process["capabilities"]["bounding"])
    elif options.seccomp:
        linux["seccomp"] = dict(options.seccomp)

    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": ROOTFS_DIR, "readonly": bool(options.readonly_rootfs)},
    }
    if options.hostname is not None:
        if len(options.hostname) > 64 or not re.match(_HOSTNAME, options.hostname):
            raise InvalidArgument(f"invalid hostname {options.hostname!r}: expected letters, "
                                  "digits, '-' and '.', at most 64 characters")
        spec["hostname"] = options.hostname
    spec["mounts"] = _mounts(options)
    annotations = _annotations(config)
    if annotations:
        spec["annotations"] = annotations
    spec["linux"] = linux
    return spec

