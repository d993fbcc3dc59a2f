"""``pyimg diff`` between the fixture images, and on hand-built layouts.

Ground truth: the fixture layouts' layer tars are read with plain tarfile
(:func:`tests.integration.test_inspect.truth`), independently of pyimg.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli import Pyimg
from tests.imagebuild import layout_from_tars, tar_of
from tests.integration.test_inspect import truth


def test_diff_busybox_to_multilayer(tmp_path: Path, fixture_layouts: dict[str, Path]) -> None:
    p = Pyimg(tmp_path)
    for name in ("busybox", "multilayer"):
        p.run("pull", "--no-unpack", f"oci:{fixture_layouts[name]}:latest")
    view = json.loads(p.run("diff", "--format", "json", "localhost/busybox:latest",
                            "localhost/multilayer:latest").stdout)
    by_status: dict[str, set[str]] = {"added": set(), "removed": set(), "changed": set()}
    for c in view["changes"]:
        by_status[c["status"]].add(c["path"])
    _, base = truth(fixture_layouts["busybox"])
    _, final = truth(fixture_layouts["multilayer"])
    assert by_status["added"] == {"/" + q for q in final.keys() - base.keys()}
    assert {"/data/a.txt", "/usr/local/bin/hello", "/links/z-hardlink",
            "/opq/new1"} <= by_status["added"]
    assert not {"/data/todelete.txt", "/opq/old1"} & by_status["added"]
    assert by_status["removed"] == set()
    assert view["summary"]["removed"] == {"count": 0, "bytes": 0}
    hello = next(c for c in view["changes"] if c["path"] == "/usr/local/bin/hello")
    assert hello["after"]["size"] == len("#!/bin/sh\necho hello from pyimg\n")
    assert hello["after"]["mode"] == "0o755" and hello["after"]["digest"].startswith("sha256:")
    # the other way round, the same paths are removed; an image against itself: nothing
    back = json.loads(p.run("diff", "--format", "json", "localhost/multilayer:latest",
                            "localhost/busybox:latest").stdout)
    assert {c["path"] for c in back["changes"] if c["status"] == "removed"} == \
        by_status["added"]
    same = json.loads(p.run("diff", "--format", "json", "localhost/busybox:latest",
                            f"oci:{fixture_layouts['busybox']}:latest").stdout)
    assert same["changes"] == []
    table = p.run("diff", "localhost/busybox:latest", "localhost/multilayer:latest").stdout
    assert "/usr/local/bin/hello" in table and " 0 removed" in table


def test_diff_detects_each_kind_of_change(tmp_path: Path) -> None:
    a = layout_from_tars(tmp_path / "a", [tar_of([
        ("same", "file", "x" * 10), ("content", "file", "aaaa"), ("grow", "file", "1"),
        ("link", "symlink", "same"), ("gone", "file", "bye"), ("kind", "file", "f")])])
    b = layout_from_tars(tmp_path / "b", [tar_of([
        ("same", "file", "x" * 10), ("content", "file", "bbbb"), ("grow", "file", "12"),
        ("link", "symlink", "content"), ("new", "file", "hi"), ("kind", "dir", b"")])])
    p = Pyimg(tmp_path)
    view = json.loads(p.run("diff", "--format", "json", f"oci:{a}:latest",
                            f"oci:{b}:latest").stdout)
    got = {c["path"]: (c["status"], tuple(c.get("fields", ()))) for c in view["changes"]}
    assert got == {
        "/content": ("changed", ("content",)),
        "/grow": ("changed", ("size", "content")),
        "/link": ("changed", ("target",)),
        "/kind": ("changed", ("type", "mode", "size", "content")),
        "/gone": ("removed", ()),
        "/new": ("added", ()),
    }
    assert view["summary"]["added"] == {"count": 1, "bytes": 2}
    assert view["summary"]["removed"] == {"count": 1, "bytes": 3}


def test_diff_between_two_layers_of_one_image(tmp_path: Path,
                                              fixture_layouts: dict[str, Path]) -> None:
    """Layer 2 of the multilayer fixture rewrites a.txt, deletes todelete.txt with a
    whiteout and makes /opq opaque with only new1 in it."""
    p = Pyimg(tmp_path)
    p.run("pull", "--no-unpack", f"oci:{fixture_layouts['multilayer']}:latest")
    ref = "localhost/multilayer:latest"
    out = json.loads(p.run("diff", ref, ref, "--layer-a", "1", "--layer-b", "2",
                           "--format", "json").stdout)
    status = {c["path"]: c["status"] for c in out["changes"]}
    assert status == {"/data/a.txt": "changed", "/data/todelete.txt": "removed",
                      "/opq/old1": "removed", "/opq/old2": "removed", "/opq/new1": "added"}
    bad = p.run("diff", ref, ref, "--layer-a", "9", check=False)
    assert bad.returncode == 2 and "layers 0 to 4" in bad.stderr
