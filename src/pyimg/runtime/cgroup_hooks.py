"""Glue between a container's lifecycle and its cgroup, persisted across processes.

The process that creates a container (the shim, or `pyimg runtime create`)
makes the cgroup and records which directories it created in a small JSON
file; whoever deletes the container later (another pyimg process) reads it
back to kill what is left and remove exactly those directories.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal

from pyimg.errors import PyimgError
from pyimg.fsutil import atomic_write

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from pyimg.fsutil import StrPath


class JoinHook:
    """A launcher ``cgroup_hook``: create + limit the cgroup, record it, add ``pid``.

    :meth:`prepare` (everything but the move) needs no pid: the launcher calls
    it while init starts, so the directories and limits are written in parallel
    with init's own start-up; calling the hook does what is left.
    """

    def __init__(self, cgroups_path: str, resources: Mapping[str, Any] | None,
                 state_file: StrPath, warm: int | None = None) -> None:
        self.cgroups_path, self.resources, self.state_file = cgroups_path, resources, state_file
        self.warm = warm  # an attachwarm child to reap once the move is done
        self.mgr: Any = None

    def prepare(self) -> None:
        if self.mgr is not None:
            return
        from pyimg.runtime.cgroups import CgroupManager

        mgr = CgroupManager(self.cgroups_path, self.resources or {})
        try:
            mgr.create()
            # recorded before anything can fail later: whoever cleans up finds it
            atomic_write(self.state_file, json.dumps(mgr.to_state()).encode(),
                         durable=False)
            mgr.apply()
        except BaseException:
            with contextlib.suppress(PyimgError, OSError):
                mgr.destroy()  # what create() made must not outlive the failure
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.state_file)
            raise
        self.mgr = mgr

    def __call__(self, pid: int) -> None:
        from pyimg.runtime import attachwarm

        try:
            self.prepare()
            self.mgr.add(pid)
        finally:
            attachwarm.reap(self.warm)


def join_hook(cgroups_path: str, resources: Mapping[str, Any] | None,
              state_file: StrPath, warm: int | None = None) -> JoinHook:
    return JoinHook(cgroups_path, resources, state_file, warm)


def add_hook(state_file: StrPath, warm: int | None = None) -> Callable[[int], None]:
    """For exec: put ``pid`` into the container's existing cgroup (then reap the
    ``warm`` :mod:`~pyimg.runtime.attachwarm` child, as :class:`JoinHook` does)."""
    def hook(pid: int) -> None:
        from pyimg.runtime import attachwarm

        try:
            mgr = load(state_file)
            if mgr is not None:
                mgr.add(pid)
        finally:
            attachwarm.reap(warm)

    return hook


def oom_killed(state_file: StrPath) -> bool:
    mgr = load(state_file)
    with contextlib.suppress(OSError, PyimgError):
        return mgr is not None and bool(mgr.oom_killed())
    return False


def destroy(state_file: StrPath) -> None:
    """Kill whatever is left in the cgroup and remove the directories we made."""
    mgr = load(state_file)
    if mgr is None:
        return
    with contextlib.suppress(OSError, PyimgError):
        mgr.kill_all(signal.SIGKILL)
    mgr.destroy()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(state_file)


def load(state_file: StrPath) -> Any:
    from pyimg.runtime.cgroups import CgroupManager

    try:
        with open(state_file, "rb") as f:
            return CgroupManager.from_state(json.loads(f.read()))
    except (OSError, ValueError, KeyError):
        return None
