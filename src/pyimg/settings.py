"""Where pyimg keeps things: store root, configuration, runtime state, retries.

Import-light on purpose: `pyimg runtime` and the shim need the state
directory and nothing of the image machinery.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyimg.remote.transport import RetryPolicy


def _default_retry() -> RetryPolicy:
    from pyimg.remote.transport import RetryPolicy

    return RetryPolicy()


@dataclass(frozen=True)
class Settings:
    root: Path
    config_dir: Path | None = None
    docker_config: Path | None = None
    retry: RetryPolicy = field(default_factory=_default_retry)
    state: Path = Path("/run/pyimg")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, root: str | None = None,
                 config: str | None = None, state: str | None = None) -> Settings:
        env = os.environ if env is None else env
        is_root = os.geteuid() == 0
        home = Path(env.get("HOME", str(Path.home())))
        default_root = Path("/var/lib/pyimg") if is_root else Path(
            env.get("XDG_DATA_HOME", str(home / ".local/share"))) / "pyimg"
        default_config = Path("/etc/pyimg") if is_root else Path(
            env.get("XDG_CONFIG_HOME", str(home / ".config"))) / "pyimg"
        default_state = Path("/run/pyimg") if is_root else Path(
            env.get("XDG_RUNTIME_DIR", f"/tmp/pyimg-{os.getuid()}")) / "pyimg"
        from pyimg.remote.credentials import default_config_path
        from pyimg.remote.transport import RetryPolicy

        retry = RetryPolicy()
        if "PYIMG_RETRY_BASE" in env:  # tests make backoff fast without changing semantics
            retry = RetryPolicy(base=float(env["PYIMG_RETRY_BASE"]), cap=float(
                env["PYIMG_RETRY_BASE"]) * 4, max_retry_after=float(env.get(
                    "PYIMG_MAX_RETRY_AFTER", "60")))
        return cls(
            root=Path(root or env.get("PYIMG_ROOT") or default_root).absolute(),
            config_dir=Path(config or env.get("PYIMG_CONFIG") or default_config),
            docker_config=default_config_path(env),
            retry=retry,
            # Absolute: the launcher and the shim chdir, and runc accepts relative roots.
            state=Path(state or env.get("PYIMG_STATE") or default_state).absolute(),
        )
