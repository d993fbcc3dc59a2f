"""`pyimg [--root R] [--config C] [--state S] [--debug] pull ...` without click.

Fleets pre-seed image caches with thousands of small pulls, and importing
click and every command costs ~25 ms here, as much as a whole `skopeo copy` of
a small image.  :func:`parse` reads the command line exactly as the click
application would (:mod:`pyimg.cli.app` and the ``pull`` command in
:mod:`pyimg.cli.images`, which stay the reference), with the table-driven
reader of :mod:`pyimg.cli.fastparse` (options may follow IMAGES, as click
allows).  Help, a mistake or anything unusual returns None and goes to click,
which explains it (exit 2).  The work itself is :func:`pyimg.cli.pullcmd.pull`,
which the click command calls too.
"""

from __future__ import annotations

from pyimg.cli import fastparse
from pyimg.cli.fastparse import Unsure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: ``--progress`` and ``--snapshotter`` (``click.Choice``), ``--jobs`` (``IntRange``)
PROGRESS = ("auto", "tty", "plain", "json", "none")
SNAPSHOTTERS = ("overlay", "native")
JOBS = (1, 64)
PULL = fastparse.Command(
    "pull",
    flags={"-a": ("all_platforms", True), "--all-platforms": ("all_platforms", True),
           "-q": ("quiet", True), "--quiet": ("quiet", True),
           "--unpack": ("unpack", True), "--no-unpack": ("unpack", False)},
    values={"-f": "list_file", "--file": "list_file", "--platform": "platform",
            "-j": "jobs", "--jobs": "jobs", "--progress": "progress",
            "--snapshotter": "snapshotter"},
    defaults={"list_file": None, "platform": None, "all_platforms": False, "jobs": "4",
              "quiet": False, "progress": "auto", "unpack": True, "snapshotter": None},
    interspersed=True)


def main(args: list[str]) -> None:
    """Run ``args`` (``sys.argv[1:]``) if they are a `pyimg pull` this module reads
    as click would: the process then exits (:func:`pyimg.entry.finish`).  Returns
    when click must run them."""
    parsed = parse(args)
    if parsed is None:
        return
    group, params = parsed
    if params["list_file"] is not None:
        try:
            (params["list_file"],) = fastparse.open_text_files((params["list_file"],))
        except OSError:
            return  # click says which file and why

    def work() -> None:
        from pyimg.cli import pullcmd

        pullcmd.pull(fastparse.settings(group), **params)

    fastparse.run_like_click(work, traceback="--debug" in args)
    from pyimg.entry import finish

    finish(0)


def parse(args: list[str]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(global options as click's group gets them, the pull command's parameters,
    with ``list_file`` still a path), or None when click must decide."""
    try:
        group, params, positional = fastparse.parse(PULL, args)
    except Unsure:
        return None
    params["images"] = tuple(positional)
    try:
        params["jobs"] = fastparse.to_int(params["jobs"], *JOBS)
    except Unsure:
        return None
    if params["progress"] not in PROGRESS or params["snapshotter"] not in (None,
                                                                           *SNAPSHOTTERS):
        return None  # "... is not one of ..."
    if params["list_file"] == "-":
        return None  # stdin: click's stream
    return group, params
