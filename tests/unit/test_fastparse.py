"""What the click-free command lines share (pyimg.cli.fastparse): the group's options
and their environment variables, and the fallback to click (help, usage errors,
exit codes) through the real ``pyimg`` command, for `pyimg run` and `pyimg pull`."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyimg.cli import fastpull, fastrun
from tests import fastcli
from tests.fastcli import both

PARSERS = {"run": fastrun.parse, "pull": fastpull.parse}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fastcli.clean_env(monkeypatch, tmp_path)


def _argv(template: list[str], command: str) -> list[str]:
    return [command if a == "CMD" else a for a in template]


GLOBAL_ACCEPTED = [
    ["--root", "/r", "CMD", "img"], ["--root=/r", "CMD", "img"], ["--root=", "CMD", "img"],
    ["--config", "/c", "--state", "/s", "CMD", "img"], ["--state=/s", "--config=/c", "CMD", "img"],
    ["--debug", "CMD", "img"], ["--debug", "--debug", "--root", "/a", "--root", "/b", "CMD", "img"],
    ["--root", "--debug", "CMD", "img"], ["--root", "CMD", "CMD", "img"],
]
GLOBAL_REFUSED = [
    ["--root"], ["--root", "/r"], ["--debug=1", "CMD", "img"], ["--version"],
    ["-h", "CMD", "img"], ["--help"], ["--bogus", "CMD", "img"], ["-d", "CMD", "img"],
    ["-q", "CMD", "img"],
]


@pytest.mark.parametrize("command", PARSERS)
@pytest.mark.parametrize("template", GLOBAL_ACCEPTED, ids=repr)
def test_global_options(command: str, template: list[str]) -> None:
    argv = _argv(template, command)
    expected = fastcli.click_parse(command, argv)
    assert expected is not None
    assert PARSERS[command](argv) == expected


@pytest.mark.parametrize("command", PARSERS)
@pytest.mark.parametrize("template", GLOBAL_REFUSED, ids=repr)
def test_global_mistakes_go_to_click(command: str, template: list[str]) -> None:
    argv = _argv(template, command)
    assert fastcli.click_parse(command, argv) is None
    assert PARSERS[command](argv) is None


@pytest.mark.parametrize("command", PARSERS)
@pytest.mark.parametrize("debug", ["1", "true", "YES", " on ", "0", "no", "off", "f", "n", "t"])
@pytest.mark.parametrize("given", [False, True])
def test_environment_variables_resolve_as_click_does(monkeypatch: pytest.MonkeyPatch,
                                                     command: str, debug: str,
                                                     given: bool) -> None:
    monkeypatch.setenv("PYIMG_ROOT", "/env/root")
    monkeypatch.setenv("PYIMG_CONFIG", "/env/config")
    monkeypatch.setenv("PYIMG_STATE", "")  # empty: unset, for click
    monkeypatch.setenv("PYIMG_DEBUG", debug)
    argv = [*(["--root", "/cli", "--debug"] if given else []), command, "img"]
    expected = fastcli.click_parse(command, argv)
    assert expected is not None
    assert PARSERS[command](argv) == expected


@pytest.mark.parametrize("command", PARSERS)
def test_an_invalid_debug_variable_goes_to_click(monkeypatch: pytest.MonkeyPatch,
                                                 command: str) -> None:
    monkeypatch.setenv("PYIMG_DEBUG", "maybe")
    assert fastcli.click_parse(command, [command, "img"]) is None
    assert PARSERS[command]([command, "img"]) is None
    argv = ["--debug", command, "img"]  # the command line wins
    assert fastcli.click_parse(command, argv) is not None
    assert PARSERS[command](argv) == fastcli.click_parse(command, argv)


@pytest.mark.parametrize("command", PARSERS)
def test_shell_completion_goes_to_click(monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    monkeypatch.setenv("_PYIMG_COMPLETE", "bash_complete")
    assert PARSERS[command]([command, "img"]) is None


@pytest.mark.parametrize("command", PARSERS)
def test_the_fast_paths_import_no_click(command: str) -> None:
    fastcli.imports_nothing_heavy(
        f"import sys; from pyimg.cli import fast{command}, {command}cmd; "
        f"assert fast{command}.parse(['--root', '/r', '{command}', 'img', 'sh']); "
        "bad = {'click', 'pyimg.cli.app', 'typing', 'dataclasses', 'pathlib'}; "
        "assert not bad & set(sys.modules), bad & set(sys.modules)")


# -- the real command: usage errors and help are click's, with its exit codes ----------

@pytest.mark.parametrize(("args", "code"), [
    (["run", "--bogus", "img"], 125), (["run"], 125), (["run", "--rm"], 125),
    (["run", "--pids-limit", "x", "img"], 125), (["run", "--network", "bridge", "img"], 125),
    (["run", "--env-file", "nonexistent", "img"], 125), (["run", "-dx", "img"], 125),
    (["run", "--rm=1", "img"], 125), (["run", "--name"], 125),
    (["pull", "--bogus", "img"], 2), (["pull", "-j", "0", "img"], 2),
    (["pull", "--progress", "x", "img"], 2), (["pull", "-f", "nonexistent"], 2),
    (["pull", "-qx", "img"], 2), (["pull", "--quiet=1", "img"], 2), (["pull", "--platform"], 2),
], ids=repr)
def test_usage_errors_exit_as_click_says(tmp_path: Path, args: list[str], code: int) -> None:
    fast, ref = both(tmp_path, *args)
    assert fast.returncode == ref.returncode == code  # docker's 125 for run
    assert fast.stderr == ref.stderr
    assert "Error: " in fast.stderr and fast.stdout == ""


@pytest.mark.parametrize("args", [["run", "--help"], ["run", "-h"], ["pull", "--help"],
                                  ["pull", "-h"], ["--help"], ["--version"]], ids=repr)
def test_help_is_click_s(tmp_path: Path, args: list[str]) -> None:
    fast, ref = both(tmp_path, *args)
    assert (fast.returncode, fast.stdout, fast.stderr) == (ref.returncode, ref.stdout, ref.stderr)
    assert fast.returncode == 0 and fast.stdout


@pytest.mark.parametrize(("args", "code"), [
    (["run", "oci:{tmp}/nowhere:latest", "true"], 125), (["pull", "oci:{tmp}/nowhere:latest"], 3),
], ids=repr)
def test_debug_shows_a_traceback(tmp_path: Path, args: list[str], code: int) -> None:
    fast, _ = both(tmp_path, "--debug", *(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert fast.returncode == code
    assert "Traceback" in fast.stderr and "pyimg: error: " in fast.stderr
