"""containerd hosts.toml, docker certs.d files and the TLS context built from them."""

from __future__ import annotations

import datetime
import ssl
import textwrap
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pyimg.errors import ConfigError
from pyimg.remote.hosts import (
    CAPABILITIES,
    Endpoint,
    build_ssl_context,
    is_loopback,
    resolve_hosts,
)


def _hosts(config: Path, host: str, text: str) -> Path:
    directory = config / "certs.d" / host
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "hosts.toml"
    path.write_text(textwrap.dedent(text))
    return path


def _cert_and_key(directory: Path, stem: str, cert_ext: str = ".crt") -> tuple[Path, Path]:
    """A self-signed certificate and its key, PEM, as a test CA or client."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, stem)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / f"{stem}{cert_ext}"
    key_path = directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


# -- defaults --------------------------------------------------------------


def test_no_config_dir() -> None:
    assert resolve_hosts("registry.example.com", None) == [Endpoint("https://registry.example.com")]


def test_docker_hub_default(tmp_path: Path) -> None:
    (endpoint,) = resolve_hosts("docker.io", tmp_path)
    assert endpoint.url == "https://registry-1.docker.io"
    assert endpoint.api_base == "https://registry-1.docker.io/v2"
    assert endpoint.capabilities == CAPABILITIES
    assert not endpoint.is_mirror and not endpoint.allow_http_fallback


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost:5000", True),
        ("localhost", True),
        ("127.0.0.1:5000", True),
        ("127.1.2.3", True),
        ("[::1]:5000", True),
        ("::1", True),
        ("registry.example.com:5000", False),
        ("10.0.0.1:5000", False),
        ("localhost.example.com", False),
    ],
)
def test_loopback_fallback_flag(tmp_path: Path, host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    (endpoint,) = resolve_hosts(host, tmp_path)
    expected = "https://[::1]" if host == "::1" else f"https://{host}"
    assert endpoint.url == expected
    assert endpoint.allow_http_fallback is loopback


def test_configured_loopback_has_no_fallback(tmp_path: Path) -> None:
    _hosts(tmp_path, "localhost:5000", 'server = "https://localhost:5000"\n')
    (endpoint,) = resolve_hosts("localhost:5000", tmp_path)
    assert not endpoint.allow_http_fallback


# -- hosts.toml ------------------------------------------------------------


def test_mirrors_in_file_order_then_server(tmp_path: Path) -> None:
    path = _hosts(
        tmp_path,
        "docker.io",
        """\
        server = "https://registry-1.docker.io"

        [host."https://mirror-b.example"]
          capabilities = ["pull", "resolve"]

        [host."http://mirror-a.example:5000"]
          capabilities = ["pull"]
          skip_verify = true

        [host."mirror-c.example"]
          header = { x-custom = "1" }
        """,
    )
    endpoints = resolve_hosts("docker.io", tmp_path)
    assert [e.url for e in endpoints] == [
        "https://mirror-b.example",
        "http://mirror-a.example:5000",
        "https://mirror-c.example",
        "https://registry-1.docker.io",
    ]
    assert [e.is_mirror for e in endpoints] == [True, True, True, False]
    assert endpoints[0].capabilities == {"pull", "resolve"}
    assert endpoints[1].capabilities == {"pull"}
    assert endpoints[1].plain_http and not endpoints[1].verify
    assert endpoints[2].capabilities == CAPABILITIES
    assert endpoints[3].capabilities == CAPABILITIES
    assert str(path) in endpoints[0].source and "mirror-b.example" in endpoints[0].source
    assert str(path) in endpoints[3].source


def test_server_defaults_when_absent(tmp_path: Path) -> None:
    _hosts(tmp_path, "r.example", '[host."https://m.example"]\n')
    assert [e.url for e in resolve_hosts("r.example", tmp_path)] == [
        "https://m.example",
        "https://r.example",
    ]


def test_docker_io_server_means_api_host(tmp_path: Path) -> None:
    _hosts(tmp_path, "docker.io", 'server = "https://docker.io"\n')
    (endpoint,) = resolve_hosts("docker.io", tmp_path)
    assert endpoint.url == "https://registry-1.docker.io"


def test_plain_http_server(tmp_path: Path) -> None:
    _hosts(tmp_path, "r.example:5000", 'server = "http://r.example:5000"\n')
    (endpoint,) = resolve_hosts("r.example:5000", tmp_path)
    assert endpoint.plain_http
    assert endpoint.url == "http://r.example:5000"
    assert endpoint.api_base == "http://r.example:5000/v2"


def test_top_level_tls_keys_apply_to_server(tmp_path: Path) -> None:
    path = _hosts(
        tmp_path,
        "r.example",
        """\
        server = "https://r.example"
        ca = "ca.pem"
        client = ["/abs/client.cert", "client.key"]
        skip_verify = false
        """,
    )
    (endpoint,) = resolve_hosts("r.example", tmp_path)
    assert endpoint.ca_files == (str(path.parent / "ca.pem"),)
    assert endpoint.client_cert == ("/abs/client.cert", str(path.parent / "client.key"))
    assert endpoint.verify


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"/c/both.pem"', ("/c/both.pem", "/c/both.pem")),
        ('["/c/cert", "/c/key"]', ("/c/cert", "/c/key")),
        ('[["/c/cert", "/c/key"]]', ("/c/cert", "/c/key")),
        ('[["/c/both.pem", ""]]', ("/c/both.pem", "/c/both.pem")),
        ('["/c/both.pem"]', ("/c/both.pem", "/c/both.pem")),
    ],
)
def test_client_forms(tmp_path: Path, value: str, expected: tuple[str, str]) -> None:
    _hosts(tmp_path, "r.example", f'[host."https://m.example"]\nclient = {value}\n')
    assert resolve_hosts("r.example", tmp_path)[0].client_cert == expected


def test_ca_list(tmp_path: Path) -> None:
    _hosts(tmp_path, "r.example", '[host."https://m.example"]\nca = ["/a.pem", "/b.pem"]\n')
    assert resolve_hosts("r.example", tmp_path)[0].ca_files == ("/a.pem", "/b.pem")


@pytest.mark.parametrize(
    ("url", "override", "prefix", "api_base"),
    [
        ("https://m.example/v2", False, "", "https://m.example/v2"),
        ("https://m.example/proxy", False, "/proxy", "https://m.example/proxy/v2"),
        ("https://m.example/proxy/v2/", False, "/proxy", "https://m.example/proxy/v2"),
        ("https://m.example/custom/api", True, "/custom/api", "https://m.example/custom/api"),
        ("https://m.example", True, "", "https://m.example"),
    ],
)
def test_path_prefix_and_override(
    tmp_path: Path, url: str, override: bool, prefix: str, api_base: str
) -> None:
    flag = "true" if override else "false"
    _hosts(tmp_path, "r.example", f'[host."{url}"]\noverride_path = {flag}\n')
    endpoint = resolve_hosts("r.example", tmp_path)[0]
    assert endpoint.url == "https://m.example"
    assert endpoint.override_path is override
    assert endpoint.path_prefix == prefix
    assert endpoint.api_base == api_base


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('skip_verfy = true\n', "skip_verfy"),
        ('[host."https://m.example"]\ncapabilites = ["pull"]\n', "capabilites"),
        ('[host."https://m.example"]\nserver = "https://x"\n', "server"),
        ('[host."https://m.example"]\ncapabilities = ["pull", "delete"]\n', "delete"),
        ('[host."https://m.example"]\nskip_verify = "yes"\n', "skip_verify"),
        ('[host."https://m.example"]\nca = 3\n', "'ca'"),
        ('[host."ftp://m.example"]\n', "http(s)"),
        ('[host."https://m.example"]\nclient = [["/a"], ["/b"]]\n', "one client"),
        ('server = 5\n', "server"),
        ("this is = not toml [", "invalid TOML"),
    ],
)
def test_bad_hosts_toml_names_file_and_key(tmp_path: Path, text: str, fragment: str) -> None:
    path = _hosts(tmp_path, "r.example", text)
    with pytest.raises(ConfigError) as info:
        resolve_hosts("r.example", tmp_path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_default_directory_fallback(tmp_path: Path) -> None:
    _hosts(tmp_path, "_default", '[host."https://everything-mirror.example"]\n')
    _hosts(tmp_path, "own.example", 'server = "https://own.example"\n')
    assert [e.url for e in resolve_hosts("other.example", tmp_path)] == [
        "https://everything-mirror.example",
        "https://other.example",
    ]
    # A host's own directory wins over _default.
    assert [e.url for e in resolve_hosts("own.example", tmp_path)] == ["https://own.example"]


# -- docker-style certs.d --------------------------------------------------


def test_docker_style_certs(tmp_path: Path) -> None:
    directory = tmp_path / "certs.d" / "r.example:5000"
    directory.mkdir(parents=True)
    ca, ca_key = _cert_and_key(directory, "ca")
    ca_key.unlink()  # a CA file alone; a stray .key would need a .cert
    client, client_key = _cert_and_key(directory, "client", ".cert")
    (endpoint,) = resolve_hosts("r.example:5000", tmp_path)
    assert endpoint.url == "https://r.example:5000"
    assert endpoint.ca_files == (str(ca),)
    assert endpoint.client_cert == (str(client), str(client_key))
    assert not endpoint.allow_http_fallback

    context = build_ssl_context(endpoint)
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    subjects = [str(c["subject"]) for c in context.get_ca_certs()]
    assert "((('commonName', 'ca'),),)" in subjects


def test_docker_style_loopback_keeps_fallback(tmp_path: Path) -> None:
    directory = tmp_path / "certs.d" / "localhost:5000"
    directory.mkdir(parents=True)
    ca, key = _cert_and_key(directory, "ca")
    key.unlink()
    (endpoint,) = resolve_hosts("localhost:5000", tmp_path)
    assert endpoint.ca_files == (str(ca),)
    assert endpoint.allow_http_fallback


def test_docker_style_cert_without_key(tmp_path: Path) -> None:
    directory = tmp_path / "certs.d" / "r.example"
    directory.mkdir(parents=True)
    _, key = _cert_and_key(directory, "client", ".cert")
    key.unlink()
    with pytest.raises(ConfigError, match=r"client\.cert has no client\.key"):
        resolve_hosts("r.example", tmp_path)


def test_hosts_toml_overrides_docker_style_files(tmp_path: Path) -> None:
    path = _hosts(tmp_path, "r.example", 'server = "https://r.example"\n')
    _cert_and_key(path.parent, "ignored")
    (endpoint,) = resolve_hosts("r.example", tmp_path)
    assert endpoint.ca_files == () and endpoint.client_cert is None


# -- TLS context -----------------------------------------------------------


def test_ssl_context_defaults() -> None:
    verifying = build_ssl_context(Endpoint("https://r.example"))
    assert verifying.verify_mode == ssl.CERT_REQUIRED and verifying.check_hostname
    skipping = build_ssl_context(Endpoint("https://r.example", verify=False))
    assert skipping.verify_mode == ssl.CERT_NONE and not skipping.check_hostname


def test_ssl_context_skip_verify_with_client_cert(tmp_path: Path) -> None:
    cert, key = _cert_and_key(tmp_path, "client", ".cert")
    endpoint = Endpoint("https://r.example", verify=False, client_cert=(str(cert), str(key)))
    context = build_ssl_context(endpoint)
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname


def test_ssl_context_missing_ca_names_source(tmp_path: Path) -> None:
    endpoint = Endpoint("https://r.example", ca_files=(str(tmp_path / "nope.pem"),), source="SRC")
    with pytest.raises(ConfigError, match="SRC: cannot load CA certificate"):
        build_ssl_context(endpoint)


def test_ssl_context_bad_client_key(tmp_path: Path) -> None:
    cert, _ = _cert_and_key(tmp_path, "client", ".cert")
    _, other_key = _cert_and_key(tmp_path, "other", ".cert")
    endpoint = Endpoint("https://r.example", client_cert=(str(cert), str(other_key)))
    with pytest.raises(ConfigError, match="cannot load client certificate"):
        build_ssl_context(endpoint)
