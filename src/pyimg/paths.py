"""Default locations, as ARCHITECTURE.md lays them out (stdlib only, no imports
of the rest of pyimg, and strings rather than pathlib: the runtime's fast path
needs just the state directory, and pathlib costs it ~4 ms to import)."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path


def _home(env: Mapping[str, str]) -> str:
    return env.get("HOME") or os.path.expanduser("~")


def default_root(env: Mapping[str, str]) -> str:
    if os.geteuid() == 0:
        return "/var/lib/pyimg"
    return os.path.join(env.get("XDG_DATA_HOME") or os.path.join(_home(env), ".local/share"),
                        "pyimg")


def default_config(env: Mapping[str, str]) -> str:
    if os.geteuid() == 0:
        return "/etc/pyimg"
    return os.path.join(env.get("XDG_CONFIG_HOME") or os.path.join(_home(env), ".config"),
                        "pyimg")


def default_state(env: Mapping[str, str]) -> str:
    if os.geteuid() == 0:
        return "/run/pyimg"
    return os.path.join(env.get("XDG_RUNTIME_DIR") or f"/tmp/pyimg-{os.getuid()}", "pyimg")


def state_path(explicit: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """``--state``, else ``$PYIMG_STATE``, else the default; always absolute."""
    env = os.environ if env is None else env
    return os.path.abspath(explicit or env.get("PYIMG_STATE") or default_state(env))


def state_dir(explicit: str | None = None, env: Mapping[str, str] | None = None) -> Path:
    """:func:`state_path` as a :class:`~pathlib.Path`."""
    from pathlib import Path

    return Path(state_path(explicit, env))
