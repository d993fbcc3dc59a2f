"""Registry credentials from docker's ``config.json`` and credential helpers.

Users already have ``docker login`` state; reading the same file and the same
``docker-credential-*`` helpers means ``pyimg`` works without a second login.
Lookup follows docker's order: ``credHelpers[host]``, then ``credsStore``,
then the ``auths`` entry.  Unlike docker, an ``auths`` entry that carries
real credentials is still used when the helper has none for the host: CI
systems often write ``auths`` by hand on machines that have a ``credsStore``.

The path is always passed in; :func:`default_config_path` is for the CLI.
"""

from __future__ import annotations

from pyimg import jsonc
from pyimg.errors import ConfigError, CredentialHelperError
from pyimg.record import Record

# Import-light (every pull reads config.json, see docs/design.md): no dataclasses,
# typing, pathlib or json (the document is read by pyimg.jsonc); base64 for an ``auth``
# entry only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path
    from typing import Any

    from pyimg.fsutil import StrPath

#: The key docker uses for Docker Hub, in ``auths`` and towards helpers.
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
#: What helpers put in ``Username`` when ``Secret`` is an identity token.
_TOKEN_USERNAME = "<token>"
_HELPER_PREFIX = "docker-credential-"
_HELPER_TIMEOUT = 30.0


class Credential(Record):
    _fields = ("username", "secret", "identity_token")
    __slots__ = _fields
    username: str
    secret: str
    identity_token: str | None

    def __init__(self, username: str, secret: str, identity_token: str | None = None) -> None:
        self._set(username, secret, identity_token)

    def __repr__(self) -> str:
        # Never let a secret reach a log line or a traceback.
        token = ", identity_token=***" if self.identity_token else ""
        return f"Credential(username={self.username!r}, secret=***{token})"


def default_config_path(env: Mapping[str, str]) -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    from pathlib import Path

    from pyimg.settings import docker_config_path

    return Path(docker_config_path(env))


def server_url(host: str) -> str:
    """The key docker uses for ``host`` in ``auths`` and towards helpers."""
    return DOCKER_HUB_KEY if _canonical_host(host) == "docker.io" else host


def normalize_key(key: str) -> str:
    """Docker's ``ConvertToHostname``: drop the scheme and any path."""
    for scheme in ("https://", "http://"):
        if key.lower().startswith(scheme):
            key = key[len(scheme) :]
            break
    return key.split("/", 1)[0].lower()


def _canonical_host(host: str) -> str:
    name = normalize_key(host)
    return "docker.io" if name in _DOCKER_HUB_HOSTS else name


class DockerConfig:
    """One ``config.json``: lookups, and docker-compatible store and erase."""

    def __init__(self, path: StrPath, data: Mapping[str, Any]) -> None:
        self.path = path
        self._data: dict[str, Any] = dict(data)
        _validate(path, self._data)

    @classmethod
    def load(cls, path: StrPath) -> DockerConfig:
        """Read ``path``; a missing file is an empty configuration."""
        return cls(path, _read(path))

    # -- reading -----------------------------------------------------------

    @property
    def creds_store(self) -> str | None:
        value = self._data.get("credsStore")
        return value or None

    def helper_for(self, host: str) -> str | None:
        """The helper name that owns ``host``'s credentials, if any."""
        helpers: dict[str, str] = self._data.get("credHelpers") or {}
        key = _find_key(helpers, host)
        if key is not None and helpers[key]:
            return helpers[key]
        return self.creds_store

    def lookup(self, host: str) -> Credential | None:
        helper = self.helper_for(host)
        if helper is not None:
            found = helper_get(helper, server_url(host))
            if found is not None:
                return found
        return self._lookup_auths(host)

    def _lookup_auths(self, host: str) -> Credential | None:
        auths: dict[str, Any] = self._data.get("auths") or {}
        key = _find_key(auths, host)
        if key is None:
            return None
        return _entry_credential(self.path, key, auths[key])

    # -- writing -----------------------------------------------------------

    def store(self, host: str, credential: Credential) -> None:
        """Save ``credential`` the way ``docker login`` does."""
        helper = self.helper_for(host)
        if helper is not None:
            helper_store(helper, server_url(host), credential)
            # Docker keeps an empty ``auths`` entry so that the login is listed.
            self._update(lambda data: _set_auth_entry(data, host, {}))
        else:
            entry = _auth_entry(credential)
            self._update(lambda data: _set_auth_entry(data, host, entry))

    def erase(self, host: str) -> None:
        """Forget ``host``'s credentials the way ``docker logout`` does."""
        helper = self.helper_for(host)
        if helper is not None:
            helper_erase(helper, server_url(host))
        self._update(lambda data: _drop_auth_entry(data, host))

    def _update(self, change: Callable[[dict[str, Any]], bool | None]) -> None:
        # Re-read right before writing so that keys another tool wrote since we
        # loaded survive; then change only what we own.
        data = _read(self.path)  # a fresh parse: ours to change
        _validate(self.path, data)
        if change(data) is False:
            return
        write_config(self.path, data)
        self._data = data


# -- config.json parsing -------------------------------------------------


def _read(path: StrPath) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read docker config {path}: {exc}") from exc
    if not text.strip():
        return {}
    try:
        data = jsonc.loads(text)
    except ValueError as exc:
        import json

        if not isinstance(exc, json.JSONDecodeError):
            raise
        raise ConfigError(
            f"docker config {path} is not valid JSON: {exc}",
            hint="fix or remove the file",
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"docker config {path} must hold a JSON object")
    return data


def _validate(path: StrPath, data: Mapping[str, Any]) -> None:
    # Check shapes up front so a malformed file fails with its name instead of
    # an AttributeError deep inside a pull.
    for key in ("auths", "credHelpers"):
        value = data.get(key)
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"docker config {path}: {key!r} must be an object")
    for host, name in (data.get("credHelpers") or {}).items():
        if not isinstance(name, str):
            raise ConfigError(f"docker config {path}: credHelpers[{host!r}] must be a string")
    store = data.get("credsStore")
    if store is not None and not isinstance(store, str):
        raise ConfigError(f"docker config {path}: 'credsStore' must be a string")
    for host, entry in (data.get("auths") or {}).items():
        if not isinstance(entry, dict):
            raise ConfigError(f"docker config {path}: auths[{host!r}] must be an object")


def _find_key(table: Mapping[str, Any], host: str) -> str | None:
    """The key of ``table`` that names ``host``, preferring an exact match."""
    for exact in (server_url(host), host):
        if exact in table:
            return exact
    wanted = _canonical_host(host)
    for key in table:
        if _canonical_host(key) == wanted:
            return key
    return None


def _entry_credential(path: StrPath, key: str, entry: Mapping[str, Any]) -> Credential | None:
    username, secret = _entry_user_pass(path, key, entry)
    token = entry.get("identitytoken") or None
    if token is not None and not isinstance(token, str):
        raise ConfigError(f"docker config {path}: auths[{key!r}].identitytoken must be a string")
    if not (username or secret or token):
        return None  # an empty entry is only a marker left by a helper login
    return Credential(username, secret, token)


def _entry_user_pass(path: StrPath, key: str, entry: Mapping[str, Any]) -> tuple[str, str]:
    encoded = entry.get("auth")
    if encoded:
        if not isinstance(encoded, str):
            raise ConfigError(f"docker config {path}: auths[{key!r}].auth must be a string")
        return _decode_auth(path, key, encoded)
    username = entry.get("username") or ""
    password = entry.get("password") or ""
    if not isinstance(username, str) or not isinstance(password, str):
        raise ConfigError(f"docker config {path}: auths[{key!r}] username/password must be strings")
    return username, password


def _decode_auth(path: StrPath, key: str, encoded: str) -> tuple[str, str]:
    import base64
    import binascii

    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"docker config {path}: auths[{key!r}].auth is not base64 'user:password'"
        ) from exc
    username, sep, secret = decoded.partition(":")
    if not sep:
        raise ConfigError(f"docker config {path}: auths[{key!r}].auth lacks ':' after decoding")
    return username, secret


def _auth_entry(credential: Credential) -> dict[str, Any]:
    import base64

    raw = f"{credential.username}:{credential.secret}".encode()
    entry: dict[str, Any] = {"auth": base64.b64encode(raw).decode("ascii")}
    if credential.identity_token:
        entry["identitytoken"] = credential.identity_token
    return entry


def _set_auth_entry(data: dict[str, Any], host: str, entry: dict[str, Any]) -> None:
    auths = data.setdefault("auths", {})
    key = _find_key(auths, host) or server_url(host)
    old = auths.get(key) or {}
    # Keep fields we do not manage (email, tool-specific) but drop stale secrets.
    kept = {
        k: v
        for k, v in old.items()
        if k not in ("auth", "username", "password", "identitytoken", "registrytoken")
    }
    auths[key] = {**kept, **entry}


def _drop_auth_entry(data: dict[str, Any], host: str) -> bool:
    auths = data.get("auths") or {}
    key = _find_key(auths, host)
    if key is None:
        return False
    del auths[key]
    return True


def write_config(path: StrPath, data: Mapping[str, Any]) -> None:
    """Write ``data`` atomically with mode 0600, creating the directory 0700."""
    import json
    from pathlib import Path

    from pyimg.fsutil import atomic_write

    path = Path(path)
    # Dotfile managers symlink config.json; docker writes through the link, and
    # replacing the link with a file would silently fork the configuration.
    target = path.resolve() if path.is_symlink() else path
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    body = (json.dumps(data, indent="\t") + "\n").encode("utf-8")
    atomic_write(target, body, 0o600)  # secrets


# -- credential helpers --------------------------------------------------


def helper_get(name: str, server: str) -> Credential | None:
    """``docker-credential-NAME get``; None when the helper has nothing."""
    import json

    result = _run_helper(name, "get", server)
    if result is None:
        return None
    try:
        reply = json.loads(result)
    except json.JSONDecodeError as exc:
        raise CredentialHelperError(
            f"credential helper {_HELPER_PREFIX}{name} returned invalid JSON for {server}"
        ) from exc
    if not isinstance(reply, dict):
        raise CredentialHelperError(
            f"credential helper {_HELPER_PREFIX}{name} returned a non-object for {server}"
        )
    username = reply.get("Username") or ""
    secret = reply.get("Secret") or ""
    if not isinstance(username, str) or not isinstance(secret, str):
        raise CredentialHelperError(
            f"credential helper {_HELPER_PREFIX}{name} returned non-string fields for {server}"
        )
    if username == _TOKEN_USERNAME:
        return Credential("", "", identity_token=secret)
    return Credential(username, secret)


def helper_store(name: str, server: str, credential: Credential) -> None:
    if credential.identity_token:
        username, secret = _TOKEN_USERNAME, credential.identity_token
    else:
        username, secret = credential.username, credential.secret
    import json

    payload = json.dumps({"ServerURL": server, "Username": username, "Secret": secret})
    _run_helper(name, "store", payload)


def helper_erase(name: str, server: str) -> None:
    # Erasing what is not there is success: logout must be idempotent.
    _run_helper(name, "erase", server)


def _run_helper(name: str, action: str, stdin: str) -> str | None:
    """Run a helper; its stdout, or None for "credentials not found"."""
    import shutil
    import subprocess  # helpers are rare; importing this costs ~10 ms on every pull

    program = f"{_HELPER_PREFIX}{name}"
    executable = shutil.which(program)
    if executable is None:
        raise CredentialHelperError(
            f"credential helper {program} is not on PATH",
            hint=f"install it, or remove {name!r} from credsStore/credHelpers in config.json",
        )
    try:
        done = subprocess.run(
            [executable, action],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=_HELPER_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CredentialHelperError(
            f"credential helper {program} {action} did not answer within {_HELPER_TIMEOUT:.0f}s"
        ) from exc
    except OSError as exc:
        raise CredentialHelperError(f"cannot run credential helper {program}: {exc}") from exc
    if done.returncode == 0:
        return done.stdout
    if "credentials not found" in (done.stdout + done.stderr).lower():
        return None
    detail = _first_line(done.stderr) or _first_line(done.stdout) or f"exit {done.returncode}"
    raise CredentialHelperError(f"credential helper {program} {action} failed: {detail}")


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""
