"""What a test needs from the machine: checked, never skipped.

pyimg's suite tests the real kernel, registry and tools; a machine without
them (not root, no overlayfs, a missing Debian package) must fail loudly,
never pass by skipping.  `.ci/run` (and `make deps`) install the tools.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def need(ok: bool, what: str) -> None:
    if not ok:
        pytest.fail(f"this test needs {what}: run as root after 'make deps' (see .ci/run)",
                    pytrace=False)


def need_root() -> None:
    need(os.geteuid() == 0, "root (mount(2), mknod, chown)")


def need_overlay() -> None:
    need_root()
    need("overlay" in Path("/proc/filesystems").read_text(), "overlayfs in the kernel")


def need_tool(name: str) -> str:
    path = shutil.which(name)
    need(path is not None, f"the {name} command")
    assert path is not None
    return path
