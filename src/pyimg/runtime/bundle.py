"""OCI bundles: a private directory with ``rootfs/`` and ``config.json``.

The bundle directory is 0700, as umoci makes it: the rootfs may hold setuid
binaries and device-owned files that other users of the host must not reach.
``config.json`` is written atomically (temporary file, fsync, rename, fsync
of the directory), so a runtime never reads half a spec.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat

from pyimg.errors import FailedPrecondition
from pyimg.fsutil import atomic_write

TYPE_CHECKING = False  # `pyimg run` writes config.json through here: no typing, pathlib
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from pyimg.fsutil import StrPath
    from pyimg.oci import ImageConfig
    from pyimg.runtime.spec import RunOptions

CONFIG_NAME = "config.json"


def _private_dir(path: Path, mode: int) -> None:
    """Create ``path`` (parents too) or check an existing one, then chmod ``mode``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, mode)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise FailedPrecondition(f"cannot create bundle: {path} exists and is not a directory",
                                 hint="remove it or choose another bundle path")
    os.chmod(path, mode)


def write_config(bundle: StrPath, spec: dict[str, object]) -> Path:
    """Write ``spec`` as ``bundle/config.json`` atomically; returns its path."""
    from pathlib import Path

    return Path(save_config(bundle, spec))


def save_config(bundle: StrPath, spec: dict[str, object], *, durable: bool = True) -> str:
    """:func:`write_config` without pathlib; ``durable=False`` skips the fsyncs, for a
    bundle under the runtime state directory (`pyimg run`'s), which a reboot
    discards anyway."""
    target = os.path.join(bundle, CONFIG_NAME)
    # 0600: env values in the spec may be secrets.
    atomic_write(target, json.dumps(spec, indent=2).encode() + b"\n", 0o600, durable=durable)
    return target


def write_bundle(bundle: Path, config: ImageConfig,
                 rootfs_ready: Callable[[Path], None] | None,
                 options: RunOptions | None = None) -> Path:
    """Create the bundle at ``bundle`` and return the path of its ``config.json``.

    The directory is created (mode 0700) or an existing one is reused and made
    0700; ``rootfs/`` is created when missing.  ``rootfs_ready(rootfs)`` is then
    called to fill the rootfs (pass None when it is already filled, e.g. a
    bind-mounted snapshot); the spec is generated afterwards because the user
    is resolved from the rootfs' ``/etc/passwd``.
    """
    from pathlib import Path

    from pyimg.runtime.spec import ROOTFS_DIR, RunOptions, generate_spec

    bundle = Path(bundle)
    _private_dir(bundle, 0o700)
    rootfs = bundle / ROOTFS_DIR
    with contextlib.suppress(FileExistsError):
        os.mkdir(rootfs, 0o755)
    if not stat.S_ISDIR(os.lstat(rootfs).st_mode):
        raise FailedPrecondition(f"cannot create bundle: {rootfs} is not a directory")
    if rootfs_ready is not None:
        rootfs_ready(rootfs)
    spec = generate_spec(config, rootfs, options if options is not None else RunOptions())
    return write_config(bundle, spec)
