"""The OCI runtime lifecycle over a bundle: the part runc plays.

::

    st = create("web", bundle, state_root)        # init waits on exec.fifo: "created"
    start("web", state_root)                       # the command runs: "running"
    state("web", state_root)["status"]            # runtime-spec state JSON
    kill("web", state_root, signal.SIGKILL)        # "stopped" once it is gone
    delete("web", state_root)                      # state directory removed

    code = run("job", bundle, state_root)          # create + start + wait + delete

The container's init is a fresh ``python -m pyimg.runtime.init`` process
(never a fork of this possibly threaded one), driven over the handshake in
:mod:`pyimg.runtime.sync`.  Cgroups and seccomp plug in through
``cgroup_hook(pid)`` (called while init waits, before any container code
runs) and ``pyimg.runtime.seccomp.install``.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import time

from pyimg import linux
from pyimg.errors import AlreadyExists, InvalidArgument, LaunchError, NotFound
from pyimg.fsutil import atomic_write
from pyimg.runtime import state as _state
from pyimg.runtime.logs import rfc3339_nano
from pyimg.runtime.state import (
    CREATED,
    EXEC_FIFO,
    RUNNING,
    STOPPED,
    ContainerState,
    check_operation,
    check_transition,
)
from pyimg.runtime.sync import (
    CONTINUE,
    ERROR,
    HOOKS,
    READY,
    Channel,
    ProtocolError,
    error,
    handshake,
    host_id,
    recv,
    spawn,
)

TYPE_CHECKING = False  # every `pyimg runtime` call: no typing, pathlib, datetime, shutil
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from typing import Any

    from pyimg.fsutil import StrPath

    CgroupHook = Callable[[int], None]
    CgroupCleanup = Callable[[ContainerState], None]
    Stdio = tuple[int, int, int]
HOOKS_FILE = "hooks.json"  # poststart/poststop hooks, kept for start and delete
_NS_TYPES = ("user", "ipc", "uts", "network", "pid", "cgroup", "mount")
_PROC_NS = {"user": "user", "ipc": "ipc", "uts": "uts", "network": "net", "pid": "pid",
            "cgroup": "cgroup", "mount": "mnt"}


def load_spec(bundle: StrPath) -> dict[str, Any]:
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            spec = json.loads(f.read())
    except FileNotFoundError as exc:
        raise NotFound(f"bundle {bundle} has no config.json") from exc
    except ValueError as exc:
        raise InvalidArgument(f"bundle {bundle}: config.json is not JSON: {exc}") from exc
    if not isinstance(spec, dict) or not isinstance(spec.get("process"), dict):
        raise InvalidArgument(f"bundle {bundle}: config.json has no process")
    return spec


def _namespaces(spec: Mapping[str, Any]) -> tuple[list[tuple[str, str]], list[str]]:
    """(namespaces to join by path, namespaces to create)."""
    join, new = [], []
    for ns in spec.get("linux", {}).get("namespaces", []):
        t = ns.get("type")
        if t not in _NS_TYPES:
            raise InvalidArgument(f"unknown namespace type {t!r}")
        if ns.get("path"):
            join.append((t, str(ns["path"])))
        else:
            new.append(t)
    return join, new


def _root_ids(spec: Mapping[str, Any], join: list[tuple[str, str]],
              new: list[str]) -> tuple[int, int] | None:
    """The host (uid, gid) of the container's root when it gets a new user
    namespace, else None.  Checks the mappings as runc's config validation does."""
    lx = spec.get("linux") or {}
    uids, gids = lx.get("uidMappings") or [], lx.get("gidMappings") or []
    if "user" not in new:
        if (uids or gids) and not any(t == "user" for t, _ in join):
            raise InvalidArgument("uidMappings/gidMappings need a user namespace: add "
                                  '{"type": "user"} to linux.namespaces')
        return None
    ids = []
    for name, maps in (("uid", uids), ("gid", gids)):
        if not isinstance(maps, list) or not maps:
            raise InvalidArgument(f"a new user namespace needs linux.{name}Mappings")
        try:
            root = host_id(maps, 0)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgument(f"linux.{name}Mappings: each entry needs integer "
                                  "containerID, hostID and size") from exc
        if root is None:
            raise InvalidArgument(f"linux.{name}Mappings map no host {name} to the "
                                  f"container's root ({name} 0)")
        ids.append(root)
    return ids[0], ids[1]


def _remove_state_dir(sdir: str) -> None:
    """The state directory holds plain files only (state, fifo, cgroup state)."""
    try:
        names = os.listdir(sdir)
    except FileNotFoundError:
        return
    try:
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(sdir, name))
        os.rmdir(sdir)
    except OSError:  # something else was put there: remove it all the slow way
        import shutil

        shutil.rmtree(sdir, ignore_errors=True)


def _create(cid: str, bundle: StrPath, state_root: StrPath, stdio: Stdio,
            pid_file: StrPath | None, cgroup_hook: CgroupHook | None,
            cgroup_cleanup: CgroupCleanup | None) -> tuple[ContainerState, Channel]:
    bundle = os.path.realpath(bundle)
    spec = load_spec(bundle)
    rootfs = os.path.realpath(os.path.join(bundle, spec.get("root", {}).get("path") or "rootfs"))
    if not os.path.isdir(rootfs):
        raise NotFound(f"rootfs {rootfs} does not exist")
    join, new = _namespaces(spec)
    root_ids = _root_ids(spec, join, new)
    hk = _hooks_of(spec)
    sdir = _state.state_dir(state_root, cid)
    fifo = os.path.join(sdir, EXEC_FIFO)
    os.makedirs(state_root, mode=0o700, exist_ok=True)
    try:
        os.mkdir(sdir, 0o700)
    except FileExistsError as exc:
        raise AlreadyExists(f"container {cid} already exists") from exc
    st = ContainerState(cid, bundle, rootfs, created=rfc3339_nano(),
                        annotations=dict(spec.get("annotations") or {}))
    pid = 0
    try:
        _state.save(state_root, st)
        os.mkfifo(fifo, 0o622)
        if root_ids is not None:  # as runc: the container's root opens it for writing
            os.chown(fifo, *root_ids)
        cfg = {"mode": "create", "id": cid, "spec": spec, "bundle": bundle, "rootfs": rootfs,
               "fifo": fifo, "join": join, "new": new,
               "runtime_hooks": bool(hk.get("prestart") or hk.get("createRuntime"))}
        if hk.get("createContainer") or hk.get("startContainer"):
            # init's hooks get this state, with their own status and pid (1)
            cfg["hook_state"] = _state.oci_state(state_root, st)
        if hk.get("poststart") or hk.get("poststop"):  # for start and delete, later
            atomic_write(os.path.join(sdir, HOOKS_FILE), json.dumps(
                {k: hk[k] for k in ("poststart", "poststop") if k in hk}).encode(), 0o600,
                durable=False)
        proc, ch = spawn(stdio)
        try:
            # the cgroup's directories and limits are written while init starts
            pid = handshake(proc, ch, cfg, meanwhile=getattr(cgroup_hook, "prepare", None))
            start = _state.proc_start_time(pid)
            if start is None:
                raise LaunchError("container init exited during setup", stage="init")
            st = st.with_(pid=pid, pid_start=start)
            _state.save(state_root, st)
            if cgroup_hook is not None:
                cgroup_hook(pid)
            if pid_file is not None:
                atomic_write(pid_file, f"{pid}".encode(), 0o644)
            ch.send(CONTINUE)
            if cfg["runtime_hooks"]:  # init stops after the mounts, before pivot_root
                recv(ch, HOOKS)
                _run_hooks(hk, ("prestart", "createRuntime"), state_root, st)
                ch.send(CONTINUE)
            recv(ch, READY)
        except BaseException:
            ch.close()
            with contextlib.suppress(OSError):
                proc.kill()
            proc.wait()
            raise
        check_transition(cid, st.status, CREATED)
        st = st.with_(status=CREATED)
        _state.save(state_root, st)
        return st, ch
    except BaseException:
        if pid:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            _reap(pid)
        if cgroup_cleanup is not None:  # the hook may have run: its cgroup goes too
            with contextlib.suppress(Exception):
                cgroup_cleanup(st)
        _remove_state_dir(sdir)
        raise


def create(cid: str, bundle: StrPath, state_root: StrPath, *, stdio: Stdio = (0, 1, 2),
           pid_file: StrPath | None = None, cgroup_hook: CgroupHook | None = None,
           cgroup_cleanup: CgroupCleanup | None = None) -> ContainerState:
    """Create container ``cid`` from ``bundle``: status ``created`` on return.

    Init has set up namespaces and the root filesystem and waits on
    ``exec.fifo``; ``cgroup_hook(pid)`` ran before that.  Raises
    :class:`AlreadyExists`, :class:`NotFound` (bundle) or :class:`LaunchError`;
    on failure ``cgroup_cleanup`` removes what the hook made.
    """
    st, ch = _create(_state.check_id(cid), bundle, state_root, stdio, pid_file,
                     cgroup_hook, cgroup_cleanup)
    ch.close()
    return st


def _hooks_of(spec: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    if not spec.get("hooks"):
        return {}  # and no import of the hooks module
    from pyimg.runtime import hooks

    return hooks.of(spec, *hooks.KINDS)


def _run_hooks(hk: Mapping[str, Any], kinds: tuple[str, ...], state_root: StrPath,
               st: ContainerState) -> list[str]:
    """Run the ``kinds`` present in ``hk`` with ``st``'s state; the warnings of the
    warn-only kinds (the others raise)."""
    todo = [kind for kind in kinds if hk.get(kind)]
    if not todo:
        return []  # and no import of the hooks module
    from pyimg.runtime import hooks

    warnings = []
    for kind in todo:
        state = _state.oci_state(state_root, st)
        if state["status"] == _state.CREATING:
            state["pid"] = st.pid  # optional while creating; runc passes it
        warnings += hooks.run(kind, hk[kind], state)
    return warnings


def _saved_hooks(state_root: StrPath, cid: str) -> dict[str, Any]:
    try:
        with open(os.path.join(_state.state_dir(state_root, cid), HOOKS_FILE), "rb") as f:
            saved: dict[str, Any] = json.loads(f.read())
    except FileNotFoundError:
        return {}
    return saved


def start(cid: str, state_root: StrPath, timeout: float = 10.0) -> list[str]:
    """Let the created container exec its command (runc's exec.fifo handshake).

    Returns the warnings of failed poststart hooks (which do not stop it)."""
    st = _state.load(state_root, cid)
    check_operation(cid, "start", _state.status(state_root, st))
    fifo = os.path.join(_state.state_dir(state_root, cid), EXEC_FIFO)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        deadline = time.monotonic() + timeout
        while True:
            select.select([fd], [], [], 0.05)
            with contextlib.suppress(BlockingIOError):
                if os.read(fd, 1) == b"0":
                    break
            if _state.proc_start_time(st.pid) != st.pid_start:
                raise LaunchError(f"container {cid} exited before start", stage="start")
            if time.monotonic() > deadline:
                raise LaunchError(f"container {cid} did not start in {timeout}s",
                                  stage="start")
    finally:
        os.close(fd)
    os.unlink(fifo)
    st = st.with_(status=RUNNING)
    _state.save(state_root, st)
    return _run_hooks(_saved_hooks(state_root, cid), ("poststart",), state_root, st)


def state(cid: str, state_root: StrPath) -> dict[str, Any]:
    """The runtime-spec state of ``cid`` (``ociVersion, id, status, pid, bundle...``)."""
    return _state.oci_state(state_root, _state.load(state_root, cid))


def list_containers(state_root: StrPath) -> list[dict[str, Any]]:
    """The state of every container under ``state_root``, sorted by id."""
    out = []
    with contextlib.suppress(FileNotFoundError):
        for entry in sorted(os.scandir(state_root), key=lambda e: e.name):
            if entry.is_dir(follow_symlinks=False):
                with contextlib.suppress(NotFound, InvalidArgument):
                    out.append(state(entry.name, state_root))
    return out


@contextlib.contextmanager
def _pidfd(st: ContainerState) -> Iterator[int | None]:
    """A pidfd of the container's init, or None if it is gone (pid reuse checked)."""
    try:
        fd = os.pidfd_open(st.pid)
    except ProcessLookupError:
        yield None
        return
    try:
        yield fd if _state.proc_start_time(st.pid) == st.pid_start else None
    finally:
        os.close(fd)


def kill(cid: str, state_root: StrPath, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to the container's init (created or running)."""
    st = _state.load(state_root, cid)
    check_operation(cid, "kill", _state.status(state_root, st))
    with _pidfd(st) as fd:
        if fd is None:
            raise LaunchError(f"container {cid} is not running", stage="kill")
        signal.pidfd_send_signal(fd, sig)


def _reap(pid: int) -> int | None:
    """waitpid if ``pid`` is our child (we are its subreaper): its exit status."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return None
    return os.waitstatus_to_exitcode(status)


def _wait_gone(st: ContainerState, timeout: float) -> None:
    with _pidfd(st) as fd:
        if fd is not None:
            select.select([fd], [], [], timeout)
    _reap_nohang(st.pid)


def _reap_nohang(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def delete(cid: str, state_root: StrPath, force: bool = False,
           cgroup_cleanup: CgroupCleanup | None = None) -> list[str]:
    """Remove a stopped container's state; ``force`` SIGKILLs a live one first.

    Returns the warnings of failed poststop hooks."""
    st = _state.load(state_root, cid)
    live = _state.status(state_root, st)
    if live != STOPPED:
        if not force:
            check_operation(cid, "delete", live)
        with _pidfd(st) as fd:
            if fd is not None:
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        _wait_gone(st, 10.0)
    if cgroup_cleanup is not None:
        cgroup_cleanup(st)
    warnings = _run_hooks(_saved_hooks(state_root, cid), ("poststop",), state_root, st)
    _remove_state_dir(_state.state_dir(state_root, cid))
    return warnings


def _subreaper(on: bool) -> bool:
    was = linux.is_child_subreaper()
    linux.set_child_subreaper(on)
    return was


def run(cid: str, bundle: StrPath, state_root: StrPath, *, stdio: Stdio = (0, 1, 2),
        pid_file: StrPath | None = None, cgroup_hook: CgroupHook | None = None,
        cgroup_cleanup: CgroupCleanup | None = None,
        on_warning: Callable[[str], None] | None = None) -> int:
    """create + start + wait + delete; returns the exit code (128+N for signal N).

    This process becomes a child subreaper for the duration, as ``runc run`` is
    the parent of its container, so it can collect the exit status.  A failure
    at exec raises :class:`LaunchError` with ``exit_code`` 126 or 127.
    Failed poststart/poststop hooks go to ``on_warning``.
    """
    warnings: list[str] = []
    was = _subreaper(True)
    try:
        st, ch = _create(_state.check_id(cid), bundle, state_root, stdio, pid_file,
                         cgroup_hook, cgroup_cleanup)
        try:
            warnings += start(cid, state_root)
            try:
                msg = ch.recv_or_eof()  # EOF: the sync socket closed at exec
            except ProtocolError:
                msg = None
            code = _reap(st.pid)
        finally:
            ch.close()
            warnings += delete(cid, state_root, force=True, cgroup_cleanup=cgroup_cleanup)
            if on_warning is not None:
                for w in warnings:
                    on_warning(w)
        if msg is not None and msg["type"] == ERROR:
            raise error(msg)
        return _exit_code(code)
    finally:
        _subreaper(was)


def _exit_code(code: int | None) -> int:
    if code is None:
        return 255
    return 128 - code if code < 0 else code


def exec_in(cid: str, state_root: StrPath, process: Mapping[str, Any], *,
            stdio: Stdio = (0, 1, 2), cgroup_hook: CgroupHook | None = None) -> int:
    """Start ``process`` (an OCI ``process`` object) inside container ``cid``.

    It joins every namespace of the container's init and (through
    ``cgroup_hook``) its cgroup, and gets the same process setup as init.
    Returns its host pid; it is reparented to this process only if this
    process is a child subreaper (the shim is), else to init(1).
    """
    st = _state.load(state_root, cid)
    check_operation(cid, "exec", _state.status(state_root, st))
    spec = load_spec(st.bundle)
    spec = {**spec, "process": dict(process)}
    join = _container_namespaces(st)
    cfg = {"mode": "exec", "spec": spec, "join": join, "new": []}
    proc, ch = spawn(stdio)
    try:
        pid = handshake(proc, ch, cfg)
        if cgroup_hook is not None:
            cgroup_hook(pid)
        ch.send(CONTINUE)
        try:
            msg = ch.recv_or_eof()
        except ProtocolError:
            msg = None
        if msg is not None and msg["type"] == ERROR:
            _reap_nohang(pid)
            raise error(msg)
        return pid
    finally:
        ch.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _container_namespaces(st: ContainerState) -> list[tuple[str, str]]:
    """The namespaces of init that differ from ours: (type, /proc/<pid>/ns/x)."""
    out = []
    with _pidfd(st) as fd:
        if fd is None:
            raise LaunchError(f"container {st.id} is not running", stage="exec")
        for t in _NS_TYPES:
            theirs = f"/proc/{st.pid}/ns/{_PROC_NS[t]}"
            if os.stat(theirs).st_ino != os.stat(f"/proc/self/ns/{_PROC_NS[t]}").st_ino:
                out.append((t, theirs))
    return out
