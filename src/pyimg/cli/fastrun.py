"""`pyimg [--root R] [--config C] [--state S] [--debug] run ...` without click.

Starting a container is what pyimg does most often in a tight loop, and
importing click and every command costs ~25 ms here, more than a third of
`pyimg run --rm IMAGE true`.  :func:`parse` reads the command line exactly as
the click application would (:mod:`pyimg.cli.app` and the ``run`` command in
:mod:`pyimg.cli.containers`, which stay the reference), with the table-driven
reader of :mod:`pyimg.cli.fastparse` (interspersed arguments off: options stop
at IMAGE).  Anything it does not fully understand -- help, ``--version``, an
unknown option, a missing value or IMAGE, a value click would refuse -- returns
None, and the click application then runs the command (and explains the
mistake, exit 125).  The work itself is :func:`pyimg.cli.runcmd.run`, which the
click command calls too.
"""

from __future__ import annotations

from pyimg.cli import fastparse
from pyimg.cli.fastparse import Unsure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

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
RUN = fastparse.Command(
    "run", flags={opt: (name, True) for opt, name in _FLAGS.items()}, values=_VALUES,
    multiple=_MULTIPLE, interspersed=False,
    defaults={**{name: False for name in _FLAGS.values()},
              **{name: None for name in _VALUES.values()}})


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
        params["env_file"] = fastparse.open_text_files(params["env_file"])
    except OSError:
        return  # click says which file and why
    from pyimg.runtime import attachwarm

    # the cgroup attach's grace period runs while we import and prepare the container
    _run(group, params, traceback="--debug" in args, warm=attachwarm.start())


def parse(args: list[str]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(global options as click's group gets them, the run command's parameters,
    with ``env_file`` still as paths), or None when click must decide."""
    try:
        group, params, positional = fastparse.parse(RUN, args)
        return group, _check(params, positional)
    except Unsure:
        return None


def _check(params: dict[str, Any], positional: list[str]) -> dict[str, Any]:
    """IMAGE, the command, and the values click converts or checks."""
    if not positional:
        raise Unsure  # "Missing argument 'IMAGE'."
    params["image"], params["command"] = positional[0], tuple(positional[1:])
    if params["pids_limit"] is not None:
        params["pids_limit"] = fastparse.to_int(params["pids_limit"])
    if params["network"] is None:
        params["network"] = "none"
    elif params["network"] not in _NETWORKS:
        raise Unsure  # "... is not one of 'none', 'host'."
    if "-" in params["env_file"]:
        raise Unsure  # stdin: click's stream
    return params


def _run(group: dict[str, Any], params: dict[str, Any], *, traceback: bool,
         warm: int | None) -> None:
    """:func:`pyimg.cli.runcmd.run`, failing as the click application does."""

    def work() -> None:
        from pyimg.cli import runcmd

        with runcmd.pyimg_failures():
            runcmd.run(fastparse.settings(group), warm=warm, **params)

    fastparse.run_like_click(work, traceback=traceback)
