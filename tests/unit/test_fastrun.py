"""The click-free `pyimg run` parser (pyimg.cli.fastrun) against click itself.

Every command line is given to both: where click runs the command, the fast
path must either produce exactly click's parameters or step aside (None); where
click refuses it (usage error, help), the fast path must step aside so that
click says why.  The last tests go through the real ``pyimg`` command.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

from pyimg.cli import fastrun
from pyimg.cli.app import cli
from tests.cli import PYIMG

ENV_VARS = ("PYIMG_ROOT", "PYIMG_CONFIG", "PYIMG_STATE", "PYIMG_DEBUG", "_PYIMG_COMPLETE")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "envs").write_text("A=1\n# comment\n\nB=2\n")
    (tmp_path / "more").write_text("C=3\n")


def click_parse(argv: list[str]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(group params, run params) as click's application gets them, or None when
    click would not run the command (a usage error, --help, --version)."""
    try:
        with cli.make_context("pyimg", list(argv)) as gctx:
            rest = [*getattr(gctx, "_protected_args", []), *gctx.args]
            if not rest:
                return None  # "Missing command."
            name, cmd, rest = cli.resolve_command(gctx, rest)
            if name != "run" or cmd is None:
                return None
            with cmd.make_context(name, rest, parent=gctx) as ctx:
                params = dict(ctx.params)
                params["env_file"] = tuple(f.name for f in params["env_file"])
                return dict(gctx.params), params
    except (click.UsageError, click.exceptions.Exit):
        return None


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


GLOBAL_ACCEPTED = [
    ["--root", "/r", "run", "img"], ["--root=/r", "run", "img"], ["--root=", "run", "img"],
    ["--config", "/c", "--state", "/s", "run", "img"], ["--state=/s", "--config=/c", "run", "img"],
    ["--debug", "run", "img"], ["--debug", "--debug", "--root", "/a", "--root", "/b", "run", "img"],
    ["--root", "--debug", "run", "img"], ["--root", "run", "run", "img"],
]
GLOBAL_REFUSED = [
    ["run"], ["--root"], ["--root", "/r"], ["--debug=1", "run", "img"], ["--version"],
    ["-h", "run", "img"], ["--help"], ["--bogus", "run", "img"], ["-d", "run", "img"],
]


@pytest.mark.parametrize("argv", GLOBAL_ACCEPTED, ids=repr)
def test_global_options(argv: list[str]) -> None:
    expected = click_parse(argv)
    assert expected is not None
    assert fast_parse(argv) == expected


@pytest.mark.parametrize("argv", GLOBAL_REFUSED, ids=repr)
def test_global_mistakes_go_to_click(argv: list[str]) -> None:
    assert click_parse(argv) is None
    assert fast_parse(argv) is None


def test_not_run_is_not_ours() -> None:
    for argv in (["ps"], ["runtime", "run", "x"], ["--root", "/r", "images"], ["--", "run", "x"],
                 ["pull", "run"]):
        assert fast_parse(argv) is None


@pytest.mark.parametrize("debug", ["1", "true", "YES", " on ", "0", "no", "off", "f", "n", "t"])
@pytest.mark.parametrize("given", [False, True])
def test_environment_variables_resolve_as_click_does(monkeypatch: pytest.MonkeyPatch,
                                                     debug: str, given: bool) -> None:
    monkeypatch.setenv("PYIMG_ROOT", "/env/root")
    monkeypatch.setenv("PYIMG_CONFIG", "/env/config")
    monkeypatch.setenv("PYIMG_STATE", "")  # empty: unset, for click
    monkeypatch.setenv("PYIMG_DEBUG", debug)
    argv = [*(["--root", "/cli", "--debug"] if given else []), "run", "img"]
    expected = click_parse(argv)
    assert expected is not None
    assert fast_parse(argv) == expected


def test_an_invalid_debug_variable_goes_to_click(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYIMG_DEBUG", "maybe")
    assert click_parse(["run", "img"]) is None
    assert fast_parse(["run", "img"]) is None
    assert click_parse(["--debug", "run", "img"]) is not None  # the command line wins
    assert fast_parse(["--debug", "run", "img"]) == click_parse(["--debug", "run", "img"])


def test_shell_completion_goes_to_click(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_PYIMG_COMPLETE", "bash_complete")
    assert fast_parse(["run", "img"]) is None


def test_the_fast_path_imports_no_click() -> None:
    code = ("import sys; from pyimg.cli import fastrun, runcmd; "
            "assert fastrun.parse(['--root', '/r', 'run', '-it', 'img', 'sh']); "
            "bad = {'click', 'pyimg.cli.app', 'typing', 'dataclasses', 'pathlib'}; "
            "assert not bad & set(sys.modules), bad & set(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the real command: usage errors are click's, with docker's exit code 125 -----------

def _both(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str],
                                               subprocess.CompletedProcess[str]]:
    """``pyimg ARGS`` (the fast path first), and the click application alone."""
    env = {**os.environ, "PYIMG_ROOT": str(tmp_path / "root"),
           "PYIMG_STATE": str(tmp_path / "state"), "PYIMG_CONFIG": str(tmp_path / "cfg")}
    for name in ("PYIMG_DEBUG", "_PYIMG_COMPLETE"):
        env.pop(name, None)
    fast = subprocess.run([PYIMG, *args], capture_output=True, text=True, env=env, timeout=60,
                          cwd=tmp_path, check=False)
    ref = subprocess.run([sys.executable, "-c", "import sys; sys.argv[0] = 'pyimg'; "
                          "from pyimg.cli import main; main(sys.argv[1:])", *args],
                         capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path,
                         check=False)
    return fast, ref


@pytest.mark.parametrize("args", [
    ["run", "--bogus", "img"], ["run"], ["run", "--rm"], ["run", "--pids-limit", "x", "img"],
    ["run", "--network", "bridge", "img"], ["run", "--env-file", "nonexistent", "img"],
    ["run", "-dx", "img"], ["run", "--rm=1", "img"], ["run", "--name"],
], ids=repr)
def test_usage_errors_exit_125_as_click_says(tmp_path: Path, args: list[str]) -> None:
    fast, ref = _both(tmp_path, *args)
    assert fast.returncode == ref.returncode == 125
    assert fast.stderr == ref.stderr
    assert "Error: " in fast.stderr and fast.stdout == ""


@pytest.mark.parametrize("args", [["run", "--help"], ["run", "-h"], ["--help"], ["--version"]])
def test_help_is_click_s(tmp_path: Path, args: list[str]) -> None:
    fast, ref = _both(tmp_path, *args)
    assert (fast.returncode, fast.stdout, fast.stderr) == (ref.returncode, ref.stdout, ref.stderr)
    assert fast.returncode == 0 and fast.stdout


def test_a_failure_is_one_line_and_125(tmp_path: Path) -> None:
    args = ["run", "--rm", f"oci:{tmp_path}/nowhere:latest", "true"]
    fast, ref = _both(tmp_path, *args)
    assert fast.returncode == ref.returncode == 125
    assert fast.stderr == ref.stderr
    lines = fast.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyimg: error: "), fast.stderr


def test_debug_shows_a_traceback(tmp_path: Path) -> None:
    fast, _ = _both(tmp_path, "--debug", "run", f"oci:{tmp_path}/nowhere:latest", "true")
    assert fast.returncode == 125
    assert "Traceback" in fast.stderr and "pyimg: error: " in fast.stderr
