"""Inspect suite: remote `pyimg inspect` vs `skopeo inspect` (ratio), and
`pyimg layers` throughput on the large image (uncompressed MB/s).

Both inspect commands read index/manifest/config from the same loopback
registry and print JSON; neither downloads layers.  `pyimg layers` streams
every layer's tar headers (the data is decompressed, not extracted).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from statistics import median

from .core import PYIMG, Case, CaseResult, interleave, measure, stderr_log
from .pull import FIXTURE_CACHE, environment, prepare

DEFAULT_IMAGES = ("busybox", "multiarch", "manylayer")
MB = 1_000_000


def inspect_case(name: str, host: str, env: dict[str, str]) -> Case:
    ref = f"{host}/pyimg/{name}"

    def cmd_a(work: Path) -> list[str]:
        return [str(PYIMG), "--root", str(work / "root"), "--config", str(work), "inspect",
                "--remote", ref]

    def cmd_b(work: Path) -> list[str]:
        return ["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}:latest"]

    return Case(name=name, cmd_a=cmd_a, cmd_b=cmd_b, label_a="pyimg", label_b="skopeo",
                env=env, meta={"ref": ref})


def _layers_rate(layout: Path, env: dict[str, str], runs: int, scratch: Path) -> dict[str, float]:
    """Uncompressed MB/s of `pyimg layers` over the image's layers, from the store."""
    root = scratch / "layers-root"
    subprocess_argv = [str(PYIMG), "--root", str(root), "pull", "--no-unpack", "-q",
                       "--progress=none", f"oci:{layout}:latest"]
    m, err = measure(subprocess_argv, side="a", run=0, env=env)
    if m.returncode:
        raise RuntimeError(f"layers setup failed: {err}")
    argv = [str(PYIMG), "--root", str(root), "layers", "--format", "json",
            "localhost/large:latest"]
    walls = []
    rows: list[dict[str, object]] = []
    for i in range(runs):
        out = scratch / "layers.json"
        t0 = time.perf_counter()
        import subprocess

        with open(out, "w") as f:
            subprocess.run(argv, stdout=f, check=True, env=env)
        walls.append(time.perf_counter() - t0)
        rows = json.loads(out.read_text())
        del i
    total = sum(int(str(r["uncompressedSize"])) for r in rows)
    wall = median(walls)
    return {"uncompressed_bytes": total, "median_s": wall, "mb_per_s": total / MB / wall}


def run(args: argparse.Namespace) -> int:
    from fixtures.registry import build_image, push_all
    from fixtures.registry.server import Registry

    names = [n for n in (args.images or ",".join(DEFAULT_IMAGES)).split(",") if n]
    names = [n for n in names if n not in ("large",)] or list(DEFAULT_IMAGES[:1])
    layouts = {n: build_image(n, FIXTURE_CACHE) for n in names}
    env, scratch = prepare(args, "inspect-")
    results: list[CaseResult] = []
    rate: dict[str, float] = {}
    try:
        with Registry(name="bench") as reg:
            push_all(layouts, reg.host, images=names)
            runs = 2 if args.quick else (args.runs or 10)
            for n in names:
                results.append(interleave(inspect_case(n, reg.host, env), runs, scratch,
                                          log=stderr_log))
        if not args.quick:
            rate = _layers_rate(build_image("large", FIXTURE_CACHE), env, 3, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print("== inspect: pyimg inspect --remote vs skopeo inspect (same registry)")
    print(f"{'image':<12}{'pyimg s':>9}{'skopeo s':>10}{'ratio':>7}")
    for r in results:
        a, b = r.median("a"), r.median("b")
        print(f"{r.case:<12}{a:>9.3f}{b:>10.3f}{r.median_pair_ratio():>7.2f}")
    if rate:
        print(f"pyimg layers on large: {rate['uncompressed_bytes'] / MB:.0f} MB uncompressed"
              f" in {rate['median_s']:.2f} s = {rate['mb_per_s']:.0f} MB/s")
    out = args.out / "inspect.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"suite": "inspect", "environment": environment(),
                               "results": [r.to_json() for r in results],
                               "layers_large": rate}, indent=2) + "\n")
    stderr_log(f"bench: raw results in {out}")
    return 0
