"""A small, safe subset of Go templates over a JSON view, for ``--format '{{...}}'``.

Nothing is evaluated as code: an action is parsed into field paths, string
and integer literals and three functions, then looked up in plain data.

Grammar of what is inside ``{{ }}``::

    pipeline := command ("|" command)*        # the left value becomes the last argument
    command  := operand | FUNC operand*       # FUNC: json, index, join
    operand  := "." | .Field.Sub.0 | "string" | 123

Values print as Go prints them: lists ``[a b]``, maps ``map[k:v]``, null
``<nil>``; a missing map key prints ``<no value>``; an unknown field of a
struct (the view's own objects, :class:`Struct`) is an error, as in Go.
A dotted map key (a label such as ``org.opencontainers.image.title``) can be
written as a path: components are joined again when a key is not found,
or looked up with ``index .Labels "a.b"``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pyimg.errors import InvalidArgument

_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}", re.S)
_TOKEN = re.compile(r'\s*(?:(\|)|("(?:[^"\\]|\\.)*")|(-?[0-9]+)|(\.[^\s|]*)|([A-Za-z_]\w*))')
_MISSING = object()


class Struct(dict[str, Any]):
    """A JSON object with fixed fields: unknown fields are errors, not ``<no value>``."""


def render_template(template: str, view: Any) -> str:
    """``template`` with each ``{{action}}`` replaced by its value's text."""
    out: list[str] = []
    pos = 0
    for m in _ACTION.finditer(template):
        out.append(template[pos:m.start()])
        out.append(_text(_pipeline(m.group(1), view)))
        pos = m.end()
    rest = template[pos:]
    if "{{" in rest or "}}" in rest:
        raise InvalidArgument(f"invalid --format {template!r}: unbalanced {{{{ }}}}")
    out.append(rest)
    return "".join(out)


def is_template(text: str) -> bool:
    return "{{" in text


def select_field(view: Any, path: str) -> Any:
    """The value at a dotted ``path``: ``Config.Cmd``, ``Layers.0.Digest`` (leading . optional)."""
    path = path.strip()
    if path in ("", "."):
        return view
    return _lookup(view, path.removeprefix(".").split("."), path)


def field_text(value: Any) -> str:
    """``--field`` output: strings as they are, everything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, _NoValue):
        return "<no value>"
    return json.dumps(value)


# evaluation ---------------------------------------------------------------


def _tokens(action: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    action = action.rstrip()
    while pos < len(action):
        m = _TOKEN.match(action, pos)
        if m is None or m.end() == pos:
            raise InvalidArgument(f"invalid template action {{{{{action}}}}}: cannot parse"
                                  f" {action[pos:]!r}")
        kind = ("pipe", "string", "int", "field", "func")[m.lastindex - 1 if m.lastindex else 0]
        out.append((kind, m.group(m.lastindex or 0)))
        pos = m.end()
    return out


def _pipeline(action: str, view: Any) -> Any:
    tokens = _tokens(action)
    if not tokens:
        raise InvalidArgument("invalid template: empty action {{}}")
    commands: list[list[tuple[str, str]]] = [[]]
    for tok in tokens:
        if tok[0] == "pipe":
            commands.append([])
        else:
            commands[-1].append(tok)
    value: Any = _MISSING
    for cmd in commands:
        if not cmd:
            raise InvalidArgument(f"invalid template action {{{{{action}}}}}: empty command")
        value = _command(cmd, view, value, action)
    return value


def _operand(tok: tuple[str, str], view: Any, action: str) -> Any:
    kind, text = tok
    if kind == "string":
        return json.loads(text)
    if kind == "int":
        return int(text)
    if kind == "field":
        return select_field(view, text)
    raise InvalidArgument(f"invalid template action {{{{{action}}}}}: {text!r} is not a value")


def _command(cmd: list[tuple[str, str]], view: Any, piped: Any, action: str) -> Any:
    head = cmd[0]
    if head[0] != "func":
        if len(cmd) != 1 or piped is not _MISSING:
            raise InvalidArgument(f"invalid template action {{{{{action}}}}}: a value cannot"
                                  " take arguments")
        return _operand(head, view, action)
    args = [_operand(t, view, action) for t in cmd[1:]]
    if piped is not _MISSING:
        args.append(piped)
    name = head[1]
    if name == "json" and len(args) == 1:
        return _Raw(json.dumps(None if isinstance(args[0], _NoValue) else args[0]))
    if name == "index" and len(args) >= 2:
        value = args[0]
        for key in args[1:]:
            value = _step(value, key, action)
        return value
    if name == "join" and len(args) == 2 and isinstance(args[0], list):
        return _Raw(str(args[1]).join(_text(x) for x in args[0]))
    if name in ("json", "index", "join"):
        raise InvalidArgument(f"invalid template action {{{{{action}}}}}: wrong arguments"
                              f" for {name}")
    raise InvalidArgument(f"invalid template action {{{{{action}}}}}: unknown function {name!r}",
                          hint="available: json, index, join")


def _lookup(value: Any, parts: list[str], path: str) -> Any:
    i = 0
    while i < len(parts):
        part = parts[i]
        if isinstance(value, dict) and part not in value and not isinstance(value, Struct):
            # a dotted map key written as a path: join the rest back together
            for j in range(len(parts), i + 1, -1):
                joined = ".".join(parts[i:j])
                if joined in value:
                    value, i = value[joined], j
                    break
            else:
                return _NoValue()
            continue
        value = _step(value, part, path)
        i += 1
    return value


def _step(value: Any, key: Any, path: str) -> Any:
    if isinstance(value, Struct):
        if key not in value:
            fields = ", ".join(value)
            raise InvalidArgument(f"template field {path!r}: no field {key!r}",
                                  hint=f"fields here: {fields}")
        return value[key]
    if isinstance(value, dict):
        return value.get(key, _NoValue()) if isinstance(key, str) else _NoValue()
    if isinstance(value, list):
        try:
            return value[int(key)]
        except (ValueError, IndexError):
            raise InvalidArgument(f"template field {path!r}: no element {key!r} in a list"
                                  f" of {len(value)}") from None
    if isinstance(value, _NoValue):
        return value
    raise InvalidArgument(f"template field {path!r}: cannot look up {key!r} in a"
                          f" {type(value).__name__}")


class _NoValue:
    def __repr__(self) -> str:
        return "<no value>"


class _Raw(str):
    """Text already rendered (``json``, ``join``): printed as is."""


def _text(value: Any) -> str:
    if isinstance(value, str):
        return str(value)
    if isinstance(value, _NoValue):
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(_text(x) for x in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_text(v)}" for k, v in sorted(value.items())) + "]"
    return str(value)
