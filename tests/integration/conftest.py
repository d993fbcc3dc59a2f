"""The ``p`` fixture of the container tests: a private store with busybox pulled."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.registry.server import Registry
from tests.cli import Pyimg
from tests.containers import assert_clean, cgroup_dirs
from tests.need import need_root


@pytest.fixture
def p(tmp_path: Path, registry: Registry) -> Iterator[Pyimg]:
    """busybox pulled from the session registry; at the end every container is
    removed and nothing may be left: mounts, cgroups, processes."""
    need_root()
    before = cgroup_dirs()
    pyimg = Pyimg(tmp_path, env={"PYIMG_STATE": str(tmp_path / "state")})
    pyimg.image = f"{registry.host}/pyimg/busybox"  # type: ignore[attr-defined]
    pyimg.run("pull", "-q", pyimg.image)  # type: ignore[attr-defined]
    yield pyimg
    for cid in pyimg.run("ps", "-a", "-q", check=False).stdout.split():
        pyimg.run("rm", "-f", cid, check=False)
    assert_clean(tmp_path, before)
