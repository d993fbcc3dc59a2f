"""User namespaces (``linux.namespaces`` type ``user`` with uid/gid maps) on the real
kernel, compared with runc on the same bundle (root).

The container's root is host uid/gid 100000 (container ids 0..65535 map to host
100000..165535).  As with runc without idmapped mounts, the rootfs stays owned
by the host's root, which the container sees as the overflow id (nobody), and
the container's root must be able to reach the rootfs: the bundle directory
is made searchable by others (``write_bundle`` makes it 0700).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyimg import linux
from pyimg.errors import InvalidArgument, LaunchError
from pyimg.runtime import launcher, ops
from tests.containers import cgroup_dirs, exec_output, mounts_under
from tests.integration.test_launcher import Env
from tests.integration.test_launcher import _needs as _needs  # autouse: root, runc, umoci

HOST_ID = 100000
SIZE = 65536
MAPPING = [{"containerID": 0, "hostID": HOST_ID, "size": SIZE}]


class UsernsEnv(Env):
    """:class:`Env` in a directory the container's root (host uid 100000) can
    search, with the user namespace added to every bundle and pyimg's cgroups."""

    def bundle(self, *args: str, name: str = "bundle", uid_maps: Any = None,
               gid_maps: Any = None, **opts: Any) -> Path:
        bundle = super().bundle(*args, name=name, **opts)
        bundle.chmod(0o711)  # write_bundle makes it 0700: runc needs this too
        spec = json.loads((bundle / "config.json").read_text())
        spec["linux"]["namespaces"].append({"type": "user"})
        spec["linux"]["uidMappings"] = MAPPING if uid_maps is None else uid_maps
        spec["linux"]["gidMappings"] = MAPPING if gid_maps is None else gid_maps
        (bundle / "config.json").write_text(json.dumps(spec))
        return bundle

    cids: list[str]

    def run_cg(self, bundle: Path, name: str = "c") -> int:
        """``launcher.run`` with pyimg's cgroup hooks (as `pyimg runtime run`)."""
        cid = f"{name}-{uuid.uuid4().hex[:8]}"
        self.cids.append(cid)
        stdio = self.stdio(name)
        try:
            return launcher.run(cid, bundle, self.root, stdio=stdio,
                                cgroup_hook=ops._hook(launcher.load_spec(bundle), self.root, cid),
                                cgroup_cleanup=ops._cleanup(self.root, cid))
        finally:
            for fd in stdio:
                os.close(fd)


@pytest.fixture
def env(busybox: Path, rootfs_cache: Path) -> Iterator[UsernsEnv]:
    tmp = Path(tempfile.mkdtemp(prefix="pyimg-userns-", dir="/tmp"))
    tmp.chmod(0o711)
    e = UsernsEnv(tmp, busybox, rootfs_cache)
    e.cids = []
    try:
        yield e
    finally:
        e.cleanup()
        # only what this test made: other pyimg runs may share the host meanwhile
        assert mounts_under(tmp) == [], "a mount leaked onto the host"
        assert _cgroups(e.cids) == [], "a cgroup was left behind"
        shutil.rmtree(tmp, ignore_errors=True)


def _cgroups(cids: list[str]) -> list[str]:
    """The cgroup directories (any hierarchy) of these containers."""
    return sorted(d for d in cgroup_dirs() if d.rsplit("/", 1)[1] in cids)


PROBE = ("cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; hostname; "
         "{ echo x >> /etc/passwd; } 2>/dev/null || echo denied; stat -c '%u %g' /etc/passwd; "
         "ls -ln /dev/null | cut -c1-10; echo hi > /dev/null && head -c4 /dev/zero | wc -c; "
         "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; cat /proc/self/oom_score_adj; "
         "exit 7")


def test_userns_probe_matches_runc(env: UsernsEnv) -> None:
    bundle = env.bundle("sh", "-c", PROBE)
    env.edit(bundle, oomScoreAdj=200)  # written before the user namespace, as by runc
    assert env.run_cg(bundle, "probe") == 7
    ours = env.output("probe").splitlines()
    assert (env.tmp / "probe.err").read_text() == ""
    uid_map = f"{0:>10} {HOST_ID:>10} {SIZE:>10}"
    assert ours[:2] == [uid_map, uid_map]
    assert ours[2:5] == ["0", "0", "pyimg-box"]
    assert ours[5] == "denied"  # the rootfs belongs to the host's root: nobody inside
    assert ours[6] == "65534 65534"
    assert ours[7] == "crw-rw-rw-"  # the host's /dev/null, bind-mounted
    assert ours[8] == "4"
    assert "CapEff:\t00000000a80425fb" in ours and "NoNewPrivs:\t1" in ours
    assert ours[-1] == "200"
    theirs = env.runc(bundle)
    assert theirs.returncode == 7, theirs.stderr
    assert theirs.stdout.splitlines()[0] == uid_map
    assert theirs.stdout.splitlines() == ours


def _status_ids(pid: int) -> tuple[list[str], list[str]]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    uid = next(ln for ln in lines if ln.startswith("Uid:")).split()[1:]
    gid = next(ln for ln in lines if ln.startswith("Gid:")).split()[1:]
    return uid, gid


def test_host_uid_and_exec(env: UsernsEnv) -> None:
    env.create(env.bundle("sleep", "100"), "box")
    pid = launcher.state("box", env.root)["pid"]
    assert _status_ids(pid) == ([str(HOST_ID)] * 4, [str(HOST_ID)] * 4)  # created
    assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    launcher.start("box", env.root)
    assert _status_ids(pid) == ([str(HOST_ID)] * 4, [str(HOST_ID)] * 4)  # sleep runs
    assert Path(f"/proc/{pid}/uid_map").read_text().split() == ["0", str(HOST_ID), str(SIZE)]

    # exec joins the user namespace first and becomes the process user in it
    code, out = exec_output("box", env.root,
                            ["sh", "-c", "id -u; cat /proc/self/uid_map; hostname"], uid=1000)
    assert code == 0, out
    assert out == ["1000", "0", str(HOST_ID), str(SIZE), "pyimg-box"]
    launcher.kill("box", env.root, signal.SIGKILL)
    env.wait_status("box", "stopped")
    launcher.delete("box", env.root)


def test_readonly_rootfs_masks_and_locked_bind(env: UsernsEnv) -> None:
    """Read-only remounts in a user namespace: rootfs, /proc/sys, and a ro bind of a
    host mount that is nosuid,nodev,noexec: those flags are locked in the user
    namespace and the remount must keep them, else EPERM."""
    host = env.tmp / "hostmnt"
    host.mkdir()
    linux.mount("tmpfs", host, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC,
                "mode=755")
    try:
        (host / "data").write_text("host data\n")
        script = ("touch /tmp/x 2>&1 | grep -o 'Read-only file system'; "
                  "grep -E ' / | /proc/sys | /data ' /proc/mounts | cut -d' ' -f2,4; "
                  "cat /data/data; touch /data/y 2>&1 | grep -o Read-only; "
                  "ls -l /proc/keys | cut -c1-10; wc -c < /proc/keys")
        bundle = env.bundle("sh", "-c", script, readonly_rootfs=True)
        (bundle / "rootfs" / "data").mkdir()  # the container's root may not create it
        spec = json.loads((bundle / "config.json").read_text())
        spec["mounts"].append({"destination": "/data", "type": "bind", "source": str(host),
                               "options": ["rbind", "ro"]})
        (bundle / "config.json").write_text(json.dumps(spec))
        assert env.run_cg(bundle, "ro") == 0, (env.tmp / "ro.err").read_text()
        out = env.output("ro").splitlines()
        assert out[0] == "Read-only file system"
        assert [line.split()[0] for line in out[1:4]] == ["/", "/data", "/proc/sys"]
        assert all(line.split()[1].startswith("ro,") for line in out[1:4]), out
        assert "nosuid,nodev,noexec" in out[2]  # kept from the host mount
        assert out[4:] == ["host data", "Read-only", "crw-rw-rw-", "0"]
    finally:
        linux.umount(host, linux.MNT_DETACH)


def _children() -> set[int]:
    """Our child processes, zombies included."""
    out = set()
    for d in Path("/proc").glob("[0-9]*"):
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
            out.add(int(d.name))
    return out


def test_refused_mapping_is_launch_error_and_leaves_nothing(env: UsernsEnv) -> None:
    overlapping = [{"containerID": 0, "hostID": HOST_ID, "size": SIZE},
                   {"containerID": 1000, "hostID": 300000, "size": 10}]
    bundle = env.bundle("true", uid_maps=overlapping)
    children = _children()
    with pytest.raises(LaunchError) as info:
        env.run_cg(bundle, "bad")
    err = info.value
    assert err.stage == "user namespace" and err.exit_code == 125
    assert "uidMappings" in err.message and "refused" in err.message, err.message
    assert "0 100000 65536; 1000 300000 10" in err.message
    assert launcher.list_containers(env.root) == []
    assert list(env.root.iterdir()) == []
    assert env.cids and _cgroups(env.cids) == []
    assert _children() == children  # stage 1 was killed and reaped
    assert (env.tmp / "bad.err").read_text() == ""


def test_mapping_errors_found_before_launch(env: UsernsEnv) -> None:
    no_root = [{"containerID": 1, "hostID": HOST_ID, "size": 10}]
    with pytest.raises(InvalidArgument, match=r"container's root \(uid 0\)"):
        env.run(env.bundle("true", uid_maps=no_root), "noroot")
    with pytest.raises(InvalidArgument, match="gidMappings"):
        env.run(env.bundle("true", gid_maps=[], name="b2"), "nogid")
    bundle = env.bundle("true", name="b3")
    spec = json.loads((bundle / "config.json").read_text())
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"]
                                   if n["type"] != "user"]
    (bundle / "config.json").write_text(json.dumps(spec))
    with pytest.raises(InvalidArgument, match="need a user namespace"):
        env.run(bundle, "nouserns")
    assert not env.root.exists() or list(env.root.iterdir()) == []


def test_setup_error_after_cgroup_hook_leaves_nothing(env: UsernsEnv) -> None:
    """A failure in stage 2 (after the cgroup was made) removes the cgroup too."""
    bundle = env.bundle("true")
    spec = json.loads((bundle / "config.json").read_text())
    spec["mounts"].append({"destination": "/tmp/data", "type": "bind",
                           "source": str(env.tmp / "missing"), "options": ["rbind"]})
    (bundle / "config.json").write_text(json.dumps(spec))
    with pytest.raises(LaunchError) as info:
        env.run_cg(bundle, "late")
    assert info.value.stage == "mount /tmp/data", info.value.message
    assert launcher.list_containers(env.root) == []
    assert env.cids and _cgroups(env.cids) == []


def test_unmapped_devpts_gid_is_dropped(env: UsernsEnv) -> None:
    """Only the root is mapped: devpts' ``gid=5`` would be EINVAL, so it is left out
    (runc 1.1.5 fails here; ``runc spec --rootless`` and podman drop it from the spec)."""
    one = [{"containerID": 0, "hostID": HOST_ID, "size": 1}]
    bundle = env.bundle("sh", "-c", "grep devpts /proc/mounts; id -u",
                        uid_maps=one, gid_maps=one)
    assert env.run_cg(bundle, "one") == 0, (env.tmp / "one.err").read_text()
    devpts, uid = env.output("one").splitlines()
    assert "mode=620,ptmxmode=666" in devpts and "gid=" not in devpts
    assert uid == "0"
