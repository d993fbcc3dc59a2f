"""Unpack suites: ``unpack`` (vs umoci), ``pullunpack`` (vs containerd) and ``floor``.

``unpack`` — unpack only: pyimg vs ``umoci unpack`` from the same OCI layout.
    Untimed setup per image: ``pyimg pull --no-unpack oci:<layout>:latest``
    into a content-only store (stored as ``localhost/<layout dir>:latest``).
    Three cases per image, each A B A B against ``umoci unpack --image
    <layout>:latest <fresh>/bundle`` (a bundle: rootfs/ + config.json, plus
    umoci's mtree manifest):

    * ``dest``      A = ``pyimg unpack --dest <fresh>/rootfs NAME``
    * ``bundle``    A = ``pyimg unpack --bundle <fresh>/bundle NAME``
    * ``snapshots`` A = ``pyimg unpack NAME`` into the store's snapshotter
      (overlay, layers in parallel) from a store without snapshots: a fresh
      ``cp -a`` of the pristine content-only store per run (untimed).

``pullunpack`` — pull + unpack end to end: ``pyimg pull`` (unpacks by default)
    into a fresh store vs ``ctr image pull --plain-http`` (overlayfs) against a
    private containerd (:mod:`bench.containerd`), from one plain-HTTP
    ``docker-registry`` on loopback.  Every ctr run uses a never-used namespace
    and the previous runs' images, content and snapshots are deleted (and
    garbage collected from disk) first; the run is refused unless no blob of
    the image and no snapshot is left on disk.  ctr's RSS/CPU columns are the
    client's only; the daemon's CPU per run is reported separately.

``floor`` — the tools' floor: ``zcat LAYER | tar -x -C <fresh>`` (bash, pipefail)
    of the image's largest layer vs ``pyimg unpack --dest`` of the whole image.
    Images whose largest layer is < 90 % of the compressed total also get a
    ``floor-all`` case (every layer, in order, into the same dir).

Every run's result is checked (untimed) against the layer tars: the same
regular files, bytes, symlinks and directories.  ``sync`` runs before every
timed run (bench.core).  Durability differs per tool; the suites probe it with
``strace -f -c`` (sync-family syscalls) once on the smallest image and print
the counts under the table.

Targets (provisional, same shape as the pull suite's): pyimg/reference
median pair ratio <= 1.0 on every image (``unpack``: dest and snapshots cases;
``pullunpack``), pyimg peak RSS < 100 MB.  ``floor`` is informational.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import zstandard

from .core import (
    MB,
    PYIMG,
    BenchError,
    Case,
    CaseResult,
    interleave,
    missing_tools,
    rss_mb,
    rss_target,
    stderr_log,
)
from .pull import (
    FIXTURE_CACHE,
    _version,
    environment,
    layout_info,
    prepare,
)

if TYPE_CHECKING:
    from .containerd import Containerd

DEFAULT_IMAGES = ("busybox", "manylayer", "smallfiles", "large")
DEFAULT_RUNS = 5
RUNS_OVERRIDE = {"large": 3, "smallfiles": 3}
TARGET_RATIO = 1.0
TARGET_RSS_MB = 100.0
FLOOR_ALL_SHARE = 0.9
SYNC_CALLS = "fsync,fdatasync,syncfs,sync,sync_file_range,msync"


# -- the image: layers and the expected tree ---------------------------------

@dataclass(frozen=True)
class Layer:
    digest: str
    media_type: str
    size: int
    path: Path


@dataclass(frozen=True)
class Image:
    name: str
    layout: Path
    layers: tuple[Layer, ...]
    digests: tuple[str, ...]        # manifest, config and layers (containerd cold check)

    @property
    def compressed(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def largest(self) -> Layer:
        return max(self.layers, key=lambda layer: layer.size)


def load_image(name: str, layout: Path) -> Image:
    blobs = layout / "blobs" / "sha256"
    index = json.loads((layout / "index.json").read_text())
    mdesc = index["manifests"][0]
    doc = json.loads((blobs / mdesc["digest"].split(":", 1)[1]).read_text())
    if "layers" not in doc:  # an index: the first manifest
        mdesc = doc["manifests"][0]
        doc = json.loads((blobs / mdesc["digest"].split(":", 1)[1]).read_text())
    layers = tuple(Layer(d["digest"], d["mediaType"], int(d["size"]),
                         blobs / d["digest"].split(":", 1)[1]) for d in doc["layers"])
    digests = (mdesc["digest"], doc["config"]["digest"], *(layer.digest for layer in layers))
    return Image(name, layout, layers, digests)


@dataclass(frozen=True)
class Tree:
    """What a check compares: counts of each kind and the regular files' bytes."""

    files: int
    file_bytes: int
    symlinks: int
    dirs: int

    def __str__(self) -> str:
        return (f"{self.files} files / {self.file_bytes} B, {self.symlinks} symlinks, "
                f"{self.dirs} dirs")


def _open_layer(layer: Layer) -> IO[bytes]:
    raw = layer.path.open("rb")
    if layer.media_type.endswith("gzip"):
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    if layer.media_type.endswith("zstd"):
        return zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
    return raw


def expected_tree(image: Image) -> Tree:
    """Apply the layers' tar headers (with whiteouts) to a path map and count."""
    entries: dict[str, tuple[str, int]] = {}   # path -> (kind, size)
    for layer in image.layers:
        with _open_layer(layer) as f, tarfile.open(fileobj=f, mode="r|") as tar:
            for m in tar:
                path = m.name.strip("/").removeprefix("./")
                if not path or path == ".":
                    continue
                parent, _, base = path.rpartition("/")
                if base == ".wh..wh..opq":
                    prefix = parent + "/"
                    for p in [p for p in entries if p.startswith(prefix)]:
                        del entries[p]
                    continue
                if base.startswith(".wh."):
                    gone = (parent + "/" if parent else "") + base[4:]
                    for p in [p for p in entries if p == gone or p.startswith(gone + "/")]:
                        del entries[p]
                    continue
                if m.isdir():
                    entries[path] = ("d", 0)
                elif m.issym():
                    entries[path] = ("l", 0)
                elif m.islnk():
                    entries[path] = ("f", entries.get(m.linkname.strip("/"), ("f", 0))[1])
                elif m.isreg():
                    entries[path] = ("f", m.size)
                for i in range(len(path)):          # implicit parents
                    if path[i] == "/":
                        entries.setdefault(path[:i], ("d", 0))
    kinds = [k for k, _ in entries.values()]
    return Tree(files=kinds.count("f"), file_bytes=sum(s for k, s in entries.values() if k == "f"),
                symlinks=kinds.count("l"), dirs=kinds.count("d"))


def scan_tree(root: Path) -> Tree:
    files = size = links = dirs = 0
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    dirs += 1
                    stack.append(e.path)
                elif stat.S_ISLNK(st.st_mode):
                    links += 1
                else:
                    files += 1
                    size += st.st_size
    return Tree(files, size, links, dirs)


def tree_check(expect: Tree, sub: str, *, config_json: bool = False) -> Callable[[Path], None]:
    def check(work: Path) -> None:
        root = work / sub
        if not root.is_dir():
            raise RuntimeError(f"{root} was not created")
        got = scan_tree(root)
        if got != expect:
            raise RuntimeError(f"{root}: {got}, expected {expect}")
        if config_json:
            bundle = root.parent
            json.loads((bundle / "config.json").read_text())
    return check


# -- pyimg store helpers -----------------------------------------------------

def pyimg(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    r = subprocess.run([str(PYIMG), *args], capture_output=True, text=True, env=env,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"pyimg {' '.join(args)} exited {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def content_store(image: Image, root: Path, config: Path, env: dict[str, str]) -> str:
    """``pyimg pull --no-unpack`` the layout into ``root``; return the stored name."""
    pyimg("--root", str(root), "--config", str(config), "pull", "--no-unpack",
          "--progress=none", "-q", f"oci:{image.layout}:latest", env=env)
    stored = json.loads(pyimg("--root", str(root), "images", "--format", "json", env=env))
    names = [i["name"] for i in stored]
    want = f"localhost/{image.layout.name}:latest"
    if want not in names:
        raise RuntimeError(f"pulled oci:{image.layout}:latest but the store holds {names}, "
                           f"not {want}")
    return want


def snapshot_count(root: Path, env: dict[str, str]) -> int:
    """Number of committed snapshots ``pyimg snapshots ls`` lists."""
    out = pyimg("--root", str(root), "snapshots", "ls", env=env)
    return sum(1 for ln in out.splitlines() if re.match(r"^sha256:\S+\s.*committed\s*$", ln))


def snapshots_check(image: Image, sub: str, env: dict[str, str]) -> Callable[[Path], None]:
    def check(work: Path) -> None:
        n = snapshot_count(work / sub, env)
        if n != len(image.layers):
            raise RuntimeError(f"{image.name}: {n} committed snapshots after unpack, "
                               f"expected {len(image.layers)}")
    return check


# -- durability probe ----------------------------------------------------------

def sync_probe(argv: list[str], env: dict[str, str] | None = None) -> dict[str, int] | str:
    """Counts of sync-family syscalls of ``argv`` (and children) via ``strace -f -c``."""
    if shutil.which("strace") is None:
        return "strace not installed"
    with tempfile.NamedTemporaryFile("r") as out:
        r = subprocess.run(["strace", "-f", "-c", "-o", out.name, "-e", f"trace={SYNC_CALLS}",
                            *argv], capture_output=True, text=True, env=env,
                           stdin=subprocess.DEVNULL, timeout=600)
        if r.returncode != 0:
            return f"probe failed ({r.returncode}): {r.stderr.strip()[-200:]}"
        counts: dict[str, int] = {}
        for line in out.read().splitlines():
            cols = line.split()
            if len(cols) >= 5 and cols[-1] in SYNC_CALLS.split(",") and cols[3].isdigit():
                counts[cols[-1]] = int(cols[3])
        return counts


def fmt_probe(p: dict[str, int] | str) -> str:
    if isinstance(p, str):
        return p
    return ", ".join(f"{k} x{v}" for k, v in sorted(p.items())) or "none"


# -- cases ---------------------------------------------------------------------

def _meta(image: Image, expect: Tree, variant: str, **extra: Any) -> dict[str, Any]:
    return {"image": image.name, "variant": variant, "layers": len(image.layers),
            "compressed_bytes": image.compressed, "files": expect.files,
            "file_bytes": expect.file_bytes, **extra}


def umoci_argv(image: Image, work: Path) -> list[str]:
    return ["umoci", "unpack", "--image", f"{image.layout}:latest", str(work / "bundle")]


def unpack_cases(image: Image, expect: Tree, store: Path, pristine: Path, config: Path,
                 ref: str, env: dict[str, str]) -> list[Case]:
    base = [str(PYIMG), "--root", str(store), "--config", str(config), "unpack"]
    umoci_check = tree_check(expect, "bundle/rootfs", config_json=True)

    def b(work: Path) -> list[str]:
        return umoci_argv(image, work)

    def dest(work: Path) -> list[str]:
        return [*base, "--dest", str(work / "rootfs"), ref]

    def bundle(work: Path) -> list[str]:
        return [*base, "--bundle", str(work / "bundle"), ref]

    def snapshots(work: Path) -> list[str]:
        subprocess.run(["cp", "-a", str(pristine), str(work / "root")], check=True)
        if snapshot_count(work / "root", env):  # cold: nothing to reuse
            raise RuntimeError(f"{pristine} holds snapshots")
        return [str(PYIMG), "--root", str(work / "root"), "--config", str(config), "unpack", ref]

    return [
        Case(f"{image.name}-dest", dest, b, "pyimg", "umoci", env=env,
             check_a=tree_check(expect, "rootfs"), check_b=umoci_check,
             meta=_meta(image, expect, "dest")),
        Case(f"{image.name}-bundle", bundle, b, "pyimg", "umoci", env=env,
             check_a=tree_check(expect, "bundle/rootfs", config_json=True), check_b=umoci_check,
             meta=_meta(image, expect, "bundle")),
        Case(f"{image.name}-snapshots", snapshots, b, "pyimg", "umoci", env=env,
             check_a=snapshots_check(image, "root", env), check_b=umoci_check,
             meta=_meta(image, expect, "snapshots")),
    ]


def _decompressor(layer: Layer) -> str:
    if layer.media_type.endswith("gzip"):
        return "zcat"
    if layer.media_type.endswith("zstd"):
        return "zstdcat"
    return "cat"


def floor_cases(image: Image, expect: Tree, store: Path, config: Path, ref: str,
                env: dict[str, str]) -> list[Case]:
    def dest(work: Path) -> list[str]:
        return [str(PYIMG), "--root", str(store), "--config", str(config), "unpack",
                "--dest", str(work / "rootfs"), ref]

    def floor(layers: tuple[Layer, ...]) -> Callable[[Path], list[str]]:
        def cmd(work: Path) -> list[str]:
            (work / "rootfs").mkdir()
            script = "set -eo pipefail\n" + "".join(
                f"{_decompressor(layer)} '{layer.path}' | tar -x -C '{work / 'rootfs'}'\n"
                for layer in layers)
            return ["bash", "-c", script]
        return cmd

    largest = image.largest
    cases = [Case(f"{image.name}-floor", dest, floor((largest,)), "pyimg", "floor", env=env,
                  check_a=tree_check(expect, "rootfs"),
                  meta=_meta(image, expect, "floor", floor_layers=1,
                             floor_compressed_bytes=largest.size))]
    if len(image.layers) > 1 and largest.size < FLOOR_ALL_SHARE * image.compressed:
        cases.append(Case(f"{image.name}-floor-all", dest, floor(image.layers), "pyimg",
                          "floor", env=env, check_a=tree_check(expect, "rootfs"),
                          check_b=tree_check(expect, "rootfs"),
                          meta=_meta(image, expect, "floor-all",
                                     floor_layers=len(image.layers),
                                     floor_compressed_bytes=image.compressed)))
    return cases


def pullunpack_case(image: Image, expect: Tree, host: str, ctrd: Containerd,
                    counter: Iterator[int], env: dict[str, str]) -> Case:
    ref = f"{host}/pyimg/{image.name}"
    daemon_cpu: list[float] = []
    started: list[float] = []

    def cmd_a(work: Path) -> list[str]:
        (work / "root").mkdir()
        (work / "config").mkdir()
        return [str(PYIMG), "--root", str(work / "root"), "--config", str(work / "config"),
                "pull", "--progress=none", "-q", ref]

    def cmd_b(work: Path) -> list[str]:
        ctrd.reset()                      # untimed: drop (and GC) the previous runs' data
        ns = f"bench{next(counter)}"
        ctrd.assert_cold(ns, list(image.digests))
        started.append(ctrd.cpu_seconds())
        return ctrd.pull_argv(ns, f"{ref}:latest")

    def check_b(work: Path) -> None:
        daemon_cpu.append(ctrd.cpu_seconds() - started[-1])
        ns = ctrd.last_namespace()
        images = ctrd.lines(ns, "images", "ls", "-q")
        if images != [f"{ref}:latest"]:
            raise RuntimeError(f"ctr -n {ns} images ls: {images}")
        snaps = ctrd.lines(ns, "snapshots", "--snapshotter", "overlayfs", "ls")[1:]
        committed = [s for s in snaps if s.split()[-1] == "Committed"]
        if len(committed) != len(image.layers):
            raise RuntimeError(f"ctr -n {ns}: {len(committed)} committed snapshots, "
                               f"expected {len(image.layers)}")

    return Case(image.name, cmd_a, cmd_b, "pyimg", "ctr", env=env,
                check_a=snapshots_check(image, "root", env), check_b=check_b,
                teardown=ctrd.reset,
                meta=_meta(image, expect, "pull+unpack", ref=ref, containerd_cpu_s=daemon_cpu))


# -- reporting -----------------------------------------------------------------

HEADER = (f"{'image':<11} {'case':<11} {'layers':>6} {'files':>6} {'MB':>6} {'pyimg s':>8} "
          f"{'{b} s':>8} {'ratio':>6} {'ratio-med':>9} {'pyimg RSS':>9} {'{b} RSS':>9} "
          f"{'pyimg cpu':>9} {'{b} cpu':>9} {'pairs':>5}")


def header(label_b: str) -> str:
    return HEADER.replace("{b}", label_b)


def row(r: CaseResult) -> str:
    m = r.meta
    files, mb = m["files"], m["file_bytes"] / MB
    return (f"{m['image']:<11} {m['variant']:<11} {m['layers']:>6} {files:>6} {mb:>6.1f} "
            f"{r.median('a'):>8.3f} {r.median('b'):>8.3f} {r.median_pair_ratio():>6.2f} "
            f"{r.ratio_of_medians():>9.2f} {rss_mb(r, 'a'):>9.1f} {rss_mb(r, 'b'):>9.1f} "
            f"{r.median_cpu_s('a'):>9.2f} {r.median_cpu_s('b'):>9.2f} {len(r.side('a')):>5}")


def targets(results: list[CaseResult], label_b: str, judged: set[str] | None) -> tuple[str, bool]:
    parts, ok = [], True
    pool = [r for r in results if judged is None or r.meta["variant"] in judged]
    if pool:
        worst = max(pool, key=lambda r: r.median_pair_ratio())
        good = worst.median_pair_ratio() <= TARGET_RATIO
        what = f" ({', '.join(sorted(judged))} cases)" if judged else ""
        parts.append(f"pyimg/{label_b} <= {TARGET_RATIO} on every image{what}: "
                     f"{'PASS' if good else 'FAIL'} (worst {worst.case} "
                     f"{worst.median_pair_ratio():.2f})")
        ok &= good
    line, good = rss_target(results, TARGET_RSS_MB)
    parts.append(line)
    ok &= good
    return "Targets: " + "; ".join(parts), ok


def report(suite: str, title: str, label_b: str, results: list[CaseResult],
           failures: list[str], notes: list[str], judged: set[str] | None,
           args: argparse.Namespace, names: list[str], extra_env: dict[str, Any]) -> int:
    print(f"== {suite}: {title}")
    print(header(label_b))
    for r in results:
        print(row(r))
    for f in failures:
        print(f)
    print(f"ratio = median of per-pair pyimg/{label_b} wall-time ratios; ratio-med = median "
          f"pyimg s / median {label_b} s; RSS = max over runs, MB (10^6 B); cpu = median "
          "user+sys s of the timed process tree; MB = unpacked regular-file bytes")
    for n in notes:
        print(n)
    if not results:
        line, ok = "Targets: n/a (no case completed)", False
    elif judged is None:
        line, ok = "Targets: none (informational: how far pyimg is from zcat | tar)", True
    else:
        line, ok = targets(results, label_b, judged)
    print(line, flush=True)
    env = environment()
    env.update(extra_env)
    out = args.out / f"{suite}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "suite": suite, "title": title, "environment": env,
        "args": {"images": names, "runs": args.runs, "quick": args.quick},
        "notes": notes, "failures": failures, "targets": {"line": line, "pass": ok},
        "results": [r.to_json() for r in results],
    }, indent=2) + "\n")
    stderr_log(f"bench: raw results in {out}")
    if failures:
        return 1
    return 1 if (args.strict and not ok) else 0


# -- entry points -------------------------------------------------------------

def _names(args: argparse.Namespace) -> list[str]:
    return [n for n in (args.images or ",".join(DEFAULT_IMAGES)).split(",") if n]


def _runs(args: argparse.Namespace, name: str) -> int:
    return 1 if args.quick else (args.runs or RUNS_OVERRIDE.get(name, DEFAULT_RUNS))


def _images(names: list[str]) -> dict[str, tuple[Image, Tree]]:
    from fixtures.registry import build_image

    t0 = time.perf_counter()
    out = {}
    for n in names:   # lazy: only what's asked
        image = load_image(n, build_image(n, FIXTURE_CACHE))
        layout_info(n, image.layout)   # same manifest walk as the pull suite (sanity)
        out[n] = (image, expected_tree(image))
    stderr_log(f"bench: fixtures ready in {time.perf_counter() - t0:.1f}s ({', '.join(names)})")
    return out


def _run_cases(cases: list[tuple[str, Case]], args: argparse.Namespace, scratch: Path,
               failures: list[str]) -> list[CaseResult]:
    """Run each case; a failing case is logged in ``failures`` and the rest still run."""
    results = []
    for name, case in cases:
        runs = _runs(args, name)
        stderr_log(f"bench: {case.name}: {runs} pair(s)")
        try:
            results.append(interleave(case, runs, scratch, log=stderr_log))
        except (BenchError, RuntimeError, subprocess.SubprocessError) as e:
            msg = str(e).strip().splitlines()
            failures.append(f"{case.name}: FAILED: {msg[0] if msg else e!r}"
                            + (f" ... {msg[-1]}" if len(msg) > 1 else ""))
            stderr_log(f"bench: {case.name} FAILED:\n{e}")
    return results


def run_unpack(args: argparse.Namespace) -> int:
    if missing_tools("umoci"):
        return 2
    names = _names(args)
    images = _images(names)
    env, scratch = prepare(args, "unpack-")
    notes: list[str] = []
    failures: list[str] = []
    try:
        config = scratch / "config"
        config.mkdir()
        cases: list[tuple[str, Case]] = []
        probe_done = False
        for n in names:
            image, expect = images[n]
            store, pristine = scratch / "stores" / n, scratch / "pristine" / n
            ref = content_store(image, store, config, env)
            pristine.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", "-a", str(store), str(pristine)], check=True)
            cases += [(n, c) for c in unpack_cases(image, expect, store, pristine, config,
                                                   ref, env)]
            if not probe_done:
                probe_done = True
                notes += _unpack_probe(image, store, pristine, config, ref, env, scratch)
        results = _run_cases(cases, args, scratch, failures)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    notes.append("snapshots = `pyimg unpack NAME` into overlay snapshots from a fresh copy of "
                 "a content-only store per run (pyimg snapshots vs umoci); umoci also writes "
                 "an mtree manifest of the rootfs (hashes every file), pyimg does not.")
    return report("unpack", "unpack only: pyimg vs umoci unpack from the same OCI layout",
                  "umoci", results, failures, notes, {"dest", "snapshots"}, args, names,
                  {"umoci": _version(["umoci", "--version"])})


def _unpack_probe(image: Image, store: Path, pristine: Path, config: Path, ref: str,
                  env: dict[str, str], scratch: Path) -> list[str]:
    probe = Path(tempfile.mkdtemp(prefix="probe-", dir=scratch))
    try:
        umoci = sync_probe(umoci_argv(image, probe))
        base = [str(PYIMG), "--root", str(store), "--config", str(config), "unpack"]
        dest = sync_probe([*base, "--dest", str(probe / "rootfs"), ref], env)
        bundle = sync_probe([*base, "--bundle", str(probe / "pbundle"), ref], env)
        subprocess.run(["cp", "-a", str(pristine), str(probe / "root")], check=True)
        snaps = sync_probe([str(PYIMG), "--root", str(probe / "root"), "--config", str(config),
                            "unpack", ref], env)
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    return [f"durability (strace -f -c -e {SYNC_CALLS}, {image.name}): "
            f"umoci: {fmt_probe(umoci)}; pyimg dest: {fmt_probe(dest)}; "
            f"pyimg bundle: {fmt_probe(bundle)}; pyimg snapshots: {fmt_probe(snaps)}. "
            "`sync` runs before every timed run, so neither side inherits writeback."]


def run_floor(args: argparse.Namespace) -> int:
    if missing_tools("bash", "tar", "zcat"):
        return 2
    names = _names(args)
    images = _images(names)
    env, scratch = prepare(args, "floor-")
    failures: list[str] = []
    try:
        config = scratch / "config"
        config.mkdir()
        cases: list[tuple[str, Case]] = []
        for n in names:
            image, expect = images[n]
            store = scratch / "stores" / n
            ref = content_store(image, store, config, env)
            cases += [(n, c) for c in floor_cases(image, expect, store, config, ref, env)]
        results = _run_cases(cases, args, scratch, failures)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    notes = ["floor = `zcat LAYER | tar -x` of the largest layer only (floor-all: every "
             "layer in order); pyimg unpacks the whole image (--dest) in both cases. "
             "tar does no digest verification and no fsync."]
    return report("floor", "floor: pyimg unpack --dest vs zcat | tar -x", "floor", results,
                  failures, notes, None, args, names,
                  {"tar": _version(["tar", "--version"]).splitlines()[0:1]})


def run_pullunpack(args: argparse.Namespace) -> int:
    import itertools

    from fixtures.registry import push_all
    from fixtures.registry.server import Registry

    from .containerd import Containerd

    if missing_tools("docker-registry", "skopeo", "containerd", "ctr"):
        return 2
    names = _names(args)
    images = _images(names)
    env, scratch = prepare(args, "pullunpack-")
    results: list[CaseResult] = []
    notes: list[str] = []
    failures: list[str] = []
    try:
        with Registry(name="bench") as reg, Containerd(scratch) as ctrd:
            t0 = time.perf_counter()
            push_all({n: images[n][0].layout for n in names}, reg.host, images=names)
            stderr_log(f"bench: pushed to {reg.host} in {time.perf_counter() - t0:.1f}s; "
                       f"containerd pid {ctrd.pid} at {ctrd.sock}")
            counter = itertools.count(1)
            notes += _pullunpack_probe(images[names[0]][0], reg.host, ctrd, counter, env,
                                       scratch)
            cases = [(n, pullunpack_case(*images[n], reg.host, ctrd, counter, env))
                     for n in names]
            results = _run_cases(cases, args, scratch, failures)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for r in results:
        cpu = r.meta["containerd_cpu_s"]
        if cpu:
            notes.append(f"{r.meta['image']}: containerd daemon cpu per ctr run (median) "
                         f"{sorted(cpu)[len(cpu) // 2]:.2f} s (not in the ctr columns)")
    return report("pullunpack", "pull + unpack end to end: pyimg vs containerd's "
                  "`ctr image pull`", "ctr", results, failures, notes, {"pull+unpack"}, args, names,
                  {"containerd": _version(["containerd", "--version"]),
                   "ctr": _version(["ctr", "--version"])})


def _pullunpack_probe(image: Image, host: str, ctrd: Containerd, counter: Iterator[int],
                      env: dict[str, str], scratch: Path) -> list[str]:
    """Sync-family syscalls: pyimg pull (process tree) and the containerd daemon."""
    probe = Path(tempfile.mkdtemp(prefix="probe-", dir=scratch))
    ref = f"{host}/pyimg/{image.name}"
    try:
        (probe / "config").mkdir()
        pyimg_p = sync_probe([str(PYIMG), "--root", str(probe / "root"), "--config",
                              str(probe / "config"), "pull", "--progress=none", "-q", ref], env)
        ctrd.reset()
        ns = f"bench{next(counter)}"
        daemon = ctrd.sync_probe_daemon(ns, f"{ref}:latest", SYNC_CALLS)
        ctrd.reset()
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    return [f"durability (strace -f -c -e {SYNC_CALLS}, {image.name}): pyimg pull: "
            f"{fmt_probe(pyimg_p)}; containerd daemon during ctr pull: {fmt_probe(daemon)} "
            "(blob commits + bolt metadata; unpacked snapshot files are not synced)."]


run = run_unpack
