"""pull, images, rmi, tag."""

from __future__ import annotations

import datetime
import json
import sys
from typing import Any

import click

from pyimg.cli.render import human_size, table


@click.command()
@click.argument("images", nargs=-1)
@click.option("-f", "--file", "list_file", type=click.File("r"), metavar="LIST",
              help="Pull every image named in LIST (one per line, # comments).")
@click.option("--platform", metavar="OS/ARCH[/VARIANT]",
              help="Platform to pull from a multi-platform image (default: this host's).")
@click.option("-a", "--all-platforms", is_flag=True, help="Pull every platform of an index.")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Blobs downloaded at once.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image digests.")
@click.option("--progress", type=click.Choice(["auto", "tty", "plain", "json", "none"]),
              default="auto", show_default=True, help="Progress output style.")
@click.option("--unpack/--no-unpack", default=True, show_default=True,
              help="Extract layers into snapshots while they download.")
@click.option("--snapshotter", type=click.Choice(["overlay", "native"]),
              help="Snapshotter for unpacking (default: overlay when supported).")
@click.pass_obj
def pull(obj: Any, /, **params: Any) -> None:
    """Pull images from a registry, an OCI layout (oci:PATH[:TAG]) or a
    docker-archive tar (docker-archive:PATH[:REF]) into the store."""
    from pyimg.cli import pullcmd

    pullcmd.pull(obj.settings(), **params)


@click.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="Only digests.")
@click.pass_obj
def images(obj, fmt, quiet):  # type: ignore[no-untyped-def]
    """List stored images."""
    from pyimg import api

    with api.Store(obj.settings().root) as store:
        summaries = api.list_images(store)
    if quiet:
        for s in summaries:
            click.echo(s.target.digest)
    elif fmt == "json":
        json.dump([{
            "name": s.name, "digest": str(s.target.digest), "mediaType": s.target.media_type,
            "size": s.size, "platforms": list(s.platforms),
            "created": _iso(s.created_at)} for s in summaries], sys.stdout, indent=2)
        click.echo()
    else:
        rows = [(s.name, s.target.digest.short, ",".join(s.platforms), human_size(s.size),
                 _iso(s.created_at)) for s in summaries]
        click.echo(table(("NAME", "DIGEST", "PLATFORMS", "SIZE", "PULLED"), rows))


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def rmi(obj, names):  # type: ignore[no-untyped-def]
    """Remove image names (blobs are reclaimed by gc)."""
    from pyimg import api

    with api.Store(obj.settings().root) as store:
        for name in names:
            for removed in api.remove_image(store, name):
                click.echo(f"Untagged: {removed}")


@click.command()
@click.argument("source")
@click.argument("target")
@click.pass_obj
def tag(obj, source, target):  # type: ignore[no-untyped-def]
    """Give a stored image another name."""
    from pyimg import api

    with api.Store(obj.settings().root) as store:
        api.tag_image(store, source, target)


COMMANDS = (pull, images, rmi, tag)
