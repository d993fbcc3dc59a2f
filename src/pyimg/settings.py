"""Where pyimg keeps things: store root, configuration, runtime state, retries.

Import-light on purpose: `pyimg run`, `pyimg runtime` and the shim need the
store and state directories and nothing of the image machinery -- not even
pathlib (~3 ms to import here): paths are kept as strings, and the public
attributes make :class:`~pathlib.Path` objects of them when asked.
"""

from __future__ import annotations

import os

from pyimg import paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from pyimg.fsutil import StrPath
    from pyimg.remote.transport import RetryPolicy


def _path(text: str | None) -> Path | None:
    if text is None:
        return None
    from pathlib import Path

    return Path(text)


class Settings:
    """Store root, configuration directory, docker ``config.json``, retries, state
    directory.  Immutable; ``root``, ``config_dir``, ``docker_config`` and ``state``
    are :class:`~pathlib.Path` objects (``root_dir``, ``config_location``,
    ``docker_config_location`` and ``state_dir`` the strings)."""

    __slots__ = ("_config_dir", "_docker_config", "_retry", "_retry_args", "_root", "_state")
    _root: str
    _config_dir: str | None
    _docker_config: str | None
    _state: str
    _retry: RetryPolicy | None  # made on first use (remote.transport is for registries)
    _retry_args: tuple[float, float, float] | None  # base, cap, max_retry_after

    def __init__(self, root: StrPath, config_dir: StrPath | None = None,
                 docker_config: StrPath | None = None, retry: RetryPolicy | None = None,
                 state: StrPath = "/run/pyimg") -> None:
        for name, value in (("_root", root), ("_config_dir", config_dir),
                            ("_docker_config", docker_config), ("_state", state)):
            object.__setattr__(self, name, None if value is None else os.fspath(value))
        object.__setattr__(self, "_retry", retry)
        object.__setattr__(self, "_retry_args", None)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, root: str | None = None,
                 config: str | None = None, state: str | None = None) -> Settings:
        env = os.environ if env is None else env
        retry_args = None
        if "PYIMG_RETRY_BASE" in env:  # tests make backoff fast without changing semantics
            retry_args = (float(env["PYIMG_RETRY_BASE"]), float(env["PYIMG_RETRY_BASE"]) * 4,
                          float(env.get("PYIMG_MAX_RETRY_AFTER", "60")))
        settings = cls(
            root=absolute(root or env.get("PYIMG_ROOT") or paths.default_root(env)),
            config_dir=config or env.get("PYIMG_CONFIG") or paths.default_config(env),
            docker_config=docker_config_path(env),
            # Absolute: the launcher and the shim chdir, and runc accepts relative roots.
            state=paths.state_path(state, env),
        )
        object.__setattr__(settings, "_retry_args", retry_args)
        return settings

    @property
    def retry(self) -> RetryPolicy:
        if self._retry is None:
            from pyimg.remote.transport import RetryPolicy

            retry = RetryPolicy()
            if self._retry_args is not None:
                base, cap, max_retry_after = self._retry_args
                retry = RetryPolicy(base=base, cap=cap, max_retry_after=max_retry_after)
            object.__setattr__(self, "_retry", retry)
        assert self._retry is not None
        return self._retry

    @property
    def root(self) -> Path:
        from pathlib import Path

        return Path(self._root)

    @property
    def config_dir(self) -> Path | None:
        return _path(self._config_dir)

    @property
    def docker_config(self) -> Path | None:
        return _path(self._docker_config)

    @property
    def state(self) -> Path:
        from pathlib import Path

        return Path(self._state)

    @property
    def root_dir(self) -> str:
        """The store root, as a string."""
        return self._root

    @property
    def state_dir(self) -> str:
        """The runtime state directory, as a string."""
        return self._state

    @property
    def config_location(self) -> str | None:
        """The configuration directory (``certs.d/``), as a string."""
        return self._config_dir

    @property
    def docker_config_location(self) -> str | None:
        """Docker's ``config.json``, as a string."""
        return self._docker_config

    def _values(self) -> tuple[object, ...]:
        return (self._root, self._config_dir, self._docker_config, self.retry, self._state)

    def __eq__(self, other: object) -> bool:
        if type(other) is not Settings:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        return (f"Settings(root={self.root!r}, config_dir={self.config_dir!r},"
                f" docker_config={self.docker_config!r}, retry={self.retry!r},"
                f" state={self.state!r})")

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Settings is immutable: cannot set {name}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("Settings is immutable")


def absolute(path: str) -> str:
    """``path`` made absolute as :meth:`pathlib.Path.absolute` does (no ``..`` folding)."""
    return path if os.path.isabs(path) else os.path.join(os.getcwd(), path)


def docker_config_path(env: Mapping[str, str]) -> str:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    config_dir = env.get("DOCKER_CONFIG")
    if config_dir:
        return os.path.join(config_dir, "config.json")
    home = env.get("HOME")
    if not home:  # Path.home()
        home = os.path.expanduser("~")
        if home[:1] == "~":
            raise RuntimeError("Could not determine home directory.")
    return os.path.join(home, ".docker", "config.json")
