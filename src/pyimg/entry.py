"""The `pyimg` console entry point.

Everything goes to the click application (:mod:`pyimg.cli`), except the calls
that tooling makes in tight loops, which run without importing click (~25 ms on
this project's machines, where `runc run` of /bin/true takes ~30 ms in all):
the runc-style `pyimg runtime ...` (:mod:`pyimg.runtime.cmdline`), `pyimg run`
(:mod:`pyimg.cli.fastrun`) and `pyimg pull` (:mod:`pyimg.cli.fastpull`).  Help
and anything unusual still go through click, which stays the reference CLI.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing costs ~3 ms here, a tenth of a runc start-up
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NoReturn

_console = False  # main() runs: this process is the `pyimg` command


def main(argv: Sequence[str] | None = None) -> None:
    global _console
    _console = True
    args = list(sys.argv[1:] if argv is None else argv)
    _fast_command(args)
    from pyimg.cli import main as cli_main

    cli_main(args)


def _fast_command(args: list[str]) -> None:
    """`pyimg [--root R] [--config C] [--state S] [--debug] runtime|run|pull ...`
    without click (:mod:`pyimg.runtime.cmdline`, :mod:`pyimg.cli.fastrun`,
    :mod:`pyimg.cli.fastpull`): exits once the command has run.  Returns for any
    other command, and for one that click must read (help, a mistake)."""
    if "runtime" in args:
        from pyimg.runtime import cmdline

        code = cmdline.main(args)
        if code is not None:
            finish(code)
    if "run" in args:
        from pyimg.cli import fastrun

        fastrun.main(args)
    if "pull" in args:
        from pyimg.cli import fastpull

        fastpull.main(args)


def finish(code: int) -> NoReturn:
    """Exit with ``code`` -- at once when this process is the `pyimg` command and
    nothing is left running in it (no other non-daemon thread, no multiprocessing
    child): output flushed, then ``os._exit``, which skips the interpreter's
    teardown (freeing every module and object: ~10 ms, a quarter of `runc run`).
    Callers use it where their work is done (nothing left for atexit)."""
    if _console and _nothing_running():
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            sys.exit(code)  # let the usual exit report it (e.g. a closed stdout)
        os._exit(code)
    sys.exit(code)


def _nothing_running() -> bool:
    threading = sys.modules.get("threading")
    if threading is not None and any(
            t.is_alive() and not t.daemon for t in threading.enumerate()
            if t is not threading.main_thread()):
        return False
    mp = sys.modules.get("multiprocessing")
    return mp is None or not mp.active_children()
