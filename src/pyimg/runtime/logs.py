"""Container logs in docker's json-file format.

One JSON object per line: ``{"log": "text\\n", "stream": "stdout",
"time": "2026-11-28T18:24:06.123456789Z"}``, as ``docker logs`` and tools
that read ``/var/lib/docker/containers/*/*-json.log`` expect.  A chunk is
split at newlines so that each line gets its own timestamp; a chunk without
a trailing newline is written as is (docker does the same for partial lines).
"""

from __future__ import annotations

import json
import os
import time
from _thread import allocate_lock

from pyimg import record

TYPE_CHECKING = False  # the shim imports this: no typing, dataclasses or pathlib
if TYPE_CHECKING:
    import threading
    from collections.abc import Iterator
    from typing import BinaryIO

    from pyimg.fsutil import StrPath


def rfc3339_nano(ts: float | None = None) -> str:
    ns = time.time_ns() if ts is None else int(ts * 1e9)
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


class LogWriter:
    """Appends records; thread-safe (stdout and stderr pumps share it)."""

    def __init__(self, path: StrPath) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._lock = allocate_lock()

    def write(self, stream: str, data: bytes) -> None:
        text = data.decode("utf-8", errors="replace")
        now = rfc3339_nano()
        lines = text.splitlines(keepends=True)
        out = "".join(json.dumps({"log": ln, "stream": stream, "time": now}) + "\n"
                      for ln in lines)
        with self._lock:
            os.write(self._fd, out.encode())

    def close(self) -> None:
        os.close(self._fd)


class Record(record.Record):
    """One line of a log: ``stream`` (stdout or stderr), ``text``, ``time`` (RFC 3339)."""

    _fields = ("stream", "text", "time")
    __slots__ = _fields
    stream: str
    text: str
    time: str

    def __init__(self, stream: str, text: str, time: str) -> None:
        self._set(stream, text, time)


def read(path: StrPath, *, tail: int | None = None) -> list[Record]:
    """The records of a log (the last ``tail`` lines with ``tail``)."""
    return read_at(path, tail=tail)[0]


def read_at(path: StrPath, *, tail: int | None = None) -> tuple[list[Record], int]:
    """:func:`read`, and the byte offset where :func:`follow` picks up from.

    A partly written last line is left for ``follow``.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return [], 0
    end = data.rfind(b"\n") + 1
    records = [r for r in (_parse(line) for line in data[:end].splitlines()) if r]
    if tail is not None and tail >= 0:
        records = records[max(0, len(records) - tail):]
    return records, end


def follow(path: StrPath, *, stop: threading.Event, poll: float = 0.1,
           start: int = 0) -> Iterator[Record]:
    """Records appended from byte ``start`` on, until ``stop`` is set (then drained)."""
    with open(path, "rb") as f:
        f.seek(start)
        pending = b""
        while True:
            chunk = f.read(65536)
            if chunk:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    r = _parse(line)
                    if r:
                        yield r
                continue
            if stop.is_set():
                return
            time.sleep(poll)


def _parse(line: bytes) -> Record | None:
    try:
        obj = json.loads(line)
        return Record(str(obj["stream"]), str(obj["log"]), str(obj["time"]))
    except (ValueError, KeyError, TypeError):
        return None


def pump(source: BinaryIO | int, stream: str, log: LogWriter,
         tee: list[BinaryIO | None] | None = None) -> None:
    """Copy a pipe into the log until EOF (a thread body); ``tee`` also gets the bytes."""
    fd = source if isinstance(source, int) else source.fileno()
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            return
        if not data:
            return
        log.write(stream, data)
        for out in tee or ():
            if out is not None:
                try:
                    out.write(data)
                    out.flush()
                except (OSError, ValueError):
                    pass
