"""The per-container shim: keeps a container alive after the CLI exits.

One small process per container (``python -m pyimg.runtime.shim``), in its
own session, a child subreaper (the container's init is reparented to it
when the launcher's intermediate process exits), which:

* holds the container's stdio: pipes (or a pty with ``--tty``) whose output
  goes to ``log.json`` in docker's json-file format and to attached clients;
* reaps the container and any exec'd process, and records the exit status
  (code, signal, OOM kill) atomically in ``exit.json``;
* serves a control socket, ``shim.sock``, one JSON request per connection:

      {"op": "start"}                      → {"ok": true}
      {"op": "wait"}                       → {"exit_code": 0, "signal": null, "oom": false}
      {"op": "kill", "signal": 15}         → {"ok": true}
      {"op": "resize", "rows": R, "cols": C}
      {"op": "autoremove", "value": false} → {"ok": true}   (see ``--rm``)
      {"op": "attach", "stdin": true}      → then framed bytes both ways (see below);
                                             ``"start": true`` starts the container too,
                                             once this client is attached
      {"op": "exec", "process": {...}}     + the client's stdio fds (SCM_RIGHTS)
                                           → {"pid": N}, later {"exit_code": ...}

  Attach frames: one byte stream (0 stdin, 1 stdout, 2 stderr, 3 exit JSON),
  four bytes big-endian length, the data; an empty stdin frame is EOF.

The shim exits once the container has exited, its output is drained, the
status is written and attached clients have hung up (at most 2 s).  With
``--rm`` its last step is ``python -m pyimg rm -f ID`` (same ``PYIMG_ROOT`` and
``PYIMG_STATE``), unless a client sent ``autoremove false`` first: a foreground
``pyimg run --rm`` does that and removes the container itself.
"""

from __future__ import annotations

import _socket  # socket.py costs ~2.5 ms to import here: the C module is enough
import contextlib
import json
import os
import signal
import struct
import sys
import threading
import time

from pyimg.fsutil import atomic_write

# Import-light: the CLI imports this module (the frame protocol) and forks the
# shim from itself, so what is imported here is paid on every container start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterator
    from typing import Any

    from pyimg.fsutil import StrPath

    Socket = _socket.socket

SOCKET = "shim.sock"
EXIT_FILE = "exit.json"
LOG_FILE = "log.json"
PID_FILE = "shim.pid"
START_FILE = "shim.start"  # our start time (/proc/<pid>/stat field 22): who has the pid
FRAME = struct.Struct(">BI")
STDIN, STDOUT, STDERR, EXIT = 0, 1, 2, 3


@contextlib.contextmanager
def socket_path(directory: StrPath) -> Iterator[str]:
    """A short path to ``directory/shim.sock`` for bind/connect.

    A unix socket path is limited to 107 bytes and state directories can be
    deeper (container ids alone are 64 characters); going through an open
    directory fd (``/proc/self/fd/N/shim.sock``) keeps the path short without
    an abstract socket, which any process in the network namespace could reach.
    """
    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{SOCKET}"
    finally:
        os.close(fd)


def send_frame(sock: Socket, stream: int, data: bytes) -> None:
    sock.sendall(FRAME.pack(stream, len(data)) + data)


def recv_exact(sock: Socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def recv_frame(sock: Socket) -> tuple[int, bytes]:
    stream, length = FRAME.unpack(recv_exact(sock, FRAME.size))
    return stream, recv_exact(sock, length) if length else b""


class Shim:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dir: str = args.state_dir
        self.exit: dict[str, Any] | None = None
        self.exited = threading.Condition()
        self.started = threading.Event()
        self.clients: list[Socket] = []
        self.clients_lock = threading.Lock()
        self.exec_waiters: dict[int, Socket] = {}
        self.pid = 0
        self.master: int | None = None
        self.stdin_w: int | None = None
        self.console: Socket | None = None
        self.auto_remove = bool(getattr(args, "rm", False))

    # -- setup ---------------------------------------------------------------
    def stdio(self) -> tuple[int, int, int, list[tuple[int, int]]]:
        """The container's (stdin, stdout, stderr) and our ends to pump (fd, stream).

        With ``--tty`` the container's stdin is one end of a socketpair: init
        opens the pty in the container's devpts and sends us the master over it
        (:meth:`receive_console`); init's messages before that go to the pipe.
        """
        if self.args.tty:
            ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
            self.console = ours
            early_r, early_w = os.pipe()
            return theirs.detach(), early_w, early_w, [(early_r, STDOUT)]
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        if self.args.stdin:
            in_r, in_w = os.pipe()
            self.stdin_w = in_w
        else:
            in_r = os.open(os.devnull, os.O_RDONLY)
        return in_r, out_w, err_w, [(out_r, STDOUT), (err_r, STDERR)]

    def receive_console(self) -> int:
        """The pty master that init sent over the console socket."""
        assert self.console is not None
        try:
            self.console.settimeout(10)
            _, ancdata, _, _ = self.console.recvmsg(64, _socket.CMSG_LEN(_INT))
        finally:
            self.console.close()
        fds = _fds(ancdata)
        for extra in fds[1:]:
            os.close(extra)
        if not fds:
            raise OSError("container init sent no console")
        return fds[0]

    def broadcast(self, stream: int, data: bytes) -> None:
        with self.clients_lock:
            for c in list(self.clients):
                try:
                    send_frame(c, stream, data)
                except OSError:
                    self.clients.remove(c)

    def pump(self, fd: int, stream: int, log: Callable[[str, bytes], None]) -> None:
        name = "stdout" if stream == STDOUT else "stderr"
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO on a pty once the last slave holder exits
                break
            if not data:
                break
            log(name, data)
            self.broadcast(stream, data)
        if fd == self.master:
            self.master = None  # resize and stdin must not reach a reused fd number
        os.close(fd)

    # -- control socket --------------------------------------------------------
    def serve(self, server: Socket) -> None:
        while True:
            try:
                fd, _ = server._accept()  # type: ignore[attr-defined]  # socket.py does
            except OSError:
                return
            conn = _socket.socket(server.family, server.type, server.proto, fd)
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn: Socket) -> None:
        try:
            msg, fds = _recv_request(conn)
            op = msg.get("op")
            if op == "start":
                self.started.set()
                _reply(conn, {"ok": True})
            elif op == "wait":
                _reply(conn, self.wait())
            elif op == "kill":
                self.kill(int(msg.get("signal", signal.SIGTERM)), bool(msg.get("all")))
                _reply(conn, {"ok": True})
            elif op == "autoremove":
                self.auto_remove = bool(msg.get("value"))
                _reply(conn, {"ok": True})
            elif op == "resize":
                self.resize(int(msg["rows"]), int(msg["cols"]))
                _reply(conn, {"ok": True})
            elif op == "attach":
                self.attach(conn, bool(msg.get("stdin")), start=bool(msg.get("start")))
                return  # attach owns the connection
            elif op == "exec":
                self.exec(conn, msg["process"], fds)
                return
            else:
                _reply(conn, {"error": f"unknown op {op!r}"})
        except (OSError, EOFError, ValueError, KeyError) as exc:
            with contextlib.suppress(OSError):
                _reply(conn, {"error": str(exc)})
        conn.close()

    def wait(self) -> dict[str, Any]:
        with self.exited:
            while self.exit is None:
                self.exited.wait()
            return self.exit

    def kill(self, sig: int, all_processes: bool = False) -> None:
        if self.pid and self.exit is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def resize(self, rows: int, cols: int) -> None:
        if self.master is not None:
            import fcntl
            import termios

            fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def attach(self, conn: Socket, stdin: bool, *, start: bool = False) -> None:
        _reply(conn, {"ok": True})
        with self.clients_lock:
            self.clients.append(conn)
        if start:
            self.started.set()
        target = self.master if self.master is not None else self.stdin_w
        if not stdin or target is None:
            return
        try:
            while True:
                stream, data = recv_frame(conn)
                if stream != STDIN:
                    continue
                if not data:
                    if target is self.stdin_w and self.stdin_w is not None:
                        os.close(self.stdin_w)
                        self.stdin_w = None
                    return
                view = memoryview(data)
                while view:  # a pty or a full pipe may take part of it
                    view = view[os.write(target, view):]
        except (EOFError, OSError):
            return

    def exec(self, conn: Socket, process: dict[str, Any], fds: list[int]) -> None:
        from pyimg.runtime import launcher

        stdio = tuple(fds[:3]) if len(fds) >= 3 else (0, 1, 2)
        try:
            from pyimg.runtime.cgroup_hooks import add_hook

            pid = launcher.exec_in(self.args.id, self.args.runtime_root, process,
                                   stdio=stdio,  # type: ignore[arg-type]
                                   cgroup_hook=add_hook(os.path.join(self.dir, CGROUP_STATE)))
        finally:
            for fd in fds:
                os.close(fd)
        self.exec_waiters[pid] = conn
        _reply(conn, {"pid": pid})

    # -- lifecycle -------------------------------------------------------------
    def run(self) -> int:
        from pyimg import linux
        from pyimg.runtime import launcher
        from pyimg.runtime.logs import LogWriter

        linux.set_child_subreaper()
        stdin, stdout, stderr, ours = self.stdio()
        log = LogWriter(os.path.join(self.dir, LOG_FILE))
        server = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.dir, SOCKET))
        with socket_path(self.dir) as path:
            server.bind(path)
        server.listen(16)
        pumps = [threading.Thread(target=self.pump, args=(fd, stream, log.write), daemon=True)
                 for fd, stream in ours]
        try:
            state = launcher.create(self.args.id, self.args.bundle, self.args.runtime_root,
                                    stdio=(stdin, stdout, stderr),
                                    cgroup_hook=_cgroup_hook(self.args),
                                    cgroup_cleanup=_cgroup_cleanup(self.args))
        except Exception as exc:  # reported through exit.json; the CLI shows it
            self.finish({"exit_code": 125, "signal": None, "oom": False, "error": str(exc)})
            return 1
        finally:
            for fd in {stdin, stdout, stderr}:
                os.close(fd)
        self.pid = state.pid
        if self.console is not None:
            try:
                self.master = self.receive_console()
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.kill(self.pid, signal.SIGKILL)
                self.reap()
                self.finish({"exit_code": 125, "signal": None, "oom": False,
                             "error": f"console: {exc}"})
                return 1
            pumps.append(threading.Thread(target=self.pump,
                                          args=(self.master, STDOUT, log.write), daemon=True))
        # shim.start first: once shim.pid exists, shim_alive() can check who has the pid.
        # Under the state directory (/run): atomic, not fsync'd (a reboot ends us too).
        atomic_write(os.path.join(self.dir, START_FILE), str(_start_time()).encode(),
                     durable=False)
        atomic_write(os.path.join(self.dir, PID_FILE), str(os.getpid()).encode(),
                     durable=False)
        self.ready()
        for t in pumps:
            t.start()
        threading.Thread(target=self.serve, args=(server,), daemon=True).start()
        self.started.wait()
        try:
            launcher.start(self.args.id, self.args.runtime_root)
        except Exception as exc:  # init died (its message is in the log) or hangs
            print(f"pyimg-shim: start: {exc}", file=sys.stderr, flush=True)
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
        status = self.reap()
        for t in pumps:
            t.join(timeout=5)
        self.finish(status)
        _linger(self)
        server.close()
        log.close()
        if self.auto_remove:
            _remove_container(self.args.id)
        return 0

    def ready(self) -> None:
        """Tell the process that started us (``--ready-fd``) that we serve."""
        fd = getattr(self.args, "ready_fd", -1)
        if fd >= 0:
            self.args.ready_fd = -1
            with contextlib.suppress(OSError):
                os.write(fd, b"1")
            with contextlib.suppress(OSError):
                os.close(fd)

    def reap(self) -> dict[str, Any]:
        while True:
            try:
                pid, raw = os.waitpid(-1, 0)
            except ChildProcessError:
                time.sleep(0.05)
                continue
            code = os.waitstatus_to_exitcode(raw)
            if pid == self.pid:
                sig = -code if code < 0 else None
                return {"exit_code": 128 + sig if sig else code, "signal": sig,
                        "oom": _oom_killed(self.args), "finished": time.time()}
            conn = self.exec_waiters.pop(pid, None)
            if conn is not None:
                with contextlib.suppress(OSError):
                    _reply(conn, {"exit_code": 128 - code if code < 0 else code})
                    conn.close()

    def finish(self, status: dict[str, Any]) -> None:
        atomic_write(os.path.join(self.dir, EXIT_FILE), json.dumps(status).encode(),
                     durable=False)  # under the state directory, as shim.pid
        with self.exited:
            self.exit = status
            self.exited.notify_all()
        self.broadcast(EXIT, json.dumps(status).encode())


def _start_time() -> int:
    with open("/proc/self/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[19])


def _linger(shim: Shim, seconds: float = 2.0) -> None:
    """Give attached clients a moment to read the exit frame and hang up."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with shim.clients_lock:
            shim.clients = [c for c in shim.clients if not _hung_up(c)]
            if not shim.clients:
                return
        time.sleep(0.01)


def _hung_up(conn: Socket) -> bool:
    try:
        return conn.recv(1, _socket.MSG_PEEK | _socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _remove_container(cid: str) -> None:
    """``pyimg rm -f ID``: the store and state come from PYIMG_ROOT/PYIMG_STATE,
    which the CLI set when it started this shim."""
    import subprocess

    try:
        subprocess.run([sys.executable, "-m", "pyimg", "rm", "-f", cid],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=60,
                       check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"pyimg-shim: rm {cid}: {exc}", file=sys.stderr, flush=True)


CGROUP_STATE = "cgroup-state.json"


def _cgroup_hook(args: argparse.Namespace) -> Callable[[int], None] | None:
    if not args.cgroup_spec:
        return None
    from pyimg.runtime.cgroup_hooks import join_hook

    with open(args.cgroup_spec) as f:
        spec = json.loads(f.read())
    if not spec.get("cgroupsPath"):
        return None
    return join_hook(spec["cgroupsPath"], spec.get("resources"),
                     os.path.join(args.state_dir, CGROUP_STATE), getattr(args, "warm", None))


def _cgroup_cleanup(args: argparse.Namespace) -> Callable[[object], None]:
    """Remove the cgroup when create fails after the hook made it."""
    def cleanup(_: object) -> None:
        from pyimg.runtime.cgroup_hooks import destroy

        destroy(os.path.join(args.state_dir, CGROUP_STATE))

    return cleanup


def _oom_killed(args: argparse.Namespace) -> bool:
    from pyimg.runtime.cgroup_hooks import oom_killed

    return oom_killed(os.path.join(args.state_dir, CGROUP_STATE))


def _reply(conn: Socket, obj: dict[str, Any]) -> None:
    conn.sendall(json.dumps(obj).encode() + b"\n")


_INT = struct.calcsize("i")


def _fds(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    """The file descriptors an SCM_RIGHTS message carried."""
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            usable = len(data) - len(data) % _INT
            fds += [v for (v,) in struct.iter_unpack("i", data[:usable])]
    return fds


def _recv_request(conn: Socket) -> tuple[dict[str, Any], list[int]]:
    msg, ancdata, _, _ = conn.recvmsg(65536, _socket.CMSG_SPACE(16 * _INT))
    fds = _fds(ancdata)
    line = msg.split(b"\n", 1)[0]
    obj: dict[str, Any] = json.loads(line)
    return obj, fds


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="pyimg-shim")
    p.add_argument("--id", required=True)
    p.add_argument("--bundle", required=True)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--runtime-root", required=True)
    p.add_argument("--cgroup-spec", default="")
    p.add_argument("--tty", action="store_true")
    p.add_argument("--stdin", action="store_true")
    p.add_argument("--rm", action="store_true",
                   help="remove the container (pyimg rm -f) after it exits")
    p.add_argument("--ready-fd", type=int, default=-1,
                   help="write '1' to this fd once up, then close it (EOF: failed)")
    return run(p.parse_args(argv))


def preload() -> None:
    """Import what :func:`run` needs (a shim forked early does it while it waits)."""
    from pyimg import linux  # noqa: F401
    from pyimg.runtime import attachwarm, cgroup_hooks, cgroups, launcher, logs  # noqa: F401


def run(args: argparse.Namespace) -> int:
    """The shim, with :func:`main`'s options as attributes of ``args`` (the CLI's
    fork of itself calls this directly: argparse costs ~1.5 ms to import here)."""
    if not hasattr(args, "warm"):  # (a shim forked early has kept it warm already)
        from pyimg.runtime import attachwarm

        # first: the cgroup attach's grace period (see attachwarm) runs meanwhile, or
        # the one the CLI started stays in effect until init joins the cgroup
        args.warm = attachwarm.start()
    if args.ready_fd >= 0:  # not for init and the container (fork then exec)
        os.set_inheritable(args.ready_fd, False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the CLI's Ctrl-C is not ours
    return Shim(args).run()


def command_line(options: dict[str, str | int | bool]) -> list[str]:
    """:func:`main`'s arguments for ``options`` (``{"state_dir": D, "tty": True}``)."""
    argv: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not False:
            argv += [flag, str(value)]
    return argv


if __name__ == "__main__":
    sys.exit(main())
