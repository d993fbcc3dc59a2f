"""`pyimg pull` from OCI layouts and docker-archive tars, and CLI conventions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.cli import Pyimg, one_error_line


def test_pull_from_oci_layout(tmp_path: Path, fixture_layouts: dict[str, Path]) -> None:
    p = Pyimg(tmp_path)
    p.run("pull", f"oci:{fixture_layouts['multilayer']}:latest")
    names = [i["name"] for i in p.images()]
    assert names == ["localhost/multilayer:latest"]
    assert len(p.blobs()) == 7  # manifest, config, 5 layers


def test_pull_multiarch_layout_selects_platform(tmp_path: Path,
                                                fixture_layouts: dict[str, Path]) -> None:
    p = Pyimg(tmp_path)
    p.run("pull", "--platform", "linux/arm64", f"oci:{fixture_layouts['multiarch']}")
    assert p.images()[0]["platforms"] == ["linux/arm64/v8"]


def test_pull_from_docker_archive_written_by_skopeo(tmp_path: Path,
                                                    fixture_layouts: dict[str, Path]) -> None:
    archive = tmp_path / "busybox.tar"
    subprocess.run(["skopeo", "--insecure-policy", "copy", "-q",
                    f"oci:{fixture_layouts['busybox']}:latest",
                    f"docker-archive:{archive}:example.com/tools/busybox:1"], check=True)
    p = Pyimg(tmp_path / "p")
    p.run("pull", f"docker-archive:{archive}")
    assert [i["name"] for i in p.images()] == ["example.com/tools/busybox:1"]
    p.blobs()


def test_missing_layout_is_one_line_not_found(tmp_path: Path) -> None:
    proc = Pyimg(tmp_path).run("pull", f"oci:{tmp_path}/nope:latest", check=False)
    assert proc.returncode == 3
    one_error_line(proc)


def test_debug_shows_traceback_and_version(tmp_path: Path) -> None:
    p = Pyimg(tmp_path)
    proc = p.run("--debug", "pull", "Bad/Name", check=False)
    assert proc.returncode == 2 and "Traceback" in proc.stderr
    assert p.run("--version").stdout.startswith("pyimg, version ")


def test_library_does_not_import_the_cli() -> None:
    code = ("import sys, pyimg.api, pyimg.pull, pyimg.remote.registry; "
            "assert not {'pyimg.cli', 'click', 'tqdm'} & set(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
