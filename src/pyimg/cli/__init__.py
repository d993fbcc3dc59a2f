"""Command line: parses options, calls :mod:`pyimg.api`, renders results.

The click application is :mod:`pyimg.cli.app`.  This package itself imports
nothing (click costs ~20 ms to import here), so that what does without click
lives in it too: the fast paths of `pyimg run` and `pyimg pull`
(:mod:`pyimg.cli.fastrun`, :mod:`pyimg.cli.fastpull`, over the click-compatible
reader :mod:`pyimg.cli.fastparse`), what both front ends of each share
(:mod:`pyimg.cli.runcmd`, :mod:`pyimg.cli.pullcmd`) and the attach client.

Errors become one stderr line and the error's exit code; a traceback is
shown only with ``--debug``.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

INTERNAL_ERROR = 70  # EX_SOFTWARE: a bug, not the user's fault


def main(argv: list[str] | None = None) -> None:
    """The click application (every command, help and usage errors)."""
    from pyimg.cli.app import main as app_main

    app_main(argv)


def exit_on_error(exc: BaseException, debug: bool) -> NoReturn:
    """Report ``exc`` (being handled) in one stderr line and exit with its code.

    A :class:`~pyimg.errors.PyimgError` has its own code (and a traceback with
    ``debug``); an interrupt is 130, a broken pipe 141; anything else is a bug:
    re-raised with ``debug``, else one line and :data:`INTERNAL_ERROR`.
    """
    from pyimg.errors import PyimgError

    if isinstance(exc, PyimgError):
        if debug:
            import traceback

            traceback.print_exc()
        fail(str(exc), exc.exit_code)
    if isinstance(exc, KeyboardInterrupt):
        fail("interrupted", 130)
    if isinstance(exc, BrokenPipeError):
        sys.exit(141)
    if debug:
        raise exc
    fail(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for a"
         " traceback and report it)", INTERNAL_ERROR)


def echo(message: str, *, err: bool = False) -> None:
    """A line as ``click.echo`` writes it: flushed, and without ANSI escapes when
    the stream is not a terminal."""
    out = sys.stderr if err else sys.stdout
    if "\033" in message and not out.isatty():
        import re

        message = re.sub(r"\033\[[;?0-9]*[a-zA-Z]", "", message)
    out.write(message + "\n")
    out.flush()


def fail(message: str, code: int) -> NoReturn:
    sys.stderr.write(f"pyimg: error: {message}\n")
    sys.exit(code)
