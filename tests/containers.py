"""Helpers for tests that run containers: leak checks and a pty driver."""

from __future__ import annotations

import contextlib
import glob
import os
import select
import subprocess
import time
from pathlib import Path

from tests.cli import Pyimg


def img(p: Pyimg) -> str:
    """The busybox image the ``p`` fixture pulled."""
    return p.image  # type: ignore[attr-defined,no-any-return]


def cgroup_dirs() -> set[str]:
    """Every container cgroup pyimg made: /sys/fs/cgroup/<hierarchy>/pyimg/<id>."""
    return {d for d in glob.glob("/sys/fs/cgroup/*/pyimg/*") if os.path.isdir(d)}


def processes_of(tmp_path: Path, cgroups: set[str]) -> list[str]:
    """Processes started for this test: a shim or init naming ``tmp_path`` on its
    command line, or anything in one of ``cgroups`` (``hierarchy/pyimg/<id>``)."""
    names = {d.split("/sys/fs/cgroup/", 1)[1].split("/", 1)[1] for d in cgroups}
    found = []
    for d in glob.glob("/proc/[0-9]*"):
        with contextlib.suppress(OSError):
            cmdline = Path(d, "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
            groups = Path(d, "cgroup").read_text()
            if str(tmp_path) in cmdline or any(f":/{n}" in groups for n in names):
                found.append(f"{d.rsplit('/', 1)[1]}: {cmdline}")
    return found


def mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [ln for ln in f if str(path) in ln]


def assert_clean(tmp_path: Path, cgroups_before: set[str], timeout: float = 5.0) -> None:
    """No mount, no new container cgroup, no process of this test left (shims that
    are exiting get ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        new = cgroup_dirs() - cgroups_before
        left = processes_of(tmp_path, new)
        mounts = mounts_under(tmp_path)
        if (not new and not left and not mounts) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert mounts == []
    assert new == set()
    assert left == []


def run_in_pty(p: Pyimg, args: list[str], send: bytes, timeout: float = 10.0
               ) -> tuple[int, bytes]:
    """Run ``pyimg ARGS`` with a pty as its stdin/stdout/stderr, type ``send``
    once it prints something, and read until it exits: (exit code, output)."""
    master, slave = os.openpty()
    proc = subprocess.Popen(p.cmd(*args), env=p.env, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)
    os.close(slave)
    out, sent = b"", False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every holder of the slave has gone
                    break
                if not data:
                    break
                out += data
            if not sent and out:
                os.write(master, send)
                sent = True
            if not ready and proc.poll() is not None:
                break
        return proc.wait(timeout=max(0.1, deadline - time.monotonic())), out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def exec_output(cid: str, root: Path, args: list[str], uid: int = 0) -> tuple[int, list[str]]:
    """``launcher.exec_in`` of ``args`` (as ``uid``) in container ``cid``: its exit code
    and the words it printed.  This process is a subreaper meanwhile, to wait for it."""
    from pyimg import linux
    from pyimg.runtime import launcher

    r, w = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)
    was = linux.is_child_subreaper()
    linux.set_child_subreaper(True)
    try:
        process = {"args": args, "env": ["PATH=/bin"], "cwd": "/",
                   "user": {"uid": uid, "gid": uid}, "noNewPrivileges": True}
        pid = launcher.exec_in(cid, root, process, stdio=(null, w, w))
        os.close(w)
        with os.fdopen(r) as f:
            out = f.read().split()
        _, status = os.waitpid(pid, 0)
    finally:
        linux.set_child_subreaper(was)
        os.close(null)
    return os.waitstatus_to_exitcode(status), out
