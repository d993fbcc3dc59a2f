"""Inspection on hand-built layouts: merged tree, layer deltas, cat, verification."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pyimg import api
from pyimg.errors import (
    DigestMismatch,
    FailedPrecondition,
    IntegrityError,
    InvalidArgument,
    NotFound,
    SizeMismatch,
)
from pyimg.inspect import (
    SourceReader,
    StoreReader,
    build_tree,
    inspect_image,
    layer_stats,
    open_image,
    read_file,
)
from pyimg.pull import PullOptions
from pyimg.settings import Settings
from tests.imagebuild import layout_from_tars, tar_of

WH = ""  # whiteouts are empty files named .wh.NAME


def _layout(tmp_path: Path, layers: list[list[tuple[str, str, bytes | str]]], **kw: object
            ) -> str:
    root = layout_from_tars(tmp_path / "layout", [tar_of(x) for x in layers], **kw)  # type: ignore[arg-type]
    return f"oci:{root}:latest"


def _settings(tmp_path: Path) -> Settings:
    return Settings(root=tmp_path / "store")


def _tree(tmp_path: Path, ref: str) -> dict[str, tuple[str, int]]:
    with open_image(_settings(tmp_path), ref) as img:
        tree, _ = build_tree(img)
    return {p: (n.kind, n.layer) for p, n in tree.walk("", recursive=True)}


def _cat(tmp_path: Path, ref: str, path: str) -> bytes:
    with open_image(_settings(tmp_path), ref) as img:
        return b"".join(read_file(img, path))


LAYERS: list[list[tuple[str, str, bytes | str]]] = [
    [("a", "dir", ""), ("a/x", "file", "x0"), ("a/y", "file", "y0"), ("a/sub", "dir", ""),
     ("a/sub/z", "file", "z0"), ("d", "dir", ""), ("d/old", "file", "old"),
     ("real", "dir", ""), ("real/f", "file", "real f"), ("gone", "dir", ""),
     ("gone/deep", "file", "deep"), ("t", "file", "target data")],
    # whiteouts written AFTER what this layer adds: they only hide lower content
    [("a/x", "file", "x1"), ("a/.wh.x", "file", WH), ("d/new", "file", "new"),
     ("d/.wh..wh..opq", "file", WH), (".wh.gone", "file", WH), ("link", "symlink", "real"),
     ("h", "hardlink", "t"), ("a/sub", "file", "now a file")],
]


def test_tree_applies_whiteouts_order_independently(tmp_path: Path) -> None:
    tree = _tree(tmp_path, _layout(tmp_path, LAYERS))
    assert tree["a/x"] == ("file", 1)  # rewritten by layer 1; its whiteout hit the lower one
    assert tree["a/y"] == ("file", 0)
    assert tree["a/sub"] == ("file", 1) and "a/sub/z" not in tree
    assert [p for p in tree if p.startswith("d/")] == ["d/new"]
    assert "gone" not in tree and "gone/deep" not in tree
    assert tree["link"] == ("symlink", 1) and tree["h"] == ("hardlink", 1)


def test_layer_deltas(tmp_path: Path) -> None:
    with open_image(_settings(tmp_path), _layout(tmp_path, LAYERS)) as img:
        stats = list(layer_stats(img))
    first, second = (s.delta for s in stats)
    assert (first.files, first.dirs, first.added, first.changed, first.deleted) == (7, 5, 7, 0, 0)
    # a/x changed; d/new, link, h added, a/sub (a dir below) added;
    # deleted: d/old (opaque), gone/deep (whiteout), a/sub/z (dir replaced by a file)
    assert (second.files, second.whiteouts) == (5, 3)
    assert (second.added, second.changed, second.deleted) == (4, 1, 3)
    assert second.deleted_bytes == len("old") + len("deep") + len("z0")
    assert stats[0].uncompressed_size % 512 == 0 and stats[1].diff_id != stats[0].diff_id


def test_cat_follows_links_and_whiteouts(tmp_path: Path) -> None:
    ref = _layout(tmp_path, LAYERS)
    assert _cat(tmp_path, ref, "/a/x") == b"x1"
    assert _cat(tmp_path, ref, "a/y") == b"y0"
    assert _cat(tmp_path, ref, "/link/f") == b"real f"  # symlinked directory
    assert _cat(tmp_path, ref, "/link/../t") == b"target data"
    assert _cat(tmp_path, ref, "/h") == b"target data"  # hardlink into the lower layer
    assert _cat(tmp_path, ref, "/a/sub") == b"now a file"
    with pytest.raises(NotFound, match="whiteout"):
        _cat(tmp_path, ref, "/gone/deep")
    with pytest.raises(NotFound, match="opaque"):
        _cat(tmp_path, ref, "/d/old")
    with pytest.raises(NotFound, match="no such file"):
        _cat(tmp_path, ref, "/nope")
    with pytest.raises(NotFound, match="not a directory"):
        _cat(tmp_path, ref, "/a/sub/z")
    with pytest.raises(InvalidArgument, match="is a directory"):
        _cat(tmp_path, ref, "/a")


def test_symlink_loops_are_refused(tmp_path: Path) -> None:
    ref = _layout(tmp_path, [[("l1", "symlink", "l2"), ("l2", "symlink", "/l1")]])
    with pytest.raises(InvalidArgument, match="too many"):
        _cat(tmp_path, ref, "/l1")


def test_inspect_reads_documents_only(tmp_path: Path) -> None:
    ref = _layout(tmp_path, LAYERS)
    with open_image(_settings(tmp_path), ref) as img:
        assert isinstance(img.reader, SourceReader)
        info = inspect_image(img)
        fetched = [d.media_type for d in img.reader.fetched]
    assert fetched == ["application/vnd.oci.image.manifest.v1+json",
                       "application/vnd.oci.image.config.v1+json"]
    assert hashlib.sha256(info.raw_root).hexdigest() == info.digest.hex
    assert hashlib.sha256(info.raw_config).hexdigest() == info.config_descriptor.digest.hex
    assert info.config.cmd == ("sh",) and len(info.layers) == 2
    assert not (tmp_path / "store").exists()


def test_wrong_diff_id_and_corrupt_config_are_integrity_errors(tmp_path: Path) -> None:
    bad = "sha256:" + "0" * 64
    ref = _layout(tmp_path, LAYERS[:1], diff_ids=[bad])
    with open_image(_settings(tmp_path), ref) as img, pytest.raises(IntegrityError):
        list(layer_stats(img))
    layout = Path(ref[4:].rpartition(":")[0])
    manifest = json.loads((layout / "index.json").read_text())["manifests"][0]
    man = json.loads((layout / "blobs/sha256" / manifest["digest"][7:]).read_bytes())
    cfg = layout / "blobs/sha256" / man["config"]["digest"][7:]
    cfg.chmod(0o644)
    cfg.write_bytes(cfg.read_bytes().replace(b"amd64", b"AMD64").replace(b"arm64", b"ARM64"))
    with open_image(_settings(tmp_path), ref) as img, pytest.raises(DigestMismatch):
        inspect_image(img)


def test_layer_count_mismatch(tmp_path: Path) -> None:
    ref = _layout(tmp_path, LAYERS, diff_ids=["sha256:" + "1" * 64])
    with open_image(_settings(tmp_path), ref) as img, pytest.raises(FailedPrecondition):
        list(layer_stats(img))


def test_local_image_is_read_from_the_store(tmp_path: Path) -> None:
    ref = _layout(tmp_path, LAYERS)
    settings = _settings(tmp_path)
    with api.Store(settings.root) as store:
        api.pull(store, ref, settings, PullOptions(), unpack=False)
    with open_image(settings, "localhost/layout:latest") as img:
        assert img.local and isinstance(img.reader, StoreReader)
        info = inspect_image(img)
        assert info.source == "store" and info.local
        assert [s.delta.added for s in layer_stats(img)] == [7, 4]
        assert b"".join(read_file(img, "/link/f")) == b"real f"
    with open_image(settings, f"sha256:{info.digest.hex[:12]}") as img:
        assert img.local
    with pytest.raises(NotFound):
        open_image(settings, "localhost/other:latest", remote=False)


def test_layer_blob_is_verified_when_streamed_from_a_source(tmp_path: Path) -> None:
    ref = _layout(tmp_path, LAYERS[:1])
    layout = Path(ref[4:].rpartition(":")[0])
    manifest = json.loads((layout / "index.json").read_text())["manifests"][0]
    man = json.loads((layout / "blobs/sha256" / manifest["digest"][7:]).read_bytes())
    blob = layout / "blobs/sha256" / man["layers"][0]["digest"][7:]
    blob.write_bytes(blob.read_bytes() + bytes(64))  # gzip tolerates the padding; sizes don't
    with open_image(_settings(tmp_path), ref) as img, pytest.raises(SizeMismatch):
        list(layer_stats(img))


def test_ls_shows_symlinks_and_follows_them_to_directories(tmp_path: Path) -> None:
    with open_image(_settings(tmp_path), _layout(tmp_path, LAYERS)) as img:
        tree, _ = build_tree(img)
    assert [(p, n.kind) for p, n in tree.walk("link")] == [("real/f", "file")]
    ref = _layout(tmp_path / "2", [[("t", "file", "x"), ("s", "symlink", "t")]])
    with open_image(_settings(tmp_path), ref) as img:
        tree, _ = build_tree(img)
    assert [(p, n.kind) for p, n in tree.walk("/s")] == [("s", "symlink")]
    with pytest.raises(NotFound):
        list(tree.walk("/missing"))


def test_history_skips_empty_layer_steps() -> None:
    from pyimg.inspect.image import created_by_layer, history_entries

    steps = history_entries(({"created_by": "ADD rootfs"}, {"created_by": "ENV A=1",
                                                            "empty_layer": True},
                             {"created_by": "CMD [sh]", "empty_layer": True},
                             {"created_by": "RUN make"}, {"comment": "no created_by"}))
    assert [s.layer for s in steps] == [0, None, None, 1, 2]
    assert created_by_layer(steps) == {0: "ADD rootfs", 1: "RUN make", 2: ""}
