"""Image inspection verbs: layers, ls, cat, diff, check (and the image half of ``inspect``).

``inspect`` itself is registered in :mod:`pyimg.cli.containers` (docker's
verb covers containers and images); it calls :func:`show_image` here.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from pyimg.cli.render import human_size, table

if TYPE_CHECKING:
    from pyimg.inspect import ImageHandle, ImageInfo, LayerStats, MergedTree, Node

_REMOTE_HELP = "Read from the registry even when the image is in the store."
_PLATFORM_HELP = "Platform of a multi-platform image (default: this host's)."


def _open(obj: Any, ref: str, remote: bool) -> ImageHandle:
    from pyimg.inspect import open_image

    return open_image(obj.settings(), ref, remote=True if remote else None)


def _platform(text: str | None) -> Any:
    from pyimg.oci import Platform

    return Platform.parse(text) if text else None


# inspect -------------------------------------------------------------------------


def show_image(obj: Any, ref: str, *, fmt: str, raw: str | None, platform: str | None,
               field: str | None, remote: bool) -> None:
    """``pyimg inspect REF`` for an image: documents only, never a layer."""
    from pyimg.inspect import inspect_image

    with _open(obj, ref, remote) as handle:
        info = inspect_image(handle, _platform(platform))
    if raw is not None:
        data = {"manifest": info.raw_root, "config": info.raw_config}[raw]
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    render_view(info.to_json(), fmt, field, lambda: _image_text(info))


def render_view(view: Any, fmt: str, field: str | None, text: Any = None) -> None:
    """Print ``view`` as JSON, through a ``{{...}}`` template, one ``--field``, or as text."""
    from pyimg.errors import InvalidArgument
    from pyimg.inspect.select import field_text, is_template, render_template, select_field

    if field is not None:
        click.echo(field_text(select_field(view, field)))
    elif is_template(fmt):
        click.echo(render_template(fmt, view))
    elif fmt == "json":
        click.echo(json.dumps(view, indent=2))
    elif fmt == "table" and text is not None:
        click.echo(text())
    else:
        raise InvalidArgument(f"invalid --format {fmt!r}: use json, table or a '{{{{.Field}}}}'"
                              " template")


def _image_text(info: ImageInfo) -> str:
    c = info.config
    rows: list[tuple[str, str]] = [
        ("Name", info.name), ("Source", info.source), ("Digest", str(info.digest)),
        ("MediaType", info.media_type)]
    if info.platforms:
        rows.append(("Platforms", ", ".join(p.platform or "(none)" for p in info.platforms)))
        rows.append(("Manifest", f"{info.manifest.digest} ({info.manifest.media_type})"))
    rows += [
        ("Created", info.created or ""), ("Platform", str(info.platform)),
        ("Entrypoint", _argv(c.entrypoint)), ("Cmd", _argv(c.cmd)),
        ("WorkingDir", c.working_dir), ("User", c.user),
        ("ExposedPorts", " ".join(c.exposed_ports)), ("Volumes", " ".join(c.volumes)),
        ("StopSignal", c.stop_signal),
    ]
    rows += [("Env", e) for e in c.env]
    rows += [("Label", f"{k}={v}") for k, v in sorted(c.labels.items())]
    width = max(len(k) for k, _ in rows) + 1
    lines = [f"{k + ':':<{width}} {v}".rstrip() for k, v in rows]
    lines.append("")
    lines.append(f"Layers: {len(info.layers)}, {human_size(sum(x.size for x in info.layers))}"
                 " compressed")
    lines.append(table(("#", "DIGEST", "MEDIA TYPE", "SIZE"),
                       [(str(x.index), str(x.digest), x.media_type, human_size(x.size))
                        for x in info.layers]))
    if info.history:
        lines.append("")
        lines.append("History:")
        lines.append(table(("LAYER", "CREATED", "CREATED BY"),
                           [("-" if h.layer is None else str(h.layer), h.created or "",
                             _short(h.created_by, 80)) for h in info.history]))
    return "\n".join(lines)


def _argv(argv: tuple[str, ...] | None) -> str:
    return "" if argv is None else json.dumps(list(argv))


def _short(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n - 3] + "..."


# layers ---------------------------------------------------------------------------


@click.command()
@click.argument("ref")
@click.option("--format", "fmt", default="table", show_default=True,
              help="table, json, or a '{{.Field}}' template applied to each layer.")
@click.option("--platform", metavar="OS/ARCH[/VARIANT]", help=_PLATFORM_HELP)
@click.option("--remote", is_flag=True, help=_REMOTE_HELP)
@click.pass_obj
def layers(obj, ref, fmt, platform, remote):  # type: ignore[no-untyped-def]
    """One row per layer: created by, sizes, file counts, what it adds, changes, deletes.

    Reads every layer once as a tar stream (from the store, or straight from
    the registry for a remote image) without extracting it."""
    from pyimg.inspect import layer_stats
    from pyimg.inspect.select import is_template, render_template

    with _open(obj, ref, remote) as handle:
        stats = list(layer_stats(handle, _platform(platform)))
    if fmt == "json":
        click.echo(json.dumps([s.to_json() for s in stats], indent=2))
    elif is_template(fmt):
        for s in stats:
            click.echo(render_template(fmt, s.to_json()))
    elif fmt == "table":
        click.echo(_layers_table(stats))
    else:
        from pyimg.errors import InvalidArgument

        raise InvalidArgument(f"invalid --format {fmt!r}: use table, json or a template")


def _layers_table(stats: list[LayerStats]) -> str:
    rows = [(str(s.index), s.digest.short, human_size(s.compressed_size),
             human_size(s.uncompressed_size), str(s.delta.files), str(s.delta.added),
             str(s.delta.changed), str(s.delta.deleted), _short(s.created_by, 50))
            for s in stats]
    return table(("#", "DIGEST", "SIZE", "UNCOMPRESSED", "FILES", "ADDED", "CHANGED", "DELETED",
                  "CREATED BY"), rows)


# ls -------------------------------------------------------------------------------


@click.command("ls")
@click.argument("ref")
@click.argument("path", default="/")
@click.option("-R", "--recursive", is_flag=True, help="List subdirectories too.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.option("--platform", metavar="OS/ARCH[/VARIANT]", help=_PLATFORM_HELP)
@click.option("--remote", is_flag=True, help=_REMOTE_HELP)
@click.pass_obj
def ls(obj, ref, path, recursive, fmt, platform, remote):  # type: ignore[no-untyped-def]
    """List the image's final filesystem (whiteouts applied) with each entry's layer."""
    from pyimg.inspect import build_tree

    with _open(obj, ref, remote) as handle:
        tree, docs = build_tree(handle, _platform(platform))
    digests = [str(x.digest) for x in docs.manifest.layers]
    entries = list(tree.walk(path.strip("/"), recursive=recursive))
    if fmt == "json":
        click.echo(json.dumps([_entry_json(tree, p, n, digests) for p, n in entries],
                              indent=2))
        return
    rows = [(n.mode_string, f"{n.uid}:{n.gid}", str(_size(tree, n)), str(n.layer),
             _entry_name(p, n)) for p, n in entries]
    click.echo(table(("MODE", "OWNER", "SIZE", "LAYER", "PATH"), rows))


def _size(tree: MergedTree, n: Node) -> int:
    return tree.hardlink_size(n) if n.kind == "hardlink" else n.size


def _entry_name(path: str, n: Node) -> str:
    if n.kind == "symlink":
        return f"/{path} -> {n.target}"
    if n.kind == "hardlink":
        return f"/{path} link to /{n.target}"
    return f"/{path}/" if n.is_dir else f"/{path}"


def _entry_json(tree: MergedTree, path: str, n: Node, digests: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"path": "/" + path, "type": n.kind, "mode": oct(n.mode & 0o7777),
                           "uid": n.uid, "gid": n.gid, "size": _size(tree, n),
                           "mtime": n.mtime, "layer": n.layer,
                           "layerDigest": digests[n.layer] if 0 <= n.layer < len(digests)
                           else None}
    if n.kind in ("symlink", "hardlink"):
        out["target"] = n.target if n.kind == "symlink" else "/" + n.target
    return out


# cat --------------------------------------------------------------------------------


@click.command()
@click.argument("ref")
@click.argument("path")
@click.option("--platform", metavar="OS/ARCH[/VARIANT]", help=_PLATFORM_HELP)
@click.option("--remote", is_flag=True, help=_REMOTE_HELP)
@click.pass_obj
def cat(obj, ref, path, platform, remote):  # type: ignore[no-untyped-def]
    """Print one file of the image, from the topmost layer that has it.

    Layers above it are streamed to their end (their whiteouts decide); the
    layer holding the file only up to it.  Symlinks and hardlinks are followed."""
    from pyimg.inspect import read_file

    out = sys.stdout.buffer
    with _open(obj, ref, remote) as handle:
        for chunk in read_file(handle, path, _platform(platform)):
            out.write(chunk)
    out.flush()



# diff ---------------------------------------------------------------------------------


@click.command()
@click.argument("ref_a")
@click.argument("ref_b")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.option("--platform", metavar="OS/ARCH[/VARIANT]", help=_PLATFORM_HELP)
@click.option("--remote", is_flag=True, help=_REMOTE_HELP)
@click.option("--layer-a", type=int, metavar="N",
              help="Compare REF_A's tree as it stands after its layer N (0-based).")
@click.option("--layer-b", type=int, metavar="N",
              help="Compare REF_B's tree as it stands after its layer N (0-based).")
@click.pass_obj
def diff(obj, ref_a, ref_b, fmt, platform, remote, layer_a, layer_b):  # type: ignore[no-untyped-def]
    """Entries added, removed and changed from REF_A's final tree to REF_B's.

    Changed: type, mode, uid/gid, size, link target or content digest differ
    (mtimes are ignored). Both images are streamed once, file data hashed.
    Two layers of one image: `pyimg diff IMG IMG --layer-a 1 --layer-b 2`."""
    from pyimg.inspect.diff import diff_trees
    from pyimg.inspect.efficiency import content_walk

    plat = _platform(platform)
    with _open(obj, ref_a, remote) as handle:
        a = content_walk(handle, plat, upto=layer_a)
    with _open(obj, ref_b, remote) as handle:
        b = content_walk(handle, plat, upto=layer_b)
    result = diff_trees(a, b)
    if fmt == "json":
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    rows = []
    for c in result.changes:
        mark = {"added": "A", "removed": "D", "changed": "C"}[c.status]
        if c.before is not None and c.after is not None:
            size = f"{c.before.size} -> {c.after.size}"
        else:
            size = str((c.after or c.before).size)  # type: ignore[union-attr]
        rows.append((mark, size, ",".join(c.fields), c.path))
    click.echo(table(("", "SIZE", "CHANGED", "PATH"), rows))
    s = result.to_json()["summary"]
    click.echo(f"{s['added']['count']} added ({human_size(s['added']['bytes'])}),"
               f" {s['removed']['count']} removed ({human_size(s['removed']['bytes'])}),"
               f" {s['changed']['count']} changed")


# check --------------------------------------------------------------------------------


@click.command()
@click.argument("ref")
@click.option("--max-wasted-bytes", type=click.IntRange(min=0), metavar="N",
              help="Fail when more than N bytes are wasted (dive: highestWastedBytes).")
@click.option("--max-wasted-ratio", type=click.FloatRange(min=0), metavar="R",
              help="Fail when wasted bytes / bytes of the layers above the first exceed R"
                   " (dive: highestUserWastedPercent).")
@click.option("--min-efficiency", type=click.FloatRange(0, 1), metavar="E",
              help="Fail when the efficiency score is below E (dive: lowestEfficiency).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.option("--top", type=click.IntRange(min=0), default=20, show_default=True,
              help="Rows of wasted paths and duplicates in the table report.")
@click.option("--platform", metavar="OS/ARCH[/VARIANT]", help=_PLATFORM_HELP)
@click.option("--remote", is_flag=True, help=_REMOTE_HELP)
@click.pass_obj
def check(obj, ref, max_wasted_bytes, max_wasted_ratio, min_efficiency, fmt, top,  # type: ignore[no-untyped-def]
          platform, remote):
    """Efficiency analysis like dive: wasted bytes, duplicate content, a score.

    Without limits it only reports. With limits it exits 15 and says which
    were crossed (the report still goes to stdout). See docs/design.md,
    "How the efficiency score is computed"."""
    from pyimg.errors import CheckFailed
    from pyimg.inspect.efficiency import Limits, check_image, violations

    with _open(obj, ref, remote) as handle:
        result = check_image(handle, _platform(platform))
    limits = Limits(max_wasted_bytes, max_wasted_ratio, min_efficiency)
    failed = violations(result, limits)
    if fmt == "json":
        view = result.to_json()
        view["limits"] = {"maxWastedBytes": max_wasted_bytes, "maxWastedRatio": max_wasted_ratio,
                          "minEfficiency": min_efficiency}
        view["pass"] = not failed
        view["violations"] = failed
        click.echo(json.dumps(view, indent=2))
    else:
        click.echo(_check_text(result, failed, top))
    if failed:
        raise CheckFailed(f"{ref}: " + "; ".join(failed))


def _check_text(e: Any, failed: list[str], top: int) -> str:
    lines = [
        f"Efficiency:     {e.efficiency:.4f}",
        f"Wasted bytes:   {e.wasted_bytes} ({human_size(e.wasted_bytes)})",
        f"Wasted ratio:   {e.wasted_ratio:.4f}",
        f"File bytes:     {e.total_bytes} in {e.layers} layers, {e.final_bytes} in the"
        " final image",
        f"Duplicates:     {len(e.duplicates)} ({e.duplicate_bytes} extra bytes)",
    ]
    if e.wasted:
        lines += ["", "Wasted (copies not in the final image):",
                  table(("BYTES", "COPIES", "LAYERS", "PATH"),
                        [(str(w.wasted_bytes), str(w.copies), ",".join(map(str, w.layers)),
                          w.path + (" (removed)" if w.removed else ""))
                         for w in e.wasted[:top]])]
    if e.duplicates:
        lines += ["", "Duplicate content across layers:",
                  table(("SIZE", "COPIES", "DIGEST", "PATHS"),
                        [(str(d.size), str(len(d.copies)), d.digest[:19],
                          " ".join(f"{p}@{layer}" for layer, p in d.copies))
                         for d in e.duplicates[:top]])]
    lines += ["", "Result: " + ("FAIL: " + "; ".join(failed) if failed else "PASS")]
    return "\n".join(lines)


COMMANDS = (layers, ls, cat, diff, check)
