"""``python -m bench --quick --images busybox`` runs end to end and prints a ratio row."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.registry

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_bench_quick_busybox(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--images", "busybox",
         "--scratch", str(tmp_path / "scratch"), "--out", str(tmp_path / "out")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # image, layers, compressed MB, pyimg s, skopeo s, ratio, ratio-med, RSS a, RSS b, pairs
    row = re.search(r"^busybox\s+1\s+[\d.]+\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+"
                    r"([\d.]+)\s+([\d.]+)\s+1$", proc.stdout, re.MULTILINE)
    assert row, proc.stdout
    pyimg_s, skopeo_s, ratio = (float(row.group(i)) for i in (1, 2, 3))
    assert pyimg_s > 0 and skopeo_s > 0 and ratio > 0
    assert "Targets:" in proc.stdout
    assert (tmp_path / "out" / "pull.json").is_file()


def test_bench_unpack_suites_quick_busybox(tmp_path: Path) -> None:
    """``unpack`` (vs umoci) and ``pullunpack`` (vs a private containerd) end to end."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "unpack", "pullunpack", "--quick", "--images", "busybox",
         "--scratch", str(tmp_path / "scratch"), "--out", str(tmp_path / "out")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # image, case, layers, files, MB, pyimg s, B s, ratio, ratio-med, RSS a, RSS b, cpu a, cpu b,
    # pairs
    num = r"\s+([\d.]+)"
    for case in ("dest", "bundle", "snapshots", "pull\\+unpack"):
        row = re.search(rf"^busybox\s+{case}\s+1\s+\d*{num * 9}\s+1$", proc.stdout,
                        re.MULTILINE)
        assert row, f"no busybox {case} row in:\n{proc.stdout}"
        pyimg_s, ref_s, ratio = (float(row.group(i)) for i in (2, 3, 4))
        assert pyimg_s > 0 and ref_s > 0 and ratio > 0
    assert "== unpack:" in proc.stdout and "== pullunpack:" in proc.stdout
    assert proc.stdout.count("Targets:") == 2
    for suite in ("unpack", "pullunpack"):
        assert (tmp_path / "out" / f"{suite}.json").is_file()
    # The private containerd and its root are gone.
    assert not list((tmp_path / "scratch").glob("*/ctrd-*"))
