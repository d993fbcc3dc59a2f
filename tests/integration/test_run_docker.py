"""`pyimg run` and friends to docker's conventions: tty, network, limits, signals,
exit codes, restart, logs, --rm, and cleanup after a dead shim.

Every test is fast (well under 5 s) and leaves nothing behind: the ``p``
fixture (conftest.py) removes containers and checks for mounts, cgroups and
processes; some tests check the same in their middle.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path

from tests.cli import Pyimg, one_error_line
from tests.containers import assert_clean, cgroup_dirs, img, run_in_pty


def _until(pred, timeout: float = 5.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _logs(p: Pyimg, cid: str, *args: str) -> str:
    return p.run("logs", *args, cid).stdout


# 1. -it and -i ---------------------------------------------------------------------


def test_it_gives_a_real_pty(p: Pyimg) -> None:
    code, out = run_in_pty(p, ["run", "--rm", "-it", img(p), "sh"],
                           b"tty; stty size; echo $((6*7)); exit 4\n")
    text = out.decode(errors="replace")
    assert code == 4, text
    assert re.search(r"^/dev/pts/\d+\r?$", text, re.M), text  # ttyname() works inside
    assert re.search(r"^42\r?$", text, re.M), text
    assert p.run("ps", "-a", "-q").stdout == ""


def test_it_forwards_the_window_size(p: Pyimg) -> None:
    """The client's terminal size reaches the container's pty (resize op)."""
    master, slave = os.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
        proc = subprocess.run(p.cmd("run", "--rm", "-t", img(p), "stty", "size"), env=p.env,
                              stdin=slave, stdout=slave, stderr=slave, timeout=10,
                              start_new_session=True)
        os.close(slave)
        slave = -1
        out = b""
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            out += data
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert proc.returncode == 0
    assert b"33 101" in out, out


def test_i_forwards_stdin_and_its_eof(p: Pyimg) -> None:
    proc = p.run("run", "--rm", "-i", img(p), "cat", input="hello\n", timeout=10)
    assert proc.stdout == "hello\n"
    proc = p.run("run", "--rm", "-i", img(p), "wc", "-c", input="x" * 200_000, timeout=10)
    assert proc.stdout.strip() == "200000"
    assert p.run("ps", "-a", "-q").stdout == ""


# 2. network ------------------------------------------------------------------------


def test_network_none_has_loopback_up(p: Pyimg) -> None:
    out = p.run("run", "--rm", "--network", "none", img(p), "sh", "-c",
                "cat /sys/class/net/lo/operstate; ls /sys/class/net").stdout
    assert out == "unknown\nlo\n"  # up (lo has no carrier state), and nothing else


def test_network_host_sees_the_host_interfaces(p: Pyimg) -> None:
    out = p.run("run", "--rm", "--network", "host", img(p), "ls", "/sys/class/net").stdout
    assert sorted(out.split()) == sorted(os.listdir("/sys/class/net"))


# 3. limits, capabilities, seccomp -------------------------------------------------


def test_pids_limit_stops_a_fork_loop(p: Pyimg) -> None:
    # the loop runs in a child shell (ash gives up at the first failed fork); the
    # count uses only builtins, which need no fork
    proc = p.run("run", "--rm", "--pids-limit", "10", img(p), "sh", "-c",
                 "sh -c 'for i in $(seq 30); do sleep 5 & done'; "
                 "set -- /proc/[0-9]*; echo $#", check=False, timeout=10)
    assert proc.returncode == 0, proc.stderr
    assert 1 < int(proc.stdout) <= 10
    assert "can't fork" in proc.stderr


def test_cpus_sets_the_cfs_quota(p: Pyimg) -> None:
    # the cgroup namespace shows the container's cgroup as the root of each hierarchy
    out = p.run("run", "--rm", "--cpus", "0.5", img(p), "sh", "-c",
                "cat /sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us 2>/dev/null"
                " || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us").stdout
    assert out.strip() == "50000"


def test_default_capabilities_and_seccomp(p: Pyimg) -> None:
    proc = p.run("run", "--rm", img(p), "sh", "-c",
                 "grep -E '^(CapEff|CapBnd|Seccomp):' /proc/self/status;"
                 " unshare -m true; echo rc=$?")
    fields = dict(ln.split(":\t") for ln in proc.stdout.splitlines() if ":\t" in ln)
    assert fields["CapEff"] == fields["CapBnd"] == "00000000a80425fb"  # Docker's 14
    assert fields["Seccomp"] == "2"
    assert "rc=0" not in proc.stdout
    assert "Operation not permitted" in proc.stderr


# 4. stop and kill ------------------------------------------------------------------


def _with_stop_signal(layout: Path, dest: Path, stop_signal: str) -> Path:
    """A copy of an OCI layout whose image config has ``StopSignal``."""
    shutil.copytree(layout, dest)

    def blob(digest: str) -> Path:
        return dest / "blobs" / "sha256" / digest.split(":", 1)[1]

    def put(data: bytes) -> tuple[str, int]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blob(digest).write_bytes(data)
        return digest, len(data)

    index = json.loads((dest / "index.json").read_text())
    entry = index["manifests"][0]
    manifest = json.loads(blob(entry["digest"]).read_text())
    config = json.loads(blob(manifest["config"]["digest"]).read_text())
    config.setdefault("config", {})["StopSignal"] = stop_signal
    manifest["config"]["digest"], manifest["config"]["size"] = put(
        json.dumps(config).encode())
    entry["digest"], entry["size"] = put(json.dumps(manifest).encode())
    (dest / "index.json").write_text(json.dumps(index))
    return dest


def test_stop_uses_the_image_stop_signal(p: Pyimg, tmp_path: Path,
                                         fixture_layouts: dict[str, Path]) -> None:
    layout = _with_stop_signal(fixture_layouts["busybox"], tmp_path / "stopsig", "SIGUSR1")
    p.run("pull", "-q", f"oci:{layout}:latest")
    cid = p.run("run", "-d", "localhost/stopsig:latest", "sh", "-c",
                "trap 'echo got-usr1; exit 0' USR1; trap 'echo got-term; exit 0' TERM;"
                " echo ready; while :; do sleep 0.05; done").stdout.strip()
    _until(lambda: "ready" in _logs(p, cid), what="ready")
    start = time.monotonic()
    p.run("stop", "-t", "5", cid)
    assert time.monotonic() - start < 3
    assert p.run("wait", cid).stdout.strip() == "0"
    assert _logs(p, cid) == "ready\ngot-usr1\n"


def test_stop_kills_after_the_timeout(p: Pyimg) -> None:
    cid = p.run("run", "-d", img(p), "sh", "-c",
                "trap '' TERM; echo ready; while :; do sleep 0.05; done").stdout.strip()
    _until(lambda: "ready" in _logs(p, cid), what="ready")
    start = time.monotonic()
    p.run("stop", "-t", "1", cid)
    assert 0.9 < time.monotonic() - start < 4
    assert p.run("wait", cid).stdout.strip() == "137"
    assert "Exited (137)" in p.run("ps", "-a").stdout


def test_kill_accepts_signal_names_and_numbers(p: Pyimg) -> None:
    cid = p.run("run", "-d", img(p), "sh", "-c",
                "trap 'echo usr1' USR1; echo ready; while :; do sleep 0.05; done"
                ).stdout.strip()
    _until(lambda: "ready" in _logs(p, cid), what="ready")
    for n, sig in enumerate(("SIGUSR1", "10", "USR1", "usr1"), start=1):
        p.run("kill", "-s", sig, cid)
        _until(lambda n=n: _logs(p, cid).count("usr1") == n, what=f"signal {sig}")
    bad = p.run("kill", "-s", "NOPE", cid, check=False)
    assert bad.returncode != 0 and "invalid signal" in one_error_line(bad)
    p.run("kill", cid)  # SIGKILL by default
    assert p.run("wait", cid).stdout.strip() == "137"


# 5. exit codes ---------------------------------------------------------------------


def test_exit_codes_follow_docker(p: Pyimg) -> None:
    bad = p.run("run", "--rm", "--memory", "lots", img(p), "true", check=False)
    assert bad.returncode == 125
    assert "invalid size" in one_error_line(bad)
    host = img(p).split("/", 1)[0]
    missing = p.run("run", "--rm", f"{host}/pyimg/no-such-image", "true", check=False)
    assert missing.returncode == 125
    one_error_line(missing)
    assert p.run("run", "--rm", img(p), "/etc/passwd", check=False).returncode == 126
    assert p.run("run", "--rm", img(p), "no-such-command", check=False).returncode == 127
    assert p.run("run", "--rm", "--network", "bogus", img(p), "true",
                 check=False).returncode == 125
    assert p.run("ps", "-a", "-q").stdout == ""


# 6. start, logs --------------------------------------------------------------------


def test_start_reruns_an_exited_container(p: Pyimg) -> None:
    cid = p.run("run", "-d", img(p), "sh", "-c",
                "echo x >> /runs; echo run $(wc -l < /runs)").stdout.strip()
    assert p.run("wait", cid).stdout.strip() == "0"
    assert p.run("start", cid).stdout.strip() == cid
    assert p.run("wait", cid).stdout.strip() == "0"
    assert _logs(p, cid) == "run 1\nrun 2\n"  # same rootfs, logs appended
    assert "Exited (0)" in p.run("ps", "-a").stdout
    started = p.run("start", "-a", cid, check=False)
    assert started.returncode == 0 and started.stdout == "run 3\n"


def test_logs_tail_timestamps_and_follow(p: Pyimg) -> None:
    cid = p.run("run", "-d", img(p), "sh", "-c",
                "for i in 1 2 3; do echo line$i; sleep 0.2; done").stdout.strip()
    start = time.monotonic()
    followed = p.run("logs", "-f", cid, timeout=10).stdout  # returns when it exits
    assert followed == "line1\nline2\nline3\n"
    assert time.monotonic() - start < 3
    # the `run -d` CLI is long gone: the shim wrote everything
    assert _logs(p, cid, "--tail", "2") == "line2\nline3\n"
    assert _logs(p, cid, "--tail", "0") == ""
    assert _logs(p, cid, "--tail", "9") == "line1\nline2\nline3\n"
    stamped = _logs(p, cid, "--timestamps").splitlines()
    assert len(stamped) == 3
    for n, line in enumerate(stamped, start=1):
        assert re.fullmatch(rf"\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{{9}}Z line{n}", line)
    assert _logs(p, cid, "-f") == "line1\nline2\nline3\n"  # exited: no waiting


# 7. --rm with -d -------------------------------------------------------------------


def test_detached_rm_removes_the_container_when_it_exits(p: Pyimg, tmp_path: Path) -> None:
    before = cgroup_dirs()
    cid = p.run("run", "-d", "--rm", img(p), "sh", "-c", "sleep 0.3").stdout.strip()
    assert len(cid) == 64
    assert p.run("ps", "-q").stdout.strip() == cid[:12]
    _until(lambda: p.run("ps", "-a", "-q").stdout == "", what="auto-remove")
    assert not (tmp_path / "state" / "containers" / cid).exists()
    assert_clean(tmp_path, before)


# rm after a dead shim --------------------------------------------------------------


def test_rm_cleans_up_after_the_shim_was_killed(p: Pyimg, tmp_path: Path) -> None:
    before = cgroup_dirs()
    cid = p.run("run", "-d", "--pids-limit", "20", img(p), "sleep", "30").stdout.strip()
    shim = int((tmp_path / "state" / "containers" / cid / "shim.pid").read_text())
    init = json.loads((tmp_path / "state" / "runtime" / cid / "state.json").read_text())["pid"]
    # `run -d` returns once the container is started; exec may still be under way.
    _until(lambda: Path(f"/proc/{init}/cmdline").read_bytes() == b"sleep\x0030\x00",
           what="container exec")
    assert any(Path(d).is_dir() for d in cgroup_dirs() - before)
    os.kill(shim, signal.SIGKILL)
    _until(lambda: not Path(f"/proc/{shim}").exists()
           or "Z" in Path(f"/proc/{shim}/stat").read_text().split()[2], what="shim death")
    p.run("rm", "-f", cid)
    assert p.run("ps", "-a", "-q").stdout == ""
    assert_clean(tmp_path, before)  # cgroup and mounts gone
    assert not Path(f"/proc/{init}/cmdline").exists() \
        or Path(f"/proc/{init}/cmdline").read_bytes() != b"sleep\x0030\x00"
