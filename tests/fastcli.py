"""What the tests of the click-free command lines (pyimg.cli.fastrun, pyimg.cli.fastpull)
share: click's own reading of a command line, and the real command next to the click
application alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

from pyimg.cli.app import cli
from tests.cli import PYIMG

ENV_VARS = ("PYIMG_ROOT", "PYIMG_CONFIG", "PYIMG_STATE", "PYIMG_DEBUG", "_PYIMG_COMPLETE")


def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No pyimg variable set, in ``tmp_path``."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def _names(value: Any) -> Any:
    """Files (``click.File``) as their names, so that parameters compare."""
    if isinstance(value, tuple):
        return tuple(_names(v) for v in value)
    return value.name if hasattr(value, "read") else value


def click_parse(command: str, argv: list[str]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(group params, ``command``'s params) as click's application gets them, or None
    when click would not run ``command`` (a usage error, --help, --version)."""
    try:
        with cli.make_context("pyimg", list(argv)) as gctx:
            rest = [*getattr(gctx, "_protected_args", []), *gctx.args]
            if not rest:
                return None  # "Missing command."
            name, cmd, rest = cli.resolve_command(gctx, rest)
            if name != command or cmd is None:
                return None
            with cmd.make_context(name, rest, parent=gctx) as ctx:
                return dict(gctx.params), {k: _names(v) for k, v in ctx.params.items()}
    except (click.UsageError, click.exceptions.Exit):
        return None


def imports_nothing_heavy(code: str) -> None:
    """Run ``code`` in a fresh interpreter (it asserts what it imported)."""
    subprocess.run([sys.executable, "-c", code], check=True)


def both(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str],
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
