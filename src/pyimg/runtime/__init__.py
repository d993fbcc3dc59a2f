"""Running images: runtime spec, bundles, the launcher (init), cgroups, seccomp,
the shim.

Kept import-free on purpose: the container init (``python -m
pyimg.runtime.init``) is a fresh interpreter on every container start, and
importing the spec machinery here would cost it ~30 ms.  The names below
are loaded on first use.
"""

from __future__ import annotations

from importlib import import_module

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_LAZY = {
    "MountSpec": "spec", "RunOptions": "spec", "default_cgroups_path": "spec",
    "generate_spec": "spec", "parse_cpus": "spec", "parse_size": "spec",
    "parse_tmpfs": "spec", "parse_volume": "spec",
    "ResolvedUser": "user", "resolve_user": "user",
    "write_bundle": "bundle", "write_config": "bundle",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pyimg.runtime' has no attribute {name!r}")
    return getattr(import_module(f"pyimg.runtime.{module}"), name)
