"""The :class:`Snapshotter` protocol (see :mod:`pyimg.snapshotters`).

Its own module: a ``typing.Protocol`` needs typing (~3 ms to import here), which
`pyimg run` does without; ``pyimg.snapshotters.Snapshotter`` loads it on first use.
"""

from __future__ import annotations

from typing import Protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from pyimg.snapshotters import Mount, SnapshotInfo, Usage


class Snapshotter(Protocol):
    name: str  # "overlay" or "native"
    supports_rebase: bool

    def stat(self, key: str) -> SnapshotInfo: ...
    def prepare(self, key: str, parent: str | None, *,
                labels: Mapping[str, str] | None = None) -> list[Mount]: ...
    def view(self, key: str, parent: str | None, *,
             labels: Mapping[str, str] | None = None) -> list[Mount]: ...
    def mounts(self, key: str) -> list[Mount]: ...
    def commit(self, name: str, key: str, *, parent: str | None = None,
               labels: Mapping[str, str] | None = None) -> None: ...
    def remove(self, key: str) -> None: ...
    def walk(self) -> Iterator[SnapshotInfo]: ...
    def usage(self, key: str) -> Usage: ...
    def upper_dir(self, key: str) -> str:
        """The directory an applier writes an active snapshot's changes into.

        For a committed snapshot, the directory holding that snapshot's own
        files (its layer, for overlay; the whole tree, for native): read it,
        never write it.  Views are refused.
        """
        ...
    def cleanup(self) -> list[str]:
        """Remove directories no metadata row owns (after a crash); returns them."""
        ...
