"""Renderers for pull progress events: tqdm bars, plain lines, JSON lines.

Import-light (a small pull is import-budgeted, see docs/design.md): tqdm is
imported for bars only (a terminal), json for JSON lines only.
"""

from __future__ import annotations

import sys
import time
from _thread import allocate_lock  # threading's Lock, without threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

    from pyimg.pull import ProgressEvent


def _short(ev: ProgressEvent) -> str:
    return ev.desc.digest.short if ev.desc else ""


class JsonProgress:
    """One JSON object per line, for CI and fleets (throttled per blob)."""

    def __init__(self, out: IO[str], interval: float = 0.5) -> None:
        import json

        self._dumps = json.dumps
        self.out = out
        self.interval = interval
        self._last: dict[str, float] = {}
        self._lock = allocate_lock()

    def __call__(self, ev: ProgressEvent) -> None:
        key = _short(ev)
        now = time.monotonic()
        with self._lock:
            if ev.kind == "progress":
                if now - self._last.get(key, 0.0) < self.interval:
                    return
                self._last[key] = now
            obj: dict[str, Any] = {"event": ev.kind, "time": round(time.time(), 3)}
            if ev.desc:
                obj.update(digest=str(ev.desc.digest), mediaType=ev.desc.media_type)
            if ev.total or ev.done:
                obj.update(current=ev.done, total=ev.total)
            if ev.name:
                obj["name"] = ev.name
            self.out.write(self._dumps(obj) + "\n")
            self.out.flush()

    def close(self) -> None:
        pass


class PlainProgress:
    """Line per state change, as docker prints when stdout is not a terminal."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self._lock = allocate_lock()

    def __call__(self, ev: ProgressEvent) -> None:
        text = {
            "resolved": lambda: f"resolved {ev.name or ''} to {ev.desc.digest if ev.desc else ''}",
            "start": lambda: f"{_short(ev)}: downloading {ev.total} bytes" + (
                f" (resuming at {ev.done})" if ev.done else ""),
            "waiting": lambda: f"{_short(ev)}: waiting for another pyimg process",
            "done": lambda: f"{_short(ev)}: done",
            "skipped": lambda: f"{_short(ev)}: already exists",
        }.get(ev.kind)
        if text is not None:
            with self._lock:
                self.out.write(text().strip() + "\n")
                self.out.flush()

    def close(self) -> None:
        pass


class BarProgress:
    """tqdm: a bar per blob plus a total, on a terminal."""

    def __init__(self, out: IO[str]) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.out = out
        self._bars: dict[str, Any] = {}
        self._total = tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024,
                           desc="total", file=out, position=0, leave=True, dynamic_ncols=True)
        self._lock = allocate_lock()

    def __call__(self, ev: ProgressEvent) -> None:
        if ev.desc is None or ev.kind in ("resolved", "stored"):
            return
        key = _short(ev)
        with self._lock:
            bar = self._bars.get(key)
            if bar is None:
                bar = self._tqdm(total=ev.total, unit="B", unit_scale=True, unit_divisor=1024,
                                 desc=key, file=self.out, leave=True, dynamic_ncols=True,
                                 position=len(self._bars) + 1)
                self._bars[key] = bar
                self._total.total = (self._total.total or 0) + ev.total
                self._total.refresh()
            step = ev.done - bar.n
            if ev.kind in ("progress", "start", "done", "skipped") and step > 0:
                bar.update(step)
                self._total.update(step)
            if ev.kind == "skipped":
                bar.set_postfix_str("exists")
            elif ev.kind == "waiting":
                bar.set_postfix_str("waiting for another process")

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._total.close()


class NoProgress:
    def __call__(self, ev: ProgressEvent) -> None:
        pass

    def close(self) -> None:
        pass


def make_progress(mode: str, quiet: bool) -> JsonProgress | PlainProgress | BarProgress | \
        NoProgress:
    if mode == "json":
        return JsonProgress(sys.stdout)
    if quiet or mode == "none":
        return NoProgress()
    if mode == "tty" or (mode == "auto" and sys.stderr.isatty()):
        return BarProgress(sys.stderr)
    return PlainProgress(sys.stdout)  # as docker: progress lines on stdout when piped
