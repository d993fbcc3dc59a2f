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

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pyimg.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from pyimg.fsutil import atomic_write

RECORD = "container.json"


@dataclass
class Container:
    id: str
    name: str
    image: str
    chain_id: str
    snapshotter: str
    command: list[str]
    created: float
    rm: bool = False
    tty: bool = False
    stdin: bool = False
    #: the image config's StopSignal (``SIGTERM`` when empty), used by `stop`
    stop_signal: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def short(self) -> str:
        return self.id[:12]


class Containers:
    """The container records and shims under one state directory."""

    def __init__(self, state: Path) -> None:
        self.state = Path(state).absolute()  # shims run from "/" and outlive the caller
        self.root = state / "containers"
        self.runtime_root = state / "runtime"

    def dir(self, cid: str) -> Path:
        return self.root / cid

    def new_id(self, name: str | None) -> tuple[str, str]:
        cid = secrets.token_hex(32)
        name = name or f"pyimg_{cid[:8]}"
        if any(c.name == name for c in self.list()):
            raise AlreadyExists(f"container name {name!r} is already in use",
                                hint="remove it or choose another --name")
        return cid, name

    def save(self, c: Container) -> None:
        d = self.dir(c.id)
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(d / RECORD, json.dumps(asdict(c)).encode())

    def list(self) -> list[Container]:
        out = []
        if self.root.is_dir():
            for d in sorted(self.root.iterdir()):
                try:
                    out.append(Container(**json.loads((d / RECORD).read_text())))
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
            status: dict[str, Any] = json.loads((self.dir(c.id) / "exit.json").read_text())
            return status
        except (OSError, ValueError):
            return None

    def status(self, c: Container) -> str:
        if self.exit_status(c) is not None:
            return "exited"
        if self.shim_alive(c):
            return "running" if (self.dir(c.id) / "started").exists() else "created"
        return "created" if not (self.dir(c.id) / "started").exists() else "exited"

    def shim_alive(self, c: Container) -> bool:
        """Whether ``c``'s shim runs: not a zombie, and not another process that
        got its pid after it died (its start time is the one in ``shim.start``; a
        shim of an older pyimg wrote none, and has the container id in its
        command line)."""
        d = self.dir(c.id)
        try:
            pid = int((d / "shim.pid").read_text())
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if fields[0] in (b"Z", b"X"):
                return False
            try:
                return int(fields[19]) == int((d / "shim.start").read_text())
            except FileNotFoundError:
                pass
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            return False
        return c.id.encode() in argv

    # -- shim ------------------------------------------------------------------
    def spawn_shim(self, c: Container, cgroup_spec: Path | None, *,
                   auto_remove: bool = False, store_root: Path | None = None) -> None:
        """Start the container's shim and wait until it serves its socket.

        ``auto_remove``: the shim runs ``python -m pyimg rm -f ID`` as its last
        step (``run -d --rm``), against this state directory and ``store_root``.

        A single-threaded caller (the CLI) forks the shim, which then runs
        without a new interpreter (as the runtime forks the container's init);
        otherwise it is a fresh ``python -m pyimg.runtime.shim``.  Either way it
        says it is up over an inherited pipe (EOF: it gave up, see exit.json).
        """
        d = self.dir(c.id)
        args = ["--id", c.id, "--bundle", str(d / "bundle"), "--state-dir", str(d),
                "--runtime-root", str(self.runtime_root)]
        if cgroup_spec is not None:
            args += ["--cgroup-spec", str(cgroup_spec)]
        if c.tty:
            args.append("--tty")
        if c.stdin:
            args.append("--stdin")
        env = {"PYIMG_STATE": str(self.state)}
        if auto_remove:
            args.append("--rm")
            if store_root is not None:
                env["PYIMG_ROOT"] = str(Path(store_root).absolute())
        from pyimg.runtime.sync import single_threaded

        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        try:
            errlog = os.open(d / "shim.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND
                             | os.O_CLOEXEC, 0o666)
            try:
                args += ["--ready-fd", str(ready_w)]
                if single_threaded():
                    pid = _fork_shim(args, env, errlog, ready_w)
                else:
                    # cwd "/": the shim outlives the CLI and must not pin the caller's
                    # directory
                    pid = subprocess.Popen(
                        [sys.executable, "-m", "pyimg.runtime.shim", *args],
                        stdin=subprocess.DEVNULL, stdout=errlog, stderr=errlog,
                        start_new_session=True, close_fds=True, pass_fds=(ready_w,), cwd="/",
                        env={**os.environ, **env}).pid
            finally:
                os.close(errlog)
                os.close(ready_w)
            self._wait_for_shim(c, ready_r, pid)
        finally:
            os.close(ready_r)

    def reset(self, c: Container) -> None:
        """Forget the last run's status (for `start`); logs and the bundle stay."""
        d = self.dir(c.id)
        for name in ("exit.json", "started", "shim.pid", "shim.start", "shim.sock"):
            with contextlib.suppress(FileNotFoundError):
                (d / name).unlink()

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
                                     hint=f"see {self.dir(c.id) / 'shim.log'}")
        status = self.exit_status(c)
        raise FailedPrecondition(f"container {c.short} failed to start:"
                                 f" {(status or {}).get('error', 'see its logs')}",
                                 hint=None if status else f"see {self.dir(c.id) / 'shim.log'}")

    def request(self, c: Container, msg: dict[str, Any], timeout: float | None = None
                ) -> dict[str, Any]:
        with self.connect(c) as s:
            s.settimeout(timeout)
            try:
                s.sendall(json.dumps(msg).encode() + b"\n")
                line = readline(s)
            except OSError as exc:
                raise FailedPrecondition(f"container {c.short}: shim went away") from exc
        if not line.strip():  # the shim closed: its container has just exited
            raise FailedPrecondition(f"container {c.short} is not running")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise FailedPrecondition(f"container {c.short}: {answer['error']}")
        return answer

    def connect(self, c: Container) -> socket.socket:
        from pyimg.runtime.shim import socket_path

        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with socket_path(self.dir(c.id)) as path:
                s.connect(path)
        except OSError as exc:
            s.close()
            raise FailedPrecondition(f"container {c.short} is not running") from exc
        return s

    def forget(self, c: Container) -> None:
        shutil.rmtree(self.dir(c.id), ignore_errors=True)
        shutil.rmtree(self.runtime_root / c.id, ignore_errors=True)


def _fork_shim(args: list[str], env: dict[str, str], log: int, ready: int) -> int:
    """The shim as a fork of this (single-threaded) process: its pid.

    The child is what ``python -m pyimg.runtime.shim`` would be: a session of its
    own in "/", stdin /dev/null, stdout and stderr to ``log``, no other fd of
    ours but ``ready``, SIGINT ignored, other signals default.  It never returns
    into the caller's code, and leaves with ``os._exit`` (no atexit handler and
    no finaliser of ours runs in it).
    """
    for stream in (sys.stdout, sys.stderr):  # or the child would write it out again
        with contextlib.suppress(Exception):
            stream.flush()
    pid = os.fork()
    if pid:
        return pid
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
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        os.closerange(3, ready)
        os.closerange(ready + 1, soft if 0 < soft < 1 << 20 else 1 << 20)
        os.chdir("/")
        os.environ.update(env)
        from pyimg.runtime import shim

        code = shim.main(args)
    except SystemExit as exc:  # argparse
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


def readline(s: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf
