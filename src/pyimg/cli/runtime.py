"""`pyimg runtime`: an OCI runtime command line in runc's conventions.

    pyimg runtime [--root DIR] [--log F] [--log-format text|json] VERB ...
    pyimg runtime create --bundle DIR [--pid-file F] [--console-socket SOCK] ID
    pyimg runtime start ID | state ID | kill ID [SIGNAL] | delete [--force] ID
    pyimg runtime run --bundle DIR [--console-socket SOCK] ID | list
    pyimg runtime exec [--process F | -e K=V --cwd D -u UID:GID -t] [-d] [--pid-file F] ID [CMD]
    pyimg runtime ps [--format json] ID | pause ID | resume ID

The usual calls are parsed by :mod:`pyimg.entry` without click; this group is
the reference (help, and the explanation of a mistake).

Tools written for runc can drive it through a two-line wrapper named
``runc`` that runs ``pyimg runtime "$@"``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click


def _root(ctx: click.Context) -> str:
    from pyimg.runtime.ops import state_root

    return state_root(ctx.obj.runtime_root, ctx.obj.ctx.state)


class _Obj:
    def __init__(self, ctx: Any, root: str | None) -> None:
        self.ctx = ctx
        self.runtime_root = root


@click.group()
@click.option("--root", "runtime_root", metavar="DIR",
              help="Container state directory (default: $PYIMG_STATE/runtime).")
@click.option("--log", metavar="FILE", help="Also append errors to FILE (as runc).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.pass_context
def runtime(ctx: click.Context, runtime_root: str | None, log: str | None,
            log_format: str) -> None:
    """An OCI runtime (runc-compatible command line)."""
    ctx.obj = _Obj(ctx.obj, runtime_root)


def _console_option(f: Any) -> Any:
    f = click.option("--no-new-keyring", is_flag=True, hidden=True,
                     help="Accepted for runc compatibility (pyimg makes no keyring).")(f)
    return click.option("--console-socket", metavar="SOCK",
                        help="Unix socket that receives the pty master "
                        "(process.terminal).")(f)


@runtime.command()
@click.option("--bundle", "-b", type=click.Path(path_type=Path), default=Path("."))
@click.option("--pid-file", type=click.Path(path_type=Path))
@_console_option
@click.argument("container_id")
@click.pass_context
def create(ctx: click.Context, bundle: Path, pid_file: Path | None, console_socket: str | None,
           no_new_keyring: bool, container_id: str) -> None:
    """Create a container (its init waits for `start`)."""
    from pyimg.runtime import ops

    ops.create(_root(ctx), bundle, pid_file, container_id, console_socket=console_socket)


def _id_verb(name: str, doc: str) -> None:
    """A verb that takes just the container id and calls ``ops.<name>(root, id)``."""
    @runtime.command(name, help=doc)
    @click.argument("container_id")
    @click.pass_context
    def verb(ctx: click.Context, container_id: str) -> None:
        from pyimg.runtime import ops

        getattr(ops, name)(_root(ctx), container_id)


_id_verb("start", "Run the created container's process.")
_id_verb("pause", "Freeze every process of the container.")
_id_verb("resume", "Thaw a paused container.")


@runtime.command()
@click.argument("container_id")
@click.pass_context
def state(ctx: click.Context, container_id: str) -> None:
    """Print the runtime-spec state as JSON."""
    from pyimg.runtime import ops

    json.dump(ops.state(_root(ctx), container_id), sys.stdout, indent=2)
    click.echo()


@runtime.command()
@click.argument("container_id")
@click.argument("sig", default="SIGTERM")
@click.pass_context
def kill(ctx: click.Context, container_id: str, sig: str) -> None:
    """Send a signal (name with or without SIG, or number) to the init."""
    from pyimg.runtime import ops

    ops.kill(_root(ctx), container_id, sig)


@runtime.command()
@click.option("--force", "-f", is_flag=True, help="Kill it first if it is running.")
@click.argument("container_id")
@click.pass_context
def delete(ctx: click.Context, force: bool, container_id: str) -> None:
    """Delete a stopped container (and its cgroup)."""
    from pyimg.runtime import ops

    ops.delete(_root(ctx), container_id, force)


@runtime.command("run")
@click.option("--bundle", "-b", type=click.Path(path_type=Path), default=Path("."))
@click.option("--pid-file", type=click.Path(path_type=Path))
@_console_option
@click.argument("container_id")
@click.pass_context
def run_(ctx: click.Context, bundle: Path, pid_file: Path | None, console_socket: str | None,
         no_new_keyring: bool, container_id: str) -> None:
    """create + start + wait + delete; exits with the container's code."""
    from pyimg.runtime import ops

    sys.exit(ops.run(_root(ctx), bundle, pid_file, container_id,
                     console_socket=console_socket))


@runtime.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("--process", "-p", "process_file", metavar="FILE",
              help="An OCI process (JSON) to run instead of ARGS.")
@click.option("--detach", "-d", is_flag=True, help="Return once the process runs.")
@click.option("--tty", "-t", is_flag=True, help="Give the process a terminal.")
@click.option("--cwd", help="Working directory inside the container.")
@click.option("--env", "-e", multiple=True, metavar="K=V")
@click.option("--user", "-u", metavar="UID[:GID]")
@click.option("--pid-file", type=click.Path())
@click.option("--console-socket", metavar="SOCK")
@click.argument("container_id")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def exec_(ctx: click.Context, process_file: str | None, detach: bool, tty: bool,
          cwd: str | None, env: tuple[str, ...], user: str | None, pid_file: str | None,
          console_socket: str | None, container_id: str, command: tuple[str, ...]) -> None:
    """Run a process in a running container (runc exec)."""
    from pyimg.runtime import ops

    sys.exit(ops.exec_(_root(ctx), container_id, process_file=process_file,
                       args=list(command), env=list(env), cwd=cwd, user=user, tty=tty,
                       detach=detach, pid_file=pid_file, console_socket=console_socket))


@runtime.command("ps")
@click.option("--format", "-f", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.argument("container_id")
@click.pass_context
def ps_(ctx: click.Context, fmt: str, container_id: str) -> None:
    """The container's processes (host pids)."""
    from pyimg.runtime import ops

    click.echo(ops.ps(_root(ctx), container_id, fmt), nl=False)


@runtime.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def list_(ctx: click.Context, fmt: str) -> None:
    """List containers."""
    from pyimg.cli.render import table
    from pyimg.runtime import launcher

    items = launcher.list_containers(_root(ctx))
    if fmt == "json":
        json.dump(items, sys.stdout, indent=2)
        click.echo()
        return
    click.echo(table(("ID", "PID", "STATUS", "BUNDLE"),
                     [(i["id"], str(i.get("pid", "")), i["status"], i["bundle"])
                      for i in items]))


COMMANDS = (runtime,)
