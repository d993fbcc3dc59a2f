"""The launcher ↔ init handshake: typed JSON lines over an inherited socketpair.

runc's ``libcontainer/sync.go`` is the model.  The launcher never forks: it
starts ``python -m pyimg.runtime.init --sync-fd N`` as a fresh, single-threaded
process (stage 1), which may fork safely.  Stage 2 inherits the same socket.
Every message is one JSON object on one line with a ``type``.

::

    launcher (create/exec_in)           stage 1 (fresh python)        stage 2 (pid 1 / exec'd)
    ───────────────────────────         ───────────────────────       ────────────────────────
    Popen(init, pass_fds=sync) ──────►  PR_SET_DUMPABLE 0
    config{spec,rootfs,fifo,..} ─────►  open(exec.fifo, O_PATH)  (as the host's root)
    meanwhile: cgroup dirs + limits
                                        setns(joined namespaces)
                                        [user ns requested]
                                        unshare(CLONE_NEWUSER), alone and first
                     ◄───────────────── userns
    write uid_map, gid_map (one write
    each; no "setgroups deny": we are
    root outside); refused: LaunchError,
    stage 1 killed, nothing left
    continue ───────────────────────►   setresgid(0), setresuid(0) in the new user ns
                                        unshare(mnt,uts,ipc,net,pid): owned by it
                                        os.fork() ─────────────────►  (pid 1 in the new pid ns)
                     ◄───────────────── pid{pid}  (host pid of stage 2), exit 0
    wait(stage 1)
    cgroup_hook(pid), pid file
    continue ──────────────────────────────────────────────────────►  unshare(cgroup) (now the
                                                                      cgroup is the ns root)
                                                                      rootfs: mounts, devices
                     ◄─────────────────────────────────────────────── hooks (only if the spec
    prestart, createRuntime hooks                                     has these hooks)
    continue ──────────────────────────────────────────────────────►  createContainer hooks,
                                                                      pivot_root, masks, hostname
                     ◄─────────────────────────────────────────────── ready
    create() returns: "created"                                       open(exec.fifo, O_WRONLY)
                                                                      ...blocks...
    start(): open(exec.fifo, O_RDONLY),                               write "0", close
             read, unlink ("running")                                 rlimits, user, caps, nnp,
                                                                      close fds, chdir, seccomp
                     ◄─────────────────────────────────────────────── EOF (CLOEXEC: exec worked)
                                                                   or error{stage,errno,message}

Any step may instead answer ``error{stage, errno, message, exit_code}``; the
launcher raises it as :class:`~pyimg.errors.LaunchError`.  EOF where a
message was expected means the peer died (stage 2 exits when the launcher
goes away before ``continue``).  ``exec_in`` follows the same path without
rootfs setup and the exec fifo: ``ready`` is skipped and the process execs
right after ``continue``.
"""

from __future__ import annotations

import _socket  # the C module: socket.py costs ~3 ms to import here, on every start
import errno
import json
import os
import sys

from pyimg.errors import LaunchError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

    Stdio = tuple[int, int, int]

MAX_LINE = 4 * 1024 * 1024  # a spec is a few KiB; refuse anything absurd

CONFIG = "config"
USERNS = "userns"
CONTINUE = "continue"
PID = "pid"
READY = "ready"
HOOKS = "hooks"  # init stopped before pivot_root: run prestart/createRuntime hooks
ERROR = "error"


class ProtocolError(Exception):
    """The peer closed the socket or sent something not in the protocol."""


class Channel:
    """One end of the sync socket: :meth:`send` and :meth:`recv` typed messages."""

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self._buf = b""

    @classmethod
    def from_fd(cls, fd: int) -> Channel:
        return cls(_socket.socket(fileno=fd))

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, kind: str, **fields: Any) -> None:
        self.sock.sendall(json.dumps({"type": kind, **fields}).encode() + b"\n")

    def recv(self) -> dict[str, Any]:
        """The next message; raises :class:`ProtocolError` on EOF or garbage."""
        msg = self.recv_or_eof()
        if msg is None:
            raise ProtocolError("sync socket closed by the peer")
        return msg

    def recv_or_eof(self) -> dict[str, Any] | None:
        while b"\n" not in self._buf:
            if len(self._buf) > MAX_LINE:
                raise ProtocolError("sync message too long")
            chunk = self.sock.recv(65536)
            if not chunk:
                if self._buf:
                    raise ProtocolError("sync socket closed mid-message")
                return None
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        try:
            msg = json.loads(line)
        except ValueError as exc:
            raise ProtocolError(f"malformed sync message: {exc}") from exc
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            raise ProtocolError("malformed sync message: no type")
        return msg

    def expect(self, kind: str) -> dict[str, Any]:
        """The next message, which must be ``kind``; an ``error`` is returned as is."""
        msg = self.recv()
        if msg["type"] not in (kind, ERROR):
            raise ProtocolError(f"expected {kind!r} sync message, got {msg['type']!r}")
        return msg

    def close(self) -> None:
        self.sock.close()


def socketpair() -> tuple[Channel, _socket.socket]:
    """(launcher channel, child socket): the child end is to be inherited."""
    parent, child = _socket.socketpair(_socket.AF_UNIX,
                                       _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    os.set_inheritable(child.fileno(), True)
    return Channel(parent), child


# The launcher's side --------------------------------------------------------------


class Forked:
    """The part of ``subprocess.Popen`` the launcher uses, for a forked stage 1."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            os.kill(self.pid, 9)


def single_threaded() -> bool:
    """True only when this process has exactly one thread (C threads included)."""
    threading = sys.modules.get("threading")  # not imported: no Python threads
    if threading is not None and threading.active_count() != 1:
        return False
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"Threads:"):
                return int(line.split()[1]) == 1
    return False


def _fork_init(stdio: Stdio, child: _socket.socket, ours: Channel) -> Forked:
    """Stage 1 by fork, when we are single-threaded (``pyimg runtime``).

    Forking a process with threads is unsafe (another thread may hold a
    lock the child then waits on forever), which is why init is normally a
    fresh interpreter.  A provably single-threaded caller can fork instead
    and saves a whole Python start-up (~30 ms of a ~40 ms runc run).
    """
    pid = os.fork()
    if pid:
        return Forked(pid)
    try:  # the child: become what `python -m pyimg.runtime.init` would be
        ours.close()  # else our death would not show as EOF on its channel
        for target, fd in enumerate(stdio):
            if fd != target:
                os.dup2(fd, target)
        os.chdir("/")
        from pyimg.runtime import init

        init.main(["--sync-fd", str(child.fileno())])
    finally:
        os._exit(125)


def spawn(stdio: Stdio) -> tuple[subprocess.Popen[bytes] | Forked, Channel]:
    """Start init (stage 1) on ``stdio`` with the sync socket inherited.

    A fresh interpreter, unless this process is single-threaded (then a
    fork).  Only ``PYTHON*`` and ``PATH`` reach a fresh one from our
    environment; the container's environment comes from the spec.
    """
    ch, child = socketpair()
    if single_threaded():
        try:
            return _fork_init(stdio, child, ch), ch
        finally:
            child.close()
    import subprocess  # only for a fresh interpreter (~2 ms to import)

    env = {k: v for k, v in os.environ.items() if k.startswith("PYTHON") or k == "PATH"}
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pyimg.runtime.init", "--sync-fd", str(child.fileno())],
            pass_fds=(child.fileno(),), stdin=stdio[0], stdout=stdio[1], stderr=stdio[2],
            env=env, cwd="/")
    except BaseException:
        ch.close()
        raise
    finally:
        child.close()
    return proc, ch


def error(msg: Mapping[str, Any]) -> LaunchError:
    return LaunchError(str(msg.get("message") or "container init failed"),
                       stage=str(msg.get("stage") or "init"), errno=msg.get("errno"),
                       exit_code=int(msg.get("exit_code") or 125))


def recv(ch: Channel, kind: str) -> dict[str, Any]:
    try:
        msg = ch.expect(kind)
    except ProtocolError as exc:
        raise LaunchError(f"container init: {exc}", stage="sync") from exc
    if msg["type"] == ERROR:
        raise error(msg)
    return msg


def id_map(maps: Sequence[Mapping[str, Any]]) -> bytes:
    """``uid_map``/``gid_map`` text of the spec's ``uidMappings``/``gidMappings``."""
    return "".join(f"{int(m['containerID'])} {int(m['hostID'])} {int(m['size'])}\n"
                   for m in maps).encode()


def host_id(maps: Sequence[Mapping[str, Any]], cid: int) -> int | None:
    """The host id that container id ``cid`` maps to, or None when unmapped."""
    for m in maps:
        first, size = int(m["containerID"]), int(m["size"])
        if first <= cid < first + size:
            return int(m["hostID"]) + cid - first
    return None


def write_id_maps(pid: int, lx: Mapping[str, Any]) -> None:
    """Write uid_map, then gid_map, of ``pid``'s new user namespace (runc's order).

    We are root in the parent namespace, so gid_map needs no ``setgroups
    deny`` (that is only for writers without CAP_SETGID there), and the
    container may still call setgroups(2).  Each map goes in one write(2), as
    the kernel requires.  A refusal (overlapping or unmapped ranges, too
    many lines, ids outside our namespace) is a :class:`LaunchError`.
    """
    for name in ("uid", "gid"):
        text = id_map(lx.get(f"{name}Mappings") or [])
        path = f"/proc/{pid}/{name}_map"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                if os.write(fd, text) != len(text):
                    raise OSError(errno.EIO, "short write")
            finally:
                os.close(fd)
        except OSError as exc:
            lines = "; ".join(text.decode().strip().splitlines())
            raise LaunchError(f"user namespace: the kernel refused {name}Mappings "
                              f"[{lines}] ({os.strerror(exc.errno) if exc.errno else exc}): "
                              "ranges must not overlap and every host id must exist in "
                              "the launcher's own user namespace",
                              stage="user namespace", errno=exc.errno) from exc


def handshake(proc: subprocess.Popen[bytes] | Forked, ch: Channel, cfg: dict[str, Any],
              meanwhile: Callable[[], None] | None = None) -> int:
    """Send the config, serve the user-namespace request, return stage 2's pid.

    ``meanwhile`` runs once the config is sent, while init works on it."""
    ch.send(CONFIG, **cfg)
    if meanwhile is not None:
        meanwhile()
    while True:
        try:
            msg = ch.recv()
        except ProtocolError as exc:
            raise LaunchError(f"container init: {exc}", stage="sync") from exc
        if msg["type"] == USERNS:
            # on failure the caller kills stage 1, blocked waiting for continue
            write_id_maps(proc.pid, cfg["spec"].get("linux", {}))
            ch.send(CONTINUE)
        elif msg["type"] == PID:
            proc.wait()
            return int(msg["pid"])
        elif msg["type"] == ERROR:
            raise error(msg)
        else:
            raise LaunchError(f"container init: unexpected {msg['type']!r}", stage="sync")
