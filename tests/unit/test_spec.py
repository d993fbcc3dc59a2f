"""OCI runtime spec generation: image config + run options → config.json."""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path
from typing import Any

import pytest

from pyimg import oci
from pyimg.errors import FailedPrecondition, InvalidArgument
from pyimg.runtime import (
    MountSpec,
    RunOptions,
    generate_spec,
    parse_cpus,
    parse_size,
    parse_tmpfs,
    parse_volume,
    resolve_user,
    write_bundle,
)
from pyimg.runtime.spec import DEFAULT_CAPABILITIES, DEFAULT_PATH
from pyimg.runtime.user import open_in_root

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "# comment\n"
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "app:x:1000:1000:App:/home/app:/bin/sh\n"
    "broken:x:notanumber:1::/:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = (
    "root:x:0:\n"
    "daemon:x:1:\n"
    "wheel:x:10:root,app\n"
    "audio:x:29:app\n"
    "app:x:1000:\n"
    "nogroup:x:65534:\n"
)


def image(**cfg: Any) -> oci.ImageConfig:
    raw = {"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
           "config": cfg, "rootfs": {"type": "layers", "diff_ids": []}}
    return oci.parse_config(json.dumps(raw).encode())


BUSYBOX = {"Env": [PATH_ENV], "Cmd": ["sh"], "WorkingDir": "/"}


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    return root


def spec(rootfs: Path, options: RunOptions | None = None, **cfg: Any) -> dict[str, Any]:
    return generate_spec(image(**(cfg or BUSYBOX)), rootfs, options or RunOptions())


# The whole document ------------------------------------------------------------


def test_default_spec_matches_expected_json(rootfs: Path) -> None:
    got = spec(rootfs, Env=[PATH_ENV], Cmd=["sh"], WorkingDir="/",
               Labels={"org.pyimg.fixture": "busybox"})
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = 1024 if hard == resource.RLIM_INFINITY else min(1024, hard)
    caps = list(DEFAULT_CAPABILITIES)
    expected = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0, "additionalGids": [10]},
            "args": ["sh"],
            "env": [PATH_ENV, "HOME=/root"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": False},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                         "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "annotations": {
            "org.pyimg.fixture": "busybox",
            "org.opencontainers.image.os": "linux",
            "org.opencontainers.image.architecture": "amd64",
            "org.opencontainers.image.created": "2024-01-01T00:00:00Z",
        },
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"},
                           {"type": "mount"}, {"type": "network"}, {"type": "cgroup"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                            "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }
    seccomp = got["linux"].pop("seccomp")  # Docker's default for the default capabilities
    assert seccomp["defaultAction"] == "SCMP_ACT_ERRNO"
    assert got == expected
    # JSON round trip: only JSON types, ids are plain ints
    assert json.loads(json.dumps(got)) == got


def test_runtime_spec_essentials(rootfs: Path) -> None:
    s = spec(rootfs, RunOptions(user="app"))
    assert s["ociVersion"] == "1.0.2"
    assert s["root"]["path"] == "rootfs"
    user = s["process"]["user"]
    assert type(user["uid"]) is int and type(user["gid"]) is int
    assert all(type(g) is int for g in user.get("additionalGids", []))
    assert s["process"]["args"] and s["process"]["cwd"].startswith("/")
    assert all("=" in e for e in s["process"]["env"])
    assert "inheritable" not in s["process"]["capabilities"]
    assert "ambient" not in s["process"]["capabilities"]
    assert s["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert "devices" not in s["linux"]
    assert "seccomp" not in spec(rootfs, RunOptions(seccomp={}))["linux"]  # unconfined


# Args ------------------------------------------------------------------------------


@pytest.mark.parametrize(("cfg", "opts", "args"), [
    ({"Cmd": ["sh"]}, RunOptions(), ["sh"]),
    ({"Entrypoint": ["/ep", "-x"], "Cmd": ["a", "b"]}, RunOptions(), ["/ep", "-x", "a", "b"]),
    ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, RunOptions(args=("c", "d")), ["/ep", "c", "d"]),
    ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, RunOptions(entrypoint=("/new",)), ["/new"]),
    ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, RunOptions(entrypoint=("/new",), args=("z",)),
     ["/new", "z"]),
    ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, RunOptions(entrypoint=(), args=("ls",)), ["ls"]),
    ({"Cmd": ["sh"]}, RunOptions(args=()), ["sh"]),
    ({"Entrypoint": ["/ep"], "Cmd": None}, RunOptions(), ["/ep"]),
])
def test_args_follow_docker_rules(rootfs: Path, cfg: dict[str, Any], opts: RunOptions,
                                  args: list[str]) -> None:
    assert spec(rootfs, opts, **cfg)["process"]["args"] == args


@pytest.mark.parametrize(("cfg", "opts"), [
    ({"Env": [PATH_ENV]}, RunOptions()),
    ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, RunOptions(entrypoint=())),
])
def test_no_command_is_invalid(rootfs: Path, cfg: dict[str, Any], opts: RunOptions) -> None:
    with pytest.raises(InvalidArgument, match="no command specified"):
        spec(rootfs, opts, **cfg)


def test_malformed_cmd_is_invalid(rootfs: Path) -> None:
    with pytest.raises(InvalidArgument, match="Cmd must be a list of strings"):
        spec(rootfs, Cmd="sh -c true")


# Env and cwd -----------------------------------------------------------------------


def test_env_defaults_path_and_merges_additions(rootfs: Path) -> None:
    s = spec(rootfs, RunOptions(env=("FOO=2", "NEW=x=y", "EMPTY="), tty=True),
             Env=["FOO=1", "BAR=b", "junk-without-equals"], Cmd=["sh"])
    assert s["process"]["env"] == [f"PATH={DEFAULT_PATH}", "FOO=2", "BAR=b", "NEW=x=y",
                                   "EMPTY=", "HOME=/root", "TERM=xterm"]
    assert s["process"]["terminal"] is True


def test_env_keeps_image_path_home_and_term(rootfs: Path) -> None:
    s = spec(rootfs, RunOptions(tty=True, env=("HOME=/h", "TERM=dumb")),
             Env=["PATH=/bin"], Cmd=["sh"])
    assert s["process"]["env"] == ["PATH=/bin", "HOME=/h", "TERM=dumb"]


@pytest.mark.parametrize("bad", ["NOVALUE", "=x", "A\x00=b"])
def test_bad_env_is_invalid(rootfs: Path, bad: str) -> None:
    with pytest.raises(InvalidArgument, match="expected KEY=VALUE"):
        spec(rootfs, RunOptions(env=(bad,)))


@pytest.mark.parametrize(("workdir", "opt", "cwd"), [
    (None, None, "/"), ("", None, "/"), ("/srv/app", None, "/srv/app"),
    ("rel/dir", None, "/rel/dir"), ("/srv/app/", None, "/srv/app"),
    ("/srv", "/opt//x/../y", "/opt/y"),
])
def test_cwd(rootfs: Path, workdir: str | None, opt: str | None, cwd: str) -> None:
    s = spec(rootfs, RunOptions(workdir=opt), Cmd=["sh"], WorkingDir=workdir)
    assert s["process"]["cwd"] == cwd


def test_relative_workdir_option_is_invalid(rootfs: Path) -> None:
    with pytest.raises(InvalidArgument, match="must be an absolute path"):
        spec(rootfs, RunOptions(workdir="rel"))


# Users -------------------------------------------------------------------------------


@pytest.mark.parametrize(("user", "uid", "gid", "extra", "home"), [
    ("", 0, 0, [10], "/root"),
    ("root", 0, 0, [10], "/root"),
    ("app", 1000, 1000, [10, 29], "/home/app"),
    ("app:audio", 1000, 29, [10], "/home/app"),
    ("app:4242", 1000, 4242, [10, 29], "/home/app"),
    ("1000", 1000, 1000, [10, 29], "/home/app"),
    ("1000:0", 1000, 0, [10, 29], "/home/app"),
    ("nobody", 65534, 65534, [], "/nonexistent"),
    ("4321", 4321, 0, [], "/"),
    ("4321:4321", 4321, 4321, [], "/"),
    ("4321:wheel", 4321, 10, [], "/"),
])
def test_user_resolution(rootfs: Path, user: str, uid: int, gid: int, extra: list[int],
                         home: str) -> None:
    s = spec(rootfs, RunOptions(user=user))
    u = s["process"]["user"]
    assert (u["uid"], u["gid"], u.get("additionalGids", [])) == (uid, gid, extra)
    assert f"HOME={home}" in s["process"]["env"]


def test_image_user_used_and_option_overrides(rootfs: Path) -> None:
    assert spec(rootfs, Cmd=["sh"], User="app")["process"]["user"]["uid"] == 1000
    s = spec(rootfs, RunOptions(user="0"), Cmd=["sh"], User="app")
    assert s["process"]["user"]["uid"] == 0


@pytest.mark.parametrize(("user", "message"), [
    ("ghost", "unable to find user ghost"),
    ("app:nogroup-here", "unable to find group nogroup-here"),
    ("broken", "unable to find user broken"),
    ("app:", "group '' is not a valid name or id"),
    (":0", "user '' is not a valid name or id"),
    ("a:b:c", "not a valid name or id"),
    ("bad name", "not a valid name or id"),
    ("4294967295", "uid 4294967295 is out of range"),
    ("0:99999999999", "gid 99999999999 is out of range"),
])
def test_bad_user_is_invalid(rootfs: Path, user: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        spec(rootfs, RunOptions(user=user))


def test_username_without_passwd_is_invalid(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    with pytest.raises(InvalidArgument, match="the image has no /etc/passwd"):
        resolve_user(tmp_path, "app")
    assert resolve_user(tmp_path, "7:8").uid == 7


def test_passwd_symlink_resolves_inside_rootfs(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "real").mkdir()
    (root / "real" / "passwd").write_text("inside:x:123:45::/in:/bin/sh\n")
    # absolute target: must mean <rootfs>/real/passwd, never the host's /real
    (root / "etc" / "passwd").symlink_to("/real/passwd")
    assert resolve_user(root, "inside").uid == 123


def test_passwd_symlink_cannot_escape_rootfs(tmp_path: Path) -> None:
    host = tmp_path / "host-passwd"
    host.write_text("escaped:x:4242:4242::/:/bin/sh\n")
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").symlink_to("../../../../../../../../" + str(host))
    with pytest.raises(InvalidArgument, match="unable to find user escaped"):
        resolve_user(root, "escaped")
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").symlink_to(str(host))  # absolute → <rootfs>/<host path>
    with pytest.raises(InvalidArgument, match="unable to find user escaped"):
        resolve_user(root, "escaped")
    # a directory symlink escaping is contained too
    (root / "etc" / "passwd").unlink()
    os.rmdir(root / "etc")
    (root / "etc").symlink_to("../..")
    (tmp_path / "passwd").write_text("escaped:x:4242:4242::/:/bin/sh\n")
    with pytest.raises(InvalidArgument, match="unable to find user escaped"):
        resolve_user(root, "escaped")


def test_open_in_root_refuses_loops_and_specials(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(OSError, match="too many levels"):
        open_in_root(tmp_path, "/loop")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OSError, match="not a regular file"):
        open_in_root(tmp_path, "/fifo")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").mkdir()
    with pytest.raises(InvalidArgument, match="cannot read /etc/passwd"):
        resolve_user(tmp_path, "x")


# Hostname, network, namespaces ---------------------------------------------------------


def test_hostname_and_host_network(rootfs: Path) -> None:
    s = spec(rootfs, RunOptions(hostname="web-1.example", network="host"))
    assert s["hostname"] == "web-1.example"
    assert [n["type"] for n in s["linux"]["namespaces"]] == ["pid", "ipc", "uts", "mount",
                                                             "cgroup"]
    assert "hostname" not in spec(rootfs)


@pytest.mark.parametrize("name", ["-bad", "a_b", "x" * 65, "a..b", ""])
def test_bad_hostname_is_invalid(rootfs: Path, name: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid hostname"):
        spec(rootfs, RunOptions(hostname=name))


def test_bad_network_is_invalid(rootfs: Path) -> None:
    with pytest.raises(InvalidArgument, match="invalid network mode"):
        spec(rootfs, RunOptions(network="bridge"))  # type: ignore[arg-type]


# Mounts --------------------------------------------------------------------------------


def test_extra_mounts(rootfs: Path, tmp_path: Path) -> None:
    opts = RunOptions(mounts=(
        parse_volume(f"{tmp_path}:/data:ro"),
        parse_volume(f"{tmp_path}/:/rw"),
        parse_tmpfs("/run:size=64m,mode=755"),
        parse_tmpfs("/dev/shm:size=1g"),
    ), readonly_rootfs=True)
    s = spec(rootfs, opts)
    assert s["root"]["readonly"] is True
    dests = [m["destination"] for m in s["mounts"]]
    # the user's /dev/shm replaces the default one
    assert dests == ["/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys", "/sys/fs/cgroup",
                     "/data", "/rw", "/run", "/dev/shm"]
    assert s["mounts"][6:] == [
        {"destination": "/data", "type": "bind", "source": str(tmp_path),
         "options": ["rbind", "rprivate", "ro"]},
        {"destination": "/rw", "type": "bind", "source": str(tmp_path),
         "options": ["rbind", "rprivate", "rw"]},
        {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "noexec", "size=64m", "mode=755"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", "noexec", "size=1g", "mode=1777"]},
    ]


@pytest.mark.parametrize(("mount", "message"), [
    (MountSpec("bind", "/x", source="/definitely/not/here"), "does not exist"),
    (MountSpec("bind", "rel", source="/"), "must be an absolute path"),
    (MountSpec("bind", "/x", source="rel"), "must be an absolute path"),
    (MountSpec("tmpfs", "/"), "cannot mount over the rootfs"),
    (MountSpec("tmpfs", "/t", options=("size=1m,exec",)), "invalid mount option"),
    (MountSpec("overlay", "/t"), "invalid mount type"),  # type: ignore[arg-type]
])
def test_bad_mount_is_invalid(rootfs: Path, mount: MountSpec, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        spec(rootfs, RunOptions(mounts=(mount,)))


def test_duplicate_mount_is_invalid(rootfs: Path) -> None:
    with pytest.raises(InvalidArgument, match="duplicate mount destination: /t"):
        spec(rootfs, RunOptions(mounts=(parse_tmpfs("/t"), parse_tmpfs("/t/"))))


@pytest.mark.parametrize("text", ["/only", "a:b", "/a:/b:rx", ":/b", "/a:/b:ro:x"])
def test_bad_volume_syntax(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_volume(text)


def test_tmpfs_ro_option() -> None:
    assert parse_tmpfs("/t:ro,size=1m") == MountSpec("tmpfs", "/t", readonly=True,
                                                     options=("size=1m",))


# Capabilities --------------------------------------------------------------------------


@pytest.mark.parametrize(("add", "drop", "expected"), [
    ((), (), list(DEFAULT_CAPABILITIES)),
    (("net_admin", "CAP_SYS_PTRACE"), ("MKNOD", "cap_net_raw"),
     [c for c in DEFAULT_CAPABILITIES if c not in ("CAP_MKNOD", "CAP_NET_RAW")]
     + ["CAP_NET_ADMIN", "CAP_SYS_PTRACE"]),
    ((), ("ALL",), []),
    (("CHOWN",), ("all",), ["CAP_CHOWN"]),
    (("KILL",), ("KILL",), list(DEFAULT_CAPABILITIES)),  # add wins, as in Docker
])
def test_capabilities(rootfs: Path, add: tuple[str, ...], drop: tuple[str, ...],
                      expected: list[str]) -> None:
    caps = spec(rootfs, RunOptions(cap_add=add, cap_drop=drop))["process"]["capabilities"]
    assert caps == {"bounding": expected, "effective": expected, "permitted": expected}


def test_cap_add_all(rootfs: Path) -> None:
    caps = spec(rootfs, RunOptions(cap_add=("ALL",), cap_drop=("SYS_ADMIN",)))
    bounding = caps["process"]["capabilities"]["bounding"]
    assert len(bounding) == 40 and "CAP_SYS_ADMIN" not in bounding


def test_unknown_capability_is_invalid(rootfs: Path) -> None:
    with pytest.raises(InvalidArgument, match="invalid cap-add 'FLY': unknown capability"):
        spec(rootfs, RunOptions(cap_add=("FLY",)))


# Limits and cgroups ---------------------------------------------------------------------


def test_resources(rootfs: Path) -> None:
    s = spec(rootfs, RunOptions(memory=parse_size("64m"), cpus=parse_cpus("0.5"),
                                pids_limit=100, cgroups_path="/pyimg/abc"))
    assert s["linux"]["resources"] == {
        "devices": [{"allow": False, "access": "rwm"}],
        "memory": {"limit": 64 * 1024 * 1024},
        "cpu": {"quota": 50000, "period": 100000},
        "pids": {"limit": 100},
    }
    assert s["linux"]["cgroupsPath"] == "/pyimg/abc"
    assert spec(rootfs, RunOptions(cgroups_path="system.slice:pyimg:abc"))["linux"][
        "cgroupsPath"] == "system.slice:pyimg:abc"


@pytest.mark.parametrize(("opts", "message"), [
    (RunOptions(memory=1024), "minimum is 6 MiB"),
    (RunOptions(cpus=0.001), "invalid cpus"),
    (RunOptions(cpus=(os.cpu_count() or 1) + 1.0), "invalid cpus"),
    (RunOptions(pids_limit=0), "must be positive"),
    (RunOptions(cgroups_path="relative"), "invalid cgroups path"),
    (RunOptions(cgroups_path="/a/../b"), "invalid cgroups path"),
])
def test_bad_limits_are_invalid(rootfs: Path, opts: RunOptions, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        spec(rootfs, opts)


def test_nofile_clamped_to_host_hard_limit(rootfs: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _r: (256, 512))
    assert spec(rootfs)["process"]["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "hard": 512, "soft": 512}]


def test_seccomp_seam_and_console(rootfs: Path) -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW"}
    s = spec(rootfs, RunOptions(seccomp=profile, tty=True, console_size=(24, 80)))
    assert s["linux"]["seccomp"] == profile
    assert s["process"]["consoleSize"] == {"height": 24, "width": 80}


@pytest.mark.parametrize(("text", "size"), [
    ("1024", 1024), ("0", 0), ("512k", 512 << 10), ("64m", 64 << 20), ("64M", 64 << 20),
    ("64mb", 64 << 20), ("64MiB", 64 << 20), ("1g", 1 << 30), ("1.5g", 3 << 29),
    ("2T", 2 << 40), ("10b", 10), (" 8m ", 8 << 20),
])
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "m", "-1m", "1x", "1.g", "64ib", "1e3", "ten"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid size"):
        parse_size(text)


@pytest.mark.parametrize(("text", "cpus"), [("0.5", 0.5), ("2", 2.0), (" 1.25 ", 1.25),
                                            ("0.01", 0.01)])
def test_parse_cpus(text: str, cpus: float) -> None:
    assert parse_cpus(text) == cpus


@pytest.mark.parametrize("text", ["", "abc", "0", "-1", "0.001", "nan", "inf"])
def test_parse_cpus_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid cpus"):
        parse_cpus(text)


# Bundles --------------------------------------------------------------------------------


def test_write_bundle(tmp_path: Path) -> None:
    bundle = tmp_path / "deep" / "bundle"
    seen: list[Path] = []

    def fill(rootfs: Path) -> None:
        seen.append(rootfs)
        (rootfs / "etc").mkdir()
        (rootfs / "etc" / "passwd").write_text(PASSWD)

    path = write_bundle(bundle, image(**BUSYBOX), fill, RunOptions(user="app"))
    assert path == bundle / "config.json"
    assert seen == [bundle / "rootfs"]
    assert (bundle.stat().st_mode & 0o777) == 0o700
    assert (path.stat().st_mode & 0o777) == 0o600
    assert json.loads(path.read_text())["process"]["user"]["uid"] == 1000
    assert sorted(p.name for p in bundle.iterdir()) == ["config.json", "rootfs"]
    # rewriting an existing bundle replaces config.json and tightens the mode
    bundle.chmod(0o755)
    write_bundle(bundle, image(**BUSYBOX), None, RunOptions(user="0"))
    assert (bundle.stat().st_mode & 0o777) == 0o700
    assert json.loads(path.read_text())["process"]["user"]["uid"] == 0


def test_write_bundle_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "b").write_text("")
    with pytest.raises(FailedPrecondition, match="not a directory"):
        write_bundle(tmp_path / "b", image(**BUSYBOX), None)


def test_write_bundle_leaves_no_temp_file_on_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        write_bundle(tmp_path / "b", image(**BUSYBOX), None, RunOptions(user="ghost"))
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["rootfs"]
