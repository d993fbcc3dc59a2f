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
        from pyimg import paths
        from pyimg.remote.credentials import default_config_path
        from pyimg.remote.transport import RetryPolicy

        env = os.environ if env is None else env
        retry = RetryPolicy()
        if "PYIMG_RETRY_BASE" in env:  # tests make backoff fast without changing semantics
            retry = RetryPolicy(base=float(env["PYIMG_RETRY_BASE"]), cap=float(
                env["PYIMG_RETRY_BASE"]) * 4, max_retry_after=float(env.get(
                    "PYIMG_MAX_RETRY_AFTER", "60")))
        return cls(
            root=Path(root or env.get("PYIMG_ROOT") or paths.default_root(env)).absolute(),
            config_dir=Path(config or env.get("PYIMG_CONFIG") or paths.default_config(env)),
            docker_config=default_config_path(env),
            retry=retry,
            # Absolute: the launcher and the shim chdir, and runc accepts relative roots.
            state=paths.state_dir(state, env),
        )
