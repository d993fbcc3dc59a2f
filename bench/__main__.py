"""``python -m bench [SUITE ...] [--runs N] [--images a,b] [--quick]``."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from . import SUITES

BENCH_DIR = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("suites", nargs="*", default=list(SUITES), metavar="SUITE",
                   help=f"suites to run (default: all of {', '.join(SUITES)})")
    p.add_argument("--runs", type=int, default=None, metavar="N",
                   help="A/B pairs per case (default: suite's, e.g. 5, 3 for large)")
    p.add_argument("--images", default=None, metavar="A,B",
                   help="only these images (comma separated)")
    p.add_argument("--quick", action="store_true", help="1 pair per case (smoke test)")
    p.add_argument("--scratch", type=Path, default=Path("/var/tmp/pyimg-bench"),
                   help="where fresh destination dirs are made (default /var/tmp/pyimg-bench)")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "out",
                   help="directory for raw JSON results (default bench/out)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    args = p.parse_args(argv)
    unknown = [s for s in args.suites if s not in SUITES]
    if unknown:
        p.error(f"unknown suite(s) {unknown}; known: {', '.join(SUITES)}")
    if args.runs is not None and args.runs < 1:
        p.error("--runs must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rc = 0
    for name in args.suites:
        module, _, func = SUITES[name].partition(":")
        rc = max(rc, getattr(importlib.import_module(module), func or "run")(args))
    return rc


if __name__ == "__main__":
    sys.exit(main())
