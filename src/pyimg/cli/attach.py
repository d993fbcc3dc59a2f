"""The client side of a shim connection: attach to output, forward stdin, exec."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys

from pyimg.runtime.shim import EXIT, STDIN, STDOUT, recv_frame, send_frame

TYPE_CHECKING = False  # import-light: every attached `pyimg run` (no socket.py, threading)
if TYPE_CHECKING:
    from _socket import socket as Socket
    from collections.abc import Callable

    from pyimg.containers import Container, Containers


def attach(cs: Containers, c: Container, *, stdin: bool, start: bool = False) -> Socket:
    """Connect to ``c``'s shim as an attached client (before `start`: no output lost);
    with ``start``, the shim then starts the container (one request less)."""
    from pyimg.containers import readline
    from pyimg.errors import FailedPrecondition

    conn = cs.connect(c)
    try:
        request = {"op": "attach", "stdin": stdin, **({"start": True} if start else {})}
        conn.sendall(json.dumps(request).encode() + b"\n")
        reply = readline(conn)
    except OSError as exc:
        conn.close()
        raise FailedPrecondition(f"container {c.short}: shim went away") from exc
    answer = json.loads(reply) if reply.strip() else {"error": "the shim closed"}
    if "error" in answer:
        conn.close()
        raise FailedPrecondition(f"attach to {c.short}: {answer['error']}")
    return conn


def forward_winsize(cs: Containers, c: Container) -> None:
    """Size the container's pty like ours, now and on every SIGWINCH (main thread)."""
    def send(*_: object) -> None:
        with contextlib.suppress(Exception):
            size = os.get_terminal_size(sys.stdout.fileno())
            cs.request(c, {"op": "resize", "rows": size.lines, "cols": size.columns})

    if sys.stdout.isatty():
        send()
        signal.signal(signal.SIGWINCH, send)


#: docker's --sig-proxy: what the CLI receives goes to the container (no tty)
PROXIED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
           signal.SIGUSR2)


def proxy_signals(cs: Containers, c: Container) -> None:
    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(Exception):
            cs.request(c, {"op": "kill", "signal": signum})

    for sig in PROXIED:
        signal.signal(sig, forward)


def stream(conn: Socket, cs: Containers, c: Container, *, interactive: bool,
           tty: bool, on_exit: Callable[[], None] | None = None) -> int:
    """Copy the container's output here (and stdin there) until it exits; its exit code.

    With ``tty`` our terminal is in raw mode meanwhile, so every key (Ctrl-C
    too) goes to the container's pty, whose line discipline does the echo.
    ``on_exit`` runs when the exit status arrives, before we hang up.
    """
    restore = _raw_mode() if tty and sys.stdin.isatty() else None
    if interactive:
        import threading

        threading.Thread(target=_pump_stdin, args=(conn,), daemon=True).start()
    try:
        while True:
            try:
                kind, data = recv_frame(conn)
            except (EOFError, OSError):
                status = cs.exit_status(c) or {}
                return int(status.get("exit_code", 125))
            if kind == EXIT:
                if on_exit is not None:
                    on_exit()
                return int(json.loads(data).get("exit_code", 125))
            out = sys.stdout.buffer if kind == STDOUT else sys.stderr.buffer
            out.write(data)
            out.flush()
    finally:
        if restore is not None:
            restore()
        conn.close()


def _pump_stdin(conn: Socket) -> None:
    fd = sys.stdin.fileno()
    with contextlib.suppress(OSError):
        while data := os.read(fd, 65536):
            send_frame(conn, STDIN, data)
        send_frame(conn, STDIN, b"")  # EOF: the shim closes the container's stdin


def _raw_mode() -> Callable[[], None]:
    import termios
    import tty

    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd)
    tty.setraw(fd)
    return lambda: termios.tcsetattr(fd, termios.TCSADRAIN, old)


def exec_process(cs: Containers, c: Container, args: list[str], env: list[str],
                 workdir: str | None, user: str | None, tty: bool) -> int:
    """Run ``args`` in the container with this terminal's stdio; its exit code."""
    from pyimg.errors import FailedPrecondition

    if cs.status(c) != "running":
        raise FailedPrecondition(f"container {c.name} is not running")
    with open(os.path.join(cs.dir(c.id), "bundle", "config.json")) as f:
        spec = json.loads(f.read())
    process = dict(spec["process"])
    process["args"] = args
    process["terminal"] = bool(tty)
    if env:
        keys = {e.split("=", 1)[0] for e in env}
        process["env"] = [e for e in process.get("env", []) if e.split("=", 1)[0] not in keys]
        process["env"] += env
    if workdir:
        process["cwd"] = workdir
    if user:
        from pyimg.runtime.user import resolve_user

        u = resolve_user(os.path.join(cs.dir(c.id), "bundle", "rootfs"), user)
        process["user"] = {"uid": u.uid, "gid": u.gid, "additionalGids": list(u.additional_gids)}
    import array
    import socket

    with socket.socket(fileno=cs.connect(c).detach()) as conn:
        fds = array.array("i", [0, 1, 2])
        conn.sendmsg([json.dumps({"op": "exec", "process": process}).encode() + b"\n"],
                     [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        lines = conn.makefile("rb")
        first = json.loads(lines.readline() or b"{}")
        if "error" in first:
            raise FailedPrecondition(f"exec in {c.name}: {first['error']}")
        done = json.loads(lines.readline() or b'{"exit_code": 125}')
        return int(done.get("exit_code", 125))
