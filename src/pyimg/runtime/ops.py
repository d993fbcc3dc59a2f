"""The operations behind `pyimg runtime` (runc's verbs), free of any CLI library.

Both the click command group and the fast entry path (:mod:`pyimg.entry`)
call these, so a runc-style `create`/`start`/`run` does not pay for
importing click (~25 ms, most of a runc start-up).  Paths are plain
strings or path-likes: pathlib alone costs ~4 ms to import here.
"""

from __future__ import annotations

import json
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from pyimg.fsutil import StrPath
    from pyimg.runtime.cgroup_hooks import JoinHook
    from pyimg.runtime.state import ContainerState


def state_root(explicit: str | None, state: str | None) -> str:
    if explicit:
        return os.path.abspath(explicit)
    from pyimg.paths import state_path

    return os.path.join(state_path(state), "runtime")


def _cgroup_state(root: StrPath, cid: str) -> str:
    return os.path.join(root, cid, "cgroup-state.json")


def _hook(spec: dict[str, Any], root: StrPath, cid: str,
          warm: int | None = None) -> JoinHook:
    """The cgroup join; ``warm``: the :mod:`~pyimg.runtime.attachwarm` child to reap
    once the join is done."""
    from pyimg.runtime.cgroup_hooks import join_hook

    linux = spec.get("linux") or {}
    return join_hook(linux.get("cgroupsPath") or f"/pyimg/{cid}", linux.get("resources"),
                     _cgroup_state(root, cid), warm)


def _cleanup(root: StrPath, cid: str) -> Callable[[ContainerState], None]:
    """A launcher ``cgroup_cleanup``: runs before the state directory goes."""
    def cleanup(_: object) -> None:
        from pyimg.runtime.cgroup_hooks import destroy

        destroy(_cgroup_state(root, cid))

    return cleanup


def _console(spec: dict[str, Any], console_socket: str | None, *, detached: bool
             ) -> int | None:
    """A connected ``--console-socket`` for init's stdin (init sends the pty master
    over it), checked against ``process.terminal`` as runc checks it."""
    from pyimg.errors import InvalidArgument

    terminal = bool(spec["process"].get("terminal"))
    if console_socket is None:
        if terminal and detached:
            raise InvalidArgument("process.terminal is set but no --console-socket was "
                                  "given to receive the pty master (as with runc)")
        return None
    if not terminal:
        raise InvalidArgument("--console-socket needs process.terminal set to true")
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        sock.connect(console_socket)
    except OSError as exc:
        sock.close()
        raise InvalidArgument(f"--console-socket {console_socket}: "
                              f"{exc.strerror or exc}") from exc
    return sock.detach()


def _launch(call: Callable[..., Any], root: StrPath, bundle: StrPath,
            pid_file: StrPath | None, cid: str, console_socket: str | None, *,
            detached: bool, warm: int | None, **extra: Any) -> Any:
    """``launcher.create`` or ``launcher.run`` with pyimg's cgroup hooks and stdio."""
    from pyimg.runtime import launcher

    bundle = os.path.realpath(bundle)
    spec = launcher.load_spec(bundle)
    console = _console(spec, console_socket, detached=detached)
    try:
        return call(cid, bundle, root, pid_file=pid_file,
                    stdio=(0, 1, 2) if console is None else (console, 1, 2),
                    cgroup_hook=_hook(spec, root, cid, warm),
                    cgroup_cleanup=_cleanup(root, cid), **extra)
    finally:
        if console is not None:
            os.close(console)


def create(root: StrPath, bundle: StrPath, pid_file: StrPath | None, cid: str, *,
           console_socket: str | None = None, warm: int | None = None) -> None:
    from pyimg.runtime import launcher

    _launch(launcher.create, root, bundle, pid_file, cid, console_socket, detached=True,
            warm=warm)


def start(root: StrPath, cid: str) -> None:
    from pyimg.runtime import launcher

    warn(launcher.start(cid, root))


def state(root: StrPath, cid: str) -> dict[str, Any]:
    from pyimg.runtime import launcher

    out = launcher.state(cid, root)
    if out["status"] == "running" and os.path.exists(_paused(root, cid)):
        out["status"] = "paused"
    return out


def _paused(root: StrPath, cid: str) -> str:
    return os.path.join(root, cid, "paused")


def _cgroup(root: StrPath, cid: str) -> Any:
    """The container's :class:`~pyimg.runtime.cgroups.CgroupManager` (checked: it exists)."""
    from pyimg.errors import FailedPrecondition
    from pyimg.runtime.cgroup_hooks import load

    mgr = load(_cgroup_state(root, cid))
    if mgr is None:
        state(root, cid)  # NotFound for an unknown container
        raise FailedPrecondition(f"container {cid} has no cgroup recorded")
    return mgr


def pause(root: StrPath, cid: str) -> None:
    """Freeze every process of the container (runc pause): v1 freezer or cgroup.freeze."""
    from pyimg.errors import FailedPrecondition

    if state(root, cid)["status"] != "running":
        raise FailedPrecondition(f"container {cid} is not running")
    _cgroup(root, cid).freeze()
    with open(_paused(root, cid), "wb"):
        pass


def resume(root: StrPath, cid: str) -> None:
    from pyimg.errors import FailedPrecondition

    if state(root, cid)["status"] != "paused":
        raise FailedPrecondition(f"container {cid} is not paused")
    _cgroup(root, cid).thaw()
    os.unlink(_paused(root, cid))


def ps(root: StrPath, cid: str, fmt: str) -> str:
    """The host pids of the container's processes: JSON (what containerd's shim reads)
    or a PID/CMD table."""
    from pyimg.errors import InvalidArgument

    if fmt not in ("table", "json"):
        raise InvalidArgument(f"unknown ps format {fmt!r}: use table or json")
    pids = _cgroup(root, cid).pids()
    if fmt == "json":
        return json.dumps(pids) + "\n"
    lines = ["PID\tCMD"]
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        lines.append(f"{pid}\t{cmd}")
    return "\n".join(lines) + "\n"


def exec_(root: StrPath, cid: str, *, process_file: str | None, args: list[str],
          env: list[str], cwd: str | None, user: str | None, tty: bool, detach: bool,
          pid_file: str | None, console_socket: str | None, warm: int | None = None) -> int:
    """runc exec: a new process in the container (``--process FILE``, an OCI process,
    or the container's own process with ARGS and the overrides).  In the foreground it
    waits and returns the process's exit code; ``--detach`` returns once it runs."""
    from pyimg import linux
    from pyimg.errors import InvalidArgument
    from pyimg.fsutil import atomic_write
    from pyimg.runtime import launcher
    from pyimg.runtime.cgroup_hooks import add_hook

    process = _exec_process(launcher.load_spec(state(root, cid)["bundle"]), process_file,
                            args, env, cwd, user, tty)
    console = _console({"process": process}, console_socket, detached=detach)
    hook = add_hook(_cgroup_state(root, cid), warm)
    was = linux.is_child_subreaper()
    if not detach:
        linux.set_child_subreaper(True)  # the process is ours to wait for
    try:
        pid = launcher.exec_in(cid, root, process,
                               stdio=(0, 1, 2) if console is None else (console, 1, 2),
                               cgroup_hook=hook)
        if pid_file:
            atomic_write(pid_file, str(pid).encode(), 0o644)
        if detach:
            return 0
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        return 128 - code if code < 0 else code
    except ChildProcessError as exc:
        raise InvalidArgument(f"exec in {cid}: lost the process") from exc
    finally:
        if console is not None:
            os.close(console)
        if not detach:
            linux.set_child_subreaper(was)


def _exec_process(spec: dict[str, Any], process_file: str | None, args: list[str],
                  env: list[str], cwd: str | None, user: str | None,
                  tty: bool) -> dict[str, Any]:
    from pyimg.errors import InvalidArgument

    if process_file:
        try:
            with open(process_file, "rb") as f:
                process = json.loads(f.read())
        except (OSError, ValueError) as exc:
            raise InvalidArgument(f"--process {process_file}: {exc}") from exc
        if not isinstance(process, dict) or not process.get("args"):
            raise InvalidArgument(f"--process {process_file}: an OCI process with args")
        return process
    if not args:
        raise InvalidArgument("exec needs a command (or --process FILE)")
    process = dict(spec["process"], args=list(args), terminal=tty)
    if env:
        keys = {e.split("=", 1)[0] for e in env}
        process["env"] = [e for e in process.get("env") or []
                          if e.split("=", 1)[0] not in keys] + list(env)
    if cwd:
        process["cwd"] = cwd
    if user:
        uid, _, gid = user.partition(":")
        if not uid.isdigit() or (gid and not gid.isdigit()):
            raise InvalidArgument(f"--user {user!r}: use UID[:GID] (numbers, as runc)")
        process["user"] = {"uid": int(uid), "gid": int(gid or 0)}
    return process


def kill(root: StrPath, cid: str, sig: str) -> None:
    from pyimg.runtime import launcher
    from pyimg.runtime.signals import parse_signal

    launcher.kill(cid, root, parse_signal(sig))


def delete(root: StrPath, cid: str, force: bool) -> None:
    """``--force`` of a container that does not exist succeeds, as with runc (containerd's
    shim cleans up that way after a container that already went)."""
    from pyimg.errors import NotFound
    from pyimg.runtime import launcher

    if force and os.path.exists(_paused(root, cid)):  # frozen tasks would not die
        resume(root, cid)
    try:
        warn(launcher.delete(cid, root, force=force, cgroup_cleanup=_cleanup(root, cid)))
    except NotFound:
        if not force:
            raise
        from pyimg.runtime.cgroup_hooks import destroy

        destroy(_cgroup_state(root, cid))  # a cgroup left by an interrupted create


def run(root: StrPath, bundle: StrPath, pid_file: StrPath | None, cid: str, *,
        console_socket: str | None = None, warm: int | None = None) -> int:
    from pyimg.runtime import launcher

    code: int = _launch(launcher.run, root, bundle, pid_file, cid, console_socket,
                        detached=False, warm=warm, on_warning=lambda w: warn([w]))
    return code


def warn(warnings: list[str]) -> None:
    """Failed poststart/poststop hooks: reported, as runc does, and not fatal."""
    import sys

    for w in warnings:
        sys.stderr.write(f"pyimg: warning: {w}\n")


def log_error(path: str | None, fmt: str, message: str) -> None:
    """runc's ``--log``/``--log-format``: the error as the last log line, which
    containerd's shim reads back to explain a failed create."""
    if not path:
        return
    from pyimg.runtime.logs import rfc3339_nano

    stamp = rfc3339_nano()
    if fmt == "json":
        line = json.dumps({"level": "error", "msg": message, "time": stamp})
    else:
        line = f"time={json.dumps(stamp)} level=error msg={json.dumps(message)}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        return  # the error itself is already on stderr
    try:
        os.write(fd, line.encode() + b"\n")
    finally:
        os.close(fd)
