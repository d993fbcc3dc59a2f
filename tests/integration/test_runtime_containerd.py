"""containerd drives `pyimg runtime` as it drives runc ("tools written for runc").

A private containerd (the benchmark's harness: its own root, state and socket,
nothing shared with a system containerd) runs the busybox fixture through its
real shim, ``containerd-shim-runc-v2``, with ``--runc-binary`` pointing at a
two-line wrapper that execs ``pyimg runtime "$@"``.  The shim calls create
(with --log, --log-format json, --pid-file), start, state, exec, ps, pause,
resume, kill and delete.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.containerd import Containerd
from tests.need import need_root, need_tool

NS = "pyimg-test"


@pytest.fixture(scope="module")
def ctrd(busybox: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[Containerd, str, Path]]:
    need_root()
    for tool in ("containerd", "ctr", "containerd-shim-runc-v2"):
        need_tool(tool)
    base = tmp_path_factory.mktemp("ctrd")
    archive = base / "busybox.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(busybox, arcname=".")
    wrapper = base / "runc-wrapper"
    wrapper.write_text("#!/bin/sh\nexec "
                       f"{Path(sys.executable).with_name('pyimg')} runtime \"$@\"\n")
    wrapper.chmod(0o755)
    with Containerd(base) as c:
        c.ctr(NS, "image", "import", "--base-name", "localhost/busybox", str(archive))
        yield c, "localhost/busybox:latest", wrapper
    # the shim's --root for this namespace (containerd's fixed /run/containerd/runc/NS)
    runtime_root = Path("/run/containerd/runc") / NS
    if runtime_root.is_dir():
        assert not list(runtime_root.iterdir()), "a container's runtime state was left"
        runtime_root.rmdir()


def _ctr(c: Containerd, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(c.ctr_argv(NS, *args), capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


PROBE = ("cat /proc/1/cmdline; echo; hostname; grep -E 'CapEff|NoNewPrivs|Seccomp:' "
         "/proc/self/status; id; mount | wc -l; exit 7")


def test_ctr_run_through_pyimg_runtime_as_through_runc(ctrd: tuple[Containerd, str, Path]
                                                       ) -> None:
    c, ref, wrapper = ctrd
    out = {}
    for name, extra in (("runc", ()), ("pyimg", ("--runc-binary", str(wrapper)))):
        p = _ctr(c, "run", "--rm", *extra, ref, f"{name}-c1", "sh", "-c", PROBE)
        assert p.returncode == 7, (name, p.stderr)
        out[name] = p.stdout
        assert f"{name}-c1" not in _ctr(c, "container", "ls", "-q").stdout  # --rm
    assert out["pyimg"].startswith("sh\0-c\0cat /proc/1/cmdline")  # pid 1 is the command
    assert out["pyimg"] == out["runc"]
    # nothing of the container is left in the runtime's state.  (containerd's own
    # cleanup after the shim exits may log "failed to remove runc container ... exit
    # status 255" for real runc and for pyimg alike: its reaper can collect the
    # runtime process before go-runc waits for it; the runtime itself exited 0.)
    assert not (Path("/run/containerd/runc") / NS / "pyimg-c1").exists()


def test_ctr_detached_task_kill_and_delete(ctrd: tuple[Containerd, str, Path]) -> None:
    c, ref, wrapper = ctrd
    p = _ctr(c, "run", "-d", "--runc-binary", str(wrapper), ref, "pyimg-c2", "sleep", "60")
    assert p.returncode == 0, p.stderr
    try:
        assert _task(c, "pyimg-c2") == "RUNNING"
        # exec (runc exec --process F --detach --pid-file P), ps (runc ps --format json)
        p = _ctr(c, "task", "exec", "--exec-id", "e1", "pyimg-c2", "sh", "-c",
                 "echo exec says hi; exit 3")
        assert (p.returncode, p.stdout) == (3, "exec says hi\n"), p.stderr
        ps = _ctr(c, "task", "ps", "pyimg-c2")
        assert ps.returncode == 0 and len(ps.stdout.splitlines()) == 2, ps  # header + init
        # pause and resume (the cgroup freezer)
        assert _ctr(c, "task", "pause", "pyimg-c2").returncode == 0
        assert _task(c, "pyimg-c2") == "PAUSED"
        assert _ctr(c, "task", "resume", "pyimg-c2").returncode == 0
        assert _task(c, "pyimg-c2") == "RUNNING"
        assert _ctr(c, "task", "kill", "--signal", "SIGKILL", "pyimg-c2").returncode == 0
        deadline = time.monotonic() + 10
        while _task(c, "pyimg-c2") != "STOPPED":
            assert time.monotonic() < deadline, _ctr(c, "task", "ls").stdout
            time.sleep(0.05)
        assert _ctr(c, "task", "delete", "pyimg-c2").returncode == 0
    finally:
        _ctr(c, "task", "delete", "-f", "pyimg-c2")
        _ctr(c, "container", "delete", "pyimg-c2")
    assert "pyimg-c2" not in _ctr(c, "container", "ls", "-q").stdout


def _task(c: Containerd, cid: str) -> str:
    for line in _ctr(c, "task", "ls").stdout.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == cid:
            return fields[-1]
    return ""
