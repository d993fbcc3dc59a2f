"""Suite-independent machinery: a benchmark ``Case`` and the A/B ``interleave`` runner.

A case compares two commands (A = pyimg, B = the reference tool).  Each run
gets a fresh, empty work directory (created under ``scratch``, removed after
the run), ``sync`` is called before every timed run so writeback of the
previous run is not billed to the next one, and A and B runs alternate
(A B A B ...) so slow drift of the machine (page cache, thermal, neighbours)
hits both sides alike.

Each child is timed with ``time.perf_counter`` around ``Popen`` + ``os.wait4``
and its resource usage comes from ``wait4``'s rusage (``ru_maxrss`` is KiB on
Linux and covers the child and any descendants it waited for).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CommandFn = Callable[[Path], Sequence[str]]
CheckFn = Callable[[Path], None]


class BenchError(RuntimeError):
    pass


@dataclass(frozen=True)
class Measurement:
    """One timed child process."""

    side: str              # "a" or "b"
    run: int               # pair index
    wall_s: float
    maxrss_kib: int
    user_s: float
    sys_s: float
    inblock: int
    oublock: int
    returncode: int


@dataclass
class Case:
    """Two commands to compare.

    ``cmd_a``/``cmd_b`` get a fresh empty work directory and return argv.
    ``setup`` runs once before the runs, ``teardown`` once after (always).
    ``check_a``/``check_b`` optionally verify a run's result (raise on error)
    before its work directory is removed; they are not timed.
    """

    name: str
    cmd_a: CommandFn
    cmd_b: CommandFn
    label_a: str = "a"
    label_b: str = "b"
    setup: Callable[[], None] | None = None
    teardown: Callable[[], None] | None = None
    check_a: CheckFn | None = None
    check_b: CheckFn | None = None
    env: dict[str, str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class CaseResult:
    case: str
    label_a: str
    label_b: str
    meta: dict[str, Any]
    runs: list[Measurement] = field(default_factory=list)

    def side(self, side: str) -> list[Measurement]:
        return [m for m in self.runs if m.side == side]

    def walls(self, side: str) -> list[float]:
        return [m.wall_s for m in self.side(side)]

    def median(self, side: str) -> float:
        return statistics.median(self.walls(side))

    def pair_ratios(self) -> list[float]:
        """A/B wall-time ratio of each pair (same run index)."""
        b = {m.run: m.wall_s for m in self.side("b")}
        return [m.wall_s / b[m.run] for m in self.side("a") if m.run in b and b[m.run] > 0]

    def median_pair_ratio(self) -> float:
        return statistics.median(self.pair_ratios())

    def ratio_of_medians(self) -> float:
        return self.median("a") / self.median("b")

    def max_rss_mib(self, side: str) -> float:
        return max(m.maxrss_kib for m in self.side(side)) / 1024

    def median_cpu_s(self, side: str) -> float:
        return statistics.median(m.user_s + m.sys_s for m in self.side(side))

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "case": self.case, "label_a": self.label_a, "label_b": self.label_b,
            "meta": self.meta, "runs": [asdict(m) for m in self.runs],
        }
        if self.side("a") and self.side("b"):
            d["summary"] = {
                "median_a_s": self.median("a"), "median_b_s": self.median("b"),
                "median_pair_ratio": self.median_pair_ratio(),
                "ratio_of_medians": self.ratio_of_medians(),
                "max_rss_a_mib": self.max_rss_mib("a"), "max_rss_b_mib": self.max_rss_mib("b"),
                "median_cpu_a_s": self.median_cpu_s("a"), "median_cpu_b_s": self.median_cpu_s("b"),
            }
        return d


_GNU_TIME = "/usr/bin/time"


def measure(argv: Sequence[str], *, side: str, run: int, env: dict[str, str] | None = None,
            timeout: float = 1800.0) -> tuple[Measurement, str]:
    """Run argv once; return its measurement and (tail of) stderr.

    stdout goes to /dev/null; stderr to an unbuffered temp file so a chatty
    child can never block on a full pipe while we sit in wait4.
    """
    # NOTE: wait4's ru_maxrss is useless here: Linux carries the forking
    # parent's RSS high-water mark across exec, so every child would report at
    # least this (Python) process's RSS.  GNU time forks from a 2 MB process,
    # so its %M is the child's own peak.  Its start-up (~1 ms) is paid by both
    # sides alike.
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as rss:
        argv = [_GNU_TIME, "-q", "-f", "%M", "-o", rss.name, *argv]
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, env=env)
        # Blocking wait4 (exact end time, per-child rusage); a timer kills a hung child.
        timer = threading.Timer(timeout, proc.kill)
        timer.daemon = True
        timer.start()
        try:
            _, status, ru = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped by wait4
        if proc.returncode == -9 and wall >= timeout:
            raise BenchError(f"timeout after {timeout}s: {' '.join(argv)}")
        err.seek(0)
        stderr = err.read()[-4000:].decode(errors="replace")
        peak = rss.read().strip().splitlines()
        maxrss = int(peak[-1]) if peak and peak[-1].isdigit() else ru.ru_maxrss
    return Measurement(side=side, run=run, wall_s=wall, maxrss_kib=maxrss,
                       user_s=ru.ru_utime, sys_s=ru.ru_stime, inblock=ru.ru_inblock,
                       oublock=ru.ru_oublock, returncode=proc.returncode), stderr


def _run_side(case: Case, side: str, run: int, scratch: Path) -> Measurement:
    cmd, check = (case.cmd_a, case.check_a) if side == "a" else (case.cmd_b, case.check_b)
    work = Path(tempfile.mkdtemp(prefix=f"{case.name}-{side}{run}-", dir=scratch))
    try:
        argv = cmd(work)
        os.sync()
        m, stderr = measure(argv, side=side, run=run, env=case.env)
        if m.returncode != 0:
            raise BenchError(f"{case.name}: {' '.join(argv)} exited {m.returncode}:\n{stderr}")
        if check is not None:
            check(work)
        return m
    finally:
        shutil.rmtree(work, ignore_errors=True)


def interleave(case: Case, runs: int, scratch: Path,
               log: Callable[[str], None] | None = None) -> CaseResult:
    """Run A B A B ... ``runs`` pairs of ``case`` in fresh dirs under ``scratch``."""
    scratch.mkdir(parents=True, exist_ok=True)
    result = CaseResult(case.name, case.label_a, case.label_b, dict(case.meta))
    if case.setup is not None:
        case.setup()
    try:
        for i in range(runs):
            for side in ("a", "b"):
                m = _run_side(case, side, i, scratch)
                result.runs.append(m)
                if log is not None:
                    label = case.label_a if side == "a" else case.label_b
                    log(f"  {case.name} #{i + 1} {label:<7} {m.wall_s:7.3f}s "
                        f"rss {m.maxrss_kib * 1024 / 1e6:6.1f} MB  "
                        f"cpu {m.user_s + m.sys_s:6.2f}s")
    finally:
        if case.teardown is not None:
            case.teardown()
    return result


def stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


MB = 1_000_000  # reports use decimal megabytes
PYIMG = Path(sys.executable).with_name("pyimg")


def rss_mb(result: CaseResult, side: str) -> float:
    """Peak RSS over the runs of ``side`` ("a" or "b"), in MB."""
    return max(m.maxrss_kib for m in result.side(side)) * 1024 / MB


def rss_target(results: Sequence[CaseResult], limit_mb: float) -> tuple[str, bool]:
    """The peak-RSS target line for pyimg (side "a") and whether it passes."""
    fat = max(results, key=lambda r: rss_mb(r, "a"))
    good = rss_mb(fat, "a") < limit_mb
    return (f"pyimg peak RSS < {limit_mb:.0f} MB: {'PASS' if good else 'FAIL'} "
            f"(max {rss_mb(fat, 'a'):.1f} MB on {fat.case})"), good


def missing_tools(*tools: str) -> bool:
    """True (after saying which) when a tool or the pyimg binary is not installed."""
    for tool in tools:
        if shutil.which(tool) is None:
            stderr_log(f"bench: {tool} not installed (run 'make deps')")
            return True
    if not PYIMG.exists():
        stderr_log(f"bench: {PYIMG} missing (run 'make venv')")
        return True
    return False
