"""Runtime suite: the launcher vs runc/crun, and ``pyimg run --rm`` vs ``ctr run --rm``.

``launcher`` — the OCI runtime alone on one bundle running ``/bin/true``.
    Untimed setup: ``pyimg pull --no-unpack oci:<busybox layout>:latest`` into a
    store R, ``pyimg unpack --bundle B`` and ``process.args = ["/bin/true"]`` in
    B/config.json.  Every pair index runs three commands in turn (A B C A B C
    ...), each with a never-used container id and stdin /dev/null:

    * A = ``pyimg --state S runtime run --bundle B ID``
    * B = ``runc --root S2 run --bundle B ID``
    * C = ``crun --root S3 run --bundle B ID``.  crun 1.8 refuses hybrid cgroup
      hosts (v1 controllers plus a cgroup2 mount), so on such a host it runs in a
      private mount namespace with the cgroup2 mount hidden:
      ``unshare -m sh -c 'umount CG2 || umount -l CG2; exec crun ...'`` (CG2 from
      /proc/self/mountinfo).  The wrapper (unshare + sh + umount, ~ a few ms) is
      billed to crun; its own cost is measured and printed under the table.  If
      crun fails even so, its error is reported verbatim and the row is
      "unavailable".

    Rows ``launcher-runc`` and ``launcher-crun`` share the same A runs.

``run --rm`` — ``pyimg run --rm IMAGE true`` (store R with the image pulled and
    unpacked into snapshots beforehand, PYIMG_STATE a private temp dir) vs
    ``ctr run --rm --snapshotter overlayfs IMAGE ID true`` against a private
    containerd (:mod:`bench.containerd`, runtime io.containerd.runc.v2 = runc)
    that pulled the same image beforehand from a loopback ``docker-registry``.
    ctr's RSS/CPU columns are the client's only (the daemon, the shim and runc
    are not its children); the daemon's CPU per run is printed separately.

Every run must exit 0 (a failed run turns its row into FAILED) and is checked,
untimed, for leftovers: the runtime's state entry for the id, a cgroup named
after the id, pyimg containers / active snapshots, ctr containers / tasks.

Targets (issue 4): launcher <= 1.5x runc; ``pyimg run --rm`` <= 0.8x
``ctr run --rm`` (median of per-pair ratios).
"""

from __future__ import annotations

import argparse
import glob
import itertools
import json
import os
import shlex
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core import (
    MB,
    PYIMG,
    BenchError,
    Case,
    CaseResult,
    Measurement,
    _run_side,
    interleave,
    missing_tools,
    stderr_log,
)
from .pull import FIXTURE_CACHE, _version, environment, prepare

if TYPE_CHECKING:
    from .containerd import Containerd

IMAGE = "busybox"
DEFAULT_RUNS = 10
QUICK_RUNS = 2
TARGET_LAUNCHER_VS_RUNC = 1.5
TARGET_RUN_VS_CTR = 0.8
CTR_NAMESPACE = "bench"
WRAPPER_PROBES = 5


# -- helpers -------------------------------------------------------------------

def pyimg(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    r = subprocess.run([str(PYIMG), *args], capture_output=True, text=True, env=env,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"pyimg {' '.join(args)} exited {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def cgroup2_mounts() -> list[tuple[str, bool]]:
    """(mount point, is the whole /sys/fs/cgroup) of every cgroup2 mount, from mountinfo."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            if post.split()[:1] == ["cgroup2"]:
                point = pre.split()[4].replace("\\040", " ")
                points.append((point, point.rstrip("/") == "/sys/fs/cgroup"))
    return points


def crun_argv(state: Path, bundle: Path, cid: str, hide: list[str]) -> list[str]:
    """crun run, wrapped so that the cgroup2 mounts in ``hide`` are not visible."""
    crun = ["crun", "--root", str(state), "run", "--bundle", str(bundle), cid]
    if not hide:
        return crun
    umounts = "".join(f"{{ umount {shlex.quote(p)} 2>/dev/null || umount -l {shlex.quote(p)}; }}"
                      " && " for p in hide)
    return ["unshare", "-m", "sh", "-c", f"{umounts}exec {shlex.join(crun)}"]


def cgroup_leftovers(cid: str) -> list[str]:
    """Cgroup dirs named ``cid`` one or two levels below each hierarchy."""
    return glob.glob(f"/sys/fs/cgroup/*/{glob.escape(cid)}") + \
        glob.glob(f"/sys/fs/cgroup/*/*/{glob.escape(cid)}") + \
        glob.glob(f"/sys/fs/cgroup/{glob.escape(cid)}")


def gone_check(state_entry: Callable[[], Path], cid: Callable[[], str]) -> Callable[[Path], None]:
    def check(work: Path) -> None:
        entry = state_entry()
        if entry.exists():
            raise RuntimeError(f"state {entry} left after run")
        left = cgroup_leftovers(cid())
        if left:
            raise RuntimeError(f"cgroups left after run: {left}")
    return check


def _median_wall(argv: list[str], n: int) -> float | str:
    walls = []
    for _ in range(n):
        t = time.perf_counter()
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        walls.append(time.perf_counter() - t)
        if r.returncode != 0:
            return f"failed ({r.returncode}): {r.stderr.strip()}"
    return statistics.median(walls)


# -- the launcher: A B C interleave ------------------------------------------------

class Launcher:
    """pyimg runtime / runc / crun on one bundle; unique ids from one counter."""

    def __init__(self, scratch: Path, bundle: Path, env: dict[str, str]) -> None:
        self.bundle = bundle
        self.env = env
        self.s_pyimg, self.s_runc, self.s_crun = (scratch / "state-pyimg", scratch / "state-runc",
                                                  scratch / "state-crun")
        for d in (self.s_pyimg, self.s_runc, self.s_crun):
            d.mkdir()
        self.counter = itertools.count(1)
        self.prefix = f"bench-{os.getpid()}-"
        self.last = ""
        # Hybrid host (v1 hierarchies next to a cgroup2 mount): hide the cgroup2 mounts.
        with open("/proc/self/mountinfo") as f:
            v1 = any(line.partition(" - ")[2].startswith("cgroup ") for line in f)
        self.hide = [p for p, whole in cgroup2_mounts() if not whole] if v1 else []

    def _id(self) -> str:
        self.last = f"{self.prefix}{next(self.counter)}"
        return self.last

    def cmd_pyimg(self, work: Path) -> list[str]:
        return [str(PYIMG), "--state", str(self.s_pyimg), "runtime", "run", "--bundle",
                str(self.bundle), self._id()]

    def cmd_runc(self, work: Path) -> list[str]:
        return ["runc", "--root", str(self.s_runc), "run", "--bundle", str(self.bundle),
                self._id()]

    def cmd_crun(self, work: Path) -> list[str]:
        return crun_argv(self.s_crun, self.bundle, self._id(), self.hide)

    def cases(self) -> tuple[Case, Case]:
        last = lambda: self.last  # noqa: E731
        meta = {"bundle_args": ["/bin/true"], "image": IMAGE}
        runc = Case("launcher-runc", self.cmd_pyimg, self.cmd_runc, "pyimg", "runc",
                    env=self.env,
                    check_a=gone_check(lambda: self.s_pyimg / "runtime" / self.last, last),
                    check_b=gone_check(lambda: self.s_runc / self.last, last),
                    meta={**meta, "reference": "runc run"})
        crun = Case("launcher-crun", self.cmd_pyimg, self.cmd_crun, "pyimg", "crun",
                    env=self.env,
                    check_b=gone_check(lambda: self.s_crun / self.last, last),
                    meta={**meta, "reference": "crun run",
                          "crun_hidden_cgroup2_mounts": self.hide})
        return runc, crun

    def probe_crun(self) -> str | None:
        """None if crun runs the bundle (wrapped as in the timed runs), else its error."""
        if shutil.which("crun") is None:
            return "crun not installed"
        argv = self.cmd_crun(Path("/"))
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            return f"`{shlex.join(argv)}` exited {r.returncode}: {r.stderr.strip()}"
        return None

    def wrapper_cost(self) -> float | str | None:
        """Median wall of the crun wrapper alone (exec /bin/true instead of crun)."""
        if not self.hide:
            return None
        argv = crun_argv(self.s_crun, self.bundle, "x", self.hide)
        argv[-1] = argv[-1].split("exec ", 1)[0] + "exec /bin/true"
        return _median_wall(argv, WRAPPER_PROBES)


def interleave3(launcher: Launcher, runs: int, scratch: Path, crun_ok: bool,
                failures: list[str]) -> list[CaseResult]:
    """A B C per pair index; the runc and crun rows share A.  A crun failure
    only ends the crun row; an A or B failure ends both."""
    runc_case, crun_case = launcher.cases()
    r_runc = CaseResult(runc_case.name, "pyimg", "runc", dict(runc_case.meta))
    r_crun = CaseResult(crun_case.name, "pyimg", "crun", dict(crun_case.meta))
    scratch.mkdir(parents=True, exist_ok=True)
    crun_alive = crun_ok
    for i in range(runs):
        try:
            a = _run_side(runc_case, "a", i, scratch)
            _log("launcher", i, "pyimg", a)
            b = _run_side(runc_case, "b", i, scratch)
            _log("launcher", i, "runc", b)
        except (BenchError, RuntimeError, subprocess.SubprocessError) as e:
            failures.append(_failed("launcher-runc", e))
            if crun_alive:
                failures.append("launcher-crun: FAILED: pyimg/runc side failed (see above)")
            return []
        r_runc.runs += [a, b]
        r_crun.runs.append(a)
        if crun_alive:
            try:
                c = _run_side(crun_case, "b", i, scratch)
                _log("launcher", i, "crun", c)
                r_crun.runs.append(c)
            except (BenchError, RuntimeError, subprocess.SubprocessError) as e:
                failures.append(_failed("launcher-crun", e))
                crun_alive = False
    return [r_runc, r_crun] if crun_alive else [r_runc]


def _failed(name: str, e: BaseException) -> str:
    stderr_log(f"bench: {name} FAILED:\n{e}")
    msg = str(e).strip().splitlines() or [repr(e)]
    return f"{name}: FAILED: {msg[0]}" + (f" ... {msg[-1]}" if len(msg) > 1 else "")


def _log(name: str, i: int, label: str, m: Measurement) -> None:
    stderr_log(f"  {name} #{i + 1} {label:<7} {m.wall_s:7.3f}s "
               f"rss {m.maxrss_kib * 1024 / MB:6.1f} MB  cpu {m.user_s + m.sys_s:6.2f}s")


# -- pyimg run --rm vs ctr run --rm ---------------------------------------------

def run_case(store: Path, state: Path, pyimg_ref: str, ctr_ref: str, ctrd: Containerd,
             counter: Iterator[int], env: dict[str, str]) -> Case:
    daemon_cpu: list[float] = []
    started: list[float] = []
    prefix = f"bench-{os.getpid()}-run-"

    def cmd_a(work: Path) -> list[str]:
        return [str(PYIMG), "--root", str(store), "run", "--rm", pyimg_ref, "true"]

    def check_a(work: Path) -> None:
        left = json.loads(pyimg("--root", str(store), "ps", "-a", "--format", "json", env=env))
        if left:
            raise RuntimeError(f"pyimg ps -a after run --rm: {left}")
        active = [ln for ln in pyimg("--root", str(store), "snapshots", "ls", env=env)
                  .splitlines()[1:] if ln.split() and ln.split()[-1] != "committed"]
        if active:
            raise RuntimeError(f"snapshots left after run --rm: {active}")
        for sub in ("containers", "runtime"):
            d = state / sub
            if d.is_dir() and any(d.iterdir()):
                raise RuntimeError(f"{d} not empty after run --rm: {sorted(os.listdir(d))}")

    def cmd_b(work: Path) -> list[str]:
        started.append(ctrd.cpu_seconds())
        return ctrd.run_argv(CTR_NAMESPACE, ctr_ref, f"{prefix}{next(counter)}", "true")

    def check_b(work: Path) -> None:
        daemon_cpu.append(ctrd.cpu_seconds() - started[-1])
        for what in (("containers", "ls", "-q"), ("tasks", "ls", "-q")):
            left = ctrd.lines(CTR_NAMESPACE, *what)
            if left:
                raise RuntimeError(f"ctr {' '.join(what)} after run --rm: {left}")
        snaps = ctrd.lines(CTR_NAMESPACE, "snapshots", "--snapshotter", "overlayfs", "ls")[1:]
        active = [s for s in snaps if s.split()[-1] != "Committed"]
        if active:
            raise RuntimeError(f"ctr snapshots left after run --rm: {active}")

    return Case("run-rm", cmd_a, cmd_b, "pyimg", "ctr", env={**env, "PYIMG_STATE": str(state)},
                check_a=check_a, check_b=check_b,
                meta={"image": IMAGE, "pyimg_ref": pyimg_ref, "ctr_ref": ctr_ref,
                      "containerd_cpu_s": daemon_cpu})


# -- reporting -------------------------------------------------------------------

HEADER = (f"{'case':<14} {'pyimg s':>8} {'ref s':>8} {'ratio':>6} {'ratio-med':>9} "
          f"{'pyimg RSS':>9} {'ref RSS':>8} {'pyimg cpu':>9} {'ref cpu':>8} {'pairs':>5}")


def _rss(r: CaseResult, side: str) -> float:
    return max(m.maxrss_kib for m in r.side(side)) * 1024 / MB


def row(r: CaseResult) -> str:
    return (f"{r.case:<14} {r.median('a'):>8.3f} {r.median('b'):>8.3f} "
            f"{r.median_pair_ratio():>6.2f} {r.ratio_of_medians():>9.2f} {_rss(r, 'a'):>9.1f} "
            f"{_rss(r, 'b'):>8.1f} {r.median_cpu_s('a'):>9.3f} {r.median_cpu_s('b'):>8.3f} "
            f"{len(r.side('b')):>5}")


def targets(results: list[CaseResult]) -> tuple[str, bool]:
    by = {r.case: r for r in results}
    parts, ok = [], True
    for case, target, what in (("launcher-runc", TARGET_LAUNCHER_VS_RUNC, "launcher <= {t}x runc"),
                               ("run-rm", TARGET_RUN_VS_CTR,
                                "pyimg run --rm <= {t}x ctr run --rm")):
        label = what.format(t=target)
        r = by.get(case)
        if r is None or not r.side("b"):
            parts.append(f"{label}: n/a (case failed)")
            ok = False
            continue
        ratio = r.median_pair_ratio()
        good = ratio <= target
        ok &= good
        parts.append(f"{label}: {'PASS' if good else 'FAIL'} ({ratio:.2f})")
    return "Targets: " + "; ".join(parts), ok


# -- entry point ---------------------------------------------------------------------

def prepare_bundle(layout: Path, store: Path, bundle: Path, env: dict[str, str]) -> str:
    """Pull the layout into ``store`` (content only), unpack a bundle running /bin/true."""
    pyimg("--root", str(store), "pull", "--no-unpack", "--progress=none", "-q",
          f"oci:{layout}:latest", env=env)
    ref = f"localhost/{layout.name}:latest"
    names = [i["name"] for i in json.loads(pyimg("--root", str(store), "images", "--format",
                                                 "json", env=env))]
    if ref not in names:
        raise RuntimeError(f"pulled oci:{layout}:latest but the store holds {names}")
    pyimg("--root", str(store), "unpack", "--bundle", str(bundle), ref, env=env)
    cfg = bundle / "config.json"
    doc = json.loads(cfg.read_text())
    doc["process"]["args"] = ["/bin/true"]
    doc["process"]["terminal"] = False
    cfg.write_text(json.dumps(doc, indent=2))
    if not (bundle / "rootfs" / "bin" / "true").exists():
        raise RuntimeError(f"{bundle}/rootfs has no /bin/true")
    return ref


def _stored_digest(store: Path, ref: str, env: dict[str, str]) -> str:
    for i in json.loads(pyimg("--root", str(store), "images", "--format", "json", env=env)):
        if i["name"] == ref:
            return str(i.get("digest", ""))
    return ""


def run(args: argparse.Namespace) -> int:
    from fixtures.registry import build_image, push_all
    from fixtures.registry.server import Registry

    from .containerd import Containerd

    if missing_tools("runc", "unshare", "docker-registry", "containerd", "ctr"):
        return 2
    runs = QUICK_RUNS if args.quick else (args.runs or DEFAULT_RUNS)
    t0 = time.perf_counter()
    layout = build_image(IMAGE, FIXTURE_CACHE)
    stderr_log(f"bench: fixture {IMAGE} ready in {time.perf_counter() - t0:.1f}s")
    env, scratch = prepare(args, "runtime-")
    results: list[CaseResult] = []
    failures: list[str] = []
    notes: list[str] = []
    extra: dict[str, Any] = {}
    try:
        store, bundle = scratch / "store", scratch / "bundle"
        ref = prepare_bundle(layout, store, bundle, env)

        # 1. the launcher alone: pyimg runtime / runc / crun, A B C.
        launcher = Launcher(scratch, bundle, env)
        crun_err = launcher.probe_crun()
        if crun_err:
            stderr_log(f"bench: crun unavailable: {crun_err}")
        wrapper = launcher.wrapper_cost() if not crun_err else None
        stderr_log(f"bench: launcher: {runs} pair(s) (pyimg, runc"
                   f"{', crun' if not crun_err else ''})")
        results += interleave3(launcher, runs, scratch / "work", not crun_err, failures)
        if crun_err:
            failures.append(f"launcher-crun: unavailable: {crun_err}")
        if launcher.hide and wrapper is not None:
            w = f"{wrapper * 1000:.1f} ms" if isinstance(wrapper, float) else str(wrapper)
            notes.append(f"crun ran as `unshare -m sh -c 'umount {' '.join(launcher.hide)}; "
                         f"exec crun ...'` (hybrid host: crun 1.8 refuses a cgroup2 mount next "
                         f"to v1); that wrapper alone (exec /bin/true) takes {w} (median of "
                         f"{WRAPPER_PROBES}), billed to crun.")
        extra["crun_hidden_cgroup2_mounts"] = launcher.hide
        extra["crun_unavailable"] = crun_err

        # 2. pyimg run --rm vs ctr run --rm.
        pyimg("--root", str(store), "unpack", ref, env=env)      # snapshots, untimed
        state = scratch / "pyimg-state"
        state.mkdir()
        with Registry(name="bench") as reg, Containerd(scratch) as ctrd:
            push_all({IMAGE: layout}, reg.host, images=[IMAGE])
            ctr_ref = f"{reg.host}/pyimg/{IMAGE}:latest"
            ctrd.ctr(CTR_NAMESPACE, "image", "pull", "--plain-http", "--snapshotter",
                     "overlayfs", ctr_ref)
            ctr_digest = ctrd.lines(CTR_NAMESPACE, "images", "ls")[1].split()[2]
            ours = _stored_digest(store, ref, env)
            if ours and ours != ctr_digest:
                raise RuntimeError(f"pyimg {ref} is {ours}, ctr {ctr_ref} is {ctr_digest}")
            stderr_log(f"bench: containerd pid {ctrd.pid} at {ctrd.sock}; {ctr_ref} "
                       f"{ctr_digest}")
            case = run_case(store, state, ref, ctr_ref, ctrd, itertools.count(1), env)
            stderr_log(f"bench: run --rm: {runs} pair(s)")
            try:
                r = interleave(case, runs, scratch / "work", log=stderr_log)
                results.append(r)
                cpu = r.meta["containerd_cpu_s"]
                if cpu:
                    notes.append(f"run-rm: containerd daemon cpu per ctr run (median) "
                                 f"{statistics.median(cpu):.3f} s (not in ctr's columns; "
                                 "neither are the shim's and runc's)")
            except (BenchError, RuntimeError, subprocess.SubprocessError) as e:
                failures.append(_failed("run-rm", e))
    except (BenchError, RuntimeError, OSError, subprocess.SubprocessError) as e:
        failures.append(_failed("setup", e))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return report(results, failures, notes, runs, args, extra)


def report(results: list[CaseResult], failures: list[str], notes: list[str], runs: int,
           args: argparse.Namespace, extra: dict[str, Any]) -> int:
    print(f"== runtime: pyimg runtime run vs runc/crun run (bundle running /bin/true), "
          f"pyimg run --rm vs ctr run --rm ({IMAGE})")
    print(HEADER)
    for r in results:
        print(row(r))
    for f in failures:
        print(f)
    print("ratio = median of per-pair pyimg/ref wall-time ratios; ratio-med = median pyimg s / "
          "median ref s; RSS = max over runs, MB (10^6 B); cpu = median user+sys s of the "
          "timed process tree (detached shims/daemons excluded)")
    for n in notes:
        print(n)
    line, ok = targets(results)
    print(line, flush=True)
    env = environment()
    env.update({"runc": _version(["runc", "--version"]), "crun": _version(["crun", "--version"]),
                "containerd": _version(["containerd", "--version"]), **extra})
    out = args.out / "runtime.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "suite": "runtime", "environment": env,
        "args": {"images": [IMAGE], "runs": runs, "quick": args.quick},
        "notes": notes, "failures": failures, "targets": {"line": line, "pass": ok},
        "results": [r.to_json() for r in results],
    }, indent=2) + "\n")
    stderr_log(f"bench: raw results in {out}")
    hard = [f for f in failures if ": unavailable:" not in f]
    if hard:
        return 1
    return 1 if (args.strict and not ok) else 0
