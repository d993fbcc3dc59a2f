"""``pyimg check``: wasted bytes, duplicates and the score on an image built to waste.

The image (sizes are the ground truth, computed here from the tars):

* layer 0: ``big.bin`` (100000 bytes), ``dup.bin`` (50000), ``keep.txt`` (10000);
* layer 1: ``big.bin`` again (new content, 100000), ``.wh.dup.bin``, and
  ``copy.bin`` with the bytes of layer 0's ``dup.bin``.

total file bytes 310000; final image 100000 + 10000 + 50000 = 160000;
wasted 310000 - 160000 = 150000 (the first big.bin and dup.bin);
efficiency 160000 / 310000; user bytes (layers above the first) 150000, so
the wasted ratio is 150000 / 150000 = 1.0; one duplicate (dup.bin, copy.bin).
"""

from __future__ import annotations

import io
import json
import random
import tarfile
from pathlib import Path

import pytest

from pyimg.inspect import open_image
from pyimg.inspect.efficiency import Limits, check_image, violations
from pyimg.settings import Settings
from tests.cli import Pyimg, one_error_line
from tests.imagebuild import layout_from_tars, tar_of

RNG = random.Random(7)
BIG1, BIG2, DUP, KEEP = (RNG.randbytes(n) for n in (100000, 100000, 50000, 10000))
LAYERS = [
    [("big.bin", "file", BIG1), ("dup.bin", "file", DUP), ("keep.txt", "file", KEEP)],
    [("big.bin", "file", BIG2), (".wh.dup.bin", "file", b""), ("copy.bin", "file", DUP)],
]


def _ref(tmp_path: Path) -> str:
    root = layout_from_tars(tmp_path / "layout", [tar_of(x) for x in LAYERS])
    return f"oci:{root}:latest"


def _truth() -> dict[str, int]:
    """Sizes from the raw tars: all regular files, and those left in the final tree."""
    per_layer = []
    final: dict[str, int] = {}
    for layer in LAYERS:
        with tarfile.open(fileobj=io.BytesIO(tar_of(layer))) as tf:
            members = [m for m in tf if m.isfile()]
        per_layer.append(sum(m.size for m in members if not m.name.startswith(".wh.")))
        for m in members:
            if m.name.startswith(".wh."):
                final.pop(m.name[4:], None)
        for m in members:
            if not m.name.startswith(".wh."):
                final[m.name] = m.size
    return {"total": sum(per_layer), "user": sum(per_layer[1:]), "final": sum(final.values())}


def test_ground_truth_numbers() -> None:
    t = _truth()
    assert t == {"total": 310000, "user": 150000, "final": 160000}


def test_analysis_matches_ground_truth(tmp_path: Path) -> None:
    t = _truth()
    with open_image(Settings(root=tmp_path / "store"), _ref(tmp_path)) as img:
        e = check_image(img)
    assert e.layers == 2
    assert e.total_bytes == t["total"] == 310000
    assert e.final_bytes == t["final"] == 160000
    assert e.wasted_bytes == t["total"] - t["final"] == 150000
    assert e.efficiency == pytest.approx(160000 / 310000)
    assert e.user_bytes == 150000 and e.wasted_ratio == pytest.approx(1.0)
    wasted = {w.path: (w.wasted_bytes, w.layers, w.removed) for w in e.wasted}
    assert wasted == {"/big.bin": (100000, (0,), False), "/dup.bin": (50000, (0,), True)}
    assert [(d.size, d.copies) for d in e.duplicates] == [
        (50000, ((0, "/dup.bin"), (1, "/copy.bin")))]
    assert e.duplicate_bytes == 50000
    assert violations(e, Limits()) == []
    assert violations(e, Limits(150000, 1.0, 0.5)) == []
    assert len(violations(e, Limits(149999, 0.99, 0.52))) == 3


def test_same_path_twice_in_one_layer_and_opaque(tmp_path: Path) -> None:
    a, b, c = b"x" * 300, b"y" * 200, b"z" * 50
    tars = [tar_of([("d/old", "file", c), ("d/keep", "file", c)]),
            tar_of([("f", "file", a), ("f", "file", b), ("d/.wh..wh..opq", "file", b""),
                    ("d/new", "file", a)])]
    root = layout_from_tars(tmp_path / "layout", tars)
    with open_image(Settings(root=tmp_path / "store"), f"oci:{root}:latest") as img:
        e = check_image(img)
    assert e.total_bytes == 50 + 50 + 300 + 200 + 300
    assert e.final_bytes == 200 + 300  # f (second copy) and d/new
    assert e.wasted_bytes == 300 + 50 + 50
    assert {w.path for w in e.wasted} == {"/f", "/d/old", "/d/keep"}
    # d/old and d/keep share content within layer 0 only: not a cross-layer duplicate;
    # f's first copy and d/new share content within layer 1 only: same
    assert e.duplicates == ()


def test_empty_image_scores_one(tmp_path: Path) -> None:
    root = layout_from_tars(tmp_path / "layout", [tar_of([("etc", "dir", b"")])])
    with open_image(Settings(root=tmp_path / "store"), f"oci:{root}:latest") as img:
        e = check_image(img)
    assert (e.total_bytes, e.wasted_bytes, e.efficiency, e.wasted_ratio) == (0, 0, 1.0, 0.0)


# the command ------------------------------------------------------------------------


def test_check_command_reports_and_passes_without_limits(tmp_path: Path) -> None:
    p = Pyimg(tmp_path)
    ref = _ref(tmp_path)
    out = p.run("check", ref).stdout
    assert "Wasted bytes:   150000" in out and "Result: PASS" in out
    assert "/dup.bin (removed)" in out
    view = json.loads(p.run("check", "--format", "json", ref).stdout)
    assert view["wastedBytes"] == 150000 and view["totalBytes"] == 310000
    assert view["efficiency"] == pytest.approx(160000 / 310000)
    assert view["pass"] is True and view["violations"] == []


@pytest.mark.parametrize(("args", "ok"), [
    (("--max-wasted-bytes", "150000"), True),
    (("--max-wasted-bytes", "149999"), False),
    (("--min-efficiency", "0.51"), True),
    (("--min-efficiency", "0.52"), False),
    (("--max-wasted-ratio", "1.0"), True),
    (("--max-wasted-ratio", "0.99"), False),
])
def test_check_limits_exit_code(tmp_path: Path, args: tuple[str, str], ok: bool) -> None:
    p = Pyimg(tmp_path)
    ref = _ref(tmp_path)
    proc = p.run("check", *args, ref, check=False)
    if ok:
        assert proc.returncode == 0, proc.stderr
        assert "Result: PASS" in proc.stdout
        return
    assert proc.returncode == 15
    line = one_error_line(proc)
    assert {"--max-wasted-bytes": "wasted bytes 150000 > 149999",
            "--min-efficiency": "efficiency 0.5161 < 0.52",
            "--max-wasted-ratio": "wasted ratio 1.0000 > 0.99"}[args[0]] in line
    assert "Result: FAIL" in proc.stdout  # the report is still printed
    view = json.loads(p.run("check", "--format", "json", *args, ref, check=False).stdout)
    assert view["pass"] is False and len(view["violations"]) == 1
