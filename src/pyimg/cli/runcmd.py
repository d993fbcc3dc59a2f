"""`pyimg run` once its options are parsed, and the attached run `start -a` shares.

Both front ends call :func:`run`: the click command (:mod:`pyimg.cli.containers`,
the reference, with help and usage errors) and the click-free fast path
(:mod:`pyimg.cli.fastrun`).  Import-light, as everything a container start
loads (see docs/design.md): a pull imports its machinery when it happens.
"""

from __future__ import annotations

import contextlib
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import IO, Literal, NoReturn

    from pyimg.api import Store
    from pyimg.containers import Container, Containers, ShimFork
    from pyimg.fsutil import StrPath
    from pyimg.settings import Settings

#: docker's exit code for a `run` failure that is not the container's
EXIT_PYIMG = 125


@contextlib.contextmanager
def pyimg_failures() -> Iterator[None]:
    """docker's convention: a failure of pyimg itself (image that cannot be pulled,
    container that cannot be created) exits 125, so that every other code is the
    container's: a :class:`~pyimg.errors.PyimgError` becomes a ``ContainerError``."""
    from pyimg.errors import ContainerError, PyimgError

    try:
        yield
    except ContainerError:
        raise
    except PyimgError as exc:
        raise ContainerError(exc.message, hint=exc.hint) from exc


def run(settings: Settings, *, detach: bool, rm: bool, interactive: bool, tty: bool,
        name: str | None, env: tuple[str, ...], env_file: tuple[IO[str], ...],
        workdir: str | None, user: str | None, volumes: tuple[str, ...],
        tmpfs: tuple[str, ...], read_only: bool, memory: str | None, cpus: str | None,
        pids_limit: int | None, hostname: str | None, entrypoint: str | None,
        network: Literal["none", "host"], platform: str | None, image: str,
        command: tuple[str, ...], warm: int | None = None) -> NoReturn:
    """Run a command in a new container (pulls the image if missing); exits with
    the container's code (attached), or 0 once it runs (``detach``).

    ``warm``: the :mod:`~pyimg.runtime.attachwarm` child the caller started, reaped
    before exiting."""
    from pyimg.cli import echo
    from pyimg.containers import Containers, prefork_shim

    # the shim first: it imports its own modules while we import and prepare the container
    fork = prefork_shim()
    try:
        from pyimg import api
        from pyimg import run as runmod
        from pyimg.entry import finish
        from pyimg.errors import NotFound, PyimgError
        from pyimg.oci import Platform
        from pyimg.runtime import attachwarm
        from pyimg.runtime.spec import (
            RunOptions,
            parse_cpus,
            parse_size,
            parse_tmpfs,
            parse_volume,
        )

        envs = list(env) + [ln.strip() for f in env_file for ln in f
                            if ln.strip() and not ln.startswith("#")]
        options = RunOptions(
            # docker: `--entrypoint sh` is the one program sh, `--entrypoint ""` none
            args=tuple(command) or None,
            entrypoint=None if entrypoint is None else (entrypoint,) if entrypoint else (),
            env=tuple(envs), workdir=workdir,
            user=user, hostname=hostname, tty=tty, readonly_rootfs=read_only,
            memory=parse_size(memory) if memory else None,
            cpus=parse_cpus(cpus) if cpus else None, pids_limit=pids_limit, network=network,
            mounts=tuple([parse_volume(v) for v in volumes] + [parse_tmpfs(t) for t in tmpfs]))
        plat = Platform.parse(platform) if platform else None
        cs = Containers(settings.state_dir)
        # One store for the whole run: each open and close of the database costs fsyncs
        # (a new write-ahead log, then a checkpoint).  The shim, forked meanwhile,
        # never touches it (it closes every inherited descriptor).
        with api.Store(settings.root_dir) as store:
            try:
                api.resolve_local(store, image)
            except NotFound:
                api.pull(store, image, settings)
            c = runmod.create(store, cs, image, options, name=name, rm=rm, stdin=interactive,
                              platform=plat)
            try:
                if detach:
                    runmod.start(cs, c, auto_remove=rm, store_root=settings.root_dir,
                                 fork=fork)
                else:
                    code, shim_removes = attach_and_run(cs, c, interactive, tty, rm=rm,
                                                        store_root=settings.root_dir,
                                                        fork=fork)
            except BaseException:
                if rm:  # never started (or we were interrupted): don't leave it behind
                    with contextlib.suppress(PyimgError, OSError):
                        runmod.remove(store, cs, c, force=True)
                raise
            if rm and not detach:
                remove_after_run(store, cs, c, shim_removes)
    finally:
        if fork is not None:
            fork.cancel()  # (unless it has the container) it exits
    attachwarm.reap(warm)  # long done: its write waits for one grace period at most
    if detach:
        echo(c.id)
        finish(0)  # the shim has the container (and removes it with --rm)
    finish(code)  # all done: the store is closed, the container gone or detached


def remove_after_run(store: Store, cs: Containers, c: Container, shim_removes: bool) -> None:
    """--rm in the foreground: normally we took the job back from the shim and do it
    now; if that message did not get through, the shim does it (or we do once it
    is gone without having done it)."""
    from pyimg import run as runmod

    if shim_removes:
        import time

        deadline = time.monotonic() + 10
        while cs.shim_alive(c) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not os.path.exists(cs.dir(c.id)):
            return
    runmod.remove(store, cs, c, force=True)


def attach_and_run(cs: Containers, c: Container, interactive: bool, tty: bool, *, rm: bool,
                   store_root: StrPath, fork: ShimFork | None = None) -> tuple[int, bool]:
    """Run ``c`` attached; (its exit code, whether its shim still has to remove it).
    ``fork``: a shim forked earlier for it (:func:`pyimg.containers.prefork_shim`)."""
    from pyimg import run as runmod
    from pyimg.errors import FailedPrecondition

    # the shim gets --rm too, so the container goes even if this CLI is killed;
    # when all is well we take that job back (on_exit) and do it without waiting
    runmod.spawn(cs, c, auto_remove=rm, store_root=store_root, fork=fork,
                 meanwhile=lambda: _import_what_follows(rm))
    from pyimg.cli.attach import attach, forward_winsize, proxy_signals, stream
    if tty:
        forward_winsize(cs, c)
    else:
        proxy_signals(cs, c)

    shim_removes = rm

    def take_back_rm() -> None:
        nonlocal shim_removes
        if rm:
            with contextlib.suppress(FailedPrecondition, OSError):
                cs.request(c, {"op": "autoremove", "value": False}, timeout=5)
                shim_removes = False

    cs.mark_started(c)
    conn = attach(cs, c, stdin=interactive, start=True)
    code = stream(conn, cs, c, interactive=interactive, tty=tty, on_exit=take_back_rm)
    status = cs.exit_status(c) or {}
    if status.get("error"):
        from pyimg.cli import echo

        echo(f"pyimg: error: {status['error']}", err=True)
        return EXIT_PYIMG, shim_removes
    return code, shim_removes


def _import_what_follows(rm: bool) -> None:
    """Import what the attached run and its removal need, while the shim creates the
    container (on another CPU, mostly waiting for the kernel)."""
    import pyimg.cli.attach

    if rm:
        import pyimg.runtime.cgroup_hooks
        import pyimg.runtime.cgroups
        import pyimg.runtime.launcher  # noqa: F401
