"""run, ps, logs, exec, stop, kill, wait, rm, inspect, start (docker's verbs)."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

import click

from pyimg.cli.render import table
from pyimg.cli.runcmd import EXIT_PYIMG

if TYPE_CHECKING:
    from pyimg.containers import Containers


def _containers(obj: Any) -> Containers:
    from pyimg.containers import Containers

    return Containers(obj.settings().state_dir)


class _RunUsageError(click.UsageError):
    exit_code = EXIT_PYIMG


class _RunCommand(click.Command):
    """docker's convention: a failure of pyimg itself (bad option, image that cannot
    be pulled, container that cannot be created) exits 125, so that every other
    code is the container's."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise _RunUsageError(exc.format_message(), exc.ctx) from exc

    def invoke(self, ctx: click.Context) -> Any:
        from pyimg.cli.runcmd import pyimg_failures

        with pyimg_failures():
            return super().invoke(ctx)


@click.command(cls=_RunCommand, context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Run in the background; print the id.")
@click.option("--rm", is_flag=True, help="Remove the container when it exits.")
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin open.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-terminal.")
@click.option("--name", help="Container name.")
@click.option("-e", "--env", "env", multiple=True, metavar="K=V", help="Environment variable.")
@click.option("--env-file", type=click.File("r"), multiple=True, help="File of K=V lines.")
@click.option("-w", "--workdir", help="Working directory inside the container.")
@click.option("-u", "--user", help="USER[:GROUP] (name or id).")
@click.option("-v", "--volume", "volumes", multiple=True, metavar="SRC:DST[:ro]")
@click.option("--tmpfs", "tmpfs", multiple=True, metavar="DST[:OPTS]")
@click.option("--read-only", is_flag=True, help="Mount the root filesystem read-only.")
@click.option("--memory", "-m", help="Memory limit, e.g. 64m.")
@click.option("--cpus", help="CPU limit, e.g. 0.5.")
@click.option("--pids-limit", type=int, help="Maximum number of processes.")
@click.option("--hostname", help="Container hostname.")
@click.option("--entrypoint", help="Override the image's entrypoint.")
@click.option("--network", type=click.Choice(["none", "host"]), default="none",
              show_default=True, help="none: loopback only; host: the host's network.")
@click.option("--platform", metavar="OS/ARCH[/VARIANT]")
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def run(obj: Any, /, **params: Any) -> None:
    """Run a command in a new container (pulls the image if missing)."""
    from pyimg.cli import runcmd

    runcmd.run(obj.settings(), **params)


@click.command()
@click.option("-a", "--all", "show_all", is_flag=True, help="Also stopped containers.")
@click.option("-q", "--quiet", is_flag=True, help="Only ids.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_obj
def ps(obj, show_all, quiet, fmt):  # type: ignore[no-untyped-def]
    """List containers."""
    cs = _containers(obj)
    rows = []
    for c in cs.list():
        status = cs.status(c)
        if status != "running" and not show_all:
            continue
        rows.append((c, status, cs.exit_status(c)))
    if quiet:
        for c, _, _ in rows:
            click.echo(c.short)
        return
    if fmt == "json":
        json.dump([{"id": c.id, "name": c.name, "image": c.image, "command": c.command,
                    "status": s, "exit": e} for c, s, e in rows], sys.stdout, indent=2)
        click.echo()
        return
    click.echo(table(("CONTAINER ID", "IMAGE", "COMMAND", "STATUS", "NAMES"),
                     [(c.short, c.image, " ".join(c.command)[:30], _status_text(s, e), c.name)
                      for c, s, e in rows]))


def _status_text(status: str, exit_status) -> str:  # type: ignore[no-untyped-def]
    if status == "exited" and exit_status:
        text = f"Exited ({exit_status.get('exit_code')})"
        return text + (" OOMKilled" if exit_status.get("oom") else "")
    return status.capitalize()


@click.command()
@click.option("-f", "--follow", is_flag=True)
@click.option("--tail", default="all", help="Lines from the end (or 'all').")
@click.option("-t", "--timestamps", is_flag=True)
@click.argument("container")
@click.pass_obj
def logs(obj, follow, tail, timestamps, container):  # type: ignore[no-untyped-def]
    """Show a container's output (docker json-file log)."""
    from pyimg.errors import InvalidArgument
    from pyimg.runtime import logs as logmod

    cs = _containers(obj)
    c = cs.find(container)
    path = os.path.join(cs.dir(c.id), "log.json")
    try:
        n = None if tail == "all" else int(tail)
    except ValueError:
        raise InvalidArgument(f"invalid --tail {tail!r}: expected a number or 'all'") from None
    # the status first: a container that exits meanwhile has its last lines read below
    running = follow and cs.status(c) in ("running", "created")
    records, offset = logmod.read_at(path, tail=n)
    for r in records:
        _emit(r, timestamps)
    if running:
        stop = threading.Event()

        def watch() -> None:
            _wait_quiet(cs, c)
            stop.set()

        threading.Thread(target=watch, daemon=True).start()
        for r in logmod.follow(path, stop=stop, start=offset):
            _emit(r, timestamps)


def _wait_quiet(cs, c) -> None:  # type: ignore[no-untyped-def]
    from pyimg import run as runmod

    with contextlib.suppress(Exception):  # the log follower stops either way
        runmod.wait(cs, c)


def _emit(r, timestamps: bool) -> None:  # type: ignore[no-untyped-def]
    out = sys.stdout if r.stream == "stdout" else sys.stderr
    out.write((f"{r.time} " if timestamps else "") + r.text)
    out.flush()


@click.command()
@click.option("-t", "--time", "timeout", type=float, default=10.0, show_default=True)
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def stop(obj, timeout, containers):  # type: ignore[no-untyped-def]
    """Stop containers: their stop signal, then SIGKILL after the timeout."""
    from pyimg import run as runmod

    cs = _containers(obj)
    for ref in containers:
        c = cs.find(ref)
        runmod.stop(cs, c, timeout)  # the image's StopSignal (SIGTERM without one)
        click.echo(ref)


@click.command()
@click.option("-s", "--signal", "sig", default="KILL", show_default=True)
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def kill(obj, sig, containers):  # type: ignore[no-untyped-def]
    """Send a signal to containers."""
    from pyimg import run as runmod

    cs = _containers(obj)
    from pyimg.runtime.signals import parse_signal

    signum = parse_signal(sig)
    for ref in containers:
        runmod.kill(cs, cs.find(ref), signum)
        click.echo(ref)


@click.command()
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def wait(obj, containers):  # type: ignore[no-untyped-def]
    """Wait for containers to exit; print their exit codes."""
    from pyimg import run as runmod

    cs = _containers(obj)
    for ref in containers:
        click.echo(runmod.wait(cs, cs.find(ref)).get("exit_code"))


@click.command()
@click.option("-f", "--force", is_flag=True, help="Kill a running container first.")
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def rm(obj, force, containers):  # type: ignore[no-untyped-def]
    """Remove containers (processes, cgroup, mounts, snapshot, state)."""
    from pyimg import api
    from pyimg import run as runmod

    cs = _containers(obj)
    with api.Store(obj.settings().root) as store:
        for ref in containers:
            runmod.remove(store, cs, cs.find(ref), force=force)
            click.echo(ref)


@click.command()
@click.option("-a", "--attach", is_flag=True, help="Attach to the output; exit with its code.")
@click.option("-i", "--interactive", is_flag=True, help="Attach stdin too (with -a).")
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def start(obj, attach, interactive, containers):  # type: ignore[no-untyped-def]
    """Start created or stopped containers (a new run on the same filesystem)."""
    from pyimg import api
    from pyimg import run as runmod
    from pyimg.cli.runcmd import attach_and_run, remove_after_run
    from pyimg.errors import InvalidArgument

    settings = obj.settings()
    cs = _containers(obj)
    if attach:
        if len(containers) != 1:
            raise InvalidArgument("start -a takes exactly one container")
        c = cs.find(containers[0])
        with api.Store(settings.root_dir) as store:
            code, shim_removes = attach_and_run(cs, c, interactive and c.stdin, c.tty,
                                                rm=c.rm, store_root=settings.root_dir)
            if c.rm:
                remove_after_run(store, cs, c, shim_removes)
        sys.exit(code)
    for ref in containers:
        c = cs.find(ref)
        if cs.status(c) != "running":  # docker: starting a running container is a no-op
            runmod.start(cs, c, auto_remove=c.rm, store_root=settings.root_dir)
        click.echo(ref)


@click.command("inspect")
@click.argument("name")
@click.option("-f", "--format", "fmt", default="json", show_default=True,
              help="json, table (images), or a '{{.Field}}' template, e.g. '{{.Config.Cmd}}'.")
@click.option("--field", metavar="PATH",
              help="Print one value, e.g. Config.Cmd or Layers.0.Digest.")
@click.option("--raw", type=click.Choice(["manifest", "config"]),
              help="Print the image's manifest (what REF names: index or manifest) or config"
                   " exactly as stored.")
@click.option("--platform", metavar="OS/ARCH[/VARIANT]",
              help="Platform of a multi-platform image (default: this host's).")
@click.option("--type", "kind", type=click.Choice(["container", "image"]),
              help="Only look for this kind of object.")
@click.option("--remote", is_flag=True, help="Read the image from its registry even when stored.")
@click.pass_obj
def inspect_container(obj, name, fmt, field, raw, platform, kind, remote):  # type: ignore[no-untyped-def]
    """Show a container (record, status, exit status) or an image as JSON.

    A container of that name or id wins; otherwise NAME is an image: stored,
    or remote (a registry reference, oci:PATH[:TAG], docker-archive:PATH[:REF]),
    of which only the index, manifest and config are fetched."""
    from pyimg.cli.inspect import render_view, show_image
    from pyimg.errors import NotFound

    image_only = raw is not None or platform is not None or remote
    if kind != "image" and not image_only:
        try:
            view = _container_view(obj, name)
        except NotFound:
            if kind == "container":
                raise
        else:
            render_view(view, "json" if fmt == "table" else fmt, field)
            return
    show_image(obj, name, fmt=fmt, raw=raw, platform=platform, field=field, remote=remote)


def _container_view(obj: Any, container: str) -> dict[str, Any]:
    cs = _containers(obj)
    c = cs.find(container)
    bundle = os.path.join(cs.dir(c.id), "bundle")
    with open(os.path.join(bundle, "config.json")) as f:
        spec = json.loads(f.read())
    return {"id": c.id, "name": c.name, "image": c.image, "command": c.command,
            "created": datetime.datetime.fromtimestamp(c.created, datetime.UTC).isoformat(),
            "status": cs.status(c), "exit": cs.exit_status(c),
            "bundle": bundle, "hostname": spec.get("hostname"),
            "process": {k: spec["process"].get(k) for k in ("args", "env", "cwd", "user")},
            "resources": spec.get("linux", {}).get("resources")}


@click.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-i", "--interactive", is_flag=True)
@click.option("-t", "--tty", is_flag=True)
@click.option("-e", "--env", "env", multiple=True)
@click.option("-w", "--workdir")
@click.option("-u", "--user")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def exec_(obj, interactive, tty, env, workdir, user, container, command):  # type: ignore[no-untyped-def]
    """Run a command inside a running container."""
    from pyimg.cli.attach import exec_process

    cs = _containers(obj)
    c = cs.find(container)
    sys.exit(exec_process(cs, c, list(command), list(env), workdir, user, tty))


COMMANDS = (run, ps, logs, stop, kill, wait, rm, start, inspect_container, exec_)
