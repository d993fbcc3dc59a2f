"""save, load."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("images", nargs=-1, required=True)
@click.option("-o", "--output", required=True, metavar="PATH",
              help="Where to write: a directory, or a tar when PATH ends in .tar"
                   " (docker-archive is always a tar).")
@click.option("--format", "fmt", type=click.Choice(["oci", "docker-archive"]), default="oci",
              show_default=True, help="OCI image layout, or the layout `docker save` writes.")
@click.pass_obj
def save(obj, images, output, fmt):  # type: ignore[no-untyped-def]
    """Write stored images to an OCI layout (dir or .tar) or a docker-archive tar."""
    from pyimg import api, saveload

    with api.Store(obj.settings().root) as store:
        saveload.save(store, list(images), Path(output), fmt)


@click.command()
@click.option("-i", "--input", "path", required=True, metavar="PATH",
              help="An OCI layout directory, an OCI layout tar or a docker-archive tar.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on success.")
@click.pass_obj
def load(obj, path, quiet):  # type: ignore[no-untyped-def]
    """Load every image of an OCI layout or docker-archive into the store (verified)."""
    from pyimg import api, saveload

    with api.Store(obj.settings().root) as store:
        loaded = saveload.load(store, Path(path))
    if quiet:
        return
    for image in loaded:
        for name in image.names:
            click.echo(f"Loaded image: {name}")
        if not image.names:
            click.echo(f"Loaded image ID: {image.target.digest}")


COMMANDS = (save, load)
