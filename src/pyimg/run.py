"""`pyimg run` and friends: an image → snapshot → bundle → shim → container.

The rootfs is an active overlay snapshot on the image's chain, mounted at
``bundle/rootfs``; the shim runs the container detached and keeps its
logs and exit status; every later command talks to the shim's socket or
reads what it wrote.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time

from pyimg.containers import Container, Containers
from pyimg.errors import FailedPrecondition, NotFound
from pyimg.runtime.signals import parse_signal

TYPE_CHECKING = False  # import-light: no typing, dataclasses or pathlib on `pyimg run`
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from pyimg.api import Store
    from pyimg.containers import ShimFork
    from pyimg.digest import Digest
    from pyimg.fsutil import StrPath
    from pyimg.oci import Descriptor, ImageConfig, Platform
    from pyimg.runtime.spec import RunOptions
    from pyimg.snapshotters import Snapshotter

STOP_TIMEOUT = 10.0


def snapshot_key(c: Container) -> str:
    return f"container:{c.id}"


def create(store: Store, containers: Containers, image: str, options: RunOptions, *,
           name: str | None = None, rm: bool = False, stdin: bool = False,
           platform: Platform | None = None) -> Container:
    """Prepare the rootfs snapshot, mount it, write the bundle; no process yet."""
    ready = _unpacked(store, image, platform)
    if ready is not None:
        try:
            return _create(store, containers, image, options, ready, name=name, rm=rm,
                           stdin=stdin, guessed=True)
        except _NoOverlay:
            pass  # overlay worked for this store once, not now: probe and decide as below
    from pyimg import api

    unpacked = api.unpack_image(store, image, platform=platform)
    parts = api.local_parts(store, image, platform)
    return _create(store, containers, image, options,
                   (parts.config, api.snapshotter(store), str(unpacked.chain_id)),
                   name=name, rm=rm, stdin=stdin, guessed=False)


class _NoOverlay(Exception):
    """The overlay snapshotter, chosen without a probe, cannot mount here."""


def _create(store: Store, containers: Containers, image: str, options: RunOptions,
            ready: tuple[ImageConfig, Snapshotter, str], *, name: str | None, rm: bool,
            stdin: bool, guessed: bool) -> Container:
    from pyimg.mount import mount_all
    from pyimg.runtime.bundle import save_config
    from pyimg.runtime.spec import generate_spec

    config, sn, chain_id = ready
    cid, name = containers.new_id(name)
    options = options.replace(hostname=options.hostname or cid[:12],
                              cgroups_path=options.cgroups_path or f"/pyimg/{cid}")
    stop_signal = config.config.get("StopSignal")
    c = Container(cid, name, image, chain_id, sn.name, [], time.time(), rm=rm,
                  tty=options.tty, stdin=stdin,
                  stop_signal=stop_signal if isinstance(stop_signal, str) else "")
    bundle = os.path.join(containers.dir(cid), "bundle")
    rootfs = os.path.join(bundle, "rootfs")
    os.makedirs(rootfs, 0o700)
    os.chmod(bundle, 0o700)
    mounts = sn.prepare(snapshot_key(c), chain_id)
    try:
        try:
            mount_all(mounts, rootfs)
        except OSError as exc:
            if guessed and sn.name == "overlay":
                raise _NoOverlay from exc
            raise
        spec = generate_spec(config, rootfs, options)
        save_config(bundle, spec, durable=False)  # under the state directory
        c.command = list(spec["process"]["args"])
        linux = spec.get("linux", {})
        with open(os.path.join(containers.dir(cid), "cgroup.json"), "w") as f:
            f.write(json.dumps({"cgroupsPath": linux.get("cgroupsPath"),
                                "resources": linux.get("resources")}))
        containers.save(c)
    except BaseException:
        _release_rootfs(store, c, containers)
        containers.forget(c)
        raise
    return c


_SNAPSHOT_LABEL = "containerd.io/gc.ref.snapshot."  # + snapshotter: chain id (api.unpack_image)


def _unpacked(store: Store, image: str, platform: Platform | None
              ) -> tuple[ImageConfig, Snapshotter, str] | None:
    """(config, snapshotter, chain id) when ``image`` is unpacked already, else None.

    What `api.unpack_image` would find, without importing the unpack machinery
    or probing overlay support (a real overlay mount, 7-35 ms): the image config
    carries the chain id of its snapshot per snapshotter (the gc label), and the
    snapshot is committed.  The snapshotter is ``$PYIMG_SNAPSHOTTER``, else
    overlay: an overlay chain in this store means overlay mounts worked here (and
    if not any more, :func:`create` falls back to probing).  Anything unusual
    (no label, another platform, a native-only store) → None: the full path.
    """
    from pyimg import api
    from pyimg.snapshotters import Kind

    sn_name = os.environ.get("PYIMG_SNAPSHOTTER") or "overlay"
    if sn_name not in ("overlay", "native"):
        return None
    try:
        config = _image_config(store, api.resolve_local(store, image).target, platform)
        if config is None:
            return None
        with store.meta.transaction() as tx:
            chain_id = tx.labels(config[0]).get(_SNAPSHOT_LABEL + sn_name)
        if not chain_id:
            return None
        sn = api.snapshotter(store, sn_name)
        if sn.stat(chain_id).kind is not Kind.COMMITTED:
            return None
    except NotFound:
        return None
    return config[1], sn, chain_id


def _image_config(store: Store, target: Descriptor, platform: Platform | None
                  ) -> tuple[Digest, ImageConfig] | None:
    """(config digest, config) of ``target`` for ``platform`` (host default) when the
    store has it (None: let the unpacker say what is wrong)."""
    from pyimg.errors import PyimgError
    from pyimg.imageparts import image_parts

    try:
        parts = image_parts(store.content, target, platform)
    except PyimgError:
        return None
    return parts.manifest.config.digest, parts.config


def start(containers: Containers, c: Container, *, auto_remove: bool = False,
          store_root: StrPath | None = None, fork: ShimFork | None = None) -> None:
    """Start the shim (which creates the container), then let it run.

    ``auto_remove``: the shim removes the container once it has exited.  ``fork``:
    a shim forked earlier (:func:`pyimg.containers.prefork_shim`) to use.
    """
    spawn(containers, c, auto_remove=auto_remove, store_root=store_root, fork=fork)
    containers.mark_started(c)
    containers.request(c, {"op": "start"})


def spawn(containers: Containers, c: Container, *, auto_remove: bool = False,
          store_root: StrPath | None = None, fork: ShimFork | None = None,
          meanwhile: Callable[[], object] | None = None) -> None:
    """A fresh shim for ``c``: the container is created, not started yet
    (``fork``, ``meanwhile``: see :meth:`Containers.spawn_shim`).

    A container that ran before (``pyimg start``) gets a new run on the same
    bundle and mounted rootfs: the old runtime state and cgroup go, the logs stay.
    """
    if containers.status(c) == "running":
        raise FailedPrecondition(f"container {c.name} is already running")
    d = containers.dir(c.id)
    if containers.exit_status(c) is not None or os.path.exists(os.path.join(d, "started")):
        _cleanup_run(containers, c)
        containers.reset(c)
    containers.spawn_shim(c, os.path.join(d, "cgroup.json"), auto_remove=auto_remove,
                          store_root=store_root, fork=fork, meanwhile=meanwhile)


def _cleanup_run(containers: Containers, c: Container) -> None:
    """What a finished run leaves besides its logs: runtime state, processes, cgroup."""
    from pyimg.runtime import launcher

    with contextlib.suppress(NotFound, FailedPrecondition):
        launcher.delete(c.id, containers.runtime_root, force=True)
    _destroy_cgroup(containers, c)


def wait(containers: Containers, c: Container) -> dict[str, Any]:
    status = containers.exit_status(c)
    if status is not None:
        return status
    try:
        return containers.request(c, {"op": "wait"})
    except FailedPrecondition:
        # The shim is exiting: its exit.json is written before it closes the socket.
        deadline = time.monotonic() + 5
        while (status := containers.exit_status(c)) is None and time.monotonic() < deadline:
            if not containers.shim_alive(c):
                break
            time.sleep(0.02)
        if status is None:
            raise
        return status


def kill(containers: Containers, c: Container, sig: int = signal.SIGKILL) -> None:
    if containers.status(c) != "running":
        raise FailedPrecondition(f"container {c.name} is not running")
    containers.request(c, {"op": "kill", "signal": int(sig)})


def stop(containers: Containers, c: Container, timeout: float = STOP_TIMEOUT,
         stop_signal: int | None = None) -> None:
    """The image's stop signal, then SIGKILL after ``timeout`` seconds (docker stop)."""
    if containers.status(c) != "running":
        return
    if stop_signal is None:
        stop_signal = parse_signal(c.stop_signal) if c.stop_signal else signal.SIGTERM
    with contextlib.suppress(FailedPrecondition):
        containers.request(c, {"op": "kill", "signal": int(stop_signal)})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if containers.exit_status(c) is not None:
            return
        time.sleep(0.05)
    with contextlib.suppress(FailedPrecondition):
        containers.request(c, {"op": "kill", "signal": int(signal.SIGKILL)})
    wait(containers, c)


def remove(store: Store, containers: Containers, c: Container, *, force: bool = False) -> None:
    """Delete the container: processes, cgroup, mounts, snapshot, state."""
    from pyimg.runtime import launcher

    if containers.status(c) == "running":
        if not force:
            raise FailedPrecondition(f"container {c.name} is running",
                                     hint="stop it first or use rm -f")
        with contextlib.suppress(FailedPrecondition):  # a shim dying meanwhile
            stop(containers, c, timeout=0)
    # the shim may be gone (killed): the launcher's state still names init
    # (pidfd, start time checked) and cgroup-state.json the cgroup to empty
    with contextlib.suppress(NotFound, FailedPrecondition):
        launcher.delete(c.id, containers.runtime_root, force=True)
    _destroy_cgroup(containers, c)
    _kill_shim(containers, c)
    _release_rootfs(store, c, containers)
    containers.forget(c)


def _kill_shim(containers: Containers, c: Container) -> None:
    """A shim still up after its container is gone (stuck, or lingering) must not
    write into a state directory that is about to be removed."""
    if containers.exit_status(c) is not None:
        return  # it finished its job (and may be removing the container for --rm)
    with contextlib.suppress(OSError, ValueError):
        with open(os.path.join(containers.dir(c.id), "shim.pid")) as f:
            pid = int(f.read())
        fd = os.pidfd_open(pid)
        try:  # checked after the pidfd is open: that pid cannot be reused meanwhile
            if containers.shim_alive(c):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        finally:
            os.close(fd)


def _destroy_cgroup(containers: Containers, c: Container) -> None:
    from pyimg.runtime.cgroup_hooks import destroy
    from pyimg.runtime.shim import CGROUP_STATE

    destroy(os.path.join(containers.dir(c.id), CGROUP_STATE))


def _release_rootfs(store: Store, c: Container, containers: Containers) -> None:
    from pyimg import api
    from pyimg.mount import unmount

    rootfs = os.path.join(containers.dir(c.id), "bundle", "rootfs")
    if os.path.exists(rootfs):
        unmount(rootfs)
    sn = api.snapshotter(store, c.snapshotter or None)
    with contextlib.suppress(NotFound):
        sn.remove(snapshot_key(c))


def logs_path(containers: Containers, c: Container) -> str:
    return os.path.join(containers.dir(c.id), "log.json")
