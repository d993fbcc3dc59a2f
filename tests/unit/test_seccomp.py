"""Docker's default seccomp profile (shape) and the profile checks of ``install``.

Nothing here loads a filter into the test process: every ``install`` call is
made with a profile that is refused before ``seccomp_load``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from pyimg.errors import FailedPrecondition, InvalidArgument
from pyimg.runtime import RunOptions, seccomp
from pyimg.runtime.seccomp import default_profile, install
from pyimg.runtime.spec import ALL_CAPABILITIES, DEFAULT_CAPABILITIES

DOCKER = DEFAULT_CAPABILITIES
NEW = (6, 1)


def _unconditional(profile: dict[str, Any]) -> set[str]:
    """Names allowed whatever their arguments."""
    return {n for s in profile["syscalls"] if s["action"] == "SCMP_ACT_ALLOW"
            and not s.get("args") for n in s["names"]}


def _entries(profile: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [s for s in profile["syscalls"] if name in s["names"]]


# Shape -------------------------------------------------------------------------------


def test_top_level_shape() -> None:
    p = default_profile(DOCKER, "x86_64", kernel=NEW)
    assert set(p) == {"defaultAction", "defaultErrnoRet", "architectures", "syscalls"}
    assert p["defaultAction"] == "SCMP_ACT_ERRNO"
    assert p["defaultErrnoRet"] == 1
    assert p["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    for s in p["syscalls"]:
        assert set(s) <= {"names", "action", "errnoRet", "args"}
        assert s["names"] and all(isinstance(n, str) for n in s["names"])
        for a in s.get("args", []):
            assert set(a) == {"index", "value", "op"}


@pytest.mark.parametrize(("arch", "expected"), [
    ("x86_64", ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
    ("amd64", ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
    ("aarch64", ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]),
    ("arm64", ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]),
    ("s390x", ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"]),
    ("riscv64", ["SCMP_ARCH_RISCV64"]),
    ("ppc64le", ["SCMP_ARCH_PPC64LE"]),
])
def test_architectures(arch: str, expected: list[str]) -> None:
    assert default_profile(DOCKER, arch)["architectures"] == expected


def test_host_architecture_is_the_default() -> None:
    import os

    assert default_profile(DOCKER) == default_profile(DOCKER, os.uname().machine)
    assert default_profile(DOCKER)["architectures"][0] == seccomp.native_arch()


def test_unknown_architecture() -> None:
    with pytest.raises(InvalidArgument, match="sparc"):
        default_profile(DOCKER, "sparc")


def test_json_serialisable_and_fresh() -> None:
    p = default_profile(DOCKER)
    assert json.loads(json.dumps(p)) == p
    p["syscalls"][0]["names"].clear()
    p["syscalls"][2].setdefault("args", [{}])[0]["value"] = 99
    assert default_profile(DOCKER) == json.loads(json.dumps(default_profile(DOCKER)))
    assert "read" in default_profile(DOCKER)["syscalls"][0]["names"]


@pytest.mark.parametrize("caps", [(), DOCKER, ALL_CAPABILITIES])
@pytest.mark.parametrize("arch", ["x86_64", "aarch64", "s390x"])
def test_no_duplicates(caps: tuple[str, ...], arch: str) -> None:
    p = default_profile(caps, arch, kernel=NEW)
    seen: set[tuple[str, str, int | None]] = set()
    for s in p["syscalls"]:
        assert len(s["names"]) == len(set(s["names"])), s
        if s.get("args"):
            continue
        for n in s["names"]:
            key = (n, s["action"], s.get("errnoRet"))
            assert key not in seen, key
            seen.add(key)
    # one name never gets two different unconditional actions
    plain = [(n, s["action"], s.get("errnoRet")) for s in p["syscalls"] if not s.get("args")
             for n in s["names"]]
    names = [n for n, _, _ in plain]
    assert len(names) == len(set(names))


# The allow list ----------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return text.split()


EVERYDAY = _words(
    "read write openat close fstat newfstatat mmap munmap mprotect brk rt_sigaction "
    "rt_sigprocmask rt_sigreturn ioctl pread64 readv writev access pipe pipe2 select poll "
    "sched_yield mremap madvise dup dup2 dup3 nanosleep clock_nanosleep getpid gettid "
    "socket socketpair connect accept accept4 bind listen sendto recvfrom sendmsg recvmsg "
    "shutdown getsockname setsockopt getsockopt execve execveat exit exit_group wait4 "
    "waitid kill tgkill uname fcntl flock fsync getdents64 getcwd chdir rename mkdir rmdir "
    "unlink symlink readlink chmod chown umask gettimeofday getrlimit prlimit64 setrlimit "
    "getuid setuid setgid setgroups capget capset prctl arch_prctl futex set_tid_address "
    "set_robust_list rseq epoll_create1 epoll_ctl epoll_wait epoll_pwait eventfd2 "
    "signalfd4 timerfd_create inotify_init1 getrandom memfd_create statx copy_file_range "
    "io_uring_setup pidfd_open close_range faccessat2 openat2 clone fork vfork "
    "personality seccomp sethostname mknod io_setup landlock_create_ruleset"
)
# sethostname needs CAP_SYS_ADMIN: checked separately below
EVERYDAY.remove("sethostname")

#: Docker refuses these to a container with its default capabilities
BLOCKED = _words(
    "mount umount umount2 unshare setns pivot_root keyctl add_key request_key "
    "kexec_load kexec_file_load init_module finit_module delete_module reboot bpf "
    "perf_event_open userfaultfd swapon swapoff acct syslog settimeofday clock_settime "
    "stime iopl ioperm open_by_handle_at "
    "kcmp pidfd_getfd process_madvise vhangup mbind set_mempolicy get_mempolicy "
    "move_pages migrate_pages lookup_dcookie quotactl fanotify_init nfsservctl "
    "fsopen fsmount fsconfig fspick open_tree move_mount mount_setattr sethostname "
    "setdomainname uselib ustat sysfs _sysctl create_module get_kernel_syms query_module "
    "vm86 vm86old"
)


def test_everyday_syscalls_allowed() -> None:
    p = default_profile(DOCKER, "x86_64", kernel=NEW)
    allowed = {n for s in p["syscalls"] if s["action"] == "SCMP_ACT_ALLOW"
               for n in s["names"]}
    assert [n for n in EVERYDAY if n not in allowed] == []
    assert len(p["syscalls"][0]["names"]) > 340  # moby's list: 350+ names


def test_docker_blocks_privileged_syscalls() -> None:
    p = default_profile(DOCKER, "x86_64", kernel=NEW)
    mentioned = {n for s in p["syscalls"] for n in s["names"]}
    assert [n for n in BLOCKED if n in mentioned] == []


def test_chroot_follows_cap_sys_chroot() -> None:
    # one of Docker's 14 default capabilities, so a plain docker run may chroot
    assert "chroot" in _unconditional(default_profile(DOCKER, "x86_64"))
    caps = [c for c in DOCKER if c != "CAP_SYS_CHROOT"]
    assert "chroot" not in _unconditional(default_profile(caps, "x86_64"))


# Conditional groups ------------------------------------------------------------------


@pytest.mark.parametrize(("cap", "names"), [
    ("CAP_SYS_ADMIN", ["mount", "umount2", "unshare", "setns", "bpf", "perf_event_open",
                       "fsopen", "fsmount", "fsconfig", "fspick", "open_tree", "move_mount",
                       "mount_setattr", "sethostname", "setdomainname", "syslog", "quotactl",
                       "quotactl_fd", "fanotify_init", "lookup_dcookie", "umount", "clone",
                       "clone3"]),
    ("CAP_SYS_PTRACE", ["ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
                        "pidfd_getfd", "process_madvise"]),
    ("CAP_SYS_BOOT", ["reboot"]),
    ("CAP_SYS_MODULE", ["init_module", "finit_module", "delete_module"]),
    ("CAP_SYS_TIME", ["settimeofday", "stime", "clock_settime", "clock_settime64"]),
    ("CAP_SYS_NICE", ["mbind", "set_mempolicy", "get_mempolicy", "set_mempolicy_home_node"]),
    ("CAP_SYS_RAWIO", ["iopl", "ioperm"]),
    ("CAP_SYS_PACCT", ["acct"]),
    ("CAP_SYSLOG", ["syslog"]),
    ("CAP_SYS_TTY_CONFIG", ["vhangup"]),
    ("CAP_DAC_READ_SEARCH", ["open_by_handle_at"]),
    ("CAP_BPF", ["bpf"]),
    ("CAP_PERFMON", ["perf_event_open"]),
])
def test_capability_groups(cap: str, names: list[str]) -> None:
    without = _unconditional(default_profile(DOCKER, "x86_64", kernel=(4, 4)))
    with_cap = _unconditional(default_profile((*DOCKER, cap), "x86_64", kernel=(4, 4)))
    assert [n for n in names if n in without] == []
    assert [n for n in names if n not in with_cap] == []
    # the prefix is optional and case does not matter
    short = cap.removeprefix("CAP_").lower()
    assert default_profile((*DOCKER, short), "x86_64", kernel=(4, 4)) == \
        default_profile((*DOCKER, cap), "x86_64", kernel=(4, 4))


def test_never_allowed_even_with_all_capabilities() -> None:
    p = default_profile(ALL_CAPABILITIES, "x86_64", kernel=NEW)
    mentioned = {n for s in p["syscalls"] for n in s["names"]}
    for name in ("keyctl", "add_key", "request_key", "kexec_load", "kexec_file_load",
                 "userfaultfd", "pivot_root", "swapon", "swapoff", "nfsservctl", "uselib",
                 "move_pages", "migrate_pages", "vm86"):
        assert name not in mentioned, name


def test_clone_namespace_flags_filter() -> None:
    p = default_profile(DOCKER, "x86_64", kernel=NEW)
    [clone] = _entries(p, "clone")
    assert clone == {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 0, "value": 0x7E020000, "op": "SCMP_CMP_MASKED_EQ"}]}
    newns, newcgroup, newuts, newipc, newuser, newpid, newnet = (
        0x20000, 0x2000000, 0x4000000, 0x8000000, 0x10000000, 0x20000000, 0x40000000)
    assert clone["args"][0]["value"] == (newns | newcgroup | newuts | newipc | newuser
                                         | newpid | newnet)
    # clone3 hides its flags in memory: ENOSYS so that glibc falls back to clone
    [clone3] = _entries(p, "clone3")
    assert clone3 == {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
    # with CAP_SYS_ADMIN both are allowed outright and the filters disappear
    admin = default_profile((*DOCKER, "CAP_SYS_ADMIN"), "x86_64")
    assert {"clone", "clone3"} <= _unconditional(admin)
    assert all(not s.get("args") for s in _entries(admin, "clone"))
    assert all(s["action"] == "SCMP_ACT_ALLOW" for s in _entries(admin, "clone3"))


def test_clone_on_s390_filters_the_second_argument() -> None:
    [clone] = _entries(default_profile(DOCKER, "s390x"), "clone")
    assert clone["args"] == [{"index": 1, "value": 0x7E020000, "op": "SCMP_CMP_MASKED_EQ"}]


def test_personality_values() -> None:
    rules = _entries(default_profile(DOCKER, "x86_64"), "personality")
    values = sorted(r["args"][0]["value"] for r in rules)
    assert values == [0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF]
    assert all(r["args"][0]["op"] == "SCMP_CMP_EQ" and len(r["args"]) == 1 for r in rules)


def test_socket_allowed_except_vsock() -> None:
    [sock] = _entries(default_profile(DOCKER, "x86_64"), "socket")
    assert sock["args"] == [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]


@pytest.mark.parametrize(("kernel", "allowed"), [
    ((4, 7), False), ((4, 8), True), ("4.19.0-21-amd64", True), ("3.10.0-1160.el7", False),
    ("6.18.44-fc-v857", True), ("5", True),
])
def test_ptrace_needs_kernel_4_8(kernel: Any, allowed: bool) -> None:
    names = _unconditional(default_profile(DOCKER, "x86_64", kernel=kernel))
    assert ("ptrace" in names) is allowed
    assert ("process_vm_readv" in names) is allowed
    assert "kcmp" not in names  # CAP_SYS_PTRACE only, whatever the kernel


def test_architecture_specific_groups() -> None:
    amd64 = _unconditional(default_profile(DOCKER, "x86_64"))
    arm64 = _unconditional(default_profile(DOCKER, "aarch64"))
    assert {"arch_prctl", "modify_ldt"} <= amd64
    assert not {"cacheflush", "set_tls", "arm_fadvise64_64"} & amd64
    assert {"cacheflush", "set_tls", "arm_fadvise64_64", "sync_file_range2"} <= arm64
    assert not {"arch_prctl", "modify_ldt"} & arm64


def test_generate_spec_carries_the_profile(tmp_path: Any) -> None:
    from pyimg import oci
    from pyimg.runtime import generate_spec

    profile = default_profile(DOCKER)
    config = oci.parse_config(json.dumps({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": []}}).encode())
    spec = generate_spec(config, tmp_path, RunOptions(seccomp=profile))
    assert spec["linux"]["seccomp"] == profile
    assert json.loads(json.dumps(spec))["linux"]["seccomp"] == profile


def test_import_is_lazy() -> None:
    code = ("import sys, pyimg.runtime; before = 'ctypes' in sys.modules; "
            "import pyimg.runtime.seccomp as s; "
            "print(before == ('ctypes' in sys.modules), "
            "'pyimg.runtime.seccomp_default' in sys.modules); "
            "s.default_profile([]); print('pyimg.runtime.seccomp_default' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    assert out == ["True", "False", "True"]


# install(): refused before anything is loaded -------------------------------------------


@pytest.mark.parametrize(("profile", "match"), [
    ([], "JSON object"),
    ({"defaultAction": "SCMP_ACT_NOPE"}, "unknown action"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}, "errnoRet is only valid"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": -1}, "errnoRet"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}, "16-bit"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "architectures": "SCMP_ARCH_X86_64"},
     "architectures"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_BOGUS"]},
     "unsupported flags"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": "read",
                                                       "action": "SCMP_ACT_ALLOW"}]},
     r"syscalls\[0\].names"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": [],
                                                       "action": "SCMP_ACT_ALLOW"}]},
     "non-empty"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"]}]},
     r"unknown action None \(syscalls\[0\]\)"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW", "errnoRet": 1}]}, "errnoRet"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}, "below 6"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_LIKE"}]}]}, "unknown operator"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 1 << 64, "op": "SCMP_CMP_EQ"}]}]}, "64-bit"),
])
def test_install_rejects_malformed_profiles(profile: Any, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        install(profile)


def test_install_rejects_notify() -> None:
    with pytest.raises(FailedPrecondition, match="SCMP_ACT_NOTIFY"):
        install({"defaultAction": "SCMP_ACT_ALLOW",
                 "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]})
    with pytest.raises(FailedPrecondition, match="listenerPath"):
        install({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"})


def test_install_rejects_unknown_architecture() -> None:
    with pytest.raises(InvalidArgument, match="SCMP_ARCH_VAX"):
        install({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]})


def test_missing_libseccomp(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes
    import ctypes.util

    def refuse(*_a: Any, **_k: Any) -> Any:
        raise OSError("libseccomp.so.2: cannot open shared object file")

    monkeypatch.setenv("PYIMG_SECCOMP_CACHE", "")  # a cached program needs no libseccomp
    monkeypatch.setattr(seccomp, "_lib", None)
    monkeypatch.setattr(ctypes, "CDLL", refuse)
    monkeypatch.setattr(ctypes.util, "find_library", lambda _name: None)
    with pytest.raises(FailedPrecondition, match="libseccomp") as info:
        install(default_profile(DOCKER))
    assert "apt-get install libseccomp2" in str(info.value)
    assert info.value.exit_code == 5
