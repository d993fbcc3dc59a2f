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

_GLOBAL_VALUE = ("--root", "--config", "--state")
_console = False  # main() runs: this process is the `pyimg` command


def main(argv: Sequence[str] | None = None) -> None:
    global _console
    _console = True
    args = list(sys.argv[1:] if argv is None else argv)
    fast = _split_runtime(args)
    if fast is not None:
        finish(_run_fast(*fast))
    _fast_command(args)
    from pyimg.cli import main as cli_main

    cli_main(args)


def _fast_command(args: list[str]) -> None:
    """`pyimg [--root R] [--config C] [--state S] [--debug] run|pull ...` without
    click (:mod:`pyimg.cli.fastrun`, :mod:`pyimg.cli.fastpull`): exits once the
    command has run.  Returns for any other command, and for a run or pull that
    click must read (help, a mistake)."""
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


def _split_runtime(args: list[str]) -> tuple[dict[str, str | bool], list[str]] | None:
    """(global options, runtime arguments) for a fast-path call, else None."""
    opts: dict[str, str | bool] = {}
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--debug":
            opts["debug"] = True
        elif a in _GLOBAL_VALUE and i + 1 < len(args):
            opts[a[2:]] = args[i + 1]
            i += 1
        elif a.split("=", 1)[0] in _GLOBAL_VALUE and "=" in a:
            key, value = a.split("=", 1)
            opts[key[2:]] = value
        elif a == "runtime":
            rest = args[i + 1:]
            if any(x in ("-h", "--help") for x in rest):
                return None
            return opts, rest
        else:
            return None
        i += 1
    return None


def _run_fast(opts: dict[str, str | bool], rest: list[str]) -> int:
    from pyimg.runtime import cmdline

    state = opts.get("state")
    code = cmdline.main(rest, state if isinstance(state, str) else None,
                        bool(opts.get("debug")))
    if code is None:
        from pyimg.cli import main as cli_main  # let click explain the mistake

        g = [f"--{k}={v}" for k, v in opts.items() if isinstance(v, str)]
        cli_main(g + (["--debug"] if opts.get("debug") else []) + ["runtime", *rest])
        return 0
    return code
