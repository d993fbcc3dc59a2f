"""The operations behind `pyimg runtime` (runc's verbs), free of any CLI library.

Both the click command group and the fast entry path (:mod:`pyimg.entry`)
call these, so a runc-style `create`/`start`/`run` does not pay for
importing click (~25 ms, most of a runc start-up).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def state_root(explicit: str | None, state: str | None) -> Path:
    if explicit:
        return Path(explicit).absolute()
    from pyimg.paths import state_dir

    return state_dir(state) / "runtime"


def _cgroup_state(root: Path, cid: str) -> Path:
    return root / cid / "cgroup-state.json"


def _hook(bundle: Path, root: Path, cid: str) -> Callable[[int], None]:
    from pyimg.runtime.cgroup_hooks import join_hook

    spec = json.loads((bundle / "config.json").read_text())
    linux = spec.get("linux") or {}
    return join_hook(linux.get("cgroupsPath") or f"/pyimg/{cid}", linux.get("resources"),
                     _cgroup_state(root, cid))


def _cleanup(root: Path, cid: str) -> Callable[[object], None]:
    """A launcher ``cgroup_cleanup``: runs before the state directory goes."""
    def cleanup(_: object) -> None:
        from pyimg.runtime.cgroup_hooks import destroy

        destroy(_cgroup_state(root, cid))

    return cleanup


def create(root: Path, bundle: Path, pid_file: Path | None, cid: str) -> None:
    from pyimg.runtime import launcher

    bundle = bundle.resolve()
    launcher.create(cid, bundle, root, pid_file=pid_file, cgroup_hook=_hook(bundle, root, cid),
                    cgroup_cleanup=_cleanup(root, cid))


def start(root: Path, cid: str) -> None:
    from pyimg.runtime import launcher

    launcher.start(cid, root)


def state(root: Path, cid: str) -> dict[str, Any]:
    from pyimg.runtime import launcher

    return launcher.state(cid, root)


def kill(root: Path, cid: str, sig: str) -> None:
    from pyimg.runtime import launcher
    from pyimg.runtime.signals import parse_signal

    launcher.kill(cid, root, parse_signal(sig))


def delete(root: Path, cid: str, force: bool) -> None:
    from pyimg.runtime import launcher

    launcher.delete(cid, root, force=force, cgroup_cleanup=_cleanup(root, cid))


def run(root: Path, bundle: Path, pid_file: Path | None, cid: str) -> int:
    from pyimg.runtime import launcher

    bundle = bundle.resolve()
    return launcher.run(cid, bundle, root, pid_file=pid_file,
                        cgroup_hook=_hook(bundle, root, cid), cgroup_cleanup=_cleanup(root, cid))
