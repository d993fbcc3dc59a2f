"""Child process entry point: apply layers on request, one JSON line each way.

    parent → child   {"blob": PATH, "compression": "gzip", "root": DIR, "mode": "overlay",
                      "limits": {...}, "lowers": [DIR, ...]}
    child → parent   {"ok": true, "result": {...ApplyResult...}}
                     {"ok": false, "type": "UnsafeEntryError", "message": "...", "hint": null}

Python's tarfile holds the GIL while it parses headers, so layers are
extracted by processes, not threads (measured: two threads are slower than
one; two processes ~1.8x).  A child is started with ``python -m`` (no fork
of a threaded parent) and serves requests until its stdin closes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def serve(stdin: Any, stdout: Any) -> None:
    from pyimg.archive import Limits, WhiteoutMode
    from pyimg.archive.apply import apply_layer
    from pyimg.errors import PyimgError

    for line in stdin:
        req = json.loads(line)
        try:
            with open(req["blob"], "rb") as blob:
                res = apply_layer(blob, req["compression"], Path(req["root"]),
                                  whiteouts=WhiteoutMode(req["mode"]),
                                  limits=Limits(**req.get("limits", {})),
                                  lowers=[Path(p) for p in req.get("lowers", ())])
            out: dict[str, Any] = {"ok": True, "result": {
                "diff_id": str(res.diff_id), "size": res.size, "entries": res.entries,
                "deferred": res.deferred, "dirs": res.dirs,
                "skipped_devices": res.skipped_devices}}
        except PyimgError as exc:
            out = {"ok": False, "type": type(exc).__name__, "message": exc.message,
                   "hint": exc.hint}
        except OSError as exc:
            out = {"ok": False, "type": "OSError", "message": f"{req['blob']}: {exc}",
                   "hint": None}
        stdout.write(json.dumps(out) + "\n")
        stdout.flush()


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)
