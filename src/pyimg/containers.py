"""Containers made from images: snapshot + bundle + shim, and their records.

Layout under the state directory (``/run/pyimg`` as root)::

    containers/<id>/container.json   what `pyimg run` asked for (this module)
    containers/<id>/bundle/          config.json + rootfs/ (the mounted snapshot)
    containers/<id>/shim.sock        the shim's control socket
    containers/<id>/log.json         docker json-file logs
    containers/<id>/exit.json        exit status, written by the shim
    runtime/<id>/state.json          the launcher's runtime-spec state
"""

from __future__ import annotations

import _socket  # socket.py costs ~2.5 ms to import here: the C module does for a client
import contextlib
import json
import os
import sys

from pyimg.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from pyimg.fsutil import atomic_write
from pyimg.rmtree import rmtree
from pyimg.settings import absolute

TYPE_CHECKING = False  # import-light: `pyimg run` (no typing, dataclasses, pathlib)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

    from pyimg.fsutil import StrPath

RECORD = "container.json"


class Container:
    """What `pyimg run` asked for: ``container.json``."""

    _fields = ("id", "name", "image", "chain_id", "snapshotter", "command", "created", "rm",
               "tty", "stdin", "stop_signal", "labels")
    __slots__ = _fields
    id: str
    name: str
    image: str
    chain_id: str
    snapshotter: str
    command: list[str]
    created: float
    rm: bool
    tty: bool
    stdin: bool
    #: the image config's StopSignal (``SIGTERM`` when empty), used by `stop`
    stop_signal: str
    labels: dict[str, str]

    def __init__(self, id: str, name: str, image: str, chain_id: str, snapshotter: str,
                 command: list[str], created: float, rm: bool = False, tty: bool = False,
                 stdin: bool = False, stop_signal: str = "",
                 labels: dict[str, str] | None = None) -> None:
        self.id, self.name, self.image, self.chain_id = id, name, image, chain_id
        self.snapshotter, self.command, self.created = snapshotter, command, created
        self.rm, self.tty, self.stdin, self.stop_signal = rm, tty, stdin, stop_signal
        self.labels = {} if labels is None else labels

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._fields}

    def __eq__(self, other: object) -> bool:
        if type(other) is not Container:
            return NotImplemented
        return self.as_dict() == other.as_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return "Container(" + ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items()) + ")"

    @property
    def short(self) -> str:
        return self.id[:12]


class Containers:
    """The container records and shims under one state directory."""

    def __init__(self, state: StrPath) -> None:
        self.state = os.path.abspath(state)  # shims run from "/" and outlive the caller
        self.root = os.path.join(state, "containers")
        self.runtime_root = os.path.join(state, "runtime")

    def dir(self, cid: str) -> str:
        return os.path.join(self.root, cid)

    def new_id(self, name: str | None) -> tuple[str, str]:
        cid = os.urandom(32).hex()  # secrets.token_hex(32), without importing secrets
        name = name or f"pyimg_{cid[:8]}"
        if any(c.name == name for c in self.list()):
            raise AlreadyExists(f"container name {name!r} is already in use",
                                hint="remove it or choose another --name")
        return cid, name

    def save(self, c: Container) -> None:
        d = self.dir(c.id)
        os.makedirs(d, 0o700, exist_ok=True)
        # Under the state directory (/run): atomic for readers, and like runc's
        # state.json not fsync'd -- a reboot discards the container anyway.
        atomic_write(os.path.join(d, RECORD), json.dumps(c.as_dict()).encode(), durable=False)

    def list(self) -> list[Container]:
        out = []
        if os.path.isdir(self.root):
            for name in sorted(os.listdir(self.root)):
                try:
                    with open(os.path.join(self.root, name, RECORD)) as f:
                        out.append(Container(**json.loads(f.read())))
                except (OSError, ValueError, TypeError):
                    continue
        return sorted(out, key=lambda c: c.created)

    def find(self, ref: str) -> Container:
        hits = [c for c in self.list() if c.name == ref or c.id == ref or
                (len(ref) >= 3 and c.id.startswith(ref))]
        if not hits:
            raise NotFound(f"no such container: {ref}")
        if len(hits) > 1:
            raise InvalidArgument(f"container {ref!r} is ambiguous: use more of its id")
        return hits[0]

    # -- status ----------------------------------------------------------------
    def exit_status(self, c: Container) -> dict[str, Any] | None:
        try:
            status: dict[str, Any] = json.loads(_read(os.path.join(self.dir(c.id), "exit.json")))
            return status
        except (OSError, ValueError):
            return None

    def status(self, c: Container) -> str:
        if self.exit_status(c) is not None:
            return "exited"
        if self.shim_alive(c):
            return "running" if self._started(c) else "created"
        return "created" if not self._started(c) else "exited"

    def _started(self, c: Container) -> bool:
        return os.path.exists(os.path.join(self.dir(c.id), "started"))

    def mark_started(self, c: Container) -> None:
        """Record that ``c`` has been started (what :meth:`status` reads)."""
        os.close(os.open(os.path.join(self.dir(c.id), "started"),
                         os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666))

    def shim_alive(self, c: Container) -> bool:
        """Whether ``c``'s shim runs: not a zombie, and not another process that
        got its pid after it died (its start time is the one in ``shim.start``; a
        shim of an older pyimg wrote none, and has the container id in its
        command line)."""
        d = self.dir(c.id)
        try:
            pid = int(_read(os.path.join(d, "shim.pid")))
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if fields[0] in (b"Z", b"X"):
                return False
            try:
                return int(fields[19]) == int(_read(os.path.join(d, "shim.start")))
            except FileNotFoundError:
                pass
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            return False
        return c.id.encode() in argv

    # -- shim ------------------------------------------------------------------
    def spawn_shim(self, c: Container, cgroup_spec: StrPath | None, *,
                   auto_remove: bool = False, store_root: StrPath | None = None,
                   fork: ShimFork | None = None,
                   meanwhile: Callable[[], object] | None = None) -> None:
        """Start the container's shim and wait until it serves its socket.

        ``auto_remove``: the shim runs ``python -m pyimg rm -f ID`` as its last
        step (``run -d --rm``), against this state directory and ``store_root``.

        A single-threaded caller (the CLI) forks the shim, which then runs
        without a new interpreter (as the runtime forks the container's init),
        or hands the container to the one it forked earlier (``fork``, see
        :func:`prefork_shim`); otherwise it is a fresh ``python -m
        pyimg.runtime.shim``.  Either way it says it is up over an inherited
        pipe (EOF: it gave up, see exit.json).  ``meanwhile`` is called while it
        creates the container (the caller's own preparations for what follows).
        """
        d = self.dir(c.id)
        options: dict[str, str | int | bool] = {
            "id": c.id, "bundle": os.path.join(d, "bundle"), "state_dir": d,
            "runtime_root": self.runtime_root,
            "cgroup_spec": "" if cgroup_spec is None else os.fspath(cgroup_spec),
            "tty": c.tty, "stdin": c.stdin, "rm": auto_remove}
        env = {"PYIMG_STATE": self.state}
        if auto_remove and store_root is not None:
            env["PYIMG_ROOT"] = absolute(os.fspath(store_root))
        log = os.path.join(d, "shim.log")
        errlog = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666)
        if fork is None:
            fork = prefork_shim()
        if fork is not None:
            os.close(errlog)  # the shim opens it itself
            ready_r = fork.start(options, env, log)
            try:
                if meanwhile is not None:
                    meanwhile()
                self._wait_for_shim(c, ready_r, fork.pid)
            finally:
                os.close(ready_r)
            return
        import subprocess

        from pyimg.runtime.shim import command_line

        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        try:
            try:
                options["ready_fd"] = ready_w
                # cwd "/": the shim outlives the CLI and must not pin the caller's directory
                pid = subprocess.Popen(
                    [sys.executable, "-m", "pyimg.runtime.shim", *command_line(options)],
                    stdin=subprocess.DEVNULL, stdout=errlog, stderr=errlog,
                    start_new_session=True, close_fds=True, pass_fds=(ready_w,), cwd="/",
                    env={**os.environ, **env}).pid
            finally:
                os.close(errlog)
                os.close(ready_w)
            if meanwhile is not None:
                meanwhile()
            self._wait_for_shim(c, ready_r, pid)
        finally:
            os.close(ready_r)

    def reset(self, c: Container) -> None:
        """Forget the last run's status (for `start`); logs and the bundle stay."""
        d = self.dir(c.id)
        for name in ("exit.json", "started", "shim.pid", "shim.start", "shim.sock"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(d, name))

    def _wait_for_shim(self, c: Container, ready: int, pid: int,
                       timeout: float = 30.0) -> None:
        """Until the shim writes to ``ready`` (up), or closes it or exits (failed)."""
        import select

        try:
            watch = [ready, os.pidfd_open(pid)]
        except OSError:  # gone already (or no pidfd): the pipe alone tells
            watch = [ready]
        try:
            readable, _, _ = select.select(watch, [], [], timeout)
            if ready in readable and os.read(ready, 1) == b"1":
                return
        finally:
            for fd in watch[1:]:
                os.close(fd)
        if not readable:
            raise FailedPrecondition(f"container {c.short}: shim did not come up",
                                     hint=f"see {self._shim_log(c)}")
        status = self.exit_status(c)
        raise FailedPrecondition(f"container {c.short} failed to start:"
                                 f" {(status or {}).get('error', 'see its logs')}",
                                 hint=None if status else f"see {self._shim_log(c)}")

    def _shim_log(self, c: Container) -> str:
        return os.path.join(self.dir(c.id), "shim.log")

    def request(self, c: Container, msg: dict[str, Any], timeout: float | None = None
                ) -> dict[str, Any]:
        s = self.connect(c)
        try:
            s.settimeout(timeout)
            s.sendall(json.dumps(msg).encode() + b"\n")
            line = readline(s)
        except OSError as exc:
            raise FailedPrecondition(f"container {c.short}: shim went away") from exc
        finally:
            s.close()
        if not line.strip():  # the shim closed: its container has just exited
            raise FailedPrecondition(f"container {c.short} is not running")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise FailedPrecondition(f"container {c.short}: {answer['error']}")
        return answer

    def connect(self, c: Container) -> _socket.socket:
        from pyimg.runtime.shim import socket_path

        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            with socket_path(self.dir(c.id)) as path:
                s.connect(path)
        except OSError as exc:
            s.close()
            raise FailedPrecondition(f"container {c.short} is not running") from exc
        return s

    def forget(self, c: Container) -> None:
        rmtree(self.dir(c.id), ignore_errors=True)
        rmtree(os.path.join(self.runtime_root, c.id), ignore_errors=True)


class ShimFork:
    """A shim forked before its container is ready (:func:`prefork_shim`).

    It imports what it needs and waits for :meth:`start` (which sends it the
    container over a pipe) while its parent prepares the container: on two CPUs
    that work is off the start's critical path.  :meth:`cancel` (or its parent
    exiting) sends it nothing: it then exits.
    """

    def __init__(self, pid: int, go: int, ready: int) -> None:
        self.pid, self._go, self._ready = pid, go, ready

    def start(self, options: dict[str, str | int | bool], env: dict[str, str],
              log: str) -> int:
        """Hand it the container (:func:`pyimg.runtime.shim.run`'s ``options``, the
        environment to add, its log file); the fd that reports it up, yours to close."""
        if self._go < 0:
            raise ValueError("this shim fork was already used or cancelled")
        message = json.dumps({"options": options, "env": env, "log": log}).encode()
        try:
            view = memoryview(message)
            while view:
                view = view[os.write(self._go, view):]
        except BrokenPipeError:
            pass  # it is gone: its ready pipe says so
        finally:
            os.close(self._go)
            self._go = -1
        ready, self._ready = self._ready, -1
        return ready

    def cancel(self) -> None:
        """Not needed after all: it exits without starting anything."""
        for fd in (self._go, self._ready):
            if fd >= 0:
                os.close(fd)
        self._go = self._ready = -1


def prefork_shim() -> ShimFork | None:
    """A shim forked from this process now, to receive its container later; None
    when this process has threads (forking it would be unsafe: see spawn_shim).

    The child is what ``python -m pyimg.runtime.shim`` would be: a session of its
    own in "/", stdin /dev/null, stdout and stderr to its log (/dev/null until it
    has one), no other fd of ours but the two pipes, SIGINT ignored, other signals
    default.  It never returns into the caller's code, and leaves with
    ``os._exit`` (no atexit handler and no finaliser of ours runs in it).
    """
    from pyimg.runtime.sync import single_threaded

    if not single_threaded():
        return None
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    for stream in (sys.stdout, sys.stderr):  # or the child would write it out again
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        pid = os.fork()
    except BaseException:
        for fd in (go_r, go_w, ready_r, ready_w):
            os.close(fd)
        raise
    if pid == 0:
        _shim_child(go_r, ready_w)
    os.close(go_r)
    os.close(ready_w)
    return ShimFork(pid, go_w, ready_r)


def _shim_child(go: int, ready: int) -> NoReturn:
    code = 1
    try:
        import gc
        import resource
        import signal

        gc.freeze()  # our objects are not the shim's to collect (file objects: fds)
        os.setsid()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                    signal.SIGUSR2, signal.SIGWINCH, signal.SIGCHLD, signal.SIGALRM):
            signal.signal(sig, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        low, high = sorted((go, ready))
        os.closerange(3, low)
        os.closerange(low + 1, high)
        os.closerange(high + 1, soft if 0 < soft < 1 << 20 else 1 << 20)
        os.chdir("/")
        from pyimg.runtime import shim

        shim.preload()
        warm = _wait_warm(go)
        chunks = []
        while chunk := os.read(go, 65536):
            chunks.append(chunk)
        os.close(go)
        if not chunks:  # cancelled, or our parent is gone
            code = 0
        else:
            request = json.loads(b"".join(chunks))
            log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND
                          | os.O_CLOEXEC, 0o666)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(log)
            os.environ.update(request["env"])
            from types import SimpleNamespace

            args = SimpleNamespace(**request["options"], ready_fd=ready, warm=warm)
            code = shim.run(args)  # type: ignore[arg-type]
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    except BaseException:
        with contextlib.suppress(BaseException):
            import traceback

            traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
        os._exit(code)


def _wait_warm(go: int, interval: float = 0.005, keep: float = 0.25) -> int | None:
    """Until ``go`` is readable, keep the cgroup attach warm (:mod:`~pyimg.runtime.
    attachwarm`): one move at a time, each within a grace period of the last, keeps
    the kernel's rwsem in its slow state, so that neither our own cgroup set-up nor
    the move of the container's init waits for a grace period.  For ``keep``
    seconds at most (a pull may come first); then once more when ``go`` comes.
    The last mover (for the join hook to reap), or None (no warm-up here)."""
    import select
    import time

    from pyimg.runtime import attachwarm

    warm = attachwarm.start()
    if warm is None:
        return None
    until = time.monotonic() + keep
    while True:
        keeping = time.monotonic() < until
        ready, _, _ = select.select([go], [], [], interval if keeping else None)
        if os.waitpid(warm, os.WNOHANG)[0]:  # its move is done: another one now
            warm = attachwarm.start()
            if warm is None:
                return None
        if ready:
            return warm


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def readline(s: _socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf
