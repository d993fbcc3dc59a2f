"""Every hostile layer of tests/hostile.py, end to end through `pull` + unpack.

The unit table checks the applier; here each case is an image in an OCI
layout, pulled (which unpacks) with both snapshotters: the pull must fail
with an unpack error, canaries outside must be untouched, and no half-built
snapshot or mount may remain.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pyimg import api
from pyimg.errors import UnpackError
from tests.hostile import BREAKOUTS, snapshot_outside
from tests.imagebuild import layout_from_tars

HOSTILE = [c for c in BREAKOUTS if c.expect in ("unsafe", "error")]


def _mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [ln.split()[4] for ln in f if ln.split()[4].startswith(str(path))]


@pytest.mark.parametrize("snapshotter", ["overlay", "native"])
@pytest.mark.parametrize("case", HOSTILE, ids=[c.name for c in HOSTILE])
def test_hostile_image_is_refused(tmp_path: Path, case, snapshotter: str) -> None:  # type: ignore[no-untyped-def]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "canary").write_bytes(b"canary")
    before = snapshot_outside(outside)
    layout = layout_from_tars(tmp_path / "img", case.build(str(outside)))
    settings = api.Settings(root=tmp_path / "root", config_dir=tmp_path / "cfg")
    with api.Store(settings.root) as store:
        with pytest.raises(UnpackError):
            api.pull(store, f"oci:{layout}:latest", settings, snapshotter_name=snapshotter)
        left = [i.key for i in api.snapshotter(store, snapshotter).walk()
                if i.key.startswith("extract-")]
    assert left == []
    assert snapshot_outside(outside) == before
    assert _mounts_under(tmp_path) == []
