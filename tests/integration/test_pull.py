"""`pyimg pull` against real docker-registry instances (plain, TLS+auth, proxy)."""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path

import pytest

from fixtures.registry.server import Registry, free_port
from tests.cli import Pyimg, one_error_line

pytestmark = pytest.mark.registry
ACCEPT = {"Accept": ", ".join([
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json"])}


@pytest.fixture
def pyimg(tmp_path: Path) -> Pyimg:
    return Pyimg(tmp_path)


def _image(p: Pyimg, name: str) -> dict[str, object]:
    return next(i for i in p.images() if i["name"] == name)


@pytest.mark.parametrize("name", ["busybox", "multilayer", "zstd", "docker"])
def test_pull_stores_verified_blobs_and_image(pyimg: Pyimg, registry: Registry,
                                              name: str) -> None:
    ref = f"{registry.host}/pyimg/{name}"
    out = pyimg.run("pull", ref).stdout
    digest = out.strip().split()[-1]
    status, headers, _ = registry.request(f"/v2/pyimg/{name}/manifests/latest", method="HEAD",
                                          headers=ACCEPT)
    assert status == 200 and headers["Docker-Content-Digest"] == digest
    image = _image(pyimg, f"{ref}:latest")
    assert image["digest"] == digest
    expected_type = ("application/vnd.docker.distribution.manifest.v2+json" if name == "docker"
                     else "application/vnd.oci.image.manifest.v1+json")
    assert image["mediaType"] == expected_type
    blobs = pyimg.blobs()
    manifest = json.loads((pyimg.root / "content/blobs/sha256" / digest[7:]).read_bytes())
    wanted = [manifest["config"], *manifest["layers"]]
    for d in wanted:
        assert blobs[d["digest"][7:]] == d["size"]
    assert len(blobs) == len(wanted) + 1
    for path in (pyimg.root / "content/blobs/sha256").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o444


def test_second_pull_downloads_nothing(pyimg: Pyimg, registry: Registry) -> None:
    ref = f"{registry.host}/pyimg/multilayer"
    pyimg.run("pull", ref)
    events = _events(pyimg.run("pull", "--progress=json", ref).stdout)
    kinds = {e["event"] for e in events}
    assert "start" not in kinds and "skipped" in kinds


def test_pull_by_digest(pyimg: Pyimg, registry: Registry) -> None:
    _, headers, _ = registry.request("/v2/pyimg/busybox/manifests/latest", method="HEAD",
                                     headers=ACCEPT)
    digest = headers["Docker-Content-Digest"]
    pyimg.run("pull", f"{registry.host}/pyimg/busybox@{digest}")
    assert _image(pyimg, f"{registry.host}/pyimg/busybox@{digest}")["digest"] == digest


def _config_arch(p: Pyimg, index_digest: str) -> set[str]:
    blobs = p.root / "content/blobs/sha256"
    index = json.loads((blobs / index_digest[7:]).read_bytes())
    archs = set()
    for m in index["manifests"]:
        path = blobs / m["digest"][7:]
        if path.exists():
            cfg = json.loads((blobs / json.loads(path.read_bytes())["config"]["digest"][7:])
                             .read_bytes())
            archs.add(cfg["architecture"] + "/" + cfg.get("variant", ""))
    return archs


def test_platform_selection(pyimg: Pyimg, registry: Registry) -> None:
    ref = f"{registry.host}/pyimg/multiarch"
    digest = pyimg.run("pull", "--platform", "linux/arm64", ref).stdout.split()[-1]
    assert _config_arch(pyimg, digest) == {"arm64/v8"}
    pyimg.run("pull", "--all-platforms", ref)
    assert _config_arch(pyimg, digest) == {"arm64/v8", "amd64/"}
    proc = pyimg.run("pull", "--platform", "linux/s390x", ref, check=False)
    assert proc.returncode == 3
    assert "linux/s390x" in one_error_line(proc) and "linux/arm64/v8" in proc.stderr


def test_default_platform_is_host(pyimg: Pyimg, registry: Registry) -> None:
    digest = pyimg.run("pull", f"{registry.host}/pyimg/multiarch").stdout.split()[-1]
    assert _config_arch(pyimg, digest) == {"amd64/" if os.uname().machine == "x86_64"
                                           else "arm64/v8"}


@pytest.mark.parametrize(("args", "code", "words"), [
    (["pull", "Bad/Name"], 2, "invalid reference"),
    (["pull", "--platform", "linux", "x"], 2, "invalid platform"),
    (["pull", "{host}/pyimg/missing"], 3, "404"),
    (["pull", "127.0.0.1:{closed}/pyimg/busybox"], 11, "127.0.0.1"),
])
def test_errors_are_one_line_with_distinct_codes(pyimg: Pyimg, registry: Registry,
                                                 args: list[str], code: int,
                                                 words: str) -> None:
    args = [a.format(host=registry.host, closed=free_port()) for a in args]
    proc = pyimg.run(*args, check=False)
    assert proc.returncode == code, proc.stderr
    assert words in one_error_line(proc)


def test_tls_registry_with_login(pyimg: Pyimg, tls_registry: Registry) -> None:
    ref = f"{tls_registry.host}/pyimg/busybox"
    proc = pyimg.run("pull", ref, check=False)
    assert proc.returncode == 11 and "certificate" in one_error_line(proc)
    certs = pyimg.config / "certs.d" / tls_registry.host
    certs.mkdir(parents=True)
    (certs / "ca.crt").write_bytes(Path(tls_registry.ca_path).read_bytes())
    proc = pyimg.run("pull", ref, check=False)
    assert proc.returncode == 9 and "pyimg login" in one_error_line(proc)
    bad = pyimg.run("login", "-u", "pyimg", "--password-stdin", tls_registry.host,
                    input="wrong\n", check=False)
    assert bad.returncode == 9
    assert not (pyimg.docker_config / "config.json").exists()
    pyimg.run("login", "-u", str(tls_registry.username), "--password-stdin", tls_registry.host,
              input=f"{tls_registry.password}\n")
    config = json.loads((pyimg.docker_config / "config.json").read_text())
    assert tls_registry.host in config["auths"]
    assert stat.S_IMODE((pyimg.docker_config / "config.json").stat().st_mode) == 0o600
    pyimg.run("pull", ref)
    assert _image(pyimg, f"{ref}:latest")
    pyimg.run("logout", tls_registry.host)
    config = json.loads((pyimg.docker_config / "config.json").read_text())
    assert tls_registry.host not in config.get("auths", {})


def test_tls_registry_with_credential_helper(pyimg: Pyimg, tls_registry: Registry,
                                             tmp_path: Path) -> None:
    helper_dir = tmp_path / "bin"
    helper_dir.mkdir()
    helper = helper_dir / "docker-credential-pyimgtest"
    helper.write_text(
        "#!/bin/sh\nread server\n"
        f"[ \"$1\" = get ] && printf '%s' '{{\"ServerURL\":\"'$server'\",\"Username\":"
        f"\"{tls_registry.username}\",\"Secret\":\"{tls_registry.password}\"}}'\n")
    helper.chmod(0o755)
    pyimg.docker_config.mkdir()
    (pyimg.docker_config / "config.json").write_text(json.dumps({"credsStore": "pyimgtest"}))
    certs = pyimg.config / "certs.d" / tls_registry.host
    certs.mkdir(parents=True)
    (certs / "ca.crt").write_bytes(Path(tls_registry.ca_path).read_bytes())
    pyimg.env["PATH"] = f"{helper_dir}:{os.environ['PATH']}"
    pyimg.run("pull", f"{tls_registry.host}/pyimg/busybox")


def test_pull_through_proxy_registry(pyimg: Pyimg, proxy_registry: Registry) -> None:
    pyimg.run("pull", f"{proxy_registry.host}/pyimg/multilayer")
    assert _image(pyimg, f"{proxy_registry.host}/pyimg/multilayer:latest")


def _hosts_toml(p: Pyimg, host: str, text: str) -> None:
    d = p.config / "certs.d" / host
    d.mkdir(parents=True, exist_ok=True)
    (d / "hosts.toml").write_text(text)


def test_mirror_serves_an_unreachable_upstream(pyimg: Pyimg, registry: Registry) -> None:
    upstream = f"127.0.0.1:{free_port()}"  # nothing listens there
    _hosts_toml(pyimg, upstream, f'server = "http://{upstream}"\n'
                f'[host."http://{registry.host}"]\ncapabilities = ["pull", "resolve"]\n')
    pyimg.run("pull", f"{upstream}/pyimg/busybox")
    assert _image(pyimg, f"{upstream}/pyimg/busybox:latest")


def test_broken_mirror_falls_back_to_upstream(pyimg: Pyimg, registry: Registry) -> None:
    _hosts_toml(pyimg, registry.host, f'server = "http://{registry.host}"\n'
                f'[host."http://127.0.0.1:{free_port()}"]\ncapabilities = ["pull", "resolve"]\n')
    pyimg.run("pull", f"{registry.host}/pyimg/busybox")


def test_unknown_hosts_toml_key_is_an_error(pyimg: Pyimg, registry: Registry) -> None:
    _hosts_toml(pyimg, registry.host, f'server = "http://{registry.host}"\nskip_verfy = true\n')
    proc = pyimg.run("pull", f"{registry.host}/pyimg/busybox", check=False)
    assert proc.returncode == 12 and "skip_verfy" in one_error_line(proc)


def test_pull_list_is_idempotent(pyimg: Pyimg, registry: Registry, tmp_path: Path) -> None:
    lst = tmp_path / "images.txt"
    lst.write_text(f"# node cache\n{registry.host}/pyimg/busybox\n\n"
                   f"{registry.host}/pyimg/zstd  # comment\n")
    pyimg.run("pull", "-q", "-f", str(lst))
    first = pyimg.blobs()
    pyimg.run("pull", "-q", "-f", str(lst))
    assert pyimg.blobs() == first
    assert {i["name"] for i in pyimg.images()} == {f"{registry.host}/pyimg/busybox:latest",
                                                  f"{registry.host}/pyimg/zstd:latest"}


def test_tag_and_rmi(pyimg: Pyimg, registry: Registry) -> None:
    pyimg.run("pull", f"{registry.host}/pyimg/busybox")
    pyimg.run("tag", f"{registry.host}/pyimg/busybox", "mybox:1")
    assert _image(pyimg, "docker.io/library/mybox:1")
    pyimg.run("rmi", "mybox:1")
    assert [i["name"] for i in pyimg.images()] == [f"{registry.host}/pyimg/busybox:latest"]
    proc = pyimg.run("rmi", "mybox:1", check=False)
    assert proc.returncode == 3


def _events(proc_stdout: str) -> list[dict[str, object]]:
    return [json.loads(ln) for ln in proc_stdout.splitlines() if ln.startswith("{")]


def test_two_processes_pull_same_image_once(tmp_path: Path, registry: Registry) -> None:
    a, b = Pyimg(tmp_path), Pyimg(tmp_path)  # same root
    ref = f"{registry.host}/pyimg/big"
    procs = [p.popen("pull", "--progress=json", ref) for p in (a, b)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    starts: dict[object, int] = {}
    for out, _ in outs:
        for e in _events(out):
            if e["event"] == "start":
                starts[e["digest"]] = starts.get(e["digest"], 0) + 1
    assert starts and all(n == 1 for n in starts.values()), starts
    assert len(a.blobs()) == 4


def _blob_progress(proc_stdout_pipe: object, threshold: int) -> None:
    for line in proc_stdout_pipe:  # type: ignore[attr-defined]
        if line.startswith("{"):
            e = json.loads(line)
            if e["event"] == "progress" and e.get("total", 0) > 1 << 24 and \
                    e["current"] >= threshold:
                return


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.8])
def test_kill_9_then_pull_resumes(pyimg: Pyimg, registry: Registry, fraction: float) -> None:
    ref = f"{registry.host}/pyimg/big"
    proc = pyimg.popen("pull", "--progress=json", "-j", "1", ref)
    if fraction:
        _blob_progress(proc.stdout, int(fraction * (32 << 20)))
    else:
        time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    pyimg.blobs()  # whatever is visible verifies
    ingests = list((pyimg.root / "content/ingest").glob("*/data")) if (
        pyimg.root / "content/ingest").exists() else []
    out = pyimg.run("pull", "--progress=json", ref).stdout
    resumed = [e for e in _events(out) if e["event"] == "start" and e.get("current", 0)]
    if fraction and ingests:
        assert resumed, "a partial download was not resumed"
    blobs = pyimg.blobs()
    assert len(blobs) == 4
    assert not list((pyimg.root / "content/ingest").glob("*/data"))


def _imported(pyimg: Pyimg, *args: str) -> set[str]:
    """The modules ``pyimg ARGS`` imports (it must succeed)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-X", "importtime", "-c",
                           "import sys; from pyimg.entry import main; main(sys.argv[1:])",
                           *args], env=pyimg.env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return {ln.rsplit("|", 1)[1].strip() for ln in proc.stderr.splitlines()
            if ln.startswith("import time:") and "|" in ln}


def test_pull_needs_neither_click_nor_the_heavy_modules(pyimg: Pyimg, registry: Registry
                                                        ) -> None:
    """`pyimg pull` is parsed without click (pyimg.cli.fastpull), and a pull into the
    store imports only what it needs (the import budget in docs/design.md): several
    layers (threads), progress lines, an image already there."""
    ref = f"{registry.host}/pyimg/multilayer"
    heavy = {"click", "pyimg.cli.app", "typing", "dataclasses", "pathlib", "socket",
             "threading", "hashlib", "json", "re", "enum", "contextlib", "urllib.parse",
             "uuid", "datetime", "ssl", "tomllib", "random", "base64", "secrets",
             "subprocess", "logging", "tqdm", "encodings.idna", "concurrent.futures"}
    for _ in range(2):  # fetched, then found in the store
        imported = _imported(pyimg, "pull", "--no-unpack", "--progress=plain", ref)
        assert {"pyimg.pull", "pyimg.remote.registry"} <= imported
        assert not heavy & imported, heavy & imported


def test_pull_and_unpack_imports_no_click(pyimg: Pyimg, registry: Registry) -> None:
    imported = _imported(pyimg, "pull", "-q", f"{registry.host}/pyimg/multilayer")
    assert "pyimg.unpack" in imported
    assert not {"click", "pyimg.cli.app", "dataclasses", "secrets", "tqdm"} & imported
