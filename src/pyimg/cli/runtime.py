"""`pyimg runtime`: an OCI runtime command line in runc's conventions.

    pyimg runtime [--root DIR] create --bundle DIR [--pid-file F] ID
    pyimg runtime start ID | state ID | kill ID [SIGNAL] | delete [--force] ID
    pyimg runtime run --bundle DIR ID | list

Tools written for runc can drive it through a two-line wrapper named
``runc`` that runs ``pyimg runtime "$@"``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click


def _root(ctx: click.Context) -> Path:
    root = ctx.obj.runtime_root
    return Path(root) if root else ctx.obj.ctx.settings().state / "runtime"


class _Obj:
    def __init__(self, ctx: Any, root: str | None) -> None:
        self.ctx = ctx
        self.runtime_root = root


def _cgroup_state(root: Path, cid: str) -> Path:
    return root / cid / "cgroup-state.json"


def _hook(bundle: Path, root: Path, cid: str) -> Any:
    from pyimg.runtime.cgroup_hooks import join_hook

    spec = json.loads((bundle / "config.json").read_text())
    linux = spec.get("linux") or {}
    return join_hook(linux.get("cgroupsPath") or f"/pyimg/{cid}", linux.get("resources"),
                     _cgroup_state(root, cid))


def _cleanup(root: Path, cid: str) -> Any:
    """A launcher ``cgroup_cleanup``: runs before the state directory goes."""
    from pyimg.runtime.cgroup_hooks import destroy

    def cleanup(_: object) -> None:
        destroy(_cgroup_state(root, cid))

    return cleanup


@click.group()
@click.option("--root", "runtime_root", metavar="DIR",
              help="Container state directory (default: $PYIMG_STATE/runtime).")
@click.pass_context
def runtime(ctx: click.Context, runtime_root: str | None) -> None:
    """An OCI runtime (runc-compatible command line)."""
    ctx.obj = _Obj(ctx.obj, runtime_root)


@runtime.command()
@click.option("--bundle", "-b", type=click.Path(path_type=Path), default=Path("."))
@click.option("--pid-file", type=click.Path(path_type=Path))
@click.argument("container_id")
@click.pass_context
def create(ctx: click.Context, bundle: Path, pid_file: Path | None, container_id: str) -> None:
    """Create a container (its init waits for `start`)."""
    from pyimg.runtime import launcher

    root = _root(ctx)
    bundle = bundle.resolve()
    launcher.create(container_id, bundle, root, pid_file=pid_file,
                    cgroup_hook=_hook(bundle, root, container_id))


@runtime.command()
@click.argument("container_id")
@click.pass_context
def start(ctx: click.Context, container_id: str) -> None:
    """Run the created container's process."""
    from pyimg.runtime import launcher

    launcher.start(container_id, _root(ctx))


@runtime.command()
@click.argument("container_id")
@click.pass_context
def state(ctx: click.Context, container_id: str) -> None:
    """Print the runtime-spec state as JSON."""
    from pyimg.runtime import launcher

    json.dump(launcher.state(container_id, _root(ctx)), sys.stdout, indent=2)
    click.echo()


@runtime.command()
@click.argument("container_id")
@click.argument("sig", default="SIGTERM")
@click.pass_context
def kill(ctx: click.Context, container_id: str, sig: str) -> None:
    """Send a signal (name with or without SIG, or number) to the init."""
    from pyimg.run import parse_signal
    from pyimg.runtime import launcher

    launcher.kill(container_id, _root(ctx), parse_signal(sig))


@runtime.command()
@click.option("--force", "-f", is_flag=True, help="Kill it first if it is running.")
@click.argument("container_id")
@click.pass_context
def delete(ctx: click.Context, force: bool, container_id: str) -> None:
    """Delete a stopped container (and its cgroup)."""
    from pyimg.runtime import launcher

    root = _root(ctx)
    launcher.delete(container_id, root, force=force,
                    cgroup_cleanup=_cleanup(root, container_id))


@runtime.command("run")
@click.option("--bundle", "-b", type=click.Path(path_type=Path), default=Path("."))
@click.option("--pid-file", type=click.Path(path_type=Path))
@click.argument("container_id")
@click.pass_context
def run_(ctx: click.Context, bundle: Path, pid_file: Path | None, container_id: str) -> None:
    """create + start + wait + delete; exits with the container's code."""
    from pyimg.runtime import launcher

    root = _root(ctx)
    bundle = bundle.resolve()
    code = launcher.run(container_id, bundle, root, pid_file=pid_file,
                        cgroup_hook=_hook(bundle, root, container_id),
                        cgroup_cleanup=_cleanup(root, container_id))
    sys.exit(code)


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
