"""The ``{{.Field}}`` selector: Go-template output conventions, no code execution."""

from __future__ import annotations

from typing import Any

import pytest

from pyimg.errors import InvalidArgument
from pyimg.inspect.select import Struct, field_text, render_template, select_field


def view() -> Struct:
    return Struct({
        "Architecture": "amd64",
        "Config": Struct({"Cmd": ["sh", "-c", "echo hi"], "Entrypoint": None,
                          "Env": ["A=1", "B=2"], "Labels": {"org.x.y": "v", "plain": "p"}}),
        "Labels": {"org.x.y": "v"},
        "Layers": [Struct({"Digest": "sha256:aa", "Size": 3}),
                   Struct({"Digest": "sha256:bb", "Size": 4})],
        "Local": False,
    })


@pytest.mark.parametrize(("template", "out"), [
    ("{{.Architecture}}", "amd64"),
    ("{{ .Architecture }}/{{.Local}}", "amd64/false"),
    ("{{.Config.Cmd}}", "[sh -c echo hi]"),
    ("{{json .Config.Cmd}}", '["sh", "-c", "echo hi"]'),
    ("{{.Config.Cmd | json}}", '["sh", "-c", "echo hi"]'),
    ("{{.Config.Entrypoint}}", "<nil>"),
    ("{{.Config.Labels}}", "map[org.x.y:v plain:p]"),
    ("{{index .Config.Labels \"org.x.y\"}}", "v"),
    ("{{.Labels.org.x.y}}", "v"),
    ("{{.Labels.missing}}", "<no value>"),
    ("{{.Layers.1.Digest}}", "sha256:bb"),
    ("{{index .Layers 0 \"Size\"}}", "3"),
    ("{{join .Config.Env \",\"}}", "A=1,B=2"),
    ("layers: {{len}}", None),
    ("no action", "no action"),
])
def test_templates(template: str, out: str | None) -> None:
    if out is None:
        with pytest.raises(InvalidArgument, match="unknown function"):
            render_template(template, view())
    else:
        assert render_template(template, view()) == out


@pytest.mark.parametrize("template", [
    "{{.Nope}}", "{{.Config.Nope}}", "{{.Layers.7.Digest}}", "{{.Architecture.x}}",
    "{{__import__('os').system('false')}}", "{{.A}", "{{}}", "{{json}}", "{{.A | | json}}",
    "{{\"x\" .Architecture}}",
])
def test_bad_templates_are_invalid_argument(template: str) -> None:
    with pytest.raises(InvalidArgument):
        render_template(template, view())


@pytest.mark.parametrize(("path", "out"), [
    ("Config.Cmd", '["sh", "-c", "echo hi"]'),
    (".Architecture", "amd64"),
    ("Layers.0.Size", "3"),
    ("Labels.org.x.y", "v"),
    ("Config.Entrypoint", "null"),
    ("Labels.nope", "<no value>"),
])
def test_fields(path: str, out: str) -> None:
    assert field_text(select_field(view(), path)) == out


def test_whole_view_and_plain_maps() -> None:
    v: Any = select_field(view(), ".")
    assert v["Architecture"] == "amd64"
    # plain (non-Struct) data, e.g. a container's JSON: missing keys are <no value>
    assert render_template("{{.a.b}} {{.x}}", {"a": {"b": 1}}) == "1 <no value>"
