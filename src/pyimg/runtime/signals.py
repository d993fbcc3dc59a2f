"""Signal names as docker and runc accept them."""

from __future__ import annotations

import signal

from pyimg.errors import InvalidArgument


def parse_signal(text: str) -> int:
    """A signal as docker and runc take it: ``SIGUSR1``, ``USR1``, ``usr1`` or ``10``."""
    name = text.strip().upper()
    if name.isdigit():
        num = int(name)
        if not 0 < num < signal.NSIG:
            raise InvalidArgument(f"invalid signal {text!r}: out of range")
        return num
    name = name if name.startswith("SIG") else f"SIG{name}"
    sig = getattr(signal, name, None)
    if not isinstance(sig, signal.Signals):
        raise InvalidArgument(f"invalid signal {text!r}",
                              hint="use a name like TERM or SIGUSR1, or a number")
    return int(sig)
