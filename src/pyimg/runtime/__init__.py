"""Running images: OCI runtime spec generation and bundles (launcher to come).

Kept import-light: importing :mod:`pyimg.runtime` loads only the spec and
bundle modules (standard library only).
"""

from pyimg.runtime.bundle import write_bundle, write_config
from pyimg.runtime.spec import (
    MountSpec,
    RunOptions,
    default_cgroups_path,
    generate_spec,
    parse_cpus,
    parse_size,
    parse_tmpfs,
    parse_volume,
)
from pyimg.runtime.user import ResolvedUser, resolve_user

__all__ = [
    "MountSpec",
    "ResolvedUser",
    "RunOptions",
    "default_cgroups_path",
    "generate_spec",
    "parse_cpus",
    "parse_size",
    "parse_tmpfs",
    "parse_volume",
    "resolve_user",
    "write_bundle",
    "write_config",
]
