"""The ``p`` fixture of the container tests: a private store with busybox pulled."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures.registry.server import Registry
from tests.cli import Pyimg
from tests.containers import assert_clean, cgroup_dirs
from tests.need import need_root, need_tool


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


@pytest.fixture(scope="module")
def busybox(fixture_layouts: dict[str, Path]) -> Path:
    """The busybox fixture layout, for tests that build bundles with umoci and run runc."""
    need_tool("runc")
    need_tool("umoci")
    return fixture_layouts["busybox"]


@pytest.fixture(scope="module")
def rootfs_cache(busybox: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle unpacked by umoci from the busybox layout, for tests to copy."""
    from tests.integration.test_bundle_runc import _umoci_bundle

    bundle = tmp_path_factory.mktemp("busybox") / "bundle"
    _umoci_bundle(busybox, bundle)
    return bundle


@pytest.fixture
def runc(tmp_path: Path) -> Iterator[Any]:
    """``runc(bundle) -> CompletedProcess``, with a private state dir; always deletes."""
    state = tmp_path / "runc-state"
    ids: list[str] = []

    def run(bundle: Path) -> subprocess.CompletedProcess[str]:
        cid = f"pyimg-test-{uuid.uuid4().hex[:12]}"
        ids.append(cid)
        return subprocess.run(["runc", "--root", str(state), "run", "--bundle", str(bundle),
                               cid], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=60, check=False)

    try:
        yield run
    finally:
        for cid in ids:
            subprocess.run(["runc", "--root", str(state), "delete", "-f", cid],
                           capture_output=True, check=False, timeout=60)
