"""How `pyimg run` starts the shim: forked from the (single-threaded) CLI, or a
fresh interpreter when the CLI has threads; either way it reports over a pipe."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from tests.cli import Pyimg
from tests.containers import img

#: the pyimg command with a second (daemon) thread: no fork then
THREADED = ("import sys, threading, time\n"
            "threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n"
            "sys.argv[0] = 'pyimg'\n"
            "from pyimg.entry import main\n"
            "main()\n")


def _shim(p: Pyimg, cid: str) -> int:
    return int((p.home / "state" / "containers" / cid / "shim.pid").read_text())


def _sig_ignored(pid: int, sig: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    raise AssertionError("no SigIgn")


def test_forked_shim_holds_nothing_of_the_cli(p: Pyimg) -> None:
    t = time.monotonic()
    cid = p.run("run", "-d", img(p), "sleep", "30").stdout.strip()
    # our stdout pipe reached EOF although the shim lives on: it does not hold it
    assert time.monotonic() - t < 10
    shim = _shim(p, cid)
    d = p.home / "state" / "containers" / cid
    fds = {}
    for fd in os.listdir(f"/proc/{shim}/fd"):
        # the shim may still be starting the container: skip an fd it has closed meanwhile
        with contextlib.suppress(FileNotFoundError):
            fds[int(fd)] = os.readlink(f"/proc/{shim}/fd/{fd}")
    assert fds[0] == "/dev/null"
    assert fds[1] == fds[2] == str(d / "shim.log")
    assert all(not target.startswith("/dev/pts") and "tty" not in target
               for target in fds.values()), fds
    assert os.getsid(shim) == shim and os.readlink(f"/proc/{shim}/cwd") == "/"
    assert _sig_ignored(shim, signal.SIGINT)
    assert not _sig_ignored(shim, signal.SIGTERM)
    assert (d / "shim.start").read_text().strip().isdigit()
    assert p.run("ps", "-q").stdout.strip() == cid[:12]  # shim_alive by start time
    p.run("rm", "-f", cid)
    assert p.run("ps", "-a", "-q").stdout == ""


def test_threaded_cli_starts_a_fresh_shim(p: Pyimg) -> None:
    import subprocess

    def threaded(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", THREADED, *args], env=p.env,
                              capture_output=True, text=True, timeout=120, check=False)

    proc = threaded("run", "--rm", img(p), "sh", "-c", "echo out; echo err >&2; exit 4")
    assert (proc.returncode, proc.stdout, proc.stderr) == (4, "out\n", "err\n")
    assert p.run("ps", "-a", "-q").stdout == ""
    proc = threaded("run", "-d", img(p), "sleep", "30")
    assert proc.returncode == 0, proc.stderr
    cid = proc.stdout.strip()
    argv = Path(f"/proc/{_shim(p, cid)}/cmdline").read_bytes().split(b"\0")
    assert b"pyimg.runtime.shim" in argv and cid.encode() in argv
    assert p.run("ps", "-q").stdout.strip() == cid[:12]
    p.run("rm", "-f", cid)


def test_a_shim_that_cannot_create_the_container_says_why(p: Pyimg) -> None:
    """The mount fails in init, under the shim: its pipe closes without "ready"."""
    t = time.monotonic()
    proc = p.run("run", "--rm", "--tmpfs", "/x:nosuchopt=1", img(p), "true", check=False)
    assert time.monotonic() - t < 10
    assert proc.returncode == 125
    assert "failed to start: mount /x" in proc.stderr, proc.stderr
    assert p.run("ps", "-a", "-q").stdout == ""
