"""The click-free `pyimg run` parser (pyimg.cli.fastrun) against click itself
(what it shares with `pyimg pull`, the global options and the fallback to click
through the real command, is tested in test_fastparse).

Every command line is given to both: where click runs the command, the fast
path must either produce exactly click's parameters or step aside (None); where
click refuses it (usage error, help), the fast path must step aside so that
click says why.  The last tests go through the real ``pyimg`` command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pyimg.cli import fastrun
from tests import fastcli
from tests.fastcli import both as _both


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fastcli.clean_env(monkeypatch, tmp_path)
    (tmp_path / "envs").write_text("A=1\n# comment\n\nB=2\n")
    (tmp_path / "more").write_text("C=3\n")


def click_parse(argv: list[str]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(group params, run params) as click's application gets them, or None when
    click would not run the command (a usage error, --help, --version)."""
    return fastcli.click_parse("run", argv)


def fast_parse(argv: list[str]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    return fastrun.parse(list(argv))


# Command lines after `pyimg run` that click runs: the fast path must read them the same.
ACCEPTED = [
    ["img"], ["img", "cmd", "-x", "--rm"], ["--rm", "img", "true"], ["-d", "img"],
    ["-it", "img", "sh"], ["-ti", "img"], ["-dit", "img"], ["-i", "-t", "img"],
    ["--interactive", "--tty", "--detach", "img"], ["--rm", "--rm", "img"],
    ["--name", "n", "img"], ["--name=n", "img"], ["--name=", "img"], ["--name", "--rm", "img"],
    ["--name", "a", "--name", "b", "img"], ["--name=a=b", "img"],
    ["-e", "A=1", "-eB=2", "--env", "C=3", "--env=D=4", "-e=E", "img"], ["-e", "-d", "img"],
    ["--env-file", "envs", "--env-file=more", "img"],
    ["-w", "/x", "img"], ["-w/x", "img"], ["--workdir=/x", "img"], ["--workdir", "", "img"],
    ["-u", "1:2", "img"], ["-u1", "img"], ["--user", "nobody", "img"],
    ["-v", "/a:/b", "-v/c:/d:ro", "--volume", "/e:/f", "--volume=/g:/h", "img"],
    ["--tmpfs", "/t", "--tmpfs=/u:size=1m", "img"], ["--read-only", "img"],
    ["-m", "64m", "img"], ["-m64m", "img"], ["--memory=1g", "img"], ["--memory", "x", "img"],
    ["--cpus", "0.5", "img"], ["--cpus=2", "img"],
    ["--pids-limit", "10", "img"], ["--pids-limit= 7 ", "img"], ["--pids-limit", "1_000", "img"],
    ["--pids-limit", "-1", "img"],
    ["--hostname", "h", "img"], ["--entrypoint", "", "img"], ["--entrypoint=sh", "img"],
    ["--network", "host", "img"], ["--network=none", "img"],
    ["--platform", "linux/arm64", "img"], ["--platform=linux/amd64", "img"],
    ["-dm", "64m", "img"], ["-dm64m", "img"], ["-de", "A=1", "img"], ["-deA=1", "img"],
    ["-dieA=1", "img"], ["-tm", "1g", "img"], ["-dw/x", "img"], ["-du", "0", "img"],
    ["--", "img", "-x"], ["--rm", "--", "--weird", "x"], ["-", "cmd"], ["", "cmd"],
    ["img", "--rm", "-d"], ["--rm", "img", "--", "x"], ["img", "--"],
]

# Command lines click refuses (or answers with help): the fast path must step aside.
REFUSED = [
    [], ["--rm"], ["-d", "--"], ["--bogus", "img"], ["-x", "img"], ["-dx", "img"],
    ["--dettach", "img"], ["--rm=1", "img"], ["--rm=", "img"], ["-d=1", "img"],
    ["-h"], ["--help"], ["-ih", "img"], ["--rm", "--help", "img"],
    ["--name"], ["-e"], ["-ie"], ["-d", "--name"], ["--env-file"],
    ["--pids-limit", "x", "img"], ["--pids-limit", "1.5", "img"], ["--pids-limit", "", "img"],
    ["--network", "bridge", "img"], ["--network", "NONE", "img"], ["--network=", "img"],
    ["--env-file", "nonexistent", "img"], ["---rm", "img"], ["--=x", "img"], ["-d-", "img"],
]


@pytest.mark.parametrize("args", ACCEPTED, ids=repr)
def test_accepted_command_lines_parse_as_click_parses_them(args: list[str]) -> None:
    expected = click_parse(["run", *args])
    assert expected is not None
    assert fast_parse(["run", *args]) == expected


@pytest.mark.parametrize("args", REFUSED, ids=repr)
def test_what_click_refuses_goes_to_click(args: list[str]) -> None:
    assert click_parse(["run", *args]) is None
    parsed = fast_parse(["run", *args])
    if parsed is not None:  # only the opening of --env-file files is left to main()
        assert "nonexistent" in parsed[1]["env_file"]
        assert fastrun.main(["run", *args]) is None


def test_not_run_is_not_ours() -> None:
    for argv in (["ps"], ["runtime", "run", "x"], ["--root", "/r", "images"], ["--", "run", "x"],
                 ["pull", "run"], ["run"], ["--debug", "run"]):
        assert fast_parse(argv) is None


# -- the real command: usage errors are click's, with docker's exit code 125 -----------


def test_a_failure_is_one_line_and_125(tmp_path: Path) -> None:
    args = ["run", "--rm", f"oci:{tmp_path}/nowhere:latest", "true"]
    fast, ref = _both(tmp_path, *args)
    assert fast.returncode == ref.returncode == 125
    assert fast.stderr == ref.stderr
    lines = fast.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyimg: error: "), fast.stderr
