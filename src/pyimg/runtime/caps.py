"""Capabilities of the container process: names → masks, and runc's order of applying them.

The order matters (runc ``libcontainer/capabilities`` + ``finalizeNamespace``):

1. :func:`drop_bounding` while still root (needs ``CAP_SETPCAP``);
2. ``PR_SET_KEEPCAPS`` around setgroups/setgid/setuid (:func:`keep_caps`), so a
   non-root user keeps its permitted set across setuid;
3. :func:`apply` sets effective/permitted/inheritable with capset(2), then the
   ambient set (which must be a subset of permitted ∩ inheritable).
"""

from __future__ import annotations

from pyimg import linux
from pyimg.record import Record
from pyimg.runtime.capnames import ALL_CAPABILITIES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

#: capability name → number
CAP_NUMBERS: dict[str, int] = {name: i for i, name in enumerate(ALL_CAPABILITIES)}


def last_cap() -> int:
    """The highest capability this kernel knows (``/proc/sys/kernel/cap_last_cap``)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return len(ALL_CAPABILITIES) - 1


def mask(names: Iterable[str], last: int | None = None) -> int:
    """The bit mask of ``names``; unknown names (and caps above ``last``) are ignored,
    as runc does with a warning: a newer spec may name caps an older kernel lacks."""
    top = last_cap() if last is None else last
    out = 0
    for name in names:
        n = CAP_NUMBERS.get(name.upper() if name.upper().startswith("CAP_")
                            else "CAP_" + name.upper())
        if n is not None and n <= top:
            out |= 1 << n
    return out


def names(bits: int) -> list[str]:
    """The capability names set in ``bits``."""
    return [name for name, n in CAP_NUMBERS.items() if bits >> n & 1]


class CapSets(Record):
    """The five capability masks of a process."""

    _fields = ("bounding", "effective", "permitted", "inheritable", "ambient")
    __slots__ = _fields
    bounding: int
    effective: int
    permitted: int
    inheritable: int
    ambient: int

    def __init__(self, bounding: int, effective: int, permitted: int, inheritable: int,
                 ambient: int) -> None:
        self._set(bounding, effective, permitted, inheritable, ambient)

    @classmethod
    def from_spec(cls, caps: Mapping[str, Any] | None) -> CapSets:
        """``process.capabilities`` → masks; a missing set is empty (runtime-spec)."""
        caps = caps or {}
        top = last_cap()

        def get(key: str) -> int:
            value = caps.get(key) or []
            return mask([str(v) for v in value], top)

        return cls(get("bounding"), get("effective"), get("permitted"), get("inheritable"),
                   get("ambient"))


def drop_bounding(keep: int) -> None:
    """Drop every capability not in ``keep`` from the bounding set."""
    for n in range(last_cap() + 1):
        if not keep >> n & 1 and linux.prctl(linux.PR_CAPBSET_READ, n) == 1:
            linux.prctl(linux.PR_CAPBSET_DROP, n)


def keep_caps(on: bool) -> None:
    linux.prctl(linux.PR_SET_KEEPCAPS, 1 if on else 0)


def apply(sets: CapSets) -> None:
    """capset(2) the effective/permitted/inheritable sets, then set ambient."""
    linux.capset(sets.effective, sets.permitted, sets.inheritable)
    linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_CLEAR_ALL)
    for n in range(last_cap() + 1):
        if sets.ambient >> n & 1:
            linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_RAISE, n)
