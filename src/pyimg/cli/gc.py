"""prune (alias gc) and df."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from pyimg.cli.render import human_size


def _prune(obj: Any, dry_run: bool, fmt: str) -> None:
    from pyimg import api
    from pyimg.gc import gc as run_gc

    with api.Store(obj.settings().root) as store:
        r = run_gc(store, dry_run=dry_run)
    if fmt == "json":
        json.dump({"dryRun": r.dry_run, "blobs": r.blobs, "blobBytes": r.blob_bytes,
                   "snapshots": r.snapshots, "snapshotBytes": r.snapshot_bytes,
                   "ingests": r.ingests, "ingestBytes": r.ingest_bytes,
                   "reclaimed": r.reclaimed}, sys.stdout, indent=2)
        click.echo()
        return
    verb = "Would remove" if dry_run else "Removed"
    for d in r.blobs:
        click.echo(f"{verb} blob {d}")
    for s in r.snapshots:
        click.echo(f"{verb} snapshot {s}")
    for i in r.ingests:
        click.echo(f"{verb} ingest {i}")
    click.echo(f"{'Reclaimable' if dry_run else 'Reclaimed'}: {human_size(r.reclaimed)}")


@click.command("prune")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.pass_obj
def prune(obj, dry_run, fmt):  # type: ignore[no-untyped-def]
    """Remove every blob and snapshot no image, container or pull references."""
    _prune(obj, dry_run, fmt)


@click.command("gc", hidden=True)
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.pass_obj
def gc(obj, dry_run, fmt):  # type: ignore[no-untyped-def]
    """Alias of prune."""
    _prune(obj, dry_run, fmt)


@click.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.pass_obj
def df(obj, fmt):  # type: ignore[no-untyped-def]
    """Space used by blobs, snapshots and containers, and what prune would reclaim."""
    from pyimg import api
    from pyimg.gc import df as _df

    with api.Store(obj.settings().root) as store:
        u = _df(store)
    if fmt == "json":
        json.dump({"blobs": u.blobs, "blobBytes": u.blob_bytes, "snapshots": u.snapshots,
                   "snapshotBytes": u.snapshot_bytes, "containers": u.containers,
                   "containerBytes": u.container_bytes,
                   "reclaimable": u.reclaimable.reclaimed}, sys.stdout, indent=2)
        click.echo()
        return
    click.echo(f"{'TYPE':<12}{'COUNT':>8}{'SIZE':>12}")
    click.echo(f"{'blobs':<12}{u.blobs:>8}{human_size(u.blob_bytes):>12}")
    click.echo(f"{'snapshots':<12}{u.snapshots:>8}{human_size(u.snapshot_bytes):>12}")
    click.echo(f"{'containers':<12}{u.containers:>8}{human_size(u.container_bytes):>12}")
    click.echo(f"Reclaimable: {human_size(u.reclaimable.reclaimed)}")


COMMANDS = (prune, gc, df)
