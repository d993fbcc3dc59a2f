"""Container state: the transition table, ids, pid-reuse detection, derived status."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pyimg.errors import InvalidArgument, NotFound, StateTransitionError
from pyimg.runtime import state as s


def test_transition_table() -> None:
    s.check_transition("c", s.CREATING, s.CREATED)
    s.check_transition("c", s.CREATED, s.RUNNING)
    s.check_transition("c", s.RUNNING, s.STOPPED)
    for frm, to in [(s.RUNNING, s.CREATED), (s.STOPPED, s.RUNNING), (s.CREATED, s.CREATING)]:
        with pytest.raises(StateTransitionError) as info:
            s.check_transition("c", frm, to)
        assert (info.value.from_, info.value.to) == (frm, to)
    s.check_operation("c", "start", s.CREATED)
    with pytest.raises(StateTransitionError, match="cannot start container c: it is running"):
        s.check_operation("c", "start", s.RUNNING)
    with pytest.raises(StateTransitionError):
        s.check_operation("c", "delete", s.RUNNING)


@pytest.mark.parametrize("cid", ["", ".", "..", "a/b", "a b", "x" * 1025, "é"])
def test_bad_ids(cid: str) -> None:
    with pytest.raises(InvalidArgument):
        s.check_id(cid)


def test_save_load_and_status(tmp_path: Path) -> None:
    (tmp_path / "c1").mkdir()
    st = s.ContainerState("c1", "/b", "/b/rootfs", created="2024-01-01T00:00:00Z",
                          annotations={"k": "v"})
    s.save(tmp_path, st)
    assert s.load(tmp_path, "c1") == st
    assert s.status(tmp_path, st) == s.CREATING
    me = st.with_(pid=os.getpid(), pid_start=s.proc_start_time(os.getpid()) or 0,
                  status=s.CREATED)
    os.mkfifo(tmp_path / "c1" / s.EXEC_FIFO)
    assert s.status(tmp_path, me) == s.CREATED
    os.unlink(tmp_path / "c1" / s.EXEC_FIFO)
    assert s.status(tmp_path, me) == s.RUNNING
    assert s.status(tmp_path, me.with_(pid_start=me.pid_start + 1)) == s.STOPPED  # reused
    doc = s.oci_state(tmp_path, me)
    assert doc["status"] == "running" and doc["pid"] == os.getpid()
    assert doc["annotations"] == {"k": "v"} and doc["ociVersion"] == s.OCI_VERSION
    with pytest.raises(NotFound):
        s.load(tmp_path, "nope")


def test_zombie_is_stopped() -> None:
    p = subprocess.Popen(["true"])
    try:
        for _ in range(500):
            if s.proc_start_time(p.pid) is None:
                break
            os.sched_yield()
        assert s.proc_start_time(p.pid) is None  # a zombie has no start time for us
    finally:
        p.wait()
    assert s.proc_start_time(p.pid) is None
