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
import time
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
        got its pid after it died (its command line names the container)."""
        try:
            pid = int((self.dir(c.id) / "shim.pid").read_text())
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            return False
        return state not in (b"Z", b"X") and c.id.encode() in argv

    # -- shim ------------------------------------------------------------------
    def spawn_shim(self, c: Container, cgroup_spec: Path | None, *,
                   auto_remove: bool = False, store_root: Path | None = None) -> None:
        """Start the container's shim and wait until it serves its socket.

        ``auto_remove``: the shim runs ``python -m pyimg rm -f ID`` as its last
        step (``run -d --rm``), against this state directory and ``store_root``.
        """
        d = self.dir(c.id)
        argv = [sys.executable, "-m", "pyimg.runtime.shim", "--id", c.id,
                "--bundle", str(d / "bundle"), "--state-dir", str(d),
                "--runtime-root", str(self.runtime_root)]
        if cgroup_spec is not None:
            argv += ["--cgroup-spec", str(cgroup_spec)]
        if c.tty:
            argv.append("--tty")
        if c.stdin:
            argv.append("--stdin")
        env = dict(os.environ, PYIMG_STATE=str(self.state))
        if auto_remove:
            argv.append("--rm")
            if store_root is not None:
                env["PYIMG_ROOT"] = str(Path(store_root).absolute())
        errlog = open(d / "shim.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            # cwd "/": the shim outlives the CLI and must not pin the caller's directory
            subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=errlog, stderr=errlog,
                             start_new_session=True, close_fds=True, cwd="/", env=env)
        finally:
            errlog.close()
        self._wait_for_shim(c)

    def reset(self, c: Container) -> None:
        """Forget the last run's status (for `start`); logs and the bundle stay."""
        d = self.dir(c.id)
        for name in ("exit.json", "started", "shim.pid", "shim.sock"):
            with contextlib.suppress(FileNotFoundError):
                (d / name).unlink()

    def _wait_for_shim(self, c: Container, timeout: float = 30.0) -> None:
        d = self.dir(c.id)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if (d / "shim.pid").exists() and (d / "shim.sock").exists():
                return
            status = self.exit_status(c)
            if status is not None:
                raise FailedPrecondition(f"container {c.short} failed to start:"
                                         f" {status.get('error', 'see its logs')}")
            time.sleep(0.01)
        raise FailedPrecondition(f"container {c.short}: shim did not come up",
                                 hint=f"see {d / 'shim.log'}")

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


def readline(s: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf
