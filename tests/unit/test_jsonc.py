"""pyimg.jsonc reads and writes JSON as the json package does (without importing it)."""

from __future__ import annotations

import json

import pytest

from pyimg import jsonc
from tests.fastcli import imports_nothing_heavy

DOCUMENTS: list[bytes | str] = [
    b"{}", b"[]", b'{"a":1}', b'{"a": [1, 2.5e3, -0, true, false, null, NaN, Infinity,'
    b' -Infinity, "\\u00e9\\ud800"]}  \n', b'{"a":1} x', b"{", b' {"a":1}',
    b'\xef\xbb\xbf{}', '{"\u00e9": "\u00fc"}'.encode(), '{"\u00e9": "\u00fc"}'.encode("utf-16"),
    '{"a":1}'.encode("utf-16-le"), '{"a":1}'.encode("utf-32"), b'{"a":"\xff"}', b'{"a": 01}',
    b'{"a":1,}', '{"a":1}', "\ufeff{}", b'{"a": "\\t"}', b'{"a": "\t"}', b'{"a":1}\x00',
    b'{"a": {"b": [{"c": 1e400}]}}', b'{"a": 1}\r\n\t ', b'{"a": "b"}{}', b"x", b"", "",
    b'{"' + b"k" * 5000 + b'": 12345678901234567890}', b"[" * 100 + b"]" * 100,
    bytearray(b'{"a": 2}'),
]


def _outcome(fn: object, arg: object) -> tuple[object, ...]:
    assert callable(fn)
    try:
        return ("ok", repr(fn(arg)))
    except Exception as exc:  # the same error, message included
        return ("error", type(exc), str(exc))


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda d: repr(d)[:40])
def test_loads_is_json_loads(doc: bytes | str) -> None:
    assert _outcome(jsonc.loads, doc) == _outcome(json.loads, doc)


@pytest.mark.parametrize("obj", [
    {}, {"a": 1, "b": "x\u00e9\"\\\n", "c": None, "d": True, "e": False, "f": -5},
    {"ref": "sha256:" + "a" * 64, "size": 123}, {"a": 1.5}, {1: 2}, {"a": [1]}, {"a": 2**70},
])
def test_dumps_is_json_dumps(obj: dict[object, object]) -> None:
    assert jsonc.dumps(obj) == json.dumps(obj)  # type: ignore[arg-type]


def test_reading_a_document_imports_no_json() -> None:
    imports_nothing_heavy(
        "import sys; from pyimg import jsonc; "
        "assert jsonc.loads(b'{\"a\": [1, 2]}') == {'a': [1, 2]}; "
        "assert jsonc.dumps({'a': 1}) == '{\"a\": 1}'; "
        "assert 'json' not in sys.modules and 're' not in sys.modules")
