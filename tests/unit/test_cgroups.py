"""cgroups: layout detection from fake mountinfo, path rules, conversions, and the
files written for v1, v2 and hybrid layouts (writes recorded, not performed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pyimg.errors import FailedPrecondition, InvalidArgument
from pyimg.runtime import cgroups, devicefilter
from pyimg.runtime.cgroups import (
    UNIFIED,
    CgroupManager,
    Hierarchy,
    Layout,
    parse_layout,
    shares_to_weight,
    swap_to_v2,
    validate_cgroups_path,
)

HYBRID_MOUNTINFO = """\
22 28 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
"""  # noqa: E501

HYBRID_CGROUP = """\
9:name=systemd:/user.slice
8:pids:/user.slice/user-0.slice
5:devices:/
4:memory:/process_api/abc
3:cpuset:/
1:cpu,cpuacct:/
0::/user.slice
"""

V2_MOUNTINFO = """\
25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
"""  # noqa: E501


def fake_controllers(names: str) -> object:
    return lambda _mp: frozenset(names.split())


def test_detect_hybrid_with_comounted_and_named_hierarchies() -> None:
    layout = parse_layout(HYBRID_MOUNTINFO, HYBRID_CGROUP, fake_controllers("hugetlb"))
    assert layout.mode == "hybrid"
    keys = {h.key for h in layout.hierarchies}
    assert keys == {"cpu,cpuacct", "cpuset", "memory", "devices", "pids", "name=systemd", ""}
    cpu = layout.controller("cpu")
    assert cpu is not None and cpu is layout.controller("cpuacct")
    assert Path(cpu.mountpoint) == Path("/sys/fs/cgroup/cpu,cpuacct")
    assert layout.controller("memory") is not None
    mem = layout.controller("memory")
    assert mem is not None and mem.current == "/process_api/abc"
    u = layout.unified
    assert u is not None and Path(u.mountpoint) == Path("/sys/fs/cgroup/unified")
    assert u.current == "/user.slice"
    # hugetlb is not mounted as v1, so it lives in the cgroup2 tree
    assert layout.controller("hugetlb") is u
    assert layout.controller("freezer") is None
    systemd = next(h for h in layout.v1 if h.key == "name=systemd")
    assert systemd.controllers == {"name=systemd"}


def test_detect_pure_v2_at_sys_fs_cgroup() -> None:
    layout = parse_layout(V2_MOUNTINFO, "0::/init.scope\n", fake_controllers("cpu memory pids"))
    assert layout.mode == "v2"
    assert len(layout.hierarchies) == 1
    u = layout.unified
    assert u is not None and Path(u.mountpoint) == Path("/sys/fs/cgroup")
    assert layout.controller("memory") is u
    assert layout.controller("devices") is None


def test_detect_pure_v1_dedupes_bind_mounts_and_unescapes() -> None:
    text = (
        "32 31 0:29 / /sys/fs/cgroup/cpu\\040x rw - cgroup cgroup rw,cpu,cpuacct\n"
        "33 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "90 20 0:32 /docker/abc /mnt/memory rw - cgroup cgroup rw,memory\n"
    )
    layout = parse_layout(text, "4:memory:/\n2:cpu,cpuacct:/\n", fake_controllers(""))
    assert layout.mode == "v1"
    assert [Path(h.mountpoint) for h in layout.hierarchies] == [
        Path("/sys/fs/cgroup/cpu x"), Path("/sys/fs/cgroup/memory")]


def test_detect_nothing_mounted() -> None:
    with pytest.raises(FailedPrecondition, match="no cgroup filesystem"):
        parse_layout("22 28 0:21 / /proc rw - proc proc rw\n", "", fake_controllers(""))


def test_detect_this_host() -> None:
    layout = cgroups.detect_layout()
    assert layout.mode in ("v1", "v2", "hybrid")
    for h in layout.hierarchies:
        assert Path(h.mountpoint).is_dir()


def test_resolve_absolute_and_relative() -> None:
    h = Hierarchy(1, Path("/cg/memory"), "/", frozenset({"memory"}), "/process_api/abc")
    assert Path(h.resolve("/pyimg/c1")) == Path("/cg/memory/pyimg/c1")
    assert Path(h.resolve("c1")) == Path("/cg/memory/process_api/abc/c1")
    nested = Hierarchy(2, Path("/cg"), "/docker/x", frozenset(), "/docker/x/sub")
    assert Path(nested.resolve("c1")) == Path("/cg/sub/c1")


@pytest.mark.parametrize(("path", "expected"), [
    ("/pyimg/abc", "/pyimg/abc"),
    ("//pyimg///abc/", "/pyimg/abc"),
    ("/pyimg/./abc", "/pyimg/abc"),
    ("rel/abc", "rel/abc"),
])
def test_valid_paths(path: str, expected: str) -> None:
    assert validate_cgroups_path(path) == expected


@pytest.mark.parametrize(("path", "message"), [
    ("/pyimg/../etc", "'..'"),
    ("../x", "'..'"),
    ("/", "root cgroup"),
    ("", "non-empty"),
    ("system.slice:pyimg:abc", "systemd cgroup driver"),
    (":pyimg:abc", "systemd cgroup driver"),
    ("/a\0b", "NUL"),
])
def test_invalid_paths(path: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        validate_cgroups_path(path)


def test_shares_to_weight_matches_runc() -> None:
    assert shares_to_weight(0) == 0
    assert shares_to_weight(2) == 1
    assert shares_to_weight(1024) == 39
    assert shares_to_weight(262144) == 10000
    assert shares_to_weight(1) == 1 and shares_to_weight(10**9) == 10000


def test_swap_to_v2() -> None:
    assert swap_to_v2(0, 100) is None
    assert swap_to_v2(0, -1) == -1
    assert swap_to_v2(-1, 100) == -1
    assert swap_to_v2(300, 100) == 200
    assert swap_to_v2(100, 100) == 0
    with pytest.raises(InvalidArgument, match="at least the memory limit"):
        swap_to_v2(50, 100)
    with pytest.raises(InvalidArgument, match="needs a memory limit"):
        swap_to_v2(50, 0)


# ------------------------------------------------------------ writes, recorded


class Recorder:
    def __init__(self) -> None:
        self.writes: list[tuple[Path, str]] = []
        self.files: dict[Path, str] = {}
        self.filters: list[tuple[Path, list[dict[str, object]]]] = []

    def attach(self, cgroup_dir: str, rules: list[dict[str, object]]) -> None:
        self.filters.append((Path(cgroup_dir), list(rules)))

    def write(self, path: str, value: str) -> None:
        self.writes.append((Path(path), value))

    def read(self, path: str | Path) -> str:
        path = Path(path)
        if path.name == "cgroup.controllers":
            return self.files.get(path, "cpu memory pids io hugetlb")
        return self.files.get(path, "")

    def to(self, path: Path) -> list[str]:
        return [v for p, v in self.writes if p == path]


@pytest.fixture
def rec(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    r = Recorder()
    monkeypatch.setattr(cgroups, "_write", r.write)
    monkeypatch.setattr(cgroups, "_read", r.read)
    monkeypatch.setattr(devicefilter, "attach", r.attach)
    yield r


RES = {
    "memory": {"limit": 64 << 20, "swap": 96 << 20},
    "cpu": {"shares": 1024, "quota": 50000, "period": 100000},
    "pids": {"limit": 20},
    "devices": [{"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rw"}],
}


def test_v2_create_enables_controllers_and_writes_v2_files(tmp_path: Path, rec: Recorder) -> None:
    layout = Layout("v2", (Hierarchy(2, tmp_path, "/", frozenset({"cpu", "memory", "pids"}), "/"),))
    m = CgroupManager("/pyimg/c1", RES, layout=layout)
    m.create()
    leaf = tmp_path / "pyimg" / "c1"
    assert leaf.is_dir()
    assert [Path(c) for c in m.created] == [tmp_path / "pyimg", leaf]
    for anc in (tmp_path, tmp_path / "pyimg"):
        assert sorted(rec.to(anc / "cgroup.subtree_control")) == ["+cpu", "+memory", "+pids"]
    assert not rec.to(leaf / "cgroup.subtree_control")
    m.apply()
    assert rec.to(leaf / "memory.max") == [str(64 << 20)]
    assert rec.to(leaf / "memory.swap.max") == [str(32 << 20)]
    assert rec.to(leaf / "cpu.weight") == ["39"]
    assert rec.to(leaf / "cpu.max") == ["50000 100000"]
    assert rec.to(leaf / "pids.max") == ["20"]
    # no device files on v2: an eBPF program with the spec's rules, then runc's defaults
    assert not [p for p, _ in rec.writes if p.name.startswith("devices.")]
    assert [(d, rules[:2]) for d, rules in rec.filters] == [(leaf, RES["devices"])]
    assert rec.filters[0][1][2:] == list(cgroups.DEFAULT_ALLOWED_DEVICES)
    m.add(1234)
    assert rec.to(leaf / "cgroup.procs") == ["1234"]
    m.destroy()
    assert not (tmp_path / "pyimg").exists()


def test_v2_missing_required_controller(tmp_path: Path, rec: Recorder) -> None:
    layout = Layout("v2", (Hierarchy(2, tmp_path, "/", frozenset({"cpu"}), "/"),))
    m = CgroupManager("/pyimg/c1", {"pids": {"limit": 5}}, layout=layout)
    with pytest.raises(FailedPrecondition, match=r"'pids' is not available.*resources\.pids"):
        m.create()
    assert not (tmp_path / "pyimg").exists()


def _hybrid(tmp_path: Path) -> Layout:
    def v1(name: str, ctrls: set[str]) -> Hierarchy:
        (tmp_path / name).mkdir()
        return Hierarchy(1, tmp_path / name, "/", frozenset(ctrls), "/")
    (tmp_path / "unified").mkdir()
    return Layout("hybrid", (
        v1("memory", {"memory"}), v1("cpu,cpuacct", {"cpu", "cpuacct"}), v1("pids", {"pids"}),
        v1("devices", {"devices"}), v1("cpuset", {"cpuset"}), v1("systemd", {"name=systemd"}),
        Hierarchy(2, tmp_path / "unified", "/", frozenset({"hugetlb"}), "/"),
    ))


def test_hybrid_writes_v1_files_and_tracks_in_unified(tmp_path: Path, rec: Recorder) -> None:
    layout = _hybrid(tmp_path)
    res = {**RES, "hugepageLimits": [{"pageSize": "2MB", "limit": 1 << 21}]}
    m = CgroupManager("/pyimg/c1", res, layout=layout)
    rec.files[tmp_path / "memory/pyimg/c1/memory.limit_in_bytes"] = "9223372036854771712"
    m.create()
    for name in ("memory", "cpu,cpuacct", "pids", "devices", "cpuset", "systemd", "unified"):
        assert (tmp_path / name / "pyimg" / "c1").is_dir(), name
    assert set(m.dirs) == {"memory", "cpu,cpuacct", "pids", "devices", "cpuset",
                           "name=systemd", UNIFIED}
    # only what a resource needs is enabled in the cgroup2 tree of a hybrid host
    assert rec.to(tmp_path / "unified" / "cgroup.subtree_control") == ["+hugetlb"]
    # an empty cpuset is filled from its parent at every level
    assert [p.parent.name for p, _ in rec.writes if p.name == "cpuset.cpus"] == ["pyimg", "c1"]
    mem = tmp_path / "memory/pyimg/c1"
    (mem / "memory.memsw.limit_in_bytes").touch()  # swap accounting on
    m.apply()
    # the current limit (unlimited) is above the new memory+swap: limit first (runc)
    assert [(p.name, v) for p, v in rec.writes if p.parent == mem] == [
        ("memory.limit_in_bytes", str(64 << 20)),
        ("memory.memsw.limit_in_bytes", str(96 << 20)),
    ]
    cpu = tmp_path / "cpu,cpuacct/pyimg/c1"
    assert rec.to(cpu / "cpu.shares") == ["1024"]
    assert rec.to(cpu / "cpu.cfs_period_us") == ["100000"]
    assert rec.to(cpu / "cpu.cfs_quota_us") == ["50000"]
    assert rec.to(tmp_path / "pids/pyimg/c1/pids.max") == ["20"]
    assert rec.to(tmp_path / "unified/pyimg/c1/hugetlb.2MB.max") == [str(1 << 21)]
    dev = tmp_path / "devices/pyimg/c1"
    rules = [(p.name, v) for p, v in rec.writes if p.parent == dev]
    assert rules[:3] == [("devices.deny", "a"), ("devices.deny", "a"),
                         ("devices.allow", "c 10:200 rw")]
    assert ("devices.allow", "c 1:3 rwm") in rules and ("devices.allow", "c 136:* rwm") in rules
    m.add(42)
    procs = [p.parent.parent.parent.name for p, v in rec.writes if p.name == "cgroup.procs"]
    assert procs[0] == "cpuset" and len(procs) == 7


def test_v1_memsw_needs_swap_accounting(tmp_path: Path, rec: Recorder) -> None:
    m = CgroupManager("/p/c", {"memory": {"limit": 1 << 26, "swap": 1 << 27}},
                      layout=_hybrid(tmp_path))
    m.create()
    with pytest.raises(FailedPrecondition, match=r"memory.memsw.limit_in_bytes is missing"):
        m.apply()


def test_from_spec_and_state_round_trip(tmp_path: Path, rec: Recorder) -> None:
    layout = _hybrid(tmp_path)
    m = CgroupManager.from_spec({"linux": {"resources": {}}}, "abc", layout=layout)
    assert m.path == "/pyimg/abc"
    with pytest.raises(InvalidArgument, match="systemd cgroup driver"):
        CgroupManager.from_spec({"linux": {"cgroupsPath": "system.slice:pyimg:abc"}}, "abc",
                                layout=layout)
    (tmp_path / "memory" / "pyimg").mkdir()  # a parent that existed before
    m.create()
    again = CgroupManager.from_state(m.to_state(), layout=layout)
    assert again.dirs == m.dirs and again.created == m.created
    again.destroy()
    assert (tmp_path / "memory" / "pyimg").is_dir()
    assert not (tmp_path / "memory" / "pyimg" / "abc").exists()
    assert not (tmp_path / "unified" / "pyimg").exists()


def test_missing_v1_controller_is_named(tmp_path: Path, rec: Recorder) -> None:
    m = CgroupManager("/p/c", {"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]},
                      layout=Layout("v1", (Hierarchy(1, tmp_path, "/", frozenset({"memory"}),
                                                     "/"),)))
    with pytest.raises(FailedPrecondition, match=r"'hugetlb'.*linux\.resources\.hugepageLimits"):
        m.create()


def test_bad_device_rule(tmp_path: Path, rec: Recorder) -> None:
    m = CgroupManager("/p/c", {"devices": [{"allow": True, "type": "x"}]},
                      layout=_hybrid(tmp_path))
    m.create()
    with pytest.raises(InvalidArgument, match="device rule type 'x'"):
        m.apply()


def test_v1_raising_memory_writes_memsw_first(tmp_path: Path, rec: Recorder) -> None:
    layout = _hybrid(tmp_path)
    m = CgroupManager("/p/c", {"memory": {"limit": 128 << 20, "swap": 256 << 20}}, layout=layout)
    m.create()
    mem = tmp_path / "memory/p/c"
    (mem / "memory.memsw.limit_in_bytes").touch()
    rec.files[mem / "memory.limit_in_bytes"] = str(64 << 20)  # lower than the new total
    m.apply()
    assert [p.name for p, _ in rec.writes if p.parent == mem] == [
        "memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]
