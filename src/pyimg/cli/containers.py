"""run, ps, logs, exec, stop, kill, wait, rm, inspect, start (docker's verbs)."""

from __future__ import annotations

import contextlib
import datetime
import json
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

import click

from pyimg.cli.render import table

if TYPE_CHECKING:
    from pyimg.containers import Containers

# docker's exit codes for `run` failures that are not the container's
EXIT_PYIMG = 125


def _containers(obj: Any) -> Containers:
    from pyimg.containers import Containers

    return Containers(obj.settings().state)


def _signal(text: str) -> int:
    from pyimg.errors import InvalidArgument

    name = text.upper()
    if name.isdigit():
        return int(name)
    name = name if name.startswith("SIG") else f"SIG{name}"
    try:
        return int(getattr(signal, name))
    except AttributeError:
        raise InvalidArgument(f"invalid signal {text!r}") from None


@click.command(context_settings={"allow_interspersed_args": False})
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
def run(obj, detach, rm, interactive, tty, name, env, env_file, workdir, user, volumes,  # type: ignore[no-untyped-def]
        tmpfs, read_only, memory, cpus, pids_limit, hostname, entrypoint, network, platform,
        image, command):
    """Run a command in a new container (pulls the image if missing)."""
    from pyimg import api
    from pyimg import run as runmod
    from pyimg.errors import NotFound
    from pyimg.oci import Platform
    from pyimg.runtime.spec import RunOptions, parse_cpus, parse_size, parse_tmpfs, parse_volume

    settings = obj.settings()
    envs = list(env) + [ln.strip() for f in env_file for ln in f
                        if ln.strip() and not ln.startswith("#")]
    options = RunOptions(
        args=tuple(command) or None, entrypoint=entrypoint, env=tuple(envs), workdir=workdir,
        user=user, hostname=hostname, tty=tty, readonly_rootfs=read_only,
        memory=parse_size(memory) if memory else None,
        cpus=parse_cpus(cpus) if cpus else None, pids_limit=pids_limit, network=network,
        mounts=tuple([parse_volume(v) for v in volumes] + [parse_tmpfs(t) for t in tmpfs]))
    plat = Platform.parse(platform) if platform else None
    cs = _containers(obj)
    with api.Store(settings.root) as store:
        try:
            api.resolve_local(store, image)
        except NotFound:
            api.pull(store, image, settings)
        c = runmod.create(store, cs, image, options, name=name, rm=rm, stdin=interactive,
                          platform=plat)
    if detach:
        runmod.start(cs, c)
        click.echo(c.id)
        return
    code = _attach_and_run(obj, cs, c, interactive, tty)
    if rm:
        with api.Store(settings.root) as store:
            runmod.remove(store, cs, c, force=True)
    sys.exit(code)


def _attach_and_run(obj, cs, c, interactive: bool, tty: bool) -> int:  # type: ignore[no-untyped-def]
    from pyimg.cli.attach import attach

    cs.spawn_shim(c, cs.dir(c.id) / "cgroup.json")
    conn = cs.connect(c)
    conn.sendall(json.dumps({"op": "attach", "stdin": interactive}).encode() + b"\n")
    (cs.dir(c.id) / "started").touch()
    ready = threading.Event()
    result: dict[str, int] = {}
    t = threading.Thread(target=lambda: result.update(code=attach(conn, interactive, tty,
                                                                   ready, cs, c)),
                         daemon=True)
    t.start()
    ready.wait(10)
    start_msg = cs.request(c, {"op": "start"})
    del start_msg
    t.join()
    status = cs.exit_status(c) or {}
    if status.get("error"):
        click.echo(f"pyimg: error: {status['error']}", err=True)
    return int(result.get("code", status.get("exit_code", EXIT_PYIMG)))


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
    from pyimg.runtime import logs as logmod

    cs = _containers(obj)
    c = cs.find(container)
    path = cs.dir(c.id) / "log.json"
    n = None if tail == "all" else int(tail)
    for r in logmod.read(path, tail=n):
        _emit(r, timestamps)
    if follow and cs.status(c) == "running":
        stop = threading.Event()

        def watch() -> None:
            _wait_quiet(cs, c)
            stop.set()

        threading.Thread(target=watch, daemon=True).start()
        for r in logmod.follow(path, stop=stop, start=path.stat().st_size):
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
        runmod.stop(cs, c, timeout)
        click.echo(ref)


@click.command()
@click.option("-s", "--signal", "sig", default="KILL", show_default=True)
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def kill(obj, sig, containers):  # type: ignore[no-untyped-def]
    """Send a signal to containers."""
    from pyimg import run as runmod

    cs = _containers(obj)
    for ref in containers:
        runmod.kill(cs, cs.find(ref), _signal(sig))
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


@click.command("inspect-container", hidden=True)
@click.argument("container")
@click.pass_obj
def inspect_container(obj, container):  # type: ignore[no-untyped-def]
    cs = _containers(obj)
    c = cs.find(container)
    json.dump({"id": c.id, "name": c.name, "image": c.image, "command": c.command,
               "created": datetime.datetime.fromtimestamp(c.created, datetime.UTC).isoformat(),
               "status": cs.status(c), "exit": cs.exit_status(c),
               "bundle": str(cs.dir(c.id) / "bundle"), "pid_file": str(cs.dir(c.id))},
              sys.stdout, indent=2)
    click.echo()


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


COMMANDS = (run, ps, logs, stop, kill, wait, rm, inspect_container, exec_)
