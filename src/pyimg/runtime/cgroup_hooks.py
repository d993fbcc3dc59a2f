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


def join_hook(cgroups_path: str, resources: Mapping[str, Any] | None,
              state_file: StrPath) -> Callable[[int], None]:
    """A launcher ``cgroup_hook``: create + limit the cgroup, add ``pid``, record it."""
    def hook(pid: int) -> None:
        from pyimg.runtime.cgroups import CgroupManager

        mgr = CgroupManager(cgroups_path, resources or {})
        try:
            mgr.create()
            mgr.apply()
            mgr.add(pid)
        except BaseException:
            with contextlib.suppress(PyimgError, OSError):
                mgr.destroy()  # what create() made must not outlive the failure
            raise
        atomic_write(state_file, json.dumps(mgr.to_state()).encode())

    return hook


def add_hook(state_file: StrPath) -> Callable[[int], None]:
    """For exec: put ``pid`` into the container's existing cgroup."""
    def hook(pid: int) -> None:
        mgr = _load(state_file)
        if mgr is not None:
            mgr.add(pid)

    return hook


def oom_killed(state_file: StrPath) -> bool:
    mgr = _load(state_file)
    with contextlib.suppress(OSError, PyimgError):
        return mgr is not None and bool(mgr.oom_killed())
    return False


def destroy(state_file: StrPath) -> None:
    """Kill whatever is left in the cgroup and remove the directories we made."""
    mgr = _load(state_file)
    if mgr is None:
        return
    with contextlib.suppress(OSError, PyimgError):
        mgr.kill_all(signal.SIGKILL)
    mgr.destroy()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(state_file)


def _load(state_file: StrPath) -> Any:
    from pyimg.runtime.cgroups import CgroupManager

    try:
        with open(state_file, "rb") as f:
            return CgroupManager.from_state(json.loads(f.read()))
    except (OSError, ValueError, KeyError):
        return None
