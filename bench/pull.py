"""Pull suite: ``pyimg pull`` (A) vs ``skopeo copy docker:// -> oci:`` (B).

One plain-HTTP ``docker-registry`` on loopback serves the fixture images
(built lazily into ``<repo>/.cache/fixtures``, only those requested); both
tools write into a fresh, empty destination on the same filesystem for every
run (cold destination, warm registry page cache for both).

Targets (from the issue): pyimg/skopeo wall-time ratio <= 0.8 on a
multi-layer image, <= 1.0 on every image, peak RSS < 100 MB.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core import (
    MB,
    PYIMG,
    Case,
    CaseResult,
    interleave,
    missing_tools,
    rss_mb,
    rss_target,
    stderr_log,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURE_CACHE = Path(os.environ.get("PYIMG_FIXTURE_CACHE", REPO_ROOT / ".cache" / "fixtures"))
PYCACHE = REPO_ROOT / ".cache" / "pycache"

DEFAULT_IMAGES = ("busybox", "multilayer", "manylayer", "medium", "large")
DEFAULT_RUNS = 5
RUNS_OVERRIDE = {"large": 3}

TARGET_MULTI_RATIO = 0.8
TARGET_RATIO = 1.0
TARGET_RSS_MB = 100.0


@dataclass(frozen=True)
class ImageInfo:
    name: str
    layers: int
    compressed: int        # sum of layer sizes, bytes


def layout_info(name: str, layout: Path) -> ImageInfo:
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":", 1)[1]
    doc = json.loads((layout / "blobs" / "sha256" / digest).read_text())
    if "layers" not in doc:  # an index: take the first manifest
        digest = doc["manifests"][0]["digest"].split(":", 1)[1]
        doc = json.loads((layout / "blobs" / "sha256" / digest).read_text())
    return ImageInfo(name, len(doc["layers"]), sum(int(layer["size"]) for layer in doc["layers"]))


def tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def child_env() -> dict[str, str]:
    """Environment for the timed children: bytecode always cached.

    With PYTHONDONTWRITEBYTECODE set (common in CI/dev shells) the editable
    ``src/pyimg`` modules have no .pyc and are compiled on every start
    (~30 ms per pull on the bench machine), which no installed pyimg pays.
    A private PYTHONPYCACHEPREFIX keeps src/ untouched.
    """
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env


def precompile(env: dict[str, str]) -> None:
    spec = importlib.util.find_spec("pyimg")
    if spec is None or spec.origin is None:
        raise RuntimeError("pyimg is not importable (run 'make venv')")
    src = Path(spec.origin).resolve().parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(src)], env=env, check=True,
                   stdout=subprocess.DEVNULL)


def prepare(args: argparse.Namespace, prefix: str) -> tuple[dict[str, str], Path]:
    """A suite's start: the children's environment (bytecode compiled once) and a fresh
    scratch directory ``<args.scratch>/<prefix>XXXX`` for this run."""
    env = child_env()
    precompile(env)
    args.scratch.mkdir(parents=True, exist_ok=True)
    return env, Path(tempfile.mkdtemp(prefix=prefix, dir=args.scratch))


def pull_case(info: ImageInfo, host: str, env: dict[str, str] | None = None) -> Case:
    ref = f"{host}/pyimg/{info.name}"

    def cmd_a(work: Path) -> list[str]:
        (work / "root").mkdir()
        (work / "config").mkdir()
        return [str(PYIMG), "--root", str(work / "root"), "--config", str(work / "config"),
                # skopeo copy stores blobs only: compare like with like (the
                # pullunpack suite measures pull + unpack against ctr).
                "pull", "--no-unpack", "--progress=none", "-q", ref]

    def cmd_b(work: Path) -> list[str]:
        (work / "oci").mkdir()
        return ["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                f"docker://{ref}:latest", f"oci:{work / 'oci'}:latest"]

    def check(sub: str) -> Any:
        def _check(work: Path) -> None:
            got = tree_bytes(work / sub)
            if got < info.compressed:
                raise RuntimeError(f"{info.name}: {sub} holds only {got} bytes, "
                                   f"expected >= {info.compressed}")
        return _check

    return Case(name=info.name, cmd_a=cmd_a, cmd_b=cmd_b, label_a="pyimg", label_b="skopeo",
                check_a=check("root"), check_b=check("oci"), env=env,
                meta={"ref": ref, "layers": info.layers, "compressed_bytes": info.compressed})


# -- reporting -------------------------------------------------------------

def _mb(kib_or_bytes: float, kib: bool = False) -> float:
    return kib_or_bytes * (1024 if kib else 1) / MB


HEADER = (f"{'image':<11} {'layers':>6} {'compr MB':>9} {'pyimg s':>8} {'skopeo s':>9} "
          f"{'ratio':>6} {'ratio-med':>9} {'pyimg RSS MB':>12} {'skopeo RSS MB':>13} {'pairs':>5}")


def table_row(r: CaseResult) -> str:
    return (f"{r.case:<11} {r.meta['layers']:>6} {_mb(r.meta['compressed_bytes']):>9.1f} "
            f"{r.median('a'):>8.3f} {r.median('b'):>9.3f} {r.median_pair_ratio():>6.2f} "
            f"{r.ratio_of_medians():>9.2f} {rss_mb(r, 'a'):>12.1f} {rss_mb(r, 'b'):>13.1f} "
            f"{len(r.side('a')):>5}")


def targets(results: list[CaseResult]) -> tuple[str, bool]:
    """The issue's three targets, judged on the median of per-pair ratios."""
    parts, ok = [], True
    multi = [r for r in results if r.meta["layers"] > 1]
    if multi:
        best = min(multi, key=lambda r: r.median_pair_ratio())
        good = best.median_pair_ratio() <= TARGET_MULTI_RATIO
        parts.append(f"ratio <= {TARGET_MULTI_RATIO} on a multi-layer image: "
                     f"{'PASS' if good else 'FAIL'} (best {best.case} "
                     f"{best.median_pair_ratio():.2f})")
        ok &= good
    else:
        parts.append(f"ratio <= {TARGET_MULTI_RATIO} on a multi-layer image: "
                     "n/a (no multi-layer image run)")
    worst = max(results, key=lambda r: r.median_pair_ratio())
    good = worst.median_pair_ratio() <= TARGET_RATIO
    parts.append(f"ratio <= {TARGET_RATIO} on every image: {'PASS' if good else 'FAIL'} "
                 f"(worst {worst.case} {worst.median_pair_ratio():.2f})")
    ok &= good
    line, good = rss_target(results, TARGET_RSS_MB)
    parts.append(line)
    ok &= good
    return "Targets: " + "; ".join(parts), ok


def _version(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError as e:
        return f"unavailable: {e}"


def environment() -> dict[str, Any]:
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": platform.node(), "platform": platform.platform(), "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "pyimg": _version([str(PYIMG), "--version"]),
        "skopeo": _version(["skopeo", "--version"]),
        "git": _version(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"]),
        "child_env": {"PYTHONPYCACHEPREFIX": str(PYCACHE), "PYTHONDONTWRITEBYTECODE": None},
    }


# -- entry point -------------------------------------------------------------

def run(args: argparse.Namespace) -> int:
    from fixtures.registry import build_image, push_all
    from fixtures.registry.server import Registry

    names = [n for n in (args.images or ",".join(DEFAULT_IMAGES)).split(",") if n]
    if missing_tools("docker-registry", "skopeo"):
        return 2

    t0 = time.perf_counter()
    layouts = {n: build_image(n, FIXTURE_CACHE) for n in names}   # lazy: only what's asked
    infos = {n: layout_info(n, p) for n, p in layouts.items()}
    stderr_log(f"bench: fixtures ready in {time.perf_counter() - t0:.1f}s "
               f"({', '.join(names)})")

    env, scratch = prepare(args, "pull-")
    results: list[CaseResult] = []
    try:
        with Registry(name="bench") as reg:
            t0 = time.perf_counter()
            push_all(layouts, reg.host, images=names)
            stderr_log(f"bench: pushed to {reg.host} in {time.perf_counter() - t0:.1f}s")
            for n in names:
                runs = 1 if args.quick else (args.runs or RUNS_OVERRIDE.get(n, DEFAULT_RUNS))
                stderr_log(f"bench: {n}: {runs} pair(s)")
                results.append(interleave(pull_case(infos[n], reg.host, env), runs, scratch,
                                          log=stderr_log))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(HEADER)
    for r in results:
        print(table_row(r))
    print("ratio = median of per-pair pyimg/skopeo wall-time ratios; "
          "ratio-med = median pyimg s / median skopeo s; RSS = max over runs (MB = 10^6 B)")
    line, ok = targets(results)
    print(line, flush=True)

    out = args.out / "pull.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "suite": "pull", "environment": environment(),
        "args": {"images": names, "runs": args.runs, "quick": args.quick},
        "targets": {"line": line, "pass": ok},
        "results": [r.to_json() for r in results],
    }, indent=2) + "\n")
    stderr_log(f"bench: raw results in {out}")
    return 1 if (args.strict and not ok) else 0
