"""Default locations, as ARCHITECTURE.md lays them out (stdlib only, no imports
of the rest of pyimg: the runtime's fast path needs just the state directory)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or Path.home())


def default_root(env: Mapping[str, str]) -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/pyimg")
    return Path(env.get("XDG_DATA_HOME") or _home(env) / ".local/share") / "pyimg"


def default_config(env: Mapping[str, str]) -> Path:
    if os.geteuid() == 0:
        return Path("/etc/pyimg")
    return Path(env.get("XDG_CONFIG_HOME") or _home(env) / ".config") / "pyimg"


def default_state(env: Mapping[str, str]) -> Path:
    if os.geteuid() == 0:
        return Path("/run/pyimg")
    return Path(env.get("XDG_RUNTIME_DIR") or f"/tmp/pyimg-{os.getuid()}") / "pyimg"


def state_dir(explicit: str | None = None, env: Mapping[str, str] | None = None) -> Path:
    """``--state``, else ``$PYIMG_STATE``, else the default; always absolute."""
    env = os.environ if env is None else env
    return Path(explicit or env.get("PYIMG_STATE") or default_state(env)).absolute()
