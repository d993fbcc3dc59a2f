import pytest

from pyimg import reference
from pyimg.errors import InvalidArgument

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(("text", "normal", "familiar"), [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
    ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
    ("127.0.0.1:5000/ns/repo:tag", "127.0.0.1:5000/ns/repo:tag", "127.0.0.1:5000/ns/repo:tag"),
    (f"host:5000/ns/repo@{D}", f"host:5000/ns/repo@{D}", f"host:5000/ns/repo@{D}"),
    (f"repo:tag@{D}", f"docker.io/library/repo:tag@{D}", f"repo:tag@{D}"),
    ("a.b/c/d/e__f-g.h", "a.b/c/d/e__f-g.h:latest", "a.b/c/d/e__f-g.h:latest"),
])
def test_parse_normalises_like_docker(text: str, normal: str, familiar: str) -> None:
    ref = reference.parse(text)
    assert str(ref) == normal
    assert ref.familiar() == familiar
    assert reference.parse(str(ref)) == ref  # round trip


def test_digest_wins_as_object() -> None:
    ref = reference.parse(f"host:5000/r:t@{D}")
    assert ref.object == D and ref.tag == "t"
    assert reference.parse("host:5000/r").object == "latest"


@pytest.mark.parametrize("bad", [
    "", " busybox", "Busybox", "busybox:", "busybox:-x", "busybox@sha256:abc",
    "busybox@md5:" + "a" * 32, "host:5000/", "a//b", "repo:" + "t" * 129, "a/../b",
    "UPPER/case", "-leading", "host:port/x",
])
def test_bad_references_are_refused_with_reason(bad: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        reference.parse(bad)
    assert "invalid reference" in str(exc.value)


# The grammar is matched by hand (no `re` on the pull path): it must agree with the
# regular expressions it replaces on every string, including the `$` before a
# final newline.
_SAMPLES = [
    "", "a", "a.b", "a..b", "a_b", "a__b", "a___b", "a-b", "a--b", "a-", "-a", "a.", ".a",
    "a\n", "a\n\n", "\n", "A", "a.b-c_d__e", "ab-.c", "[::1]", "[::1]:5000", "[]", "[::1",
    "[::1]:", "[::1]x", "[g]", "localhost:5000", "a.b.c:80", "a-b.c", "a-.b", "a.-b", ":80",
    "a:", "a:8x", "a:\u0663", "a.b\n", "x" * 64, "t" * 128, "t" * 129, "t" * 128 + "\n", "_x",
    "\u00e9x", "x\u00b2", "x.y-z", "a:1:2", "\u0663",
]


def _random_samples(n: int) -> list[str]:
    import random

    rnd = random.Random(7)
    alphabet = "aZ09._-:[]\n/\u00e9b_A-f:"
    return [
        "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 8))) for _ in range(n)]


@pytest.mark.parametrize(("pattern", "check"), [
    (reference._COMPONENT, reference.is_component), (reference._TAG, reference.is_tag),
    (reference._DOMAIN, reference.is_domain)], ids=["component", "tag", "domain"])
def test_the_grammar_is_the_regular_expressions(pattern: str, check: object) -> None:
    import re

    assert callable(check)
    for text in _SAMPLES + _random_samples(20_000):
        assert check(text) == bool(re.match(pattern, text)), repr(text)
