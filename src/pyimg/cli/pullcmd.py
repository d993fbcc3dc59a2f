"""`pyimg pull` once its options are parsed.

Both front ends call :func:`pull`: the click command (:mod:`pyimg.cli.images`,
the reference, with help and usage errors) and the click-free fast path
(:mod:`pyimg.cli.fastpull`).  Import-light (see docs/design.md): what a pull
needs is imported when it runs, and only that (tqdm only for bars on a terminal).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO

    from pyimg.settings import Settings


def pull(settings: Settings, *, images: tuple[str, ...], list_file: IO[str] | None,
         platform: str | None, all_platforms: bool, jobs: int, quiet: bool, progress: str,
         unpack: bool, snapshotter: str | None) -> None:
    """Pull images from a registry, an OCI layout or a docker-archive tar into the
    store; print each image's digest (``quiet``), or its name and digest."""
    from pyimg import api
    from pyimg.cli import echo
    from pyimg.cli.progress import make_progress
    from pyimg.errors import InvalidArgument, PyimgError
    from pyimg.oci import Platform
    from pyimg.pull import PullOptions

    names = list(images) + (read_list(list_file) if list_file else [])
    if not names:
        raise InvalidArgument("pull: name at least one image, or a list with -f")
    options = PullOptions(platform=Platform.parse(platform) if platform else None,
                          all_platforms=all_platforms, jobs=jobs)
    failures: list[PyimgError] = []
    with api.Store(settings.root_dir) as store:
        for name in names:
            renderer = make_progress(progress, quiet)
            try:
                result = api.pull(store, name, settings, options, renderer, unpack=unpack,
                                  snapshotter_name=snapshotter)
            except PyimgError as exc:
                if len(names) == 1:
                    raise
                failures.append(exc)
                echo(f"pyimg: error: {exc}", err=True)
                continue
            finally:
                renderer.close()
            if progress != "json":
                echo(str(result.target.digest) if quiet else
                     f"{result.name or name}: {result.target.digest}")
    if failures:
        raise PyimgError(f"pull: {len(failures)} of {len(names)} images failed (see above)")


def read_list(f: IO[str]) -> list[str]:
    """The image names of a ``-f`` list: one a line, ``#`` comments, blanks skipped."""
    out = []
    for line in f:
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out
