"""cgroups against the real kernel (root): limits, membership, OOM, pids, kill, destroy.

Every test works under a unique ``/pyimg-test-<uuid>`` path and removes it in
every hierarchy even when it fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pyimg.runtime.cgroups import CgroupManager, Layout, detect_layout
from tests.need import need_root

MiB = 1 << 20
Factory = Callable[..., CgroupManager]


@pytest.fixture(autouse=True)
def _needs() -> None:
    need_root()


@pytest.fixture
def layout() -> Layout:
    return detect_layout()


@pytest.fixture
def top(layout: Layout) -> Iterator[str]:
    """A unique top-level cgroup path; asserted gone from every hierarchy afterwards."""
    path = f"/pyimg-test-{uuid.uuid4().hex[:12]}"
    yield path
    left = [Path(h.resolve(path)) for h in layout.hierarchies if Path(h.resolve(path)).exists()]
    for d in left:  # last resort, so one failure does not leak into the host
        for sub in sorted((Path(p) for p, _, _ in os.walk(d)), key=lambda p: -len(p.parts)):
            for pid in (sub / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.1)
        for sub in sorted((Path(p) for p, _, _ in os.walk(d)), key=lambda p: -len(p.parts)):
            os.rmdir(sub)
    assert not left, f"cgroup directories left behind: {left}"


@pytest.fixture
def cgroup(layout: Layout, top: str) -> Iterator[Factory]:
    made: list[CgroupManager] = []
    procs: list[subprocess.Popen[bytes]] = []

    def make(sub: str = "c", resources: dict[str, Any] | None = None) -> CgroupManager:
        m = CgroupManager(f"{top}/{sub}", resources, layout=layout)
        made.append(m)
        m.create()
        m.apply()
        return m

    make.procs = procs  # type: ignore[attr-defined]
    try:
        yield make
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            for f in (p.stdin, p.stdout, p.stderr):
                if f is not None:
                    f.close()
        for m in reversed(made):
            m.kill_all()
            m.destroy()


def spawn(cg: Factory, args: list[str], **kw: Any) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(args, **kw)
    cg.procs.append(p)  # type: ignore[attr-defined]
    return p


def cgroup_file(m: CgroupManager, controller: str, v1: str, v2: str) -> str:
    h = m.layout.controller(controller)
    assert h is not None, f"this host has no {controller} controller"
    return (Path(m.dirs[h.key]) / (v1 if h.version == 1 else v2)).read_text().strip()


def membership(pid: int) -> dict[frozenset[str], str]:
    out = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        out[frozenset(c for c in ctrls.split(",") if c)] = path
    return out


LIMITS = {
    "memory": {"limit": 64 * MiB},
    "pids": {"limit": 20},
    "cpu": {"quota": 50000, "period": 100000},
    "devices": [{"allow": False, "access": "rwm"}],
}


def test_limits_and_membership(cgroup: Factory, layout: Layout, top: str) -> None:
    m = cgroup("c", LIMITS)
    for h in layout.hierarchies:
        assert Path(m.dirs[h.key]) == Path(h.mountpoint) / top.lstrip("/") / "c"
        assert Path(m.dirs[h.key]).is_dir()
    p = spawn(cgroup, ["sleep", "30"])
    m.add(p.pid)
    member = membership(p.pid)
    for h in layout.hierarchies:
        ctrls = frozenset() if h.version == 2 else h.controllers
        assert member[ctrls] == f"{top}/c", (h, member)
    assert m.pids() == [p.pid]

    assert int(cgroup_file(m, "memory", "memory.limit_in_bytes", "memory.max")) == 64 * MiB
    assert cgroup_file(m, "pids", "pids.max", "pids.max") == "20"
    cpu = layout.controller("cpu")
    assert cpu is not None
    if cpu.version == 1:
        assert (Path(m.dirs[cpu.key]) / "cpu.cfs_quota_us").read_text().strip() == "50000"
        assert (Path(m.dirs[cpu.key]) / "cpu.cfs_period_us").read_text().strip() == "100000"
    else:
        assert (Path(m.dirs[cpu.key]) / "cpu.max").read_text().strip() == "50000 100000"
    dev = layout.controller("devices")
    if dev is not None and dev.version == 1:
        rules = (Path(m.dirs[dev.key]) / "devices.list").read_text().split("\n")
        assert "a *:* rwm" not in rules
        assert "c 1:3 rwm" in rules and "c 136:* rwm" in rules  # /dev/null, /dev/pts/*

    st = m.stats()
    assert st.pids_current == 1
    assert st.memory_limit == 64 * MiB
    assert st.memory_usage is not None  # v1 does not move charges with the task
    assert st.cpu_usage_ns is not None
    assert st.oom_kills == 0 and not m.oom_killed()

    m.kill_all()
    assert p.wait(5) == -signal.SIGKILL
    assert m.pids() == []
    m.destroy()
    for h in layout.hierarchies:
        assert not Path(h.resolve(top)).exists(), h


def test_memory_limit_oom_kills(cgroup: Factory) -> None:
    m = cgroup("oom", {"memory": {"limit": 64 * MiB, "swap": 64 * MiB}})  # no swap to hide in
    code = ("import sys; sys.stdin.buffer.read(1); b = b'x' * (200 << 20); "
            "print('survived', flush=True)")
    p = spawn(cgroup, [sys.executable, "-c", code], stdin=subprocess.PIPE,
              stdout=subprocess.PIPE)
    m.add(p.pid)  # before it allocates: the wrapper waits on its stdin pipe
    assert p.stdin is not None and p.stdout is not None
    p.stdin.write(b"g")
    p.stdin.close()
    assert p.wait(30) == -signal.SIGKILL
    assert p.stdout.read() == b""
    assert m.oom_killed()
    assert m.stats().oom_kills == 1


def test_pids_limit_stops_fork_loop(cgroup: Factory) -> None:
    m = cgroup("pids", {"pids": {"limit": 20}})
    script = ('read x; i=0; while [ $i -lt 50 ]; do sleep 30 >/dev/null 2>&1 & i=$((i+1)); done; '
              'echo all-forked')
    p = spawn(cgroup, ["sh", "-c", script], stdin=subprocess.PIPE,
              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    m.add(p.pid)
    out, err = p.communicate(b"go\n", timeout=30)
    assert b"all-forked" not in out, err
    assert b"fork" in err.lower(), err
    members = m.pids()
    assert 1 <= len(members) <= 20  # the orphaned sleeps are still in the cgroup
    current = m.stats().pids_current
    assert current is not None and current <= 20
    events = cgroup_file(m, "pids", "pids.events", "pids.events")
    assert int(events.split()[1]) > 0  # "max N": forks refused
    m.kill_all()  # orphans, reparented away from us: only the cgroup finds them
    assert m.pids() == []


def test_kill_all_other_signal_and_freeze(cgroup: Factory) -> None:
    m = cgroup("sig")
    p = spawn(cgroup, ["sleep", "30"])
    m.add(p.pid)
    m.freeze()
    m.thaw()
    m.kill_all(signal.SIGTERM)
    assert p.wait(5) == -signal.SIGTERM
    assert m.pids() == []


def test_destroy_keeps_preexisting_parent(cgroup: Factory, layout: Layout, top: str) -> None:
    parent = cgroup("p")
    child = cgroup("p/child")
    assert child.created == [h.resolve(f"{top}/p/child") for h in layout.hierarchies]
    p = spawn(cgroup, ["sleep", "30"])
    child.add(p.pid)
    # a later process (pyimg runtime delete) restores the manager from saved state
    again = CgroupManager.from_state(child.to_state(), layout=layout)
    again.kill_all()
    again.destroy()
    for h in layout.hierarchies:
        assert not Path(h.resolve(f"{top}/p/child")).exists()
        assert Path(h.resolve(f"{top}/p")).is_dir()
    parent.destroy()
    for h in layout.hierarchies:
        assert not Path(h.resolve(top)).exists()
    p.wait(5)


def test_destroy_waits_for_dying_tasks_and_removes_subcgroups(cgroup: Factory,
                                                              layout: Layout) -> None:
    m = cgroup("nested")
    for d in m.dirs.values():
        (Path(d) / "inner").mkdir()  # the container made its own sub-cgroup
    p = spawn(cgroup, ["sleep", "30"])
    h = layout.hierarchies[0]
    (Path(m.dirs[h.key]) / "inner" / "cgroup.procs").write_text(str(p.pid))
    assert p.pid in m.pids()
    m.kill_all()
    m.destroy()
    for d in m.dirs.values():
        assert not Path(d).exists()
    p.wait(5)


def test_kill_all_by_freezing_when_there_is_no_cgroup_kill(layout: Layout, top: str) -> None:
    """The v1 path: freeze, SIGKILL every member, thaw, until empty (no cgroup.kill)."""
    if not layout.v1:
        pytest.skip("no v1 hierarchies on this host: cgroup.kill is always there")
    m = CgroupManager(f"{top}/v1only", {"pids": {"limit": 50}},
                      layout=Layout("v1", layout.v1))
    p = subprocess.Popen(["sh", "-c", "while :; do sleep 30 >/dev/null & sleep 0.01; done"])
    try:
        m.create()
        m.apply()
        m.add(p.pid)
        time.sleep(0.2)
        assert len(m.pids()) > 2
        m.kill_all()
        assert m.pids() == []
        assert p.wait(5) == -signal.SIGKILL
    finally:
        _stop(p, m)


def _stop(p: subprocess.Popen[Any], m: CgroupManager) -> None:
    if p.poll() is None:
        p.kill()
    p.wait()
    m.kill_all()
    m.destroy()


def test_pure_v2_path_on_the_real_cgroup2_mount(layout: Layout, top: str) -> None:
    """The v2-only code path on the kernel's real cgroup2 hierarchy.

    This host is hybrid and its cgroup2 mount offers only hugetlb, so what a
    pure v2 host does with memory/cpu/pids cannot be shown here; what can is
    shown: controllers enabled down the tree through cgroup.subtree_control
    (the "no internal processes" rule), a v2 limit file written, membership,
    cgroup.kill, removal.
    """
    unified = layout.unified
    assert unified is not None, "this host has no cgroup2 mount"
    assert "hugetlb" in unified.controllers, unified.controllers
    v2 = Layout("v2", (unified,))
    limit = 4 * 2 * MiB
    m = CgroupManager(f"{top}/c", {"hugepageLimits": [{"pageSize": "2MB", "limit": limit}]},
                      layout=v2)
    m.create()
    p = subprocess.Popen(["sleep", "30"])
    try:
        m.apply()
        parent = Path(m.dirs[""]).parent
        assert "hugetlb" in (parent / "cgroup.subtree_control").read_text().split()
        assert (Path(m.dirs[""]) / "hugetlb.2MB.max").read_text().strip() == str(limit)
        m.add(p.pid)
        assert membership(p.pid)[frozenset()] == f"{top}/c"
        assert m.pids() == [p.pid]
        m.kill_all()  # through cgroup.kill
        assert p.wait(5) == -signal.SIGKILL
        m.destroy()
        assert not parent.exists()
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()


def test_device_rules_on_cgroup2_are_an_ebpf_program(layout: Layout, top: str,
                                                     tmp_path: Path) -> None:
    """cgroup v2 has no devices controller: pyimg attaches a BPF_CGROUP_DEVICE program,
    and the kernel then refuses what the rules do not allow, mknod'ed nodes included."""
    import stat

    from pyimg.runtime import devicefilter

    unified = layout.unified
    assert unified is not None, "this host has no cgroup2 mount"
    m = CgroupManager(f"{top}/dev", {"devices": [{"allow": False, "access": "rwm"}]},
                      layout=Layout("v2", (unified,)))
    m.create()
    for name, minor in (("zero", 5), ("kmsg", 11)):  # 1:5 allowed by default, 1:11 not
        os.mknod(tmp_path / name, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
    script = ("read go; head -c1 zero >/dev/null && echo zero-ok; "
              "head -c1 kmsg >/dev/null 2>&1 || echo kmsg-denied; "
              "mknod sda b 8 0 && echo mknod-ok; head -c1 sda >/dev/null 2>&1 || echo sda-denied")
    p = subprocess.Popen(["sh", "-c", script], cwd=tmp_path, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        m.apply()  # the program is attached here
        m.add(p.pid)
        out, _ = p.communicate("go\n", timeout=10)
    finally:
        _stop(p, m)
    assert out.split() == ["zero-ok", "kmsg-denied", "mknod-ok", "sda-denied"]
    # the same node outside the cgroup is readable: the program made the difference
    with open(tmp_path / "kmsg", "rb"):
        pass
    # an allow-all rule at the end ends the program (the verifier refuses dead code)
    code = devicefilter.program([{"allow": False, "access": "rwm"},
                                 {"allow": True, "access": "rwm"}])
    assert len(code) % 8 == 0 and code.endswith(bytes([0x95]) + bytes(7))
    assert len(code) == 8 * (6 + 2)
