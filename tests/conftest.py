"""Session fixtures backed by real processes (see ``tests/registry.py``).

* ``fixture_layouts`` -> ``dict[str, Path]``: deterministic OCI layouts built by
  ``fixtures.registry.build_all`` into ``<repo>/.cache/fixtures`` (override with
  ``PYIMG_FIXTURE_CACHE``); cached across runs via a stamp file.
* ``registry``       -> ``Registry``: plain HTTP, anonymous; every fixture image
  pushed as ``{registry.host}/pyimg/<name>:latest``.
* ``tls_registry``   -> ``Registry``: HTTPS with a generated CA (``.ca_path``,
  ``.cert_dir``) and htpasswd Basic auth (``.username``/``.password``/``.creds``);
  ``busybox`` and ``multiarch`` pushed.
* ``proxy_registry`` -> ``Registry``: pull-through cache in front of ``registry``
  (read-only; pulls of ``pyimg/<name>:latest`` are fetched from upstream).

All three are session scoped, start in well under a second each, and are
stopped (terminate, then kill) at session end. A missing ``docker-registry``
or ``skopeo`` fails the tests loudly: ``make deps`` (or ``.ci/run``) installs them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.registry import build_all, push_all
from fixtures.registry.server import Registry

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURE_CACHE = Path(os.environ.get("PYIMG_FIXTURE_CACHE", REPO_ROOT / ".cache" / "fixtures"))
TLS_USER = ("pyimg", "s3cret-pyimg")


def _require_tools() -> None:
    for tool in ("docker-registry", "skopeo"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not installed: run 'make deps'")


@pytest.fixture(scope="session")
def fixture_layouts() -> dict[str, Path]:
    return build_all(FIXTURE_CACHE)


@pytest.fixture(scope="session")
def registry(fixture_layouts: dict[str, Path]) -> Iterator[Registry]:
    _require_tools()
    with Registry(name="plain") as reg:
        push_all(fixture_layouts, reg.host)
        yield reg


@pytest.fixture(scope="session")
def tls_registry(fixture_layouts: dict[str, Path]) -> Iterator[Registry]:
    _require_tools()
    with Registry(tls=True, auth=TLS_USER, name="tls") as reg:
        push_all(fixture_layouts, reg.host, images=["busybox", "multiarch"], tls_verify=True,
                 creds=reg.creds, cert_dir=reg.cert_dir)
        yield reg


@pytest.fixture(scope="session")
def proxy_registry(registry: Registry) -> Iterator[Registry]:
    with Registry(proxy_remote=registry.url, name="proxy") as reg:
        yield reg
