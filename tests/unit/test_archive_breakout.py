"""Hostile layers (tests/hostile.py BREAKOUTS): refused, or harmless inside the root.

Whatever happens, the canary directory beside the root, the rest of
tmp_path and the host's /etc are unchanged.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from pyimg.archive import WhiteoutMode
from pyimg.archive.apply import apply_layer
from pyimg.errors import UnpackError, UnsafeEntryError
from tests.hostile import BREAKOUTS, Breakout, snapshot_outside

HOST_CANARY = "/etc/pyimg-breakout-canary"  # never pre-existing; see hostile.py
CASES = [pytest.param(case, mode, id=f"{case.name}-{mode}")
         for case in BREAKOUTS for mode in case.modes]


def test_corpus_is_big_enough() -> None:
    assert len(BREAKOUTS) >= 25


@pytest.mark.parametrize(("case", "mode"), CASES)
def test_breakout(tmp_path: Path, case: Breakout, mode: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "canary").write_bytes(b"canary")
    (tmp_path / "sibling-canary").write_bytes(b"canary")
    root = tmp_path / "root"
    root.mkdir()
    before = snapshot_outside(outside)
    listing = sorted(os.listdir(tmp_path))
    etc_before = snapshot_outside(Path("/etc")) if case.name.startswith(("etc", "abs-sym")) \
        else None

    layers = case.build(str(outside))
    outcome = "ok"
    try:
        for tar in layers:
            apply_layer(io.BytesIO(tar), "none", root, whiteouts=WhiteoutMode(mode))
    except UnsafeEntryError as exc:
        outcome = "unsafe"
        assert exc.member and exc.reason
    except UnpackError:
        outcome = "error"

    assert outcome == case.expect
    if outcome == "ok" and case.check is not None:
        case.check(root, outside)
    assert snapshot_outside(outside) == before
    assert (tmp_path / "sibling-canary").read_bytes() == b"canary"
    assert sorted(os.listdir(tmp_path)) == listing
    assert os.stat(outside / "canary").st_nlink == 1
    if os.path.lexists(HOST_CANARY):  # a regression wrote to the host: undo, then fail
        os.unlink(HOST_CANARY)
        pytest.fail(f"layer wrote {HOST_CANARY} on the host")
    if etc_before is not None:
        assert snapshot_outside(Path("/etc")) == etc_before
