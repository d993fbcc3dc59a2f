"""`pyimg [--root R] [--config C] [--state S] [--debug] run ...` without click.

Starting a container is what pyimg does most often in a tight loop, and
importing click and every command costs ~25 ms here, more than a third of
`pyimg run --rm IMAGE true`.  :func:`parse` reads the command line exactly as
the click application would (:mod:`pyimg.cli.app` and the ``run`` command in
:mod:`pyimg.cli.containers`, which stay the reference): click's option syntax
(``--opt value``, ``--opt=value``, ``-m64m``, ``-it``, ``-dit``, ``--``, options
stop at the first positional), its environment variables and its defaults.
Anything it does not fully understand -- help, ``--version``, an unknown option,
a missing value or IMAGE, a value click would refuse -- returns None, and the
click application then runs the command (and explains the mistake, exit 125).
The work itself is :func:`pyimg.cli.runcmd.run`, which the click command calls too.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: the group's options that take a value (click's ``envvar`` for each)
_GLOBAL = {"--root": "PYIMG_ROOT", "--config": "PYIMG_CONFIG", "--state": "PYIMG_STATE"}
#: click's boolean strings (``BoolParamType.bool_states``), for ``$PYIMG_DEBUG``
_BOOL = {"1": True, "0": False, "yes": True, "no": False, "true": True, "false": False,
         "on": True, "off": False, "t": True, "f": False, "y": True, "n": False}

# The run command's options: spelling -> parameter name (as click passes them).
_FLAGS = {"-d": "detach", "--detach": "detach", "--rm": "rm", "-i": "interactive",
          "--interactive": "interactive", "-t": "tty", "--tty": "tty",
          "--read-only": "read_only"}
_VALUES = {"--name": "name", "-w": "workdir", "--workdir": "workdir", "-u": "user",
           "--user": "user", "--memory": "memory", "-m": "memory", "--cpus": "cpus",
           "--pids-limit": "pids_limit", "--hostname": "hostname",
           "--entrypoint": "entrypoint", "--network": "network", "--platform": "platform"}
_MULTIPLE = {"-e": "env", "--env": "env", "--env-file": "env_file", "-v": "volumes",
             "--volume": "volumes", "--tmpfs": "tmpfs"}
_NETWORKS = ("none", "host")


class _Unsure(Exception):
    """Not something this parser reads exactly as click does: let click have it."""


def main(args: list[str]) -> None:
    """Run ``args`` (``sys.argv[1:]``) if they are a `pyimg run` this module reads
    as click would: the process then exits (:func:`pyimg.entry.finish`) with the
    container's code, or 125 (docker's codes).  Returns when click must run them.
    """
    parsed = parse(args)
    if parsed is None:
        return
    group, params = parsed
    try:
        params["env_file"] = _open_env_files(params["env_file"])
    except OSError:
        return  # click says which file and why
    from pyimg.runtime import attachwarm

    # the cgroup attach's grace period runs while we import and prepare the container
    _run(group, params, traceback="--debug" in args, warm=attachwarm.start())


def parse(args: list[str]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(global options as click's group gets them, the run command's parameters,
    with ``env_file`` still as paths), or None when click must decide."""
    if os.environ.get("_PYIMG_COMPLETE"):
        return None  # shell completion
    try:
        rest, group = _parse_group(args)
        return group, _parse_run(rest)
    except _Unsure:
        return None


def _parse_group(args: list[str]) -> tuple[list[str], dict[str, Any]]:
    rargs = list(args)
    given: dict[str, Any] = {}
    while rargs:
        arg = rargs.pop(0)
        if arg == "run":
            break
        name, eq, value = arg.partition("=")
        if name in _GLOBAL:
            if not eq:
                if not rargs:
                    raise _Unsure
                value = rargs.pop(0)
            given[name[2:]] = value
        elif arg == "--debug":
            given["debug"] = True
        else:  # --help, --version, --, another command, a mistake
            raise _Unsure
    else:
        raise _Unsure  # no command
    group: dict[str, Any] = {k[2:]: given.get(k[2:], os.environ.get(env) or None)
                             for k, env in _GLOBAL.items()}
    debug = given.get("debug")
    if debug is None:
        text = os.environ.get("PYIMG_DEBUG")
        debug = _BOOL.get(text.strip().lower()) if text else False
        if debug is None:
            raise _Unsure  # click: not a valid boolean
    group["debug"] = debug
    return rargs, group


def _parse_run(args: list[str]) -> dict[str, Any]:
    """click's parser (``_OptionParser._process_args_for_options`` and friends) for
    the run command, with interspersed arguments off."""
    params: dict[str, Any] = {name: False for name in _FLAGS.values()}
    params.update({name: None for name in _VALUES.values()})
    multi: dict[str, list[str]] = {name: [] for name in _MULTIPLE.values()}
    rargs = list(args)

    def take(opt: str) -> None:
        if opt in _FLAGS:
            params[_FLAGS[opt]] = True
        elif not rargs:
            raise _Unsure  # "Option '-e' requires an argument."
        elif opt in _VALUES:
            params[_VALUES[opt]] = rargs.pop(0)
        else:
            multi[_MULTIPLE[opt]].append(rargs.pop(0))

    while rargs:
        arg = rargs.pop(0)
        if arg == "--":
            break
        if arg[:1] != "-" or len(arg) == 1:
            rargs.insert(0, arg)  # the first positional: IMAGE, then the command
            break
        if arg.startswith("--"):  # a long option, "--name value" or "--name=value"
            name, eq, value = arg.partition("=")
            if name not in _FLAGS and name not in _VALUES and name not in _MULTIPLE:
                raise _Unsure  # unknown (or --help)
            if eq:
                if name in _FLAGS:
                    raise _Unsure  # "Option '--rm' does not take a value."
                rargs.insert(0, value)
            take(name)
            continue
        # short options, possibly several (-dit), the last one may hold its value (-m64m)
        for i, ch in enumerate(arg[1:], start=2):
            opt = "-" + ch
            if opt not in _FLAGS and opt not in _VALUES and opt not in _MULTIPLE:
                raise _Unsure  # unknown (or -h)
            if opt not in _FLAGS and i < len(arg):
                rargs.insert(0, arg[i:])
                take(opt)
                break
            take(opt)
    if not rargs:
        raise _Unsure  # "Missing argument 'IMAGE'."
    params["image"], params["command"] = rargs[0], tuple(rargs[1:])
    params.update({name: tuple(values) for name, values in multi.items()})
    if params["pids_limit"] is not None:
        try:
            params["pids_limit"] = int(params["pids_limit"])
        except ValueError:
            raise _Unsure from None  # "... is not a valid integer."
    if params["network"] is None:
        params["network"] = "none"
    elif params["network"] not in _NETWORKS:
        raise _Unsure  # "... is not one of 'none', 'host'."
    if "-" in params["env_file"]:
        raise _Unsure  # stdin: click's stream
    return params


def _open_env_files(paths: tuple[str, ...]) -> tuple[Any, ...]:
    """The ``--env-file`` files opened as ``click.File("r")`` opens them."""
    files: list[Any] = []
    try:
        for path in paths:
            files.append(open(path, encoding=None, errors="strict"))  # noqa: SIM115
    except OSError:
        for f in files:
            f.close()
        raise
    return tuple(files)


def _run(group: dict[str, Any], params: dict[str, Any], *, traceback: bool,
         warm: int | None) -> None:
    """:func:`pyimg.cli.runcmd.run`, failing as the click application does."""
    from pyimg.cli import exit_on_error, fail

    try:
        try:
            if group["debug"]:
                from pyimg import _debug

                _debug.enable()
            from pyimg.cli import runcmd
            from pyimg.settings import Settings

            with runcmd.pyimg_failures():
                settings = Settings.from_env(root=group["root"], config=group["config"],
                                             state=group["state"])
                runcmd.run(settings, warm=warm, **params)
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
