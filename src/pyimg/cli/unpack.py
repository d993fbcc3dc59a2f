"""unpack, mount, umount, snapshots."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import click

from pyimg.cli.render import human_size, table


def _note(obj) -> Callable[[str], None] | None:  # type: ignore[no-untyped-def]
    """Policy notes (device nodes skipped, slow paths taken) shown with --debug."""
    if not obj.debug:
        return None
    return lambda msg: click.echo(f"debug: {msg}", err=True)


@click.command()
@click.argument("image")
@click.option("--dest", type=click.Path(path_type=Path), metavar="DIR",
              help="Write the flattened root filesystem into DIR (new or empty).")
@click.option("--bundle", type=click.Path(path_type=Path), metavar="DIR",
              help="Write an OCI runtime bundle (rootfs/ + config.json) into DIR.")
@click.option("--platform", metavar="OS/ARCH[/VARIANT]", help="Platform of a multi-platform image.")
@click.option("--snapshotter", type=click.Choice(["overlay", "native"]),
              help="Snapshotter (default: overlay when the filesystem supports it).")
@click.pass_obj
def unpack(obj, image, dest, bundle, platform, snapshotter):  # type: ignore[no-untyped-def]
    """Unpack a stored image into snapshots, a plain tree, or a runtime bundle."""
    from pyimg import api
    from pyimg.errors import InvalidArgument
    from pyimg.oci import Platform

    if dest and bundle:
        raise InvalidArgument("unpack: --dest and --bundle exclude each other")
    plat = Platform.parse(platform) if platform else None
    with api.Store(obj.settings().root) as store:
        if dest:
            api.flatten_image(store, image, dest, platform=plat, note=_note(obj))
            click.echo(f"{image}: root filesystem in {dest}")
        elif bundle:
            api.write_bundle(store, image, bundle, platform=plat, note=_note(obj))
            click.echo(f"{image}: bundle in {bundle}")
        else:
            r = api.unpack_image(store, image, platform=plat, snapshotter_name=snapshotter,
                                 note=_note(obj))
            click.echo(f"{image}: {r.chain_id} ({r.extracted} layers extracted,"
                       f" {r.reused} reused)")


@click.command()
@click.argument("image")
@click.argument("target", type=click.Path(path_type=Path, file_okay=False))
@click.option("--platform", metavar="OS/ARCH[/VARIANT]")
@click.pass_obj
def mount(obj, image, target, platform):  # type: ignore[no-untyped-def]
    """Mount a read-only view of an image's filesystem at TARGET."""
    from pyimg import api
    from pyimg.oci import Platform

    with api.Store(obj.settings().root) as store:
        api.mount_image(store, image, target,
                        platform=Platform.parse(platform) if platform else None)


@click.command()
@click.argument("target", type=click.Path(path_type=Path, file_okay=False))
@click.pass_obj
def umount(obj, target):  # type: ignore[no-untyped-def]
    """Unmount a view made by 'pyimg mount'."""
    from pyimg import api

    with api.Store(obj.settings().root) as store:
        api.umount_image(store, target)


@click.group()
def snapshots() -> None:
    """List, measure and remove snapshots."""


@snapshots.command("ls")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_obj
def snapshots_ls(obj, fmt):  # type: ignore[no-untyped-def]
    """List snapshots."""
    from pyimg import api

    with api.Store(obj.settings().root) as store:
        infos = list(api.snapshotter(store).walk())
    if fmt == "json":
        json.dump([{"key": i.key, "kind": i.kind.value, "parent": i.parent,
                    "created": i.created_at, "labels": dict(i.labels)} for i in infos],
                  sys.stdout, indent=2)
        click.echo()
        return
    click.echo(table(("KEY", "PARENT", "KIND"),
                     [(i.key, i.parent or "", i.kind.value) for i in infos]))


@snapshots.command("usage")
@click.argument("keys", nargs=-1)
@click.pass_obj
def snapshots_usage(obj, keys):  # type: ignore[no-untyped-def]
    """Disk usage per snapshot."""
    from pyimg import api

    with api.Store(obj.settings().root) as store:
        sn = api.snapshotter(store)
        names = list(keys) or [i.key for i in sn.walk()]
        rows = [(k, human_size(u.size), str(u.inodes)) for k in names
                for u in (sn.usage(k),)]
    click.echo(table(("KEY", "SIZE", "INODES"), rows))


@snapshots.command("rm")
@click.argument("keys", nargs=-1, required=True)
@click.pass_obj
def snapshots_rm(obj, keys):  # type: ignore[no-untyped-def]
    """Remove snapshots (refused while they have children)."""
    from pyimg import api

    with api.Store(obj.settings().root) as store:
        sn = api.snapshotter(store)
        for key in keys:
            sn.remove(key)
            click.echo(key)


COMMANDS = (unpack, mount, umount, snapshots)
