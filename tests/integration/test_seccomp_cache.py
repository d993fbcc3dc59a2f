"""The compiled-filter cache of ``seccomp.install``: a hit loads the BPF program
that libseccomp exported, without libseccomp, and blocks what the built filter
blocks; a cache file or directory that is not ours and private is ignored.

Every filter is loaded in a fresh ``python -c`` child with ``PYIMG_SECCOMP_CACHE``
pointing into the test's temp dir.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pyimg.runtime.seccomp import default_profile
from pyimg.runtime.spec import DEFAULT_CAPABILITIES
from tests.integration.test_seccomp import BASE, PROBES
from tests.need import need_root, need_tool

DOCKER = default_profile(DEFAULT_CAPABILITIES)

#: install, then say whether libseccomp got loaded, and probe getppid (ENOMSG in BASE)
LOADED = r"""
import ctypes, errno, json, os, sys
from pyimg.runtime import seccomp
assert ctypes.CDLL(None).prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
seccomp.install(json.loads(sys.argv[1]))
maps = open("/proc/self/maps").read()
libc = ctypes.CDLL(None, use_errno=True)
r = libc.syscall(110)  # getppid on x86_64
print(json.dumps({"libseccomp": "libseccomp" in maps,
                  "getppid": "ok" if r >= 0 else errno.errorcode[ctypes.get_errno()]}))
"""


@pytest.fixture(autouse=True)
def _needs() -> None:
    need_root()
    need_tool("busybox")
    if os.uname().machine != "x86_64":
        pytest.skip("the probe script uses x86_64 syscall numbers")


def _env(cache: Path | str) -> dict[str, str]:
    return {**os.environ, "PYIMG_SECCOMP_CACHE": str(cache)}


def _probe(profile: dict[str, Any], cache: Path | str) -> dict[str, Any]:
    r = subprocess.run([sys.executable, "-c", PROBES, json.dumps(profile)], env=_env(cache),
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout)
    return out


def _loaded(profile: dict[str, Any], cache: Path) -> dict[str, Any]:
    r = subprocess.run([sys.executable, "-c", LOADED, json.dumps(profile)], env=_env(cache),
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout)
    return out


def _entries(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if not p.name.startswith("."))


def test_cached_program_blocks_what_the_built_filter_blocks(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    built = _probe(DOCKER, "")              # no cache: libseccomp builds and loads
    miss = _probe(DOCKER, cache)            # builds, loads, and writes the cache
    [entry] = _entries(cache)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    hit = _probe(DOCKER, cache)             # the cached program, loaded directly
    assert built == miss == hit
    assert hit["mode"] == 2 and hit["unshare"] == "EPERM" and hit["keyctl"] == "EPERM"
    assert hit["clone3"] == "ENOSYS" and hit["spawn"] == "ok" and hit["thread_mode"] == 2


def test_a_hit_needs_no_libseccomp(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert _loaded(BASE, cache) == {"libseccomp": True, "getppid": "ENOMSG"}
    assert _loaded(BASE, cache) == {"libseccomp": False, "getppid": "ENOMSG"}
    assert len(_entries(cache)) == 1


def test_flags_go_with_the_cached_program(tmp_path: Path) -> None:
    """TSYNC through seccomp(2) on a hit, as libseccomp does on a miss."""
    from tests.integration.test_seccomp import CUSTOM

    cache = tmp_path / "cache"
    profile = {**BASE, "flags": ["SECCOMP_FILTER_FLAG_TSYNC"]}
    for _ in range(2):  # miss, then hit
        r = subprocess.run([sys.executable, "-c", CUSTOM, json.dumps(profile), ""],
                           env=_env(cache), capture_output=True, text=True, timeout=60,
                           check=False)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["early_thread_getppid"] == "ENOMSG"
    assert len(_entries(cache)) == 1


def _tamper_mode(entry: Path, cache: Path) -> None:
    entry.chmod(0o644)


def _tamper_owner(entry: Path, cache: Path) -> None:
    os.chown(entry, 65534, 65534)


def _tamper_dir_mode(entry: Path, cache: Path) -> None:
    cache.chmod(0o755)


def _tamper_dir_owner(entry: Path, cache: Path) -> None:
    os.chown(cache, 65534, 65534)


def _tamper_links(entry: Path, cache: Path) -> None:
    os.link(entry, cache.parent / "second-link")


def _tamper_symlink(entry: Path, cache: Path) -> None:
    real = cache.parent / "elsewhere"
    entry.rename(real)
    entry.symlink_to(real)


def _tamper_allow_all(entry: Path, cache: Path) -> None:
    """Another key's header (a file renamed), over a program that allows all."""
    head, _, _ = entry.read_bytes().partition(b"\n")
    other = head[:-8] + b"00000000\n"
    entry.write_bytes(other + bytes.fromhex("0600000000ff7f00"))  # ret SECCOMP_RET_ALLOW


def _tamper_truncated(entry: Path, cache: Path) -> None:
    entry.write_bytes(entry.read_bytes()[:-3])


@pytest.mark.parametrize("tamper", [_tamper_mode, _tamper_owner, _tamper_dir_mode,
                                    _tamper_dir_owner, _tamper_links, _tamper_symlink,
                                    _tamper_allow_all, _tamper_truncated])
def test_an_untrusted_cache_file_is_ignored(tmp_path: Path, tamper: Any) -> None:
    cache = tmp_path / "cache"
    _loaded(BASE, cache)
    [entry] = _entries(cache)
    tamper(entry, cache)
    # ignored: libseccomp builds the filter again, which still blocks getppid
    assert _loaded(BASE, cache) == {"libseccomp": True, "getppid": "ENOMSG"}


def test_no_cache_when_disabled(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-c", LOADED, json.dumps(BASE)], env=_env(""),
                       capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"libseccomp": True, "getppid": "ENOMSG"}
    assert list(tmp_path.iterdir()) == []


def test_preload_reads_the_cache_before_the_root_changes(tmp_path: Path) -> None:
    """What init does: preload(spec) on the host, then chroot, then install."""
    cache = tmp_path / "cache"
    (tmp_path / "root").mkdir()
    code = r"""
import json, os, sys
from pyimg.runtime import seccomp
spec = json.loads(sys.argv[1])
seccomp.preload(spec)
status = os.open("/proc/self/status", os.O_RDONLY)
maps = os.open("/proc/self/maps", os.O_RDONLY)
os.chroot(sys.argv[2]); os.chdir("/")       # no cache, no libseccomp in here
import ctypes
assert ctypes.CDLL(None).prctl(38, 1, 0, 0, 0) == 0
seccomp.install(spec)
mode = [ln for ln in os.pread(status, 4096, 0).decode().splitlines() if ln.startswith("Secc")]
print(mode[0].split()[1], b"libseccomp" in os.pread(maps, 1 << 20, 0))
"""
    outs = []
    for _ in range(2):  # miss (compiled in preload, cached), then hit
        r = subprocess.run([sys.executable, "-c", code, json.dumps(DOCKER),
                            str(tmp_path / "root")], env=_env(cache), capture_output=True,
                           text=True, timeout=60, check=False)
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout.split())
    assert outs == [["2", "True"], ["2", "False"]]
    # a spec other than the preloaded one is refused rather than built from a
    # library path that now leads into the new root
    r = subprocess.run([sys.executable, "-c", code.replace("seccomp.install(spec)",
                                                           "seccomp.install({**spec, 'x': 1})"),
                        json.dumps(DOCKER), str(tmp_path / "root")], env=_env(cache),
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode != 0 and "not the one prepared" in r.stderr
