"""JSON documents read and written through the ``_json`` C module, without importing
the ``json`` package.

``import json`` costs ~4 ms here (it compiles regular expressions, importing ``re``
and ``enum``): as much as a tenth of a small `pyimg pull`, which reads a few JSON
documents.  :func:`loads` runs the C scanner that :func:`json.loads` itself runs
(same context: strict, ``float``, ``int``, the NaN/Infinity constants, no hooks) on
the document, and gives its result; anything else -- not a UTF-8 object or array,
a scanning error, extra data -- is handed to :func:`json.loads`, which then gives
the same result or raises its own error.  :func:`dumps` writes what
:func:`json.dumps` writes for a flat object of strings, integers, booleans and
None, and hands anything else to it.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


class _Context:
    """What ``json.decoder.JSONDecoder()`` hands the C scanner."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"),
                      "NaN": float("nan")}.__getitem__


_scan: Any = None
_quote: Any = None
try:
    import _json
except ImportError:  # another Python: the json package does it all
    pass
else:
    _scan = _json.make_scanner(_Context())  # type: ignore[arg-type]
    _quote = _json.encode_basestring_ascii
_WHITESPACE = " \t\n\r"  # json.decoder.WHITESPACE


def loads(data: bytes | bytearray | str) -> Any:
    """``json.loads(data)``."""
    text = None
    if isinstance(data, bytes | bytearray):
        # json.detect_encoding: UTF-8 unless a BOM or a NUL says otherwise
        if data[:1] in (b"{", b"[") and (len(data) < 2 or data[1] != 0):
            try:
                text = data.decode("utf-8", "surrogatepass")
            except UnicodeDecodeError:
                text = None
    elif isinstance(data, str) and data[:1] in ("{", "["):
        text = data
    if text is not None and _scan is not None:
        try:
            obj, end = _scan(text, 0)
        except Exception:
            pass  # json.loads says what is wrong
        else:
            if not text[end:].strip(_WHITESPACE):
                return obj
    import json

    return json.loads(data)


def dumps(obj: Mapping[str, str | int | bool | None]) -> str:
    """``json.dumps(obj)`` of a flat object."""
    if _quote is not None and type(obj) is dict:
        parts = []
        for key, value in obj.items():
            if type(key) is not str:
                break
            if type(value) is str:
                text = _quote(value)
            elif value is None:
                text = "null"
            elif value is True or value is False:
                text = "true" if value else "false"
            elif type(value) is int:
                text = int.__repr__(value)
            else:
                break
            parts.append(f"{_quote(key)}: {text}")
        else:
            return "{" + ", ".join(parts) + "}"
    import json

    return json.dumps(obj)
