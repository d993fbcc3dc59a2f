"""`pyimg run` and friends on the real kernel: namespaces, cgroups, shim, logs."""

from __future__ import annotations

import json
import time
from pathlib import Path

from fixtures.registry.server import Registry
from tests.cli import Pyimg
from tests.containers import assert_clean, cgroup_dirs, img
from tests.need import need_root


def test_foreground_output_and_exit_code(p: Pyimg) -> None:
    proc = p.run("run", "--rm", img(p), "sh", "-c", "echo hello; echo err >&2; exit 3",
                 check=False)
    assert proc.returncode == 3
    assert proc.stdout == "hello\n" and proc.stderr == "err\n"


def test_isolation_inside(p: Pyimg) -> None:
    script = ("echo pid=$$; hostname; grep -E 'NoNewPrivs|Seccomp:' /proc/self/status;"
              " ls /proc | grep -c '^[0-9]'; cat /proc/kcore | wc -c")
    proc = p.run("run", "--rm", "--hostname", "box1", img(p), "sh", "-c", script)
    lines = proc.stdout.splitlines()
    assert lines[0] == "pid=1"
    assert lines[1] == "box1"
    assert "NoNewPrivs:\t1" in proc.stdout
    assert lines[-1].strip() == "0"  # /proc/kcore masked


def test_run_needs_neither_click_nor_the_heavy_modules(p: Pyimg) -> None:
    """`pyimg run` is parsed without click (pyimg.cli.fastrun), and neither it nor the
    shim forked from it imports what a container start does not need."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-X", "importtime", "-c",
                           "import sys; from pyimg.entry import main; main(sys.argv[1:])",
                           "run", "--rm", img(p), "true"],
                          env=p.env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    imported = {ln.rsplit("|", 1)[1].strip() for ln in proc.stderr.splitlines()
                if ln.startswith("import time:") and "|" in ln}
    assert "pyimg.run" in imported
    heavy = {"click", "pyimg.cli.app", "dataclasses", "pathlib", "shutil", "tempfile",
             "subprocess", "secrets", "hashlib", "socket", "argparse", "pyimg.pull"}
    assert not heavy & imported, heavy & imported


def test_run_pulls_a_missing_image(tmp_path: Path, registry: Registry) -> None:
    """The shim is forked before the pull (pyimg.containers.prefork_shim), which runs
    threads and worker processes meanwhile."""
    need_root()
    before = cgroup_dirs()
    q = Pyimg(tmp_path, env={"PYIMG_STATE": str(tmp_path / "state")})
    image = f"{registry.host}/pyimg/busybox"
    proc = q.run("run", "--rm", image, "sh", "-c", "echo pulled; exit 5", check=False)
    assert (proc.returncode, proc.stdout) == (5, "pulled\n"), proc.stderr
    assert [i["name"] for i in q.images()] == [image + ":latest"]
    assert q.run("ps", "-a", "-q").stdout == ""
    assert_clean(tmp_path, before)


def test_entrypoint_replaces_the_image_entrypoint_and_cmd(p: Pyimg) -> None:
    """docker's --entrypoint: one program (not split), and the image Cmd goes too."""
    proc = p.run("run", "--rm", "--entrypoint", "echo", img(p), "a b", "c")
    assert proc.stdout == "a b c\n"
    proc = p.run("run", "--rm", "--entrypoint=sh", img(p), "-c", "echo $0", check=False)
    assert (proc.returncode, proc.stdout) == (0, "sh\n"), proc.stderr
    proc = p.run("run", "--rm", "--entrypoint", "", img(p), check=False)
    assert proc.returncode == 125 and "no command specified" in proc.stderr


def test_missing_command_is_127(p: Pyimg) -> None:
    assert p.run("run", "--rm", img(p), "/nope", check=False).returncode == 127


def test_detached_logs_stop_rm(p: Pyimg) -> None:
    cid = p.run("run", "-d", img(p), "sh", "-c",
                "echo started; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done"
                ).stdout.strip()
    assert len(cid) == 64
    time.sleep(0.5)
    ps = json.loads(p.run("ps", "--format", "json").stdout)
    assert [c["status"] for c in ps if c["id"] == cid] == ["running"]
    p.run("stop", "-t", "5", cid)
    assert p.run("wait", cid).stdout.strip() == "0"
    assert p.run("logs", cid).stdout == "started\nbye\n"
    assert "Exited (0)" in p.run("ps", "-a").stdout
    p.run("rm", cid)
    assert p.run("ps", "-a", "-q").stdout.strip() == ""


def test_memory_limit_oom_kill_is_reported(p: Pyimg) -> None:
    cid = p.run("run", "-d", "--memory", "16m", img(p), "sh", "-c",
                "x=a; while true; do x=$x$x$x$x; done").stdout.strip()
    code = p.run("wait", cid).stdout.strip()
    assert code == "137"
    assert "OOMKilled" in p.run("ps", "-a").stdout


def test_exec_sees_container_namespaces(p: Pyimg) -> None:
    cid = p.run("run", "-d", img(p), "sleep", "30").stdout.strip()
    time.sleep(0.3)
    out = p.run("exec", cid, "sh", "-c", "cat /proc/1/cmdline; echo; ls /proc | grep -c '^[0-9]'"
                ).stdout.splitlines()
    assert out[0].replace("\0", " ").strip() == "sleep 30"  # pid 1 of its pid namespace
    assert int(out[1]) <= 4  # sleep, sh, ls, grep: nothing of the host
    info = json.loads(p.run("inspect", cid[:12]).stdout)
    assert info["id"] == cid and info["status"] == "running"
    assert info["process"]["args"] == ["sleep", "30"]
    p.run("rm", "-f", cid)
    assert p.run("ps", "-a", "-q").stdout.strip() == ""
