"""The container's init: ``python -m pyimg.runtime.init --sync-fd N``.

Started by :mod:`pyimg.runtime.launcher` as a *fresh* process, so it has a
single thread and may unshare and fork safely (runc's ``nsexec`` runs before
the Go runtime for the same reason).  :mod:`pyimg.runtime.sync` documents the
handshake.

* stage 1 (this process): not dumpable, joins namespaces by path, creates
  the user namespace (the launcher writes the maps) and the others, forks;
  reports the child's host pid and exits 0.
* stage 2 (the child, pid 1 of a new pid namespace): waits for ``continue``
  (its cgroup is set by then), creates the cgroup namespace, builds the root
  filesystem, reports ``ready``, blocks on ``exec.fifo`` until ``start``,
  then sets up the process (:func:`finalize`) and execs.

Nothing here may import lazily after ``pivot_root``: the host's Python
library is out of reach from then on, so every module is imported up front.
In a user namespace it may be out of reach even before (a library under
/root is not searchable by the namespace's root, host uid 100000 say).
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import stat
import sys

from pyimg import linux
from pyimg.errors import LaunchError
from pyimg.mount import split_options
from pyimg.runtime import caps, rootfs
from pyimg.runtime.sync import CONFIG, CONTINUE, ERROR, HOOKS, PID, USERNS, Channel

TYPE_CHECKING = False  # init runs on every container start: no typing, socket.py
if TYPE_CHECKING:
    import socket
    from collections.abc import Mapping, Sequence
    from types import ModuleType
    from typing import Any, NoReturn

#: spec namespace type → (CLONE flag, /proc/<pid>/ns name)
NAMESPACES: dict[str, tuple[int, str]] = {
    "user": (linux.CLONE_NEWUSER, "user"), "ipc": (linux.CLONE_NEWIPC, "ipc"),
    "uts": (linux.CLONE_NEWUTS, "uts"), "network": (linux.CLONE_NEWNET, "net"),
    "pid": (linux.CLONE_NEWPID, "pid"), "cgroup": (linux.CLONE_NEWCGROUP, "cgroup"),
    "mount": (linux.CLONE_NEWNS, "mnt"),
}
_JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "mount")  # mount last
_NOT_FOUND, _NOT_EXECUTABLE = 127, 126


class _Stage:
    """The step in progress, named in an ``error`` message."""

    name = "init"
    command = ""


def _load_seccomp(spec: Mapping[str, Any]) -> ModuleType | None:
    """``pyimg.runtime.seccomp`` when it exists and the spec has ``linux.seccomp``,
    imported with libseccomp loaded while the host's libraries are reachable."""
    if not spec.get("linux", {}).get("seccomp"):
        return None
    _Stage.name = "seccomp"
    from pyimg.runtime import seccomp

    # the spec lets seccomp read (or compile and write) its cached BPF program
    # now, while the host's /run is reachable: then no libseccomp at all
    seccomp.preload(spec["linux"]["seccomp"])
    return seccomp


# Stage 1 -------------------------------------------------------------------------------


def stage1(ch: Channel, cfg: Mapping[str, Any], seccomp: ModuleType | None) -> NoReturn:
    _Stage.name = "namespaces"
    linux.prctl(linux.PR_SET_DUMPABLE, 0)  # /proc/<pid>/exe of the host python: hidden
    join = [(str(t), str(p)) for t, p in cfg.get("join", [])]
    new = [str(t) for t in cfg.get("new", [])]
    # the exec fifo is opened here, as the host's root: the state directory is
    # private (0700), out of reach of a user namespace's root (runc passes an
    # O_PATH fd too).  Stage 2 reopens it through /proc/self/fd.
    fifo_fd = os.open(str(cfg["fifo"]), os.O_PATH | os.O_CLOEXEC) if cfg.get("fifo") else -1
    set_oom_score_adj(cfg["spec"].get("process") or {})
    join_namespaces(join)
    if "user" in new:
        enter_user_namespace(ch)
    flags = 0
    for t in new:
        if t not in ("user", "cgroup"):  # cgroup: stage 2, once it is in its cgroup
            flags |= NAMESPACES[t][0]
    if flags:
        linux.unshare(flags)
    pid = os.fork()  # safe: this process has exactly one thread
    if pid == 0:
        stage2(ch, cfg, seccomp, fifo_fd)
    ch.send(PID, pid=pid)
    os._exit(0)


def enter_user_namespace(ch: Channel) -> None:
    """runc's nsexec order: unshare(CLONE_NEWUSER) alone and first, let the launcher
    (root in the parent namespace) write uid_map and gid_map, then become root
    of the new namespace.  The other namespaces are created afterwards, so the
    user namespace owns them (mounting proc, sysfs, mqueue needs that)."""
    _Stage.name = "user namespace"
    linux.unshare(linux.CLONE_NEWUSER)
    ch.send(USERNS)
    _expect_continue(ch)  # the maps are written (or the launcher gave up)
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    _Stage.name = "namespaces"


def join_namespaces(join: Sequence[tuple[str, str]]) -> None:
    """setns(2) into each ``(type, path)``; all paths are opened before the first
    join, and the mount namespace is joined last (it changes path lookups)."""
    fds = []
    try:
        for t in sorted((t for t, _ in join), key=_JOIN_ORDER.index):
            path = dict(join)[t]
            fds.append((os.open(path, os.O_RDONLY | os.O_CLOEXEC), NAMESPACES[t][0]))
        for fd, flag in fds:
            linux.setns(fd, flag)
    finally:
        for fd, _ in fds:
            os.close(fd)


def _expect_continue(ch: Channel) -> None:
    msg = ch.recv()
    if msg["type"] != CONTINUE:
        raise RuntimeError(f"expected continue, got {msg['type']}")


# Stage 2 -------------------------------------------------------------------------------


def _controlling_terminal() -> None:
    """Make stdin (a pty slave handed over by the shim) our controlling terminal.

    runc receives a console over --console-socket; pyimg's shim instead passes
    the slave as stdio, so the process only needs a session that owns it.
    ``fcntl`` and ``termios`` were imported by :func:`main` (before pivot_root).
    """
    fcntl, termios = sys.modules["fcntl"], sys.modules["termios"]

    _Stage.name = "terminal"
    if not os.isatty(0):
        raise OSError(errno.ENOTTY, "process.terminal is set but stdin is not a terminal")
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


_TIOCSPTLCK = 0x40045431  # _IOW('T', 0x31, int): unlockpt
_TIOCGPTPEER = 0x5441  # _IO('T', 0x41): open the slave from the master (Linux 4.13)


def _console_socket() -> socket.socket | None:
    """fd 0 as a unix socket when the caller wants the pty from us (else None)."""
    if not stat.S_ISSOCK(os.fstat(0).st_mode):
        return None
    sock: socket.socket = sys.modules["socket"].socket(fileno=os.dup(0))  # see main()
    return sock


def _allocate_console(sock: socket.socket) -> None:
    """Open a pty in the container's own devpts (after pivot_root, or in the joined
    mount namespace), hand the master to the caller over ``sock`` (SCM_RIGHTS, as
    runc's --console-socket does), and make the slave our stdio.

    Allocated here rather than by the shim, so that the slave is ``/dev/pts/N`` of
    the container: ``tty`` and ``ttyname(3)`` find it.
    """
    fcntl, socket = sys.modules["fcntl"], sys.modules["socket"]
    _Stage.name = "console"
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(master, _TIOCSPTLCK, b"\0\0\0\0")
        slave = fcntl.ioctl(master, _TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
        with sock:
            socket.send_fds(sock, [b"console"], [master])
    finally:
        os.close(master)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def stage2(ch: Channel, cfg: Mapping[str, Any], seccomp: ModuleType | None,
           fifo_fd: int) -> NoReturn:
    try:
        _Stage.name = "init"
        _expect_continue(ch)
        spec = cfg["spec"]
        if cfg.get("mode") == "exec":
            finalize(ch, spec["process"], spec.get("linux", {}).get("seccomp"), seccomp)
        new = [str(t) for t in cfg.get("new", [])]
        if "cgroup" in new:
            _Stage.name = "namespaces"
            linux.unshare(linux.CLONE_NEWCGROUP)
        if "network" in new:
            rootfs.loopback_up()
        console = _console_socket() if spec["process"].get("terminal") else None
        setup_rootfs(ch, cfg, spec)
        if console is not None:
            _allocate_console(console)
        ch.send("ready")
        _Stage.name = "exec fifo"
        # blocks until `start` opens the fifo for reading (runc's exact mechanism)
        fd = os.open(rootfs.fd_path(fifo_fd), os.O_WRONLY | os.O_CLOEXEC)
        os.write(fd, b"0")
        os.close(fd)
        os.close(fifo_fd)
        finalize(ch, spec["process"], spec.get("linux", {}).get("seccomp"), seccomp,
                 start_hooks=_container_hooks(cfg, "startContainer", "created"))
    except BaseException as exc:
        fail(ch, exc)


def _container_hooks(cfg: Mapping[str, Any], kind: str, status: str
                     ) -> tuple[str, list[Any], dict[str, Any]] | None:
    """(kind, hooks, state) for hooks that init runs itself, or None."""
    spec = cfg["spec"]
    hooks = (spec.get("hooks") or {}).get(kind)
    if not hooks:
        return None
    # the launcher's state, as seen from inside: pid in the container's pid namespace
    return kind, hooks, {**cfg["hook_state"], "status": status, "pid": os.getpid()}


def _run_container_hooks(todo: tuple[str, list[Any], dict[str, Any]] | None) -> None:
    if todo is not None:
        _Stage.name = f"{todo[0]} hook"
        sys.modules["pyimg.runtime.hooks"].run(*todo)  # imported by main()


def setup_rootfs(ch: Channel, cfg: Mapping[str, Any], spec: Mapping[str, Any]) -> None:
    """Build the root filesystem and pivot into it (with the hooks that run between
    the mounts and pivot_root)."""
    _Stage.name = "rootfs"
    lx = spec.get("linux", {})
    userns = "user" in cfg.get("new", []) or any(t == "user" for t, _ in cfg.get("join", []))
    _, prop, _ = split_options([lx.get("rootfsPropagation") or "rslave"])
    linux.mount(None, "/", None, prop or linux.MS_SLAVE | linux.MS_REC)
    root = str(cfg["rootfs"])
    rootfs.make_parent_private(root)  # pivot_root refuses a shared parent (rshared)
    try:
        linux.mount(root, root, "bind", linux.MS_BIND | linux.MS_REC)
    except PermissionError as exc:
        if not userns:
            raise
        raise PermissionError(exc.errno, f"{exc.strerror} (in a user namespace the "
                              "container's root must be able to reach the rootfs: every "
                              "directory above it needs search permission for others, "
                              "as with runc)", root) from exc
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        mounts = spec.get("mounts", [])
        for m in mounts:
            _Stage.name = f"mount {m.get('destination')}"
            rootfs.mount_entry(root_fd, str(cfg["bundle"]), m, lx if userns else None)
        _Stage.name = "rootfs"
        if any(m.get("destination") == "/dev" and m.get("type") != "bind" for m in mounts):
            rootfs.create_devices(root_fd, lx.get("devices", []), userns)
        cwd = str(spec.get("process", {}).get("cwd") or "/")
        os.close(rootfs.resolve(root_fd, cwd, "dir"))  # runc creates a missing cwd
        if cfg.get("runtime_hooks"):  # prestart + createRuntime, by the launcher
            _Stage.name = "hooks"
            ch.send(HOOKS)
            _expect_continue(ch)
        _run_container_hooks(_container_hooks(cfg, "createContainer", "creating"))
        _Stage.name = "rootfs"
        rootfs.pivot(root_fd)
    finally:
        os.close(root_fd)
    rootfs.write_sysctls(lx.get("sysctl") or {})
    rootfs.readonly_paths(lx.get("readonlyPaths") or [])
    rootfs.mask_paths(lx.get("maskedPaths") or [])
    if spec.get("root", {}).get("readonly"):
        rootfs.readonly_root()
    rootfs.set_hostname(spec.get("hostname"))


# The process -----------------------------------------------------------------------------


def finalize(ch: Channel, process: Mapping[str, Any], seccomp_spec: Any,
             seccomp: ModuleType | None,
             start_hooks: tuple[str, list[Any], dict[str, Any]] | None = None) -> NoReturn:
    """rlimits, umask, user, capabilities, no_new_privs, fds, cwd,
    seccomp (last), startContainer hooks, exec.  Shared by stage 2 and ``exec_in``."""
    _Stage.name = "process"
    set_rlimits(process.get("rlimits") or [])
    os.umask(int(process.get("user", {}).get("umask", 0o022)))
    if process.get("terminal"):
        console = _console_socket()
        if console is not None:
            _allocate_console(console)
        _controlling_terminal()
    sets = caps.CapSets.from_spec(process.get("capabilities"))
    caps.drop_bounding(sets.bounding)
    set_user(process.get("user") or {})
    caps.apply(sets)
    if process.get("noNewPrivileges"):
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    _reset_signals()
    keep = ch.fileno()  # CLOEXEC: closes itself at exec, EOF tells the launcher
    os.closerange(3, keep)
    os.closerange(keep + 1, _max_fd())
    _Stage.name = "cwd"
    os.chdir(str(process.get("cwd") or "/"))
    if os.getcwd().startswith("(unreachable)"):  # the CVE-2024-21626 class
        raise OSError(errno.EPERM, "current working directory is outside the root")
    args = [str(a) for a in process.get("args") or []]
    if not args:
        raise ValueError("process.args is empty")
    env = dict(e.split("=", 1) for e in process.get("env") or [] if "=" in e)
    if seccomp_spec and seccomp is not None:
        _Stage.name = "seccomp"
        seccomp.install(seccomp_spec)
    # as runc: with the process's own user, capabilities and seccomp, in its root
    _run_container_hooks(start_hooks)
    _Stage.name, _Stage.command = "exec", args[0]
    os.execvpe(args[0], args, env)


def set_oom_score_adj(process: Mapping[str, Any]) -> None:
    """``process.oomScoreAdj``, written by stage 1 as the host's root before any
    namespace (as runc's nsexec does); stage 2 and the command inherit it.

    Later, in a user namespace, /proc/self of this non-dumpable process belongs
    to the host's root, whom the namespace does not map: the write would fail.
    """
    if process.get("oomScoreAdj") is not None:
        _Stage.name = "process"
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(int(process["oomScoreAdj"])))
        _Stage.name = "namespaces"


def clamp_rlimit(value: int, limit: int) -> int:
    """``value`` (spec units, 2**64-1 = unlimited) capped at ``limit`` (resource units)."""
    infinity = resource.RLIM_INFINITY
    value = infinity if value >= 2**63 - 1 else value
    if limit == infinity:
        return value
    return limit if value == infinity or value > limit else value


def set_rlimits(rlimits: Sequence[Mapping[str, Any]]) -> None:
    """setrlimit each, never above the hard limit granted (no CAP_SYS_RESOURCE here)."""
    for r in rlimits:
        res = getattr(resource, str(r["type"]))
        _, granted = resource.getrlimit(res)
        hard = clamp_rlimit(int(r.get("hard", resource.RLIM_INFINITY)), granted)
        soft = clamp_rlimit(int(r.get("soft", hard)), hard)
        resource.setrlimit(res, (soft, hard))


def set_user(user: Mapping[str, Any]) -> None:
    """setgroups, setgid, setuid, keeping the permitted capabilities across setuid."""
    uid, gid = int(user.get("uid", 0)), int(user.get("gid", 0))
    caps.keep_caps(True)
    os.setgroups([int(g) for g in user.get("additionalGids") or []])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    caps.keep_caps(False)


def _reset_signals() -> None:
    """Python ignores SIGPIPE and SIGXFSZ; an ignored signal stays ignored across exec."""
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def _max_fd() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if 0 < soft < 1 << 20 else 1 << 20


# Errors ---------------------------------------------------------------------------------


def exit_code_for(stage: str, err: int | None) -> int:
    """docker's conventions: 127 not found, 126 not executable, 125 anything else."""
    if stage == "exec":
        if err in (errno.ENOENT, errno.ENOTDIR):
            return _NOT_FOUND
        return _NOT_EXECUTABLE
    return 125


def fail(ch: Channel, exc: BaseException) -> NoReturn:
    stage = _Stage.name
    err = exc.errno if isinstance(exc, OSError) else None
    code = exit_code_for(stage, err)
    message = _describe(stage, exc)
    try:
        ch.send(ERROR, stage=stage, errno=err, message=message, exit_code=code)
    except OSError:  # nobody listens any more (create and start were separate calls)
        with contextlib.suppress(OSError):
            os.write(2, f"pyimg init: {message}\n".encode())
    os._exit(code)


def _describe(stage: str, exc: BaseException) -> str:
    if isinstance(exc, OSError):
        what = f" {exc.filename!r}" if exc.filename and stage != "exec" else ""
        text = os.strerror(exc.errno) if exc.errno else str(exc)
        if stage == "exec":
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                text = "executable file not found in $PATH"
            return f"exec {_Stage.command!r}: {text}"
        return f"{stage}{what}: {text}"
    if isinstance(exc, LaunchError):
        return exc.message
    return f"{stage}: {exc}"


def main(argv: Sequence[str]) -> NoReturn:
    if len(argv) != 2 or argv[0] != "--sync-fd":
        os.write(2, b"usage: python -m pyimg.runtime.init --sync-fd N (started by pyimg)\n")
        os._exit(2)
    fd = int(argv[1])
    os.set_inheritable(fd, False)
    ch = Channel.from_fd(fd)
    try:
        msg = ch.recv()
        if msg["type"] != CONFIG:
            raise RuntimeError(f"expected config, got {msg['type']}")
        terminal = (msg["spec"].get("process") or {}).get("terminal")
        if terminal or "network" in (msg.get("new") or []):
            # for _controlling_terminal (after pivot_root) and rootfs.loopback_up:
            # a user namespace's root may not even reach the host's Python
            # library (e.g. under /root), so import them as the host's root now
            import fcntl  # noqa: F401
            import struct  # noqa: F401
        if terminal:
            import socket  # noqa: F401
            import termios  # noqa: F401
        if (msg["spec"].get("hooks") or {}).get("createContainer") or \
                (msg["spec"].get("hooks") or {}).get("startContainer"):
            from pyimg.runtime import hooks  # noqa: F401  (run after pivot_root)
        stage1(ch, msg, _load_seccomp(msg["spec"]))
    except BaseException as exc:
        fail(ch, exc)


if __name__ == "__main__":
    main(sys.argv[1:])
