"""Registry endpoints from containerd's ``certs.d/<host>/hosts.toml``.

Users who run containerd already describe mirrors, TLS and plain-HTTP
registries in this format, so pyimg reads it as is, with one deliberate
difference: an unknown key is a :class:`ConfigError` naming the file and key,
because a typo (``skip_verfy``) silently ignored is worse than a refusal.

Without ``hosts.toml``, docker's layout of the same directory is honoured:
``*.crt`` are extra CAs, ``*.cert`` + ``*.key`` a client certificate.
"""

from __future__ import annotations

import os

from pyimg.errors import ConfigError
from pyimg.record import Record
from pyimg.remote.urls import split as urlsplit

# Import-light (every pull resolves its registry's endpoints, see docs/design.md):
# no dataclasses, typing, pathlib or urllib until a certs.d directory exists.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from collections.abc import Mapping
    from pathlib import Path
    from typing import Any

    from pyimg.fsutil import StrPath

CAPABILITIES = frozenset({"pull", "resolve", "push"})
DOCKER_HUB = "docker.io"
DOCKER_HUB_SERVER = "https://registry-1.docker.io"
DEFAULT_DIR = "_default"
_IGNORED_KEYS = frozenset({"header", "dial_timeout"})  # valid containerd keys we do not use
_HOST_KEYS = frozenset(
    {"capabilities", "ca", "client", "skip_verify", "override_path"} | _IGNORED_KEYS
)
_TOP_KEYS = _HOST_KEYS | {"server", "host"}


class Endpoint(Record):
    """One place to talk to for a registry, in the order to try them.

    ``url`` is ``scheme://host[:port]``; the API lives at :attr:`api_base`.
    ``path_prefix`` is the URL path from the configuration: without
    ``override_path`` it has any trailing ``/v2`` removed and ``/v2`` is
    appended to reach the API (containerd's rule); with ``override_path`` it is
    the API root itself.  ``verify`` is False only for ``skip_verify``;
    ``ca_files`` are trusted in addition to the system roots.
    ``allow_http_fallback`` marks loopback registries with no configuration,
    which docker treats as insecure: try HTTPS, use HTTP when TLS is not spoken.
    """

    _fields = ("url", "capabilities", "verify", "ca_files", "client_cert", "override_path",
               "path_prefix", "is_mirror", "source", "allow_http_fallback")
    __slots__ = _fields
    url: str
    capabilities: frozenset[str]
    verify: bool
    ca_files: tuple[str, ...]
    client_cert: tuple[str, str] | None
    override_path: bool
    path_prefix: str
    is_mirror: bool
    source: str
    allow_http_fallback: bool

    def __init__(self, url: str, capabilities: frozenset[str] = CAPABILITIES,
                 verify: bool = True, ca_files: tuple[str, ...] = (),
                 client_cert: tuple[str, str] | None = None, override_path: bool = False,
                 path_prefix: str = "", is_mirror: bool = False, source: str = "default",
                 allow_http_fallback: bool = False) -> None:
        self._set(url, capabilities, verify, ca_files, client_cert, override_path,
                  path_prefix, is_mirror, source, allow_http_fallback)

    @property
    def host(self) -> str:
        """``host[:port]`` as in the URL."""
        return urlsplit(self.url).netloc

    @property
    def plain_http(self) -> bool:
        return self.url.startswith("http://")

    @property
    def api_base(self) -> str:
        """What ``/<name>/manifests/<ref>`` is appended to."""
        return self.url + self.path_prefix + ("" if self.override_path else "/v2")


# -- lookup ----------------------------------------------------------------


def default_server(host: str) -> str:
    if host == DOCKER_HUB:
        return DOCKER_HUB_SERVER
    if host.count(":") > 1 and not host.startswith("["):
        host = f"[{host}]"  # a bare IPv6 address is not a URL authority
    return f"https://{host}"


def resolve_hosts(host: str, config_dir: StrPath | None) -> list[Endpoint]:
    """The endpoints for registry ``host``: mirrors in file order, then the server."""
    directory = _host_dir(host, config_dir)
    if directory is None:
        return [Endpoint(default_server(host), allow_http_fallback=is_loopback(host))]
    from pathlib import Path

    hosts_file = Path(directory, "hosts.toml")
    if hosts_file.is_file():
        return _parse_hosts_file(host, hosts_file)
    endpoint = Endpoint(default_server(host), allow_http_fallback=is_loopback(host))
    return [_with_docker_certs(endpoint, Path(directory))]


def _host_dir(host: str, config_dir: StrPath | None) -> str | None:
    # containerd's order: the host's own directory, else _default.
    if config_dir is None:
        return None
    for name in (host, DEFAULT_DIR):
        candidate = os.path.join(config_dir, "certs.d", name)
        if os.path.isdir(candidate):
            return candidate
    return None


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ``::1``, with or without a port."""
    name = _strip_port(host)
    if name.lower() == "localhost" or name.startswith("127."):
        return True
    if not name or not (name[0].isdigit() or ":" in name):
        return False  # a DNS name: no need to import ipaddress
    try:
        import ipaddress

        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host


# -- hosts.toml ------------------------------------------------------------


def _parse_hosts_file(host: str, path: Path) -> list[Endpoint]:
    data = _load_toml(path)
    _check_keys(data, _TOP_KEYS, path, "")
    server = data.get("server", default_server(host))
    if not isinstance(server, str) or not server:
        raise ConfigError(f"{path}: 'server' must be a non-empty string")
    mirrors = data.get("host", {})
    if not isinstance(mirrors, dict):
        raise ConfigError(f"{path}: 'host' must be a table of [host.\"URL\"] tables")
    endpoints = [_mirror(path, url, table) for url, table in mirrors.items()]
    top = {key: value for key, value in data.items() if key in _HOST_KEYS}
    server_endpoint = _endpoint(path, server, top, f"{path} (server)", is_mirror=False)
    endpoints.append(_docker_hub_api(server_endpoint))
    return endpoints


def _docker_hub_api(endpoint: Endpoint) -> Endpoint:
    # containerd's docs write ``server = "https://docker.io"``, which serves a
    # web site; like containerd, talk to the API host instead.
    if endpoint.host == DOCKER_HUB:
        return endpoint.replace(url=endpoint.url.replace(DOCKER_HUB, "registry-1.docker.io", 1))
    return endpoint


def _load_toml(path: Path) -> dict[str, Any]:
    import tomllib  # only when a hosts.toml exists

    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def _mirror(path: Path, url: str, table: Any) -> Endpoint:
    where = f'{path} [host."{url}"]'
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table")
    _check_keys(table, _HOST_KEYS, path, f'host."{url}".')
    return _endpoint(path, url, table, where, is_mirror=True)


def _check_keys(table: Mapping[str, Any], allowed: frozenset[str], path: Path, prefix: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(
                f"{path}: unknown key {prefix}{key!r}",
                hint=f"supported keys are {', '.join(sorted(allowed))}",
            )


def _endpoint(
    path: Path, url: str, table: Mapping[str, Any], where: str, *, is_mirror: bool
) -> Endpoint:
    override = _bool(table, "override_path", where)
    base, prefix = _split_url(url, override, where)
    base_dir = path.parent
    return Endpoint(
        url=base,
        capabilities=_capabilities(table, where),
        verify=not _bool(table, "skip_verify", where),
        ca_files=tuple(_abs(p, base_dir) for p in _ca_list(table.get("ca"), where)),
        client_cert=_client_pair(table.get("client"), base_dir, where),
        override_path=override,
        path_prefix=prefix,
        is_mirror=is_mirror,
        source=where,
    )


def _split_url(text: str, override_path: bool, where: str) -> tuple[str, str]:
    """``(scheme://host[:port], path prefix)``; https when no scheme is given."""
    import posixpath
    from urllib.parse import urlsplit

    if "://" not in text:
        text = "https://" + text  # containerd assumes https
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{where}: {text!r} is not an http(s) URL")
    if parts.query or parts.fragment:
        raise ConfigError(f"{where}: {text!r} must not have a query or fragment")
    prefix = posixpath.normpath(parts.path) if parts.path.strip("/") else ""
    if not override_path and (prefix == "/v2" or prefix.endswith("/v2")):
        prefix = prefix[: -len("/v2")]
    return f"{scheme}://{parts.netloc}", prefix


def _bool(table: Mapping[str, Any], key: str, where: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {key!r} must be true or false")
    return value


def _capabilities(table: Mapping[str, Any], where: str) -> frozenset[str]:
    value = table.get("capabilities")
    if value is None:
        return CAPABILITIES
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: 'capabilities' must be a list of strings")
    unknown = set(value) - CAPABILITIES
    if unknown:
        raise ConfigError(
            f"{where}: unknown capabilities {sorted(unknown)}",
            hint="use pull, resolve and push",
        )
    return frozenset(value)


def _ca_list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"{where}: 'ca' must be a path or a list of paths")


def _client_pair(value: Any, base_dir: Path, where: str) -> tuple[str, str] | None:
    pairs = _client_pairs(value, where)
    if not pairs:
        return None
    if len(pairs) > 1:
        # Python's ssl holds one client certificate per context; choosing one
        # silently would make the other fail mysteriously.
        raise ConfigError(f"{where}: only one client certificate is supported")
    cert, key = pairs[0]
    # A single file holds both certificate and key (containerd's "" key).
    return _abs(cert, base_dir), _abs(key or cert, base_dir)


def _client_pairs(value: Any, where: str) -> list[tuple[str, str]]:
    """``"c"``, ``["c", "k"]``, ``[["c", "k"], ...]`` → pairs (key may be "")."""
    if value is None:
        return []
    if isinstance(value, str):
        return [(value, "")]
    if not isinstance(value, list):
        raise ConfigError(f"{where}: 'client' must be a path, [cert, key] or a list of those")
    if len(value) == 2 and all(isinstance(v, str) for v in value):
        return [(value[0], value[1])]
    return [_one_pair(item, where) for item in value]


def _one_pair(item: Any, where: str) -> tuple[str, str]:
    if isinstance(item, str):
        return item, ""
    if (
        isinstance(item, list)
        and 1 <= len(item) <= 2
        and all(isinstance(v, str) for v in item)
    ):
        return item[0], item[1] if len(item) == 2 else ""
    raise ConfigError(f"{where}: each 'client' entry must be a path or [cert, key]")


def _abs(path: str, base_dir: Path) -> str:
    from pathlib import Path

    # containerd resolves relative paths against the host's directory.
    return str(base_dir / path) if not Path(path).is_absolute() else path


# -- docker's certs.d layout -----------------------------------------------


def _with_docker_certs(endpoint: Endpoint, directory: Path) -> Endpoint:
    cas = tuple(str(p) for p in sorted(directory.glob("*.crt")) if p.is_file())
    certs = sorted(p for p in directory.glob("*.cert") if p.is_file())
    keys = sorted(p for p in directory.glob("*.key") if p.is_file())
    for key in keys:
        if not key.with_suffix(".cert").is_file():
            raise ConfigError(f"{directory}: key {key.name} has no matching {key.stem}.cert")
    for cert in certs:
        if not cert.with_suffix(".key").is_file():
            raise ConfigError(f"{directory}: certificate {cert.name} has no {cert.stem}.key")
    if len(certs) > 1:
        raise ConfigError(f"{directory}: only one client certificate (*.cert) is supported")
    client = (str(certs[0]), str(certs[0].with_suffix(".key"))) if certs else None
    if not cas and client is None:
        return endpoint
    return Endpoint(
        url=endpoint.url,
        ca_files=cas,
        client_cert=client,
        source=str(directory),
        allow_http_fallback=endpoint.allow_http_fallback,
    )


# -- TLS -------------------------------------------------------------------


def build_ssl_context(endpoint: Endpoint) -> ssl.SSLContext:
    """The TLS context for ``endpoint``: the system's roots plus configured CAs,
    the client certificate if any, no verification only for ``skip_verify``.

    ``ssl`` is imported here, not at module level: a plain-HTTP pull never
    pays for it.
    """
    import ssl

    context = ssl.create_default_context()
    if endpoint.verify:
        _load_cas(context, list(endpoint.ca_files), endpoint)
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if endpoint.client_cert is not None:
        _load_client(context, endpoint.client_cert, endpoint)
    return context


def _load_cas(context: ssl.SSLContext, files: list[str], endpoint: Endpoint) -> None:
    import ssl

    for ca in files:
        try:
            context.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"{endpoint.source}: cannot load CA certificate {ca}: {exc}") from exc


def _load_client(context: ssl.SSLContext, pair: tuple[str, str], endpoint: Endpoint) -> None:
    import ssl

    cert, key = pair
    try:
        context.load_cert_chain(certfile=cert, keyfile=key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"{endpoint.source}: cannot load client certificate {cert} (key {key}): {exc}"
        ) from exc
