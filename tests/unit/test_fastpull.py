"""The click-free `pyimg pull` parser (pyimg.cli.fastpull) against click itself
(what it shares with `pyimg run`, the global options and the fallback to click
through the real command, is tested in test_fastparse).

As in test_fastrun: every command line is given to both; where click runs the
command, the fast path must produce exactly click's parameters (or step aside);
where click refuses it (usage error, help), the fast path must step aside so
that click says why.  The last tests go through the real ``pyimg`` command.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pyimg.cli import fastpull
from tests import fastcli
from tests.fastcli import both as _both


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fastcli.clean_env(monkeypatch, tmp_path)
    (tmp_path / "list").write_text("a\n# comment\n\nb # c\n")


# Command lines after `pyimg pull` that click runs: the fast path must read them the same.
ACCEPTED = [
    [], ["img"], ["a", "b", "c"], ["-q", "img"], ["--quiet", "img"], ["img", "-q"],
    ["img", "--no-unpack", "-q", "other"], ["--no-unpack", "--unpack", "img"],
    ["--unpack", "--no-unpack", "img"], ["-a", "img"], ["--all-platforms", "img"],
    ["-aq", "img"], ["-qa", "img"], ["-j", "2", "img"], ["-j2", "img"], ["--jobs=8", "img"],
    ["--jobs", "64", "img"], ["-j", " 3 ", "img"], ["-j", "1_0", "img"], ["-qj2", "img"],
    ["-aqj", "5", "img"], ["--progress", "json", "img"], ["--progress=plain", "img"],
    ["--progress", "none", "img"], ["--progress", "tty", "img"], ["--progress=auto", "img"],
    ["--platform", "linux/arm64", "img"], ["--platform=linux/amd64", "img"],
    ["--platform", "", "img"], ["--platform", "-q", "img"], ["--snapshotter", "native", "img"],
    ["--snapshotter=overlay", "img"], ["-f", "list"], ["--file", "list", "img"],
    ["--file=list"], ["-flist"], ["-qflist", "x"], ["--", "-q", "img"], ["img", "--", "--x"],
    ["-", "img"], ["", "img"], ["-q", "-q", "img"], ["--progress", "json", "--progress",
                                                    "plain", "img"],
]

# Command lines click refuses (or answers with help): the fast path must step aside.
REFUSED = [
    ["-h"], ["--help"], ["img", "--help"], ["-qh", "img"], ["--bogus", "img"], ["-x", "img"],
    ["-qx", "img"], ["--quiet=1", "img"], ["--no-unpack=", "img"], ["-q=1", "img"],
    ["-j"], ["-j", "0", "img"], ["-j", "65", "img"], ["-j", "x", "img"], ["-j", "1.5", "img"],
    ["--jobs=", "img"], ["--progress", "fancy", "img"], ["--progress", "JSON", "img"],
    ["--progress"], ["--snapshotter", "btrfs", "img"], ["--snapshotter=", "img"],
    ["--platform"], ["-f"], ["-f", "nonexistent"], ["---q", "img"], ["--=x", "img"],
    ["-q-", "img"], ["--unpac", "img"], ["--file"],
]


@pytest.mark.parametrize("args", ACCEPTED, ids=repr)
def test_accepted_command_lines_parse_as_click_parses_them(args: list[str]) -> None:
    expected = fastcli.click_parse("pull", ["pull", *args])
    assert expected is not None
    assert fastpull.parse(["pull", *args]) == expected


@pytest.mark.parametrize("args", REFUSED, ids=repr)
def test_what_click_refuses_goes_to_click(args: list[str]) -> None:
    assert fastcli.click_parse("pull", ["pull", *args]) is None
    parsed = fastpull.parse(["pull", *args])
    if parsed is not None:  # only the opening of the -f file is left to main()
        assert parsed[1]["list_file"] == "nonexistent"
        assert fastpull.main(["pull", *args]) is None


def test_stdin_as_the_list_goes_to_click() -> None:
    assert fastpull.parse(["pull", "-f", "-"]) is None


def test_not_pull_is_not_ours() -> None:
    for argv in (["images"], ["run", "pull"], ["--root", "/r", "images"], ["--", "pull", "x"],
                 ["inspect", "pull"]):
        assert fastpull.parse(argv) is None


# -- the real command: a failure is the click application's ------------------------


@pytest.mark.parametrize("args", [
    ["pull"], ["pull", "-q", "Bad/Name"], ["pull", "--no-unpack", "oci:{tmp}/nowhere:latest"],
    ["pull", "--no-unpack", "-q", "oci:{tmp}/a:latest", "oci:{tmp}/b:latest"],
    ["pull", "--platform", "x", "img"], ["pull", "-f", "{tmp}/empty"],
], ids=repr)
def test_failures_are_the_click_application_s(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "empty").write_text("# nothing\n")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    fast, ref = _both(tmp_path, *args)
    assert (fast.returncode, fast.stdout, fast.stderr) == (ref.returncode, ref.stdout, ref.stderr)
    assert fast.returncode != 0 and fast.stderr.startswith("pyimg: error: ")
