"""docker config.json credentials and docker-credential-* helpers."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pyimg.errors import ConfigError, CredentialHelperError
from pyimg.remote.credentials import (
    DOCKER_HUB_KEY,
    Credential,
    DockerConfig,
    default_config_path,
    normalize_key,
)

HELPER = "pyimgtest"

# A credential helper speaking docker's protocol, backed by a JSON file.
_HELPER_SCRIPT = textwrap.dedent(
    """\
    #!{python}
    import json, os, sys
    db = os.environ["PYIMGTEST_DB"]
    action = sys.argv[1]
    data = sys.stdin.read()
    with open(db + ".log", "a") as log:
        log.write(json.dumps([action, data]) + "\\n")
    store = json.load(open(db)) if os.path.exists(db) else {{}}
    if action == "get":
        if data == "broken.example":
            sys.stderr.write("keychain locked: unlock it first\\nsecond line\\n")
            sys.exit(3)
        if data not in store:
            print("credentials not found in native keychain")
            sys.exit(1)
        user, secret = store[data]
        print(json.dumps({{"ServerURL": data, "Username": user, "Secret": secret}}))
    elif action == "store":
        req = json.loads(data)
        store[req["ServerURL"]] = [req["Username"], req["Secret"]]
        json.dump(store, open(db, "w"))
    elif action == "erase":
        store.pop(data, None)
        json.dump(store, open(db, "w"))
    """
)


@pytest.fixture
def helper_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / f"docker-credential-{HELPER}"
    script.write_text(_HELPER_SCRIPT.format(python=sys.executable))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    db = tmp_path / "helper.json"
    monkeypatch.setenv("PYIMGTEST_DB", str(db))
    return db


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _write(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def _helper_log(db: Path) -> list[list[str]]:
    log = db.with_name(db.name + ".log")
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


# -- paths and loading -----------------------------------------------------


def test_default_config_path_prefers_docker_config() -> None:
    assert default_config_path({"DOCKER_CONFIG": "/x", "HOME": "/h"}) == Path("/x/config.json")
    assert default_config_path({"HOME": "/h"}) == Path("/h/.docker/config.json")


def test_missing_file_is_empty(tmp_path: Path) -> None:
    config = DockerConfig.load(tmp_path / "nope" / "config.json")
    assert config.lookup("example.com") is None


@pytest.mark.parametrize(
    "text",
    ["{not json", "[1, 2]", '{"auths": []}', '{"auths": {"h": "x"}}', '{"credsStore": 3}'],
)
def test_malformed_file_names_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        DockerConfig.load(path)
    assert str(path) in str(info.value)


def test_bad_base64_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "config.json", {"auths": {"h.example": {"auth": "!!notb64"}}})
    with pytest.raises(ConfigError, match=r"h\.example"):
        DockerConfig.load(path).lookup("h.example")


# -- auths -----------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "registry.example.com:5000",
        "https://registry.example.com:5000",
        "http://registry.example.com:5000",
        "https://registry.example.com:5000/v1/",
        "registry.example.com:5000/v2/",
    ],
)
def test_auth_key_normalisation(tmp_path: Path, key: str) -> None:
    path = _write(tmp_path / "config.json", {"auths": {key: {"auth": _b64("alice:s3:cret")}}})
    cred = DockerConfig.load(path).lookup("registry.example.com:5000")
    assert cred == Credential("alice", "s3:cret")


def test_other_host_does_not_match(tmp_path: Path) -> None:
    path = _write(tmp_path / "config.json", {"auths": {"a.example": {"auth": _b64("u:p")}}})
    config = DockerConfig.load(path)
    assert config.lookup("b.example") is None
    assert config.lookup("a.example:5000") is None


def test_docker_hub_key(tmp_path: Path) -> None:
    path = _write(tmp_path / "config.json", {"auths": {DOCKER_HUB_KEY: {"auth": _b64("bob:pw")}}})
    config = DockerConfig.load(path)
    assert config.lookup("docker.io") == Credential("bob", "pw")
    assert config.lookup("index.docker.io") == Credential("bob", "pw")


def test_username_password_and_identity_token_fields(tmp_path: Path) -> None:
    data = {
        "auths": {
            "a.example": {"username": "u", "password": "p"},
            "b.example": {"auth": _b64("u2:"), "identitytoken": "tok"},
            "c.example": {},
        }
    }
    config = DockerConfig.load(_write(tmp_path / "config.json", data))
    assert config.lookup("a.example") == Credential("u", "p")
    assert config.lookup("b.example") == Credential("u2", "", identity_token="tok")
    assert config.lookup("c.example") is None


def test_repr_hides_secrets() -> None:
    text = repr(Credential("u", "hunter2", identity_token="tok123"))
    assert "hunter2" not in text and "tok123" not in text


def test_normalize_key() -> None:
    assert normalize_key("https://Index.Docker.io/v1/") == "index.docker.io"
    assert normalize_key("localhost:5000") == "localhost:5000"


# -- helpers ---------------------------------------------------------------


def test_cred_helpers_take_precedence(tmp_path: Path, helper_db: Path) -> None:
    helper_db.write_text(json.dumps({"r.example": ["helper-user", "helper-secret"]}))
    data = {
        "credsStore": "does-not-exist",
        "credHelpers": {"r.example": HELPER},
        "auths": {"r.example": {"auth": _b64("file-user:file-pw")}},
    }
    config = DockerConfig.load(_write(tmp_path / "config.json", data))
    assert config.lookup("r.example") == Credential("helper-user", "helper-secret")
    assert _helper_log(helper_db) == [["get", "r.example"]]


def test_creds_store_used_for_every_host(tmp_path: Path, helper_db: Path) -> None:
    helper_db.write_text(json.dumps({DOCKER_HUB_KEY: ["hub", "pw"]}))
    config = DockerConfig.load(_write(tmp_path / "config.json", {"credsStore": HELPER}))
    assert config.lookup("docker.io") == Credential("hub", "pw")
    assert _helper_log(helper_db) == [["get", DOCKER_HUB_KEY]]


def test_helper_not_found_falls_back_to_auths(tmp_path: Path, helper_db: Path) -> None:
    data = {"credsStore": HELPER, "auths": {"r.example": {"auth": _b64("u:p")}}}
    config = DockerConfig.load(_write(tmp_path / "config.json", data))
    assert config.lookup("r.example") == Credential("u", "p")
    assert config.lookup("other.example") is None


def test_helper_identity_token(tmp_path: Path, helper_db: Path) -> None:
    helper_db.write_text(json.dumps({"r.example": ["<token>", "refresh-me"]}))
    config = DockerConfig.load(_write(tmp_path / "config.json", {"credsStore": HELPER}))
    assert config.lookup("r.example") == Credential("", "", identity_token="refresh-me")


def test_helper_failure_reports_first_stderr_line(tmp_path: Path, helper_db: Path) -> None:
    config = DockerConfig.load(_write(tmp_path / "config.json", {"credsStore": HELPER}))
    with pytest.raises(CredentialHelperError) as info:
        config.lookup("broken.example")
    message = str(info.value)
    assert f"docker-credential-{HELPER}" in message
    assert "keychain locked: unlock it first" in message
    assert "second line" not in message


def test_helper_missing_from_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    config = DockerConfig.load(_write(tmp_path / "config.json", {"credsStore": "nosuch"}))
    with pytest.raises(CredentialHelperError) as info:
        config.lookup("r.example")
    assert "docker-credential-nosuch" in info.value.message
    assert info.value.hint


# -- store and erase -------------------------------------------------------


def test_store_and_erase_in_file_preserve_other_keys(tmp_path: Path) -> None:
    path = tmp_path / "docker" / "config.json"
    path.parent.mkdir()
    original: dict[str, Any] = {
        "auths": {"keep.example": {"auth": _b64("k:v"), "email": "x@y"}},
        "proxies": {"default": {"httpProxy": "http://proxy:3128"}},
        "detachKeys": "ctrl-e,e",
    }
    _write(path, original)
    config = DockerConfig.load(path)
    config.store("new.example:5000", Credential("alice", "pw"))

    written = json.loads(path.read_text())
    assert written["proxies"] == original["proxies"]
    assert written["detachKeys"] == "ctrl-e,e"
    assert written["auths"]["keep.example"] == original["auths"]["keep.example"]
    assert written["auths"]["new.example:5000"] == {"auth": _b64("alice:pw")}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert DockerConfig.load(path).lookup("new.example:5000") == Credential("alice", "pw")
    assert config.lookup("new.example:5000") == Credential("alice", "pw")
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]  # no temp left

    config.erase("new.example:5000")
    written = json.loads(path.read_text())
    assert "new.example:5000" not in written["auths"]
    assert written["proxies"] == original["proxies"]
    assert DockerConfig.load(path).lookup("new.example:5000") is None


def test_store_replaces_existing_key_form(tmp_path: Path) -> None:
    path = _write(tmp_path / "config.json", {"auths": {"https://r.example": {"auth": _b64("a:b")}}})
    DockerConfig.load(path).store("r.example", Credential("c", "d"))
    assert json.loads(path.read_text())["auths"] == {"https://r.example": {"auth": _b64("c:d")}}


def test_store_creates_private_directory(tmp_path: Path) -> None:
    path = tmp_path / "new" / "config.json"
    DockerConfig.load(path).store("docker.io", Credential("u", "p"))
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"auths": {DOCKER_HUB_KEY: {"auth": _b64("u:p")}}}


def test_store_keeps_keys_written_by_others_since_load(tmp_path: Path) -> None:
    path = _write(tmp_path / "config.json", {})
    config = DockerConfig.load(path)
    _write(path, {"currentContext": "remote"})
    config.store("r.example", Credential("u", "p"))
    assert json.loads(path.read_text())["currentContext"] == "remote"


def test_store_writes_through_symlink(tmp_path: Path) -> None:
    real = _write(tmp_path / "dotfiles.json", {"x": 1})
    link = tmp_path / "config.json"
    link.symlink_to(real)
    DockerConfig.load(link).store("r.example", Credential("u", "p"))
    assert link.is_symlink()
    assert json.loads(real.read_text())["x"] == 1


def test_store_and_erase_through_helper(tmp_path: Path, helper_db: Path) -> None:
    path = _write(
        tmp_path / "config.json",
        {"credHelpers": {"r.example": HELPER}, "auths": {"r.example": {"auth": _b64("o:l")}}},
    )
    config = DockerConfig.load(path)
    config.store("r.example", Credential("alice", "pw"))
    assert json.loads(helper_db.read_text()) == {"r.example": ["alice", "pw"]}
    # The secret lives in the helper only; docker leaves an empty marker.
    assert json.loads(path.read_text())["auths"] == {"r.example": {}}
    assert config.lookup("r.example") == Credential("alice", "pw")

    config.erase("r.example")
    assert json.loads(helper_db.read_text()) == {}
    assert json.loads(path.read_text())["auths"] == {}
    assert config.lookup("r.example") is None
    actions = [action for action, _ in _helper_log(helper_db)]
    assert actions == ["store", "get", "erase", "get"]


def test_store_identity_token_through_helper(tmp_path: Path, helper_db: Path) -> None:
    config = DockerConfig.load(_write(tmp_path / "config.json", {"credsStore": HELPER}))
    config.store("r.example", Credential("", "", identity_token="tok"))
    assert json.loads(helper_db.read_text()) == {"r.example": ["<token>", "tok"]}
