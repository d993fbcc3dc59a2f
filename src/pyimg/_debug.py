"""Debug logging that costs nothing until ``--debug`` asks for it.

``import logging`` costs ~10 ms on this project's machines, a third of a
small pull by skopeo; modules on the pull path log through :func:`log`,
which imports :mod:`logging` only once debugging is enabled.
"""

from __future__ import annotations

import sys

_enabled = False


def enable() -> None:
    global _enabled
    import logging

    logging.basicConfig(level=logging.DEBUG, format="debug: %(name)s: %(message)s",
                        stream=sys.stderr)
    _enabled = True


def enabled() -> bool:
    return _enabled


def log(name: str, fmt: str, *args: object) -> None:
    if _enabled:
        import logging

        logging.getLogger(name).debug(fmt, *args)
