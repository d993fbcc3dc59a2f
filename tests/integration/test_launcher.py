"""pyimg's launcher on the real kernel, compared with runc on the same bundle (root)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyimg import linux
from pyimg.errors import AlreadyExists, LaunchError, StateTransitionError
from pyimg.runtime import RunOptions, launcher, write_bundle
from tests.containers import exec_output
from tests.integration.test_bundle_runc import _image_config
from tests.need import need_root, need_tool

PROBE = ('echo $$; hostname; cat /proc/self/status | grep -E "NoNewPrivs|CapEff"; '
         "mount | wc -l; ls -l /proc/kcore 2>&1; cat /proc/kcore 2>/dev/null | head -c1 | wc -c; "
         "ls -l /proc/timer_list /proc/keys; cat /proc/timer_list /proc/keys | wc -c; exit 5")


@pytest.fixture(autouse=True)
def _needs() -> None:
    need_root()
    need_tool("runc")
    need_tool("umoci")


@pytest.fixture
def env(tmp_path: Path, busybox: Path, rootfs_cache: Path) -> Iterator[Env]:
    e = Env(tmp_path, busybox, rootfs_cache)
    mounts_before = _mount_count()
    try:
        yield e
    finally:
        e.cleanup()
        assert _mount_count() == mounts_before, "a mount leaked onto the host"


def _mount_count() -> int:
    return len(Path("/proc/self/mountinfo").read_text().splitlines())


class Env:
    """A private state root, bundles from the busybox fixture, stdout captured to files."""

    def __init__(self, tmp: Path, layout: Path, cache: Path) -> None:
        self.tmp, self.layout, self.cache = tmp, layout, cache
        self.root = tmp / "state"
        self.runc_root = tmp / "runc-state"
        self.runc_ids: list[str] = []

    def bundle(self, *args: str, name: str = "bundle", **opts: Any) -> Path:
        bundle = self.tmp / name
        shutil.copytree(self.cache, bundle, symlinks=True)
        write_bundle(bundle, _image_config(self.layout), None,
                     RunOptions(args=args, hostname="pyimg-box", **opts))
        return bundle

    def edit(self, bundle: Path, **process: Any) -> None:
        spec = json.loads((bundle / "config.json").read_text())
        spec["process"].update(process)
        (bundle / "config.json").write_text(json.dumps(spec))

    def stdio(self, name: str) -> tuple[int, int, int]:
        out = os.open(self.tmp / f"{name}.out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(self.tmp / f"{name}.err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        return null, out, err

    def output(self, name: str) -> str:
        return (self.tmp / f"{name}.out").read_text()

    def run(self, bundle: Path, name: str = "c") -> int:
        stdio = self.stdio(name)
        try:
            return launcher.run(f"{name}-{uuid.uuid4().hex[:8]}", bundle, self.root,
                                stdio=stdio)
        finally:
            for fd in stdio:
                os.close(fd)

    def create(self, bundle: Path, cid: str) -> None:
        stdio = self.stdio(cid)
        try:
            launcher.create(cid, bundle, self.root, stdio=stdio)
        finally:
            for fd in stdio:
                os.close(fd)

    def runc(self, bundle: Path) -> subprocess.CompletedProcess[str]:
        cid = f"pyimg-test-{uuid.uuid4().hex[:12]}"
        self.runc_ids.append(cid)
        return subprocess.run(["runc", "--root", str(self.runc_root), "run", "--bundle",
                               str(bundle), cid], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=60, check=False)

    def status(self, cid: str) -> str:
        return str(launcher.state(cid, self.root)["status"])

    def wait_status(self, cid: str, want: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.status(cid) != want:
            assert time.monotonic() < deadline, f"{cid} still {self.status(cid)}"
            time.sleep(0.02)

    def cleanup(self) -> None:
        for c in launcher.list_containers(self.root):
            launcher.delete(c["id"], self.root, force=True)
        for cid in self.runc_ids:
            subprocess.run(["runc", "--root", str(self.runc_root), "delete", "-f", cid],
                           capture_output=True, check=False, timeout=60)


def test_probe_matches_runc(env: Env) -> None:
    bundle = env.bundle("sh", "-c", PROBE)
    assert env.run(bundle, "probe") == 5
    ours = env.output("probe").splitlines()
    theirs = env.runc(bundle)
    assert theirs.returncode == 5, theirs.stderr
    runc_lines = theirs.stdout.splitlines()
    assert ours[:2] == ["1", "pyimg-box"]
    assert "NoNewPrivs:\t1" in ours
    cap = [line for line in ours if line.startswith("CapEff")]
    assert cap == [line for line in runc_lines if line.startswith("CapEff")]
    assert cap == ["CapEff:\t00000000a80425fb"]
    assert ours[4] == runc_lines[4], "mount count differs from runc's"
    kcore = ours[5]  # this kernel may lack /proc/kcore; if present it must be /dev/null
    assert "No such file" in kcore or kcore.startswith("crw-rw-rw-"), kcore
    assert ours[6] == "0"
    masked = [line for line in ours if line.endswith(("/proc/timer_list", "/proc/keys"))]
    assert len(masked) == 2 and all(m.startswith("crw-rw-rw-") for m in masked), ours
    assert ours[-1] == "0"  # both masked files read as empty
    assert ours == runc_lines


def test_create_start_states(env: Env) -> None:
    bundle = env.bundle("sh", "-c", "echo ran; sleep 0.5")
    env.create(bundle, "split")
    st = launcher.state("split", env.root)
    assert st["status"] == "created" and st["pid"] > 0
    assert st["ociVersion"] and st["bundle"] == str(bundle.resolve())
    assert st["annotations"]["org.opencontainers.image.architecture"]
    time.sleep(0.2)
    assert env.output("split") == ""  # the command has not run
    with pytest.raises(AlreadyExists):
        env.create(bundle, "split")
    launcher.start("split", env.root)
    assert env.status("split") == "running"
    with pytest.raises(StateTransitionError):
        launcher.start("split", env.root)
    with pytest.raises(StateTransitionError):
        launcher.delete("split", env.root)
    env.wait_status("split", "stopped")
    assert env.output("split") == "ran\n"
    assert [c["id"] for c in launcher.list_containers(env.root)] == ["split"]
    launcher.delete("split", env.root)
    assert not (env.root / "split").exists()
    assert launcher.list_containers(env.root) == []


def test_kill(env: Env) -> None:
    # pid 1 of a pid namespace gets only the signals it handles (or SIGKILL):
    # SIGTERM ends a shell that traps it; a bare `sleep` needs SIGKILL, as under runc.
    env.create(env.bundle("sh", "-c", "trap 'exit 143' TERM; sleep 100 & wait",
                          name="b1"), "term")
    env.create(env.bundle("sleep", "100", name="b2"), "sleep")
    for cid in ("term", "sleep"):
        launcher.start(cid, env.root)
    time.sleep(0.2)  # let the shell install its trap
    launcher.kill("term", env.root, signal.SIGTERM)
    env.wait_status("term", "stopped")
    launcher.kill("sleep", env.root, signal.SIGTERM)
    time.sleep(0.3)
    assert env.status("sleep") == "running"
    launcher.kill("sleep", env.root, signal.SIGKILL)
    env.wait_status("sleep", "stopped")
    with pytest.raises(StateTransitionError):
        launcher.kill("sleep", env.root, signal.SIGKILL)


def test_delete_force(env: Env) -> None:
    env.create(env.bundle("sleep", "100"), "forced")
    pid = launcher.state("forced", env.root)["pid"]
    launcher.delete("forced", env.root, force=True)  # even before start
    assert not (env.root / "forced").exists()
    assert not Path(f"/proc/{pid}").exists() or \
        Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"


def test_no_fd_leak_and_cwd_inside(env: Env) -> None:
    leak = os.open("/", os.O_RDONLY)  # an inheritable fd of the launcher
    os.set_inheritable(leak, True)
    try:
        bundle = env.bundle("sh", "-c", "ls /proc/self/fd; pwd -P")
        env.edit(bundle, cwd="/../../")
        assert env.run(bundle, "fds") == 0
    finally:
        os.close(leak)
    assert env.output("fds").split() == ["0", "1", "2", "3", "/"]


def test_cwd_symlink_resolves_in_rootfs(env: Env, tmp_path: Path) -> None:
    bundle = env.bundle("sh", "-c", "pwd -P; ls")
    os.symlink("/../../../../../../tmp/outside", bundle / "rootfs" / "escape")
    env.edit(bundle, cwd="/escape")
    assert env.run(bundle, "cwd") == 0
    assert env.output("cwd").split() == ["/tmp/outside"]
    assert (bundle / "rootfs" / "tmp" / "outside").is_dir()
    assert not Path("/tmp/outside").exists()


def test_missing_command_is_127_not_executable_126(env: Env) -> None:
    with pytest.raises(LaunchError) as info:
        env.run(env.bundle("no-such-command"), "nf")
    assert info.value.exit_code == 127 and info.value.stage == "exec"
    assert "no-such-command" in info.value.message
    with pytest.raises(LaunchError) as info:
        env.run(env.bundle("/etc/passwd", name="b2"), "nx")
    assert info.value.exit_code == 126
    assert launcher.list_containers(env.root) == []


def test_setup_error_is_launch_error(env: Env) -> None:
    bundle = env.bundle("true")
    spec = json.loads((bundle / "config.json").read_text())
    spec["mounts"].append({"destination": "/data", "type": "bind",
                           "source": str(env.tmp / "missing"), "options": ["rbind"]})
    (bundle / "config.json").write_text(json.dumps(spec))
    with pytest.raises(LaunchError) as info:
        env.run(bundle, "bad")
    assert info.value.exit_code == 125 and info.value.stage == "mount /data"
    assert launcher.list_containers(env.root) == []


def test_exec_in_joins_the_container(env: Env) -> None:
    env.create(env.bundle("sleep", "100"), "target")
    launcher.start("target", env.root)
    code, out = exec_output("target", env.root,
                            ["sh", "-c", "hostname; cat /proc/1/comm; ls /proc/self/fd"])
    assert code == 0
    assert out == ["pyimg-box", "sleep", "0", "1", "2", "3"]


def test_readonly_rootfs_and_user(env: Env) -> None:
    bundle = env.bundle("sh", "-c", "touch /x 2>/dev/null || echo ro; id -u; "
                        "grep CapEff /proc/self/status", readonly_rootfs=True, user="nobody")
    assert env.run(bundle, "ro") == 0
    assert env.output("ro").splitlines() == ["ro", "65534", "CapEff:\t0000000000000000"]
    theirs = env.runc(bundle)
    assert theirs.stdout == env.output("ro")


def test_runtime_cli_fast_path_runs_a_bundle(env: Env, tmp_path: Path) -> None:
    """`pyimg runtime run` (the click-free entry) runs a bundle and returns its code."""
    import subprocess
    import sys

    bundle = env.bundle("sh", "-c", "echo fast; exit 3")
    pyimg = str(Path(sys.executable).with_name("pyimg"))
    penv = {"PATH": "/usr/bin:/bin", "PYIMG_STATE": str(tmp_path / "state")}
    proc = subprocess.run([pyimg, "runtime", "run", "--bundle", str(bundle), "fast1"],
                          capture_output=True, text=True, env=penv, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "fast\n"
    bad = subprocess.run([pyimg, "runtime", "state", "nope"], capture_output=True, text=True,
                         env=penv, timeout=60)
    assert bad.returncode == 3 and bad.stderr.startswith("pyimg: error: ")
    assert "Traceback" not in bad.stderr


def _pyimg_runtime(tmp_path: Path, *args: str, detached: bool = False
                   ) -> subprocess.CompletedProcess[str]:
    """``detached``: what it starts keeps its stdio (as with runc), so not a pipe."""
    pyimg = str(Path(sys.executable).with_name("pyimg"))
    out = subprocess.DEVNULL if detached else subprocess.PIPE
    return subprocess.run([pyimg, "runtime", "--root", str(tmp_path / "rt"), *args],
                          stdout=out, stderr=out, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def test_runtime_cli_console_socket_hands_over_the_pty(env: Env, tmp_path: Path) -> None:
    """runc's --console-socket: init opens a pty inside the container and sends the
    master over the socket (SCM_RIGHTS); the process runs on the slave."""
    import socket

    bundle = env.bundle("sh", "-c", "tty; echo on-the-pty")
    env.edit(bundle, terminal=True)
    path = str(tmp_path / "console.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as srv:
        srv.bind(path)
        srv.listen(1)
        created = _pyimg_runtime(tmp_path, "create", "--bundle", str(bundle),
                                 "--pid-file", str(tmp_path / "pid"),
                                 "--console-socket", path, "tty1")
        assert created.returncode == 0, created.stderr
        conn, _ = srv.accept()
        with conn:
            msg, fds, _, _ = socket.recv_fds(conn, 64, 1)
        assert msg and len(fds) == 1
    master = fds[0]
    try:
        state = json.loads(_pyimg_runtime(tmp_path, "state", "tty1").stdout)
        assert state["status"] == "created"
        assert state["pid"] == int((tmp_path / "pid").read_text())
        assert _pyimg_runtime(tmp_path, "start", "tty1").returncode == 0
        out = b""
        deadline = time.monotonic() + 10
        while b"on-the-pty" not in out and time.monotonic() < deadline:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the slave side closed
                break
            out += chunk
        assert b"/dev/pts/0" in out and b"on-the-pty" in out, out
    finally:
        os.close(master)
    deadline = time.monotonic() + 10
    while json.loads(_pyimg_runtime(tmp_path, "state", "tty1").stdout)["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert _pyimg_runtime(tmp_path, "delete", "tty1").returncode == 0
    assert not (tmp_path / "rt" / "tty1").exists()


def test_runtime_cli_terminal_needs_a_console_socket(env: Env, tmp_path: Path) -> None:
    bundle = env.bundle("true")
    env.edit(bundle, terminal=True)
    p = _pyimg_runtime(tmp_path, "create", "--bundle", str(bundle), "t1")
    assert p.returncode == 2 and "--console-socket" in p.stderr, p.stderr
    env.edit(bundle, terminal=False)
    p = _pyimg_runtime(tmp_path, "create", "--bundle", str(bundle), "--console-socket",
                       str(tmp_path / "nope.sock"), "t1")
    assert p.returncode == 2 and "process.terminal" in p.stderr, p.stderr
    assert not (tmp_path / "rt" / "t1").exists()


def test_runtime_cli_log_file_gets_the_error_as_runc_writes_it(tmp_path: Path) -> None:
    """containerd's shim passes --log F --log-format json and reads the error back."""
    log = tmp_path / "log.json"
    p = _pyimg_runtime(tmp_path, "--log", str(log), "--log-format", "json", "state", "nope")
    assert p.returncode == 3 and p.stderr.startswith("pyimg: error: container nope")
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and "nope" in entry["msg"] and entry["time"].endswith("Z")
    p = _pyimg_runtime(tmp_path, "--log", str(tmp_path / "log.txt"), "kill", "nope")
    assert p.returncode == 3
    assert (tmp_path / "log.txt").read_text().startswith('time="')


def _hook(log: Path, kind: str, extra: str = "") -> dict[str, Any]:
    """A hook that appends ``kind`` and its stdin (the state) to ``log``."""
    script = f'{{ printf "%s " {kind}; cat; echo; }} >> {log}{extra}'
    return {"path": "/bin/sh", "args": ["sh", "-c", script], "env": ["PATH=/usr/bin:/bin"]}


def _set_hooks(bundle: Path, hooks: dict[str, list[dict[str, Any]]]) -> None:
    spec = json.loads((bundle / "config.json").read_text())
    spec["hooks"] = hooks
    (bundle / "config.json").write_text(json.dumps(spec))


def test_hooks_run_in_order_with_the_state_where_runc_runs_them(env: Env, tmp_path: Path
                                                                ) -> None:
    log = tmp_path / "hooks.log"
    bundle = env.bundle("sh", "-c", "echo main >> /main.log")
    ns = tmp_path / "ns"
    _set_hooks(bundle, {
        "prestart": [_hook(log, "prestart")],
        "createRuntime": [_hook(log, "createRuntime")],
        # in the container's namespaces, still on the host's root
        "createContainer": [_hook(log, "createContainer",
                                  f"; readlink /proc/self/ns/mnt /proc/self/ns/pid > {ns}")],
        # in the container's root: its log is the rootfs's /start.log
        "startContainer": [{"path": "/bin/sh", "args": [
            "sh", "-c", '{ printf "startContainer "; cat; echo; } >> /start.log']}],
        "poststart": [_hook(log, "poststart")],
        "poststop": [_hook(log, "poststop")],
    })
    cid = "hooked"
    env.create(bundle, cid)
    pid = launcher.state(cid, env.root)["pid"]
    lines = log.read_text().splitlines()
    kinds = [ln.split(" ", 1)[0] for ln in lines]
    assert kinds == ["prestart", "createRuntime", "createContainer"]
    states = [json.loads(ln.split(" ", 1)[1]) for ln in lines]
    assert [s["status"] for s in states] == ["creating"] * 3
    assert [s["pid"] for s in states] == [pid, pid, 1]  # createContainer: from inside
    assert all(s["id"] == cid and s["bundle"] == str(bundle) for s in states)
    mnt, pidns = ns.read_text().split()
    assert mnt == os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    assert pidns == os.readlink(f"/proc/{pid}/ns/pid")
    launcher.start(cid, env.root)
    env.wait_status(cid, "stopped")
    assert (bundle / "rootfs" / "main.log").read_text() == "main\n"
    start = (bundle / "rootfs" / "start.log").read_text().split(" ", 1)
    assert start[0] == "startContainer"
    assert json.loads(start[1]) | {"pid": 1, "status": "created"} == json.loads(start[1])
    assert launcher.delete(cid, env.root) == []
    lines = log.read_text().splitlines()
    assert [ln.split(" ", 1)[0] for ln in lines][3:] == ["poststart", "poststop"]
    assert json.loads(lines[3].split(" ", 1)[1])["status"] == "running"
    assert json.loads(lines[4].split(" ", 1)[1])["status"] == "stopped"
    assert not (env.root / cid).exists()


def test_failing_hooks_stop_the_container_or_warn(env: Env, tmp_path: Path) -> None:
    from pyimg.runtime import hooks

    fail = {"path": "/bin/sh", "args": ["sh", "-c", "echo no network for you >&2; exit 3"]}
    bundle = env.bundle("true")
    _set_hooks(bundle, {"createRuntime": [fail]})
    with pytest.raises(LaunchError) as info:
        env.create(bundle, "h1")
    assert info.value.stage == "createRuntime hook"
    assert "exited with 3: no network for you" in info.value.message
    assert not (env.root / "h1").exists() and launcher.list_containers(env.root) == []

    _set_hooks(bundle, {"createContainer": [{"path": "/bin/sleep", "args": ["sleep", "5"],
                                             "timeout": 1}]})
    t0 = time.monotonic()
    with pytest.raises(LaunchError, match=r"createContainer hook #0 .* timed out after 1s"):
        env.create(bundle, "h2")
    assert time.monotonic() - t0 < 4
    assert not (env.root / "h2").exists()

    ok = tmp_path / "ok"
    _set_hooks(bundle, {"poststop": [fail, {"path": "/bin/touch", "args": ["touch", str(ok)]}],
                        "poststart": [{"path": "/nonexistent"}]})
    env.create(bundle, "h3")
    warnings = launcher.start("h3", env.root)
    assert len(warnings) == 1 and "could not start" in warnings[0]
    env.wait_status("h3", "stopped")
    warnings = launcher.delete("h3", env.root)
    assert len(warnings) == 1 and "poststop hook #0" in warnings[0], warnings
    assert ok.exists()  # the next hook still ran
    assert not (env.root / "h3").exists()

    with pytest.raises(hooks.InvalidArgument, match="must be absolute"):
        _set_hooks(bundle, {"prestart": [{"path": "sh"}]})
        env.create(bundle, "h4")


def test_hooks_same_order_and_places_as_runc(env: Env, tmp_path: Path) -> None:
    kinds = ("prestart", "createRuntime", "createContainer", "poststart", "poststop")
    logs = {}
    for tool in ("runc", "pyimg"):
        log = tmp_path / f"{tool}.log"
        bundle = env.bundle("true", name=f"b-{tool}")
        _set_hooks(bundle, {k: [_hook(log, k)] for k in kinds} | {"startContainer": [
            {"path": "/bin/sh", "args": ["sh", "-c", "cat > /start.json"]}]})
        if tool == "runc":
            assert env.runc(bundle).returncode == 0
        else:
            assert env.run(bundle) == 0
        logs[tool] = [(ln.split(" ", 1)[0], json.loads(ln.split(" ", 1)[1]))
                      for ln in log.read_text().splitlines()]
        start = json.loads((bundle / "rootfs" / "start.json").read_text())
        assert (start["status"], start["pid"]) == ("created", 1), tool
    assert [k for k, _ in logs["runc"]] == [k for k, _ in logs["pyimg"]] == list(kinds)
    for (kind, theirs), (_, ours) in zip(logs["runc"], logs["pyimg"], strict=True):
        if kind != "poststart":  # runc still says "created" there; the process runs
            assert theirs["status"] == ours["status"], kind
        assert (theirs.get("pid", 0) == 1) == (ours["pid"] == 1), kind


def test_runtime_cli_exec_ps_pause_resume(env: Env, tmp_path: Path) -> None:
    bundle = env.bundle("sleep", "60")
    assert _pyimg_runtime(tmp_path, "create", "--bundle", str(bundle), "x1",
                          detached=True).returncode == 0
    try:
        assert _pyimg_runtime(tmp_path, "start", "x1").returncode == 0
        init = json.loads(_pyimg_runtime(tmp_path, "state", "x1").stdout)["pid"]
        # foreground: waits, same pid namespace and root, its exit code comes back
        p = _pyimg_runtime(tmp_path, "exec", "-e", "GREETING=hi", "--cwd", "/etc", "x1",
                           "sh", "-c", 'echo $GREETING $(pwd) $$; ls /proc | grep -c "^1$"; '
                           "exit 4")
        assert p.returncode == 4, p.stderr
        greeting, cwd, pid, one = p.stdout.split()
        assert (greeting, cwd, one) == ("hi", "/etc", "1") and int(pid) > 1
        # detached: returns at once, the pid file names the process, ps lists it
        pid_file = tmp_path / "exec.pid"
        p = _pyimg_runtime(tmp_path, "exec", "-d", "--pid-file", str(pid_file), "x1",
                           "sleep", "30", detached=True)
        assert p.returncode == 0, p.stderr
        sleeper = int(pid_file.read_text())
        assert sorted(json.loads(_pyimg_runtime(tmp_path, "ps", "--format", "json",
                                                "x1").stdout)) == sorted([init, sleeper])
        assert f"{sleeper}\tsleep 30" in _pyimg_runtime(tmp_path, "ps", "x1").stdout
        # pause: every process frozen (cgroup freezer), state says so; resume thaws
        assert _pyimg_runtime(tmp_path, "pause", "x1").returncode == 0
        assert json.loads(_pyimg_runtime(tmp_path, "state", "x1").stdout)["status"] == "paused"
        freezer = Path(json.loads((tmp_path / "rt" / "x1" / "cgroup-state.json").read_text())
                       ["dirs"]["freezer"])
        assert (freezer / "freezer.state").read_text().strip() == "FROZEN"
        assert _pyimg_runtime(tmp_path, "resume", "x1").returncode == 0
        assert (freezer / "freezer.state").read_text().strip() == "THAWED"
        assert json.loads(_pyimg_runtime(tmp_path, "state", "x1").stdout)["status"] == "running"
        assert _pyimg_runtime(tmp_path, "resume", "x1").returncode == 5  # not paused
    finally:
        assert _pyimg_runtime(tmp_path, "delete", "--force", "x1").returncode == 0


@pytest.mark.parametrize("propagation", [None, "private", "rshared"])
def test_rootfs_propagation_as_runc(env: Env, tmp_path: Path, propagation: str | None) -> None:
    """linux.rootfsPropagation: a bind of a shared host mount is a slave of it by
    default (rslave), stays a peer when the root is private or shared, as with runc."""
    shared = tmp_path / "shared"
    shared.mkdir()
    linux.mount("tmpfs", str(shared), "tmpfs", 0, None)
    try:
        subprocess.run(["mount", "--make-shared", str(shared)], check=True)
        bundle = env.bundle("sh", "-c", "grep ' /shr ' /proc/self/mountinfo")
        spec = json.loads((bundle / "config.json").read_text())
        spec["mounts"].append({"destination": "/shr", "type": "bind", "source": str(shared),
                               "options": ["rbind"]})
        if propagation:
            spec["linux"]["rootfsPropagation"] = propagation
        (bundle / "config.json").write_text(json.dumps(spec))
        assert env.run(bundle, "prop") == 0
        theirs = env.runc(bundle)
        assert theirs.returncode == 0, theirs.stderr
        tags = [line.split(" - ")[0].split()[6:] for line in (env.output("prop"), theirs.stdout)]
        assert tags[0] == tags[1], tags
        assert tags[0][0].startswith("master:" if propagation is None else "shared:")
    finally:
        linux.umount(str(shared), linux.MNT_DETACH)
