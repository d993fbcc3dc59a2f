"""The click-free parser of `pyimg runtime ...` (runc's command-line conventions)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pyimg.cli.fastparse import parse_group
from pyimg.runtime import attachwarm
from pyimg.runtime.cmdline import main
from pyimg.runtime.cmdline import parse as _parse_runtime


@pytest.mark.parametrize(("argv", "want"), [
    (["create", "--bundle", "/b", "--pid-file", "/p", "c1"],
     {"verb": "create", "bundle": "/b", "pid_file": "/p", "container_id": "c1"}),
    (["--root", "/r", "--log", "/l", "--log-format=json", "create", "-b", "/b",
      "--console-socket=/s", "--no-new-keyring", "c1"],
     {"verb": "create", "root": "/r", "log": "/l", "log_format": "json", "bundle": "/b",
      "console_socket": "/s", "container_id": "c1"}),
    (["run", "--bundle=/b", "c2"], {"verb": "run", "bundle": "/b", "container_id": "c2"}),
    (["kill", "c1"], {"verb": "kill", "container_id": "c1", "sig": "SIGTERM"}),
    (["kill", "c1", "KILL"], {"verb": "kill", "container_id": "c1", "sig": "KILL"}),
    (["delete", "-f", "c1"], {"verb": "delete", "force": True, "container_id": "c1"}),
    (["start", "--", "c1"], {"verb": "start", "container_id": "c1"}),
    (["exec", "-d", "--pid-file", "/p", "-e", "A=1", "--env=B=2", "-t", "c1", "sh", "-c",
      "ls -l"],
     {"verb": "exec", "detach": True, "pid_file": "/p", "env": ["A=1", "B=2"], "tty": True,
      "container_id": "c1", "command": ["sh", "-c", "ls -l"]}),
    (["exec", "--process", "/p.json", "c1"],
     {"verb": "exec", "process": "/p.json", "container_id": "c1", "command": []}),
    (["ps", "--format", "json", "c1"], {"verb": "ps", "format": "json", "container_id": "c1"}),
    (["pause", "c1"], {"verb": "pause", "container_id": "c1"}),
])
def test_parses_runc_spellings(argv: list[str], want: dict[str, object]) -> None:
    assert _parse_runtime(argv) == want


@pytest.mark.parametrize("argv", [
    [],                                   # no verb
    ["list"],                             # click's
    ["create", "--bundle"],               # value missing
    ["create", "--frobnicate", "c1"],     # unknown option
    ["create", "c1", "c2"],               # one id only
    ["start"],                            # id missing
    ["kill", "c1", "TERM", "x"],          # too many
    ["delete", "--force=yes", "c1"],      # a flag takes no value
    ["--log-format", "xml", "state", "c1"],
    ["state", "--root", "/r", "c1"],      # a group option after the verb: runc refuses too
    ["exec", "--tty=1", "c1", "sh"],      # a flag takes no value
    ["exec"],                             # id missing
])
def test_anything_else_goes_to_click(argv: list[str]) -> None:
    assert _parse_runtime(argv) is None


def test_split_keeps_global_options(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PYIMG_ROOT", "PYIMG_CONFIG", "PYIMG_STATE", "PYIMG_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    rest, group = parse_group(["--state", "/s", "--debug", "runtime", "state", "c"], "runtime")
    assert (rest, group) == (["state", "c"],
                             {"root": None, "config": None, "state": "/s", "debug": True})
    assert main(["runtime", "--help"]) is None
    assert main(["images"]) is None


def test_attach_warm_up_moves_a_child_into_its_own_cgroup() -> None:
    """The warm-up child writes itself into the cgroup it is in: nothing changes for
    anyone, and the child is reaped."""
    target = attachwarm._own_procs_file()
    assert target is not None and target.endswith("/cgroup.procs"), target
    before = Path("/proc/self/cgroup").read_text()
    pid = attachwarm.start()
    assert pid is not None
    attachwarm.reap(pid)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    assert Path("/proc/self/cgroup").read_text() == before
    attachwarm.reap(None)  # skipped warm-ups are fine too
