"""Reading a click command line without click, for the commands pyimg runs in loops.

Importing click and every command costs ~25 ms here: more than a third of
`pyimg run --rm IMAGE true`, and of a small `pyimg pull`.  This module reads
``pyimg [GLOBAL OPTIONS] COMMAND [OPTIONS] [ARGS]`` exactly as the click
application does (:mod:`pyimg.cli.app` and the command, which stay the
reference), from tables that describe the command's options:
click's option syntax (``--opt value``, ``--opt=value``, ``-m64m``, ``-it``,
``-dit``, ``--``, ``--flag/--no-flag``; options stop at the first positional
unless the command allows interspersed arguments), the group's environment
variables and the defaults.  Anything it does not fully understand -- help,
``--version``, an unknown option, a missing value, a value click would refuse --
raises :class:`Unsure`, and the click application then runs the command (and
explains the mistake).  :mod:`pyimg.cli.fastrun` and :mod:`pyimg.cli.fastpull`
hold the tables of `run` and `pull`.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from pyimg.settings import Settings

#: the group's options that take a value (click's ``envvar`` for each)
GLOBAL = {"--root": "PYIMG_ROOT", "--config": "PYIMG_CONFIG", "--state": "PYIMG_STATE"}
#: click's boolean strings (``BoolParamType.bool_states``), for ``$PYIMG_DEBUG``
BOOL = {"1": True, "0": False, "yes": True, "no": False, "true": True, "false": False,
        "on": True, "off": False, "t": True, "f": False, "y": True, "n": False}


class Unsure(Exception):
    """Not something this reader understands exactly as click does: let click have it."""


class Command:
    """A click command's options as tables: spelling -> parameter name (as click
    passes it to the command).

    ``flags``: spelling -> (name, value it sets), so ``--no-unpack`` is
    ``("unpack", False)``; ``values``: options taking one value (the last one
    given wins); ``multiple``: options that may be given several times (a tuple);
    ``defaults``: every flag's and value's default; ``interspersed``: whether
    options may follow positional arguments (click's ``allow_interspersed_args``).
    """

    __slots__ = ("defaults", "flags", "interspersed", "multiple", "name", "values")

    def __init__(self, name: str, *, flags: Mapping[str, tuple[str, object]],
                 values: Mapping[str, str], multiple: Mapping[str, str] | None = None,
                 defaults: Mapping[str, object], interspersed: bool) -> None:
        self.name = name
        self.flags = flags
        self.values = values
        self.multiple = multiple or {}
        self.defaults = defaults
        self.interspersed = interspersed

    def knows(self, opt: str) -> bool:
        return opt in self.flags or opt in self.values or opt in self.multiple


def parse(command: Command, args: list[str]) -> tuple[dict[str, Any], dict[str, Any],
                                                      list[str]]:
    """(global options as click's group gets them, the command's options with their
    defaults, its positional arguments) for ``args`` (``sys.argv[1:]``); raises
    :class:`Unsure` when click must decide."""
    if os.environ.get("_PYIMG_COMPLETE"):
        raise Unsure  # shell completion
    rest, group = parse_group(args, command.name)
    params, positional = parse_options(command, rest)
    return group, params, positional


def parse_group(args: list[str], command: str) -> tuple[list[str], dict[str, Any]]:
    """The group's options before ``command``: (what follows it, the group's
    parameters, environment variables and defaults applied)."""
    rargs = list(args)
    given: dict[str, Any] = {}
    while rargs:
        arg = rargs.pop(0)
        if arg == command:
            break
        name, eq, value = arg.partition("=")
        if name in GLOBAL:
            if not eq:
                if not rargs:
                    raise Unsure
                value = rargs.pop(0)
            given[name[2:]] = value
        elif arg == "--debug":
            given["debug"] = True
        else:  # --help, --version, --, another command, a mistake
            raise Unsure
    else:
        raise Unsure  # no command
    group: dict[str, Any] = {k[2:]: given.get(k[2:], os.environ.get(env) or None)
                             for k, env in GLOBAL.items()}
    debug = given.get("debug")
    if debug is None:
        text = os.environ.get("PYIMG_DEBUG")
        debug = BOOL.get(text.strip().lower()) if text else False
        if debug is None:
            raise Unsure  # click: not a valid boolean
    group["debug"] = debug
    return rargs, group


def parse_options(command: Command, args: list[str]) -> tuple[dict[str, Any], list[str]]:
    """click's parser (``_OptionParser._process_args_for_options`` and friends) for
    ``command``: (its options, defaults filled in; its positional arguments)."""
    params: dict[str, Any] = dict(command.defaults)
    multi: dict[str, list[str]] = {name: [] for name in command.multiple.values()}
    positional: list[str] = []
    rargs = list(args)

    def take(opt: str) -> None:
        if opt in command.flags:
            name, value = command.flags[opt]
            params[name] = value
        elif not rargs:
            raise Unsure  # "Option '-e' requires an argument."
        elif opt in command.values:
            params[command.values[opt]] = rargs.pop(0)
        else:
            multi[command.multiple[opt]].append(rargs.pop(0))

    while rargs:
        arg = rargs.pop(0)
        if arg == "--":
            break
        if arg[:1] != "-" or len(arg) == 1:
            if command.interspersed:
                positional.append(arg)
                continue
            rargs.insert(0, arg)  # the first positional: the rest are positionals too
            break
        if arg.startswith("--"):  # a long option, "--name value" or "--name=value"
            name, eq, value = arg.partition("=")
            if not command.knows(name):
                raise Unsure  # unknown (or --help)
            if eq:
                if name in command.flags:
                    raise Unsure  # "Option '--rm' does not take a value."
                rargs.insert(0, value)
            take(name)
            continue
        # short options, possibly several (-dit), the last one may hold its value (-m64m)
        for i, ch in enumerate(arg[1:], start=2):
            opt = "-" + ch
            if not command.knows(opt):
                raise Unsure  # unknown (or -h)
            if opt not in command.flags and i < len(arg):
                rargs.insert(0, arg[i:])
                take(opt)
                break
            take(opt)
    params.update({name: tuple(values) for name, values in multi.items()})
    return params, positional + rargs


def to_int(text: str, low: int | None = None, high: int | None = None) -> int:
    """click's ``INT`` (and ``IntRange(low, high)``) conversion of an option value."""
    try:
        value = int(text)
    except ValueError:
        raise Unsure from None  # "... is not a valid integer."
    if (low is not None and value < low) or (high is not None and value > high):
        raise Unsure  # "... is not in the range ..."
    return value


def open_text_files(paths: tuple[str, ...]) -> tuple[Any, ...]:
    """Files opened as ``click.File("r")`` opens them (OSError: click says which
    file and why).  ``-`` (stdin) is for the caller to refuse beforehand."""
    files: list[Any] = []
    try:
        for path in paths:
            files.append(open(path, encoding=None, errors="strict"))  # noqa: SIM115
    except OSError:
        for f in files:
            f.close()
        raise
    return tuple(files)


def run_like_click(work: Callable[[], None], *, traceback: bool) -> None:
    """Run ``work`` (a parsed command), failing as the click application does
    (:func:`pyimg.cli.app.main`): a :class:`~pyimg.errors.PyimgError` is one
    ``pyimg: error:`` line and its exit code (a traceback with ``traceback``), ^C
    a blank line and 130, a broken pipe exit 1."""
    from pyimg.cli import exit_on_error, fail

    try:
        try:
            work()
        except (EOFError, KeyboardInterrupt):
            sys.stderr.write("\n")  # click: a blank line to close the terminal's ^C
            sys.stderr.flush()
            fail("interrupted", 130)
        except OSError as exc:
            import errno

            if exc.errno != errno.EPIPE:
                raise
            # click: exit 1, without a second error from flushing the pipe at exit
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            sys.exit(1)
    except (Exception, KeyboardInterrupt) as exc:
        exit_on_error(exc, traceback)


def settings(group: Mapping[str, Any]) -> Settings:
    """The group's :class:`~pyimg.settings.Settings` (as ``Context.settings()``),
    debug logging on when asked for (as the group's callback does)."""
    if group["debug"]:
        from pyimg import _debug

        _debug.enable()
    from pyimg.settings import Settings

    return Settings.from_env(root=group["root"], config=group["config"], state=group["state"])
