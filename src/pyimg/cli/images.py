"""pull, images, rmi, tag."""

from __future__ import annotations

import datetime
import json
import sys

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
def pull(obj, images, list_file, platform, all_platforms, jobs, quiet, progress,  # type: ignore[no-untyped-def]
         unpack, snapshotter):
    """Pull images from a registry, an OCI layout (oci:PATH[:TAG]) or a
    docker-archive tar (docker-archive:PATH[:REF]) into the store."""
    from pyimg import api
    from pyimg.cli.progress import make_progress
    from pyimg.errors import InvalidArgument, PyimgError
    from pyimg.oci import Platform
    from pyimg.pull import PullOptions

    names = list(images) + (_read_list(list_file) if list_file else [])
    if not names:
        raise InvalidArgument("pull: name at least one image, or a list with -f")
    options = PullOptions(platform=Platform.parse(platform) if platform else None,
                          all_platforms=all_platforms, jobs=jobs)
    settings = obj.settings()
    failures: list[PyimgError] = []
    with api.Store(settings.root) as store:
        for name in names:
            renderer = make_progress(progress, quiet)
            try:
                result = api.pull(store, name, settings, options, renderer, unpack=unpack,
                                  snapshotter_name=snapshotter)
            except PyimgError as exc:
                if len(names) == 1:
                    raise
                failures.append(exc)
                click.echo(f"pyimg: error: {exc}", err=True)
                continue
            finally:
                renderer.close()
            if progress != "json":
                click.echo(result.target.digest if quiet else
                           f"{result.name or name}: {result.target.digest}")
    if failures:
        raise PyimgError(f"pull: {len(failures)} of {len(names)} images failed (see above)")


def _read_list(f) -> list[str]:  # type: ignore[no-untyped-def]
    out = []
    for line in f:
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


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
