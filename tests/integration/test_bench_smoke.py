"""``python -m bench --quick --images busybox`` runs end to end and prints a ratio row."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.need import need_root, need_tool

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


def test_bench_runtime_suite_quick(tmp_path: Path) -> None:
    """``runtime`` (launcher vs runc/crun, ``pyimg run --rm`` vs ``ctr run --rm``) end to end:
    a row per case, every run exited 0, nothing left in the scratch dir."""
    need_root()
    for tool in ("runc", "unshare", "containerd", "ctr", "docker-registry"):
        need_tool(tool)
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "runtime", "--quick",
         "--scratch", str(tmp_path / "scratch"), "--out", str(tmp_path / "out")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # case, pyimg s, ref s, ratio, ratio-med, RSS a, RSS b, cpu a, cpu b, pairs
    num = r"\s+([\d.]+)"
    cases = ["launcher-runc", "run-rm"]
    if "launcher-crun: unavailable:" not in proc.stdout:
        cases.append("launcher-crun")
    for case in cases:
        row = re.search(rf"^{case}{num * 8}\s+2$", proc.stdout, re.MULTILINE)
        assert row, f"no {case} row in:\n{proc.stdout}"
        pyimg_s, ref_s, ratio = (float(row.group(i)) for i in (1, 2, 3))
        assert pyimg_s > 0 and ref_s > 0 and ratio > 0
    assert "== runtime:" in proc.stdout and "FAILED" not in proc.stdout
    assert re.search(r"^Targets: launcher <= 1\.5x runc: (PASS|FAIL) \([\d.]+\); "
                     r"pyimg run --rm <= 0\.8x ctr run --rm: (PASS|FAIL) \([\d.]+\)$",
                     proc.stdout, re.MULTILINE), proc.stdout
    doc = json.loads((tmp_path / "out" / "runtime.json").read_text())
    assert {r["case"] for r in doc["results"]} == set(cases)
    for r in doc["results"]:
        assert all(m["returncode"] == 0 for m in r["runs"])
    # The private containerd, its root and every container's state are gone.
    assert not list((tmp_path / "scratch").glob("runtime-*"))


def test_bench_inspect_suite_quick(tmp_path: Path) -> None:
    """``inspect`` (remote pyimg inspect vs skopeo inspect) end to end."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "inspect", "--quick", "--images", "busybox",
         "--scratch", str(tmp_path / "scratch"), "--out", str(tmp_path / "out")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = re.search(r"^busybox\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", proc.stdout, re.MULTILINE)
    assert row and all(float(row.group(i)) > 0 for i in (1, 2, 3)), proc.stdout
