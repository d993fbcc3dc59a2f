"""Container state on disk and the lifecycle as an explicit transition table.

``<state_root>/<id>/state.json`` is written atomically.  The stored status is
only a hint: the real status is *derived* each time (runc's ``refreshState``):

* ``creating``  the launcher has not finished ``create`` (stored, pid may be 0);
* ``created``   init is alive and waiting on ``exec.fifo`` (the fifo exists);
* ``running``   init is alive and the fifo is gone (``start`` consumed it);
* ``stopped``   the pid is gone, a zombie, or now belongs to another process
                (its start time, field 22 of ``/proc/<pid>/stat``, changed).

runc's ``state_linux.go`` models the same moves with a ``transition()`` per
state; here they are one table, and :func:`check_transition` raises
:class:`~pyimg.errors.StateTransitionError` for an illegal move.
"""

from __future__ import annotations

import json
import os

from pyimg.errors import InvalidArgument, NotFound, StateTransitionError
from pyimg.fsutil import atomic_write
from pyimg.record import Record

TYPE_CHECKING = False  # on every runtime call: no typing, dataclasses, re or pathlib
if TYPE_CHECKING:
    from typing import Any

    from pyimg.fsutil import StrPath

OCI_VERSION = "1.0.2"
STATE_FILE = "state.json"
EXEC_FIFO = "exec.fifo"

CREATING, CREATED, RUNNING, STOPPED = "creating", "created", "running", "stopped"

#: status → the statuses it may move to
TRANSITIONS: dict[str, frozenset[str]] = {
    CREATING: frozenset({CREATED, STOPPED}),
    CREATED: frozenset({RUNNING, STOPPED}),
    RUNNING: frozenset({STOPPED}),
    STOPPED: frozenset(),
}
#: operation → the statuses it is allowed in (runtime-spec "Operations")
OPERATIONS: dict[str, frozenset[str]] = {
    "start": frozenset({CREATED}),
    "kill": frozenset({CREATED, RUNNING}),
    "exec": frozenset({CREATED, RUNNING}),
    "delete": frozenset({STOPPED}),
}

_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+.-")


def check_id(cid: str) -> str:
    """runc's container ID rule: letters, digits, ``_ + . -``, not ``.``/``..``."""
    if (not isinstance(cid, str) or not 0 < len(cid) <= 1024 or not _ID_CHARS.issuperset(cid)
            or cid in (".", "..")):
        raise InvalidArgument(f"invalid container id {cid!r}: use letters, digits, "
                              "'_', '+', '.' and '-'")
    return cid


def check_transition(cid: str, from_: str, to: str) -> None:
    if to not in TRANSITIONS.get(from_, frozenset()):
        raise StateTransitionError(f"container {cid}: cannot go from {from_} to {to}",
                                   from_=from_, to=to)


def check_operation(cid: str, op: str, status: str) -> None:
    if status not in OPERATIONS[op]:
        allowed = " or ".join(sorted(OPERATIONS[op]))
        raise StateTransitionError(f"cannot {op} container {cid}: it is {status}, "
                                   f"not {allowed}", from_=status, to=op)


class ContainerState(Record):
    """What ``state.json`` holds; :func:`status` derives the live status."""

    _fields = ("id", "bundle", "rootfs", "pid", "pid_start", "status", "created",
               "annotations")
    __slots__ = _fields
    id: str
    bundle: str
    rootfs: str
    pid: int
    pid_start: int  # /proc/<pid>/stat field 22: detects pid reuse
    status: str
    created: str  # RFC 3339, UTC
    annotations: dict[str, str]

    def __init__(self, id: str, bundle: str, rootfs: str, pid: int = 0, pid_start: int = 0,
                 status: str = CREATING, created: str = "",
                 annotations: dict[str, str] | None = None) -> None:
        self._set(id, bundle, rootfs, pid, pid_start, status, created, annotations or {})

    def with_(self, **changes: Any) -> ContainerState:
        return self.replace(**changes)


def state_dir(state_root: StrPath, cid: str) -> str:
    return os.path.join(state_root, check_id(cid))


def save(state_root: StrPath, st: ContainerState) -> None:
    # Runtime state lives under /run and dies with a reboot, as runc's does:
    # atomic for readers, not fsync'd.
    atomic_write(os.path.join(state_dir(state_root, st.id), STATE_FILE),
                 json.dumps(st.as_dict(), indent=1).encode(), 0o600, durable=False)


def load(state_root: StrPath, cid: str) -> ContainerState:
    path = os.path.join(state_dir(state_root, cid), STATE_FILE)
    try:
        with open(path, "rb") as f:
            raw = json.loads(f.read())
    except FileNotFoundError as exc:
        raise NotFound(f"container {cid} does not exist") from exc
    except ValueError as exc:
        raise NotFound(f"container {cid}: state file is corrupt: {exc}") from exc
    if not isinstance(raw, dict):
        raise NotFound(f"container {cid}: state file is corrupt: not an object")
    return ContainerState(**{k: v for k, v in raw.items() if k in ContainerState._fields})


def proc_start_time(pid: int) -> int | None:
    """Field 22 (starttime) of ``/proc/<pid>/stat``, or None if the pid is gone or
    a zombie (a zombie has finished running: its container is stopped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm may contain spaces and ')': the fields start after the last ')'
    fields = data[data.rfind(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])  # field 22 counted from pid=1, comm=2, state=3


def status(state_root: StrPath, st: ContainerState) -> str:
    """The live status of ``st`` (see the module docstring)."""
    if st.pid <= 0:
        return CREATING if st.status == CREATING else STOPPED
    if proc_start_time(st.pid) != st.pid_start:
        return STOPPED
    if st.status == CREATING:
        return CREATING
    fifo = os.path.join(state_dir(state_root, st.id), EXEC_FIFO)
    return CREATED if os.path.lexists(fifo) else RUNNING


def oci_state(state_root: StrPath, st: ContainerState) -> dict[str, Any]:
    """The runtime-spec state JSON (``runc state``)."""
    live = status(state_root, st)
    out: dict[str, Any] = {"ociVersion": OCI_VERSION, "id": st.id, "status": live,
                           "pid": st.pid if live in (CREATED, RUNNING) else 0,
                           "bundle": st.bundle, "rootfs": st.rootfs, "created": st.created}
    if st.annotations:
        out["annotations"] = dict(st.annotations)
    return out
