"""Fixtures for the conformance suites.

Privileged suites say what they need: ``requires_root()`` fails loudly on a
machine without it; the suite never passes by skipping the real tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyimg.metadata import MetaStore
from pyimg.mount import mount_points_under, unmount


def requires(ok: bool, what: str) -> None:
    if ok:
        return
    # Never skip: the suite tests the real kernel (see tests/need.py).
    pytest.fail(f"this test needs {what}: run as root after 'make deps'", pytrace=False)


def requires_root() -> None:
    requires(os.geteuid() == 0, "root (mount(2), mknod, chown)")


@pytest.fixture
def meta(tmp_path: Path) -> Iterator[MetaStore]:
    with MetaStore(tmp_path / "metadata.db") as store:
        yield store


@pytest.fixture(autouse=True)
def _no_leftover_mounts(tmp_path: Path) -> Iterator[None]:
    yield
    left = mount_points_under(tmp_path)
    for point in reversed(left):  # tidy up first, so one failure does not cascade
        unmount(point, detach=True)
    assert left == [], f"test left mounts behind: {left}"
