"""A pool of layer-extraction processes (or threads, when one is enough).

``submit(job)`` returns a :class:`Pending` whose ``result()`` blocks until
the layer is applied.  Each process runs :mod:`pyimg.unpack.worker` and is
fed one job at a time by a thread of ours, so jobs go to whichever process
is free.  Processes are started lazily and live for the pool's lifetime:
their start-up (~30 ms) overlaps with downloads during a pull.

Import-light (a pull that unpacks imports this before its layers download, see
docs/design.md): ``_thread`` and ``_queue`` instead of threading and queue, and
subprocess and json only once a worker process is started.
"""

from __future__ import annotations

import os
import sys
from _queue import SimpleQueue
from _thread import allocate_lock, start_new_thread

from pyimg import errors
from pyimg.archive import ApplyResult, Limits, WhiteoutMode
from pyimg.digest import Digest
from pyimg.errors import PyimgError, UnpackError
from pyimg.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from _thread import LockType
    from typing import Any

    from pyimg.fsutil import StrPath


class Job(Record):
    _fields = ("blob", "compression", "root", "mode", "limits", "lowers")
    __slots__ = _fields
    blob: StrPath
    compression: str
    root: StrPath
    mode: WhiteoutMode
    limits: Limits
    lowers: tuple[StrPath, ...]

    def __init__(self, blob: StrPath, compression: str, root: StrPath, mode: WhiteoutMode,
                 limits: Limits | None = None, lowers: tuple[StrPath, ...] = ()) -> None:
        self._set(blob, compression, root, mode, Limits() if limits is None else limits,
                  lowers)

    def request(self) -> dict[str, Any]:
        return {"blob": os.fspath(self.blob), "compression": self.compression,
                "root": os.fspath(self.root), "mode": self.mode.value,
                "limits": self.limits.as_dict(), "lowers": [os.fspath(p) for p in self.lowers]}


class Pending:
    def __init__(self, job: Job) -> None:
        self.job = job
        self._done = allocate_lock()  # held until the result is set (a threading.Event)
        self._done.acquire()
        self._result: ApplyResult | None = None
        self._error: BaseException | None = None

    def set(self, result: ApplyResult | None, error: BaseException | None) -> None:
        self._result, self._error = result, error
        self._done.release()

    def done(self) -> bool:
        return not self._done.locked()

    def result(self) -> ApplyResult:
        if self._done.locked():
            self._done.acquire()  # until set() (^C interrupts it)
            self._done.release()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


class ApplyPool:
    """``processes=0`` applies in this process (on a thread): right for one layer."""

    def __init__(self, processes: int) -> None:
        self._queue: SimpleQueue[Pending | None] = SimpleQueue()
        self._threads: list[LockType] = []  # each released when its thread ends
        self._procs: list[subprocess.Popen[str]] = []
        self._lock = allocate_lock()
        self._size = max(processes, 1)
        self._in_process = processes == 0
        self._closed = False

    def submit(self, job: Job) -> Pending:
        pending = Pending(job)
        with self._lock:
            if self._closed:
                raise UnpackError("unpack pool is closed")
            if len(self._threads) < self._size:
                ended = allocate_lock()
                ended.acquire()
                self._threads.append(ended)
                start_new_thread(self._serve, (ended,))
        self._queue.put(pending)
        return pending

    def _serve(self, ended: LockType) -> None:
        try:
            self._serve_jobs()
        finally:
            ended.release()

    def _serve_jobs(self) -> None:
        proc = None if self._in_process else self._spawn()
        try:
            while (pending := self._queue.get()) is not None:
                try:
                    result = _apply_here(pending.job) if proc is None else _apply_in(proc,
                                                                                   pending.job)
                    pending.set(result, None)
                except BaseException as exc:  # handed to the waiter, never lost
                    pending.set(None, exc)
                    if proc is not None and proc.poll() is not None:
                        proc = self._spawn()  # a crashed child: next job gets a new one
        finally:
            if proc is not None:
                _stop(proc)

    def _spawn(self) -> subprocess.Popen[str]:
        import subprocess

        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "pyimg.unpack.worker"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                env=env, close_fds=True)
        with self._lock:
            self._procs.append(proc)
        return proc

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        for ended in threads:
            ended.acquire()  # a join

    def __enter__(self) -> ApplyPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def workers_for(layers: int, parallel: bool, processes: int | None = None) -> int:
    """Processes for unpacking ``layers`` layers; 0 means in this process.

    One layer gains nothing from a process (~30 ms to start), and without
    rebase the layers are applied one after another anyway.
    """
    wanted = processes if processes is not None else (os.cpu_count() or 1)
    if not parallel or layers < 2 or wanted < 2:
        return 0
    return min(wanted, layers)


def _apply_here(job: Job) -> ApplyResult:
    from pathlib import Path  # (the applier imports it anyway)

    from pyimg.archive.apply import apply_layer

    with open(job.blob, "rb") as blob:
        return apply_layer(blob, job.compression, Path(job.root), whiteouts=job.mode,
                           limits=job.limits, lowers=[Path(p) for p in job.lowers])


def _apply_in(proc: subprocess.Popen[str], job: Job) -> ApplyResult:
    import json

    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(json.dumps(job.request()) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
    except OSError as exc:
        raise UnpackError(f"unpack worker died: {exc}") from exc
    if not line:
        raise UnpackError(f"unpack worker exited with status {proc.wait()} while applying"
                          f" {os.path.basename(job.blob)}")
    answer = json.loads(line)
    if not answer["ok"]:
        raise _rebuild(answer)
    r = answer["result"]
    return ApplyResult(Digest.parse(r["diff_id"]), r["size"], r["entries"],
                       [(str(a), str(b)) for a, b in r["deferred"]],
                       r["dirs"], r["skipped_devices"])


def _rebuild(answer: dict[str, Any]) -> PyimgError:
    cls = getattr(errors, answer["type"], None)
    if not (isinstance(cls, type) and issubclass(cls, PyimgError)):
        cls = UnpackError
    err = cls.__new__(cls)
    PyimgError.__init__(err, answer["message"], hint=answer.get("hint"))
    return err


def _stop(proc: subprocess.Popen[str]) -> None:
    import subprocess

    try:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()
    finally:
        if proc.stdout is not None:
            proc.stdout.close()
