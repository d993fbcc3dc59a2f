"""Start the kernel's wait for a cgroup attach early, in parallel with start-up.

The first write to a ``cgroup.procs`` file takes the global
``cgroup_threadgroup_rwsem`` for writing, and a percpu rwsem in its fast
(idle) state first waits for an RCU grace period (``rcu_sync_enter``):
10-26 ms on this project's machines, the largest single cost of starting a
container, which runc pays too.  Once a writer has been through, the rwsem
stays in its slow state until another grace period has passed, and a writer
in that window does not wait.

So, as its first act, a container start forks a tiny child that writes its
own pid into the cgroup it is already in (a move that changes nothing) and
exits.  The grace period then runs while Python imports and the container's
init is prepared, and the real attach of the container's init a few
milliseconds later finds the rwsem warm, or waits only for what is left of
the same grace period.  Anything unusual (no cgroup file found, a write
refused) just skips the warm-up: the attach then waits as it always did.

This module imports nothing but ``os`` (and contextlib): it runs before anything else.
"""

from __future__ import annotations

import contextlib
import os


def _own_procs_file() -> str | None:
    """``cgroup.procs`` of this process's own cgroup in some hierarchy."""
    try:
        with open("/proc/self/cgroup", "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, ctrls, path = parts
        # v1 controllers are mounted at /sys/fs/cgroup/<controllers> by convention;
        # a guess that misses is harmless (no file: no warm-up)
        base = f"/sys/fs/cgroup/{ctrls.removeprefix('name=')}" if ctrls else "/sys/fs/cgroup"
        candidate = f"{base}{path.rstrip('/')}/cgroup.procs"
        if path.startswith("/") and ".." not in path and os.path.exists(candidate):
            return candidate
    return None


def start() -> int | None:
    """Fork the warm-up child; its pid (for :func:`reap`), or None if skipped."""
    if os.geteuid() != 0:
        return None
    target = _own_procs_file()
    if target is None:
        return None
    try:
        pid = os.fork()
    except OSError:
        return None
    if pid == 0:
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CLOEXEC)
            os.write(fd, b"0")  # "0": the writing process itself
        except OSError:
            pass
        os._exit(0)
    return pid


def reap(pid: int | None) -> None:
    if pid is not None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
