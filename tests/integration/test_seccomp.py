"""Seccomp filters on the real kernel: ``install`` in a child process, and
``default_profile`` in a bundle run by the real runc (as root).

Every filter is loaded in a fresh ``python -c`` child, never in pytest.  Each
probe is run once unfiltered (the control: the kernel itself would allow it,
or fail it with another errno) and once under Docker's default profile.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pyimg import oci
from pyimg.errors import FailedPrecondition
from pyimg.runtime import RunOptions, write_bundle
from pyimg.runtime.seccomp import default_profile
from pyimg.runtime.spec import DEFAULT_CAPABILITIES
from tests.need import need_root, need_tool

PRELUDE = r"""
import ctypes, errno, json, os, socket, subprocess, sys, threading
from pyimg.runtime import seccomp
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
lib = seccomp._libseccomp()

def sc(name, *args):
    nr = lib.seccomp_syscall_resolve_name(name.encode())
    assert nr >= 0, name
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    return "ok" if r >= 0 else errno.errorcode[ctypes.get_errno()]

def no_new_privs():
    assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS

def seccomp_mode():
    for line in open("/proc/self/status"):
        if line.startswith("Seccomp:"):
            return int(line.split()[1])
"""

PROBES = PRELUDE + r"""
profile = json.loads(sys.argv[1])
if profile is not None:
    no_new_privs()
    seccomp.install(profile)
out = {"mode": seccomp_mode()}
CLONE_NEWNS, CLONE_NEWUTS = 0x20000, 0x4000000
out["unshare"] = sc("unshare", CLONE_NEWNS)          # harmless: this process only
out["mount"] = sc("mount", 0, 0, 0, 0, 0)            # EFAULT when the kernel sees it
out["umount2"] = sc("umount2", 0, 0)
out["keyctl"] = sc("keyctl", 0, -3, 0)               # KEYCTL_GET_KEYRING_ID, session
out["add_key"] = sc("add_key", 0, 0, 0, 0, 0)
out["kcmp"] = sc("kcmp", os.getpid(), os.getpid(), 0, 0, 0)  # KCMP_FILE 0 vs 0
out["ptrace"] = sc("ptrace", 1, os.getppid(), 0, 0)  # PEEKTEXT, not our tracee: ESRCH
out["setns"] = sc("setns", -1, 0)                    # EBADF when the kernel sees it
out["bpf"] = sc("bpf", 0, 0, 0)
out["clone3"] = sc("clone3", 0, 0)                   # size 0: EINVAL from the kernel
out["personality_query"] = sc("personality", 0xFFFFFFFF)
out["userfaultfd"] = sc("userfaultfd", 0)
if profile is not None:                              # would really act unfiltered
    out["reboot"] = sc("reboot", 0, 0, 0, 0)         # bad magic: EINVAL if it got through
    out["init_module"] = sc("init_module", 0, 0, 0)
    out["kexec_load"] = sc("kexec_load", 0, 0, 0, 0)
    out["perf_event_open"] = sc("perf_event_open", 0, 0, -1, -1, 0)
    out["personality_norandom"] = sc("personality", 0x0040000)
    r = libc.syscall(ctypes.c_long(lib.seccomp_syscall_resolve_name(b"clone")),
                     ctypes.c_long(CLONE_NEWUTS | 17), ctypes.c_long(0), ctypes.c_long(0),
                     ctypes.c_long(0), ctypes.c_long(0))
    if r == 0:
        os._exit(0)  # a child: must never get here under the filter
    out["clone_newuts"] = "ok" if r > 0 else errno.errorcode[ctypes.get_errno()]
    try:
        socket.socket(40, socket.SOCK_STREAM).close()  # AF_VSOCK
        out["vsock"] = "ok"
    except OSError as e:
        out["vsock"] = errno.errorcode[e.errno]
# everyday work keeps working
r = subprocess.run(["/bin/busybox", "echo", "ok"], capture_output=True, text=True)
out["spawn"] = r.stdout.strip()
r = subprocess.run(["/bin/busybox", "unshare", "-m", "true"], capture_output=True)
out["busybox_unshare_rc"] = r.returncode
seen = []
t = threading.Thread(target=lambda: seen.append(seccomp_mode()))
t.start(); t.join()
out["thread_mode"] = seen[0]
out["read"] = len(open("/proc/self/cmdline", "rb").read()) > 0
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
cli = socket.create_connection(srv.getsockname()); conn, _ = srv.accept()
cli.sendall(b"ping"); out["tcp"] = conn.recv(4).decode()
a, b = socket.socketpair(); a.sendall(b"x"); out["socketpair"] = b.recv(1).decode()
pid = os.fork()
if pid == 0:
    os._exit(7)
out["fork"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
print(json.dumps(out))
"""


@pytest.fixture(autouse=True)
def _needs() -> None:
    need_root()
    need_tool("busybox")


def _probe(profile: dict[str, Any] | None) -> dict[str, Any]:
    r = subprocess.run([sys.executable, "-c", PROBES, json.dumps(profile)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    result: dict[str, Any] = json.loads(r.stdout)
    return result


@pytest.fixture(scope="module")
def control() -> dict[str, Any]:
    return _probe(None)


@pytest.fixture(scope="module")
def docker() -> dict[str, Any]:
    return _probe(default_profile(DEFAULT_CAPABILITIES))


EVERYDAY = {"spawn": "ok", "read": True, "tcp": "ping", "socketpair": "x", "fork": 7}


def test_control_run_reaches_the_kernel(control: dict[str, Any]) -> None:
    """Without a filter, root gets past every probe (so EPERM below is seccomp's)."""
    assert control["mode"] == 0
    assert control["unshare"] == "ok" and control["keyctl"] == "ok" \
        and control["kcmp"] == "ok"
    assert control["mount"] == "EFAULT" and control["setns"] == "EBADF"
    assert control["clone3"] == "EINVAL" and control["ptrace"] == "ESRCH"
    assert control["busybox_unshare_rc"] == 0
    assert {k: control[k] for k in EVERYDAY} == EVERYDAY


def test_default_profile_blocks(docker: dict[str, Any]) -> None:
    assert docker["mode"] == 2
    blocked = ("unshare", "mount", "umount2", "keyctl", "add_key", "kcmp", "setns", "bpf",
               "userfaultfd", "reboot", "init_module", "kexec_load", "perf_event_open",
               "personality_norandom", "clone_newuts", "vsock")
    assert {k: docker[k] for k in blocked} == dict.fromkeys(blocked, "EPERM")
    assert docker["busybox_unshare_rc"] != 0
    # clone3 says ENOSYS so that glibc falls back to clone (threads, posix_spawn)
    assert docker["clone3"] == "ENOSYS"


def test_default_profile_keeps_everyday_work(docker: dict[str, Any]) -> None:
    assert {k: docker[k] for k in EVERYDAY} == EVERYDAY
    assert docker["thread_mode"] == 2  # threads inherit the filter
    assert docker["personality_query"] == "ok"
    # Docker allows ptrace from Linux 4.8 on: the kernel's own checks answer
    assert docker["ptrace"] == "ESRCH"


def test_ptrace_blocked_on_old_kernels_and_allowed_with_cap_sys_ptrace() -> None:
    old = _probe(default_profile(DEFAULT_CAPABILITIES, kernel=(4, 4)))
    assert old["ptrace"] == "EPERM" and old["kcmp"] == "EPERM"
    with_cap = _probe(default_profile((*DEFAULT_CAPABILITIES, "CAP_SYS_PTRACE"), kernel=(4, 4)))
    assert with_cap["ptrace"] == "ESRCH" and with_cap["kcmp"] == "ok"
    assert with_cap["unshare"] == "EPERM"


def test_cap_sys_admin_profile_allows_namespaces() -> None:
    admin = _probe(default_profile((*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN")))
    assert admin["unshare"] == "ok" and admin["mount"] == "EFAULT"
    assert admin["setns"] == "EBADF" and admin["clone3"] == "EINVAL"
    assert admin["busybox_unshare_rc"] == 0
    assert admin["keyctl"] == "EPERM"  # never allowed by Docker's profile


# Actions, conditions and flags ---------------------------------------------------------

CUSTOM = PRELUDE + r"""
profile = json.loads(sys.argv[1])
no_new_privs()
started = threading.Event(); go = threading.Event(); seen = []
def early():
    started.set(); go.wait(); seen.append(sc("getppid"))
t = threading.Thread(target=early); t.start(); started.wait()
seccomp.install(profile)
go.set(); t.join()
out = {"early_thread_getppid": seen[0], "getppid": sc("getppid")}
out["getpriority"] = [sc("getpriority", which, 0) for which in (0, 1, 2)]
out["setpriority_gt"] = [sc("setpriority", 0, 0, n) for n in (5, 10, 11)]
out["umask_masked"] = [sc("umask", m) for m in (0o022, 0o077, 0o027)]
print(json.dumps(out), flush=True)
if sys.argv[2] == "kill":
    sc("sync")
    print("survived", flush=True)
"""


def _custom(profile: dict[str, Any], then: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CUSTOM, json.dumps(profile), then],
                          capture_output=True, text=True, timeout=60, check=False)


BASE: dict[str, Any] = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [
        {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42},  # ENOMSG
        # two conditions on one argument: one rule each (runc), i.e. OR
        {"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5,
         "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                  {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
        {"names": ["setpriority"], "action": "SCMP_ACT_ERRNO",  # errnoRet: EPERM default
         "args": [{"index": 2, "value": 10, "op": "SCMP_CMP_GT"}]},
        # (mode & 0o070) == 0o020 → EACCES
        {"names": ["umask"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
         "args": [{"index": 0, "value": 0o070, "valueTwo": 0o020,
                   "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["no_such_syscall_anywhere"], "action": "SCMP_ACT_ERRNO"},
        {"names": ["read"], "action": "SCMP_ACT_ALLOW"},  # = default action: dropped
    ],
}


def test_actions_and_conditions() -> None:
    r = _custom(BASE)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["getppid"] == "ENOMSG"
    assert out["early_thread_getppid"] == "ok"  # no TSYNC: other threads unfiltered
    assert out["getpriority"] == ["EIO", "EIO", "ok"]
    assert out["setpriority_gt"] == ["ok", "ok", "EPERM"]
    assert out["umask_masked"] == ["EACCES", "ok", "EACCES"]


def test_tsync_flag_filters_every_thread() -> None:
    r = _custom({**BASE, "flags": ["SECCOMP_FILTER_FLAG_TSYNC"]})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["early_thread_getppid"] == "ENOMSG"


@pytest.mark.parametrize(("action", "sig"), [("SCMP_ACT_KILL_PROCESS", signal.SIGSYS),
                                             ("SCMP_ACT_KILL", signal.SIGSYS),
                                             ("SCMP_ACT_TRAP", signal.SIGSYS)])
def test_kill_and_trap(action: str, sig: int) -> None:
    profile = {**BASE, "syscalls": [*BASE["syscalls"],
                                    {"names": ["sync"], "action": action}]}
    r = _custom(profile, "kill")
    assert r.returncode == -sig, (r.returncode, r.stderr)
    assert "survived" not in r.stdout


def test_log_action_allows() -> None:
    profile = {**BASE, "syscalls": [*BASE["syscalls"],
                                    {"names": ["sync"], "action": "SCMP_ACT_LOG"}]}
    r = _custom(profile, "kill")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "survived"


def test_load_needs_no_new_privs_or_cap_sys_admin() -> None:
    """Like runc, install() leaves no_new_privs to its caller."""
    need_tool("setpriv")
    code = ("import json, sys\nfrom pyimg.runtime import seccomp\n"
            "try:\n    seccomp.install(json.loads(sys.argv[1]))\n"
            "except seccomp.FailedPrecondition as e:\n    print(e); sys.exit(e.exit_code)\n")
    r = subprocess.run(["setpriv", "--inh-caps=-all", "--bounding-set=-sys_admin", "--",
                        sys.executable, "-c", code,
                        json.dumps(default_profile(DEFAULT_CAPABILITIES))],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == FailedPrecondition.exit_code, r.stderr
    assert "Permission denied" in r.stdout and "no_new_privs" in r.stdout


# Under the real runc -------------------------------------------------------------------


def _blob(layout: Path, digest: str) -> Path:
    algo, hexd = digest.split(":", 1)
    return layout / "blobs" / algo / hexd


def _image_config(layout: Path) -> oci.ImageConfig:
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(_blob(layout, index["manifests"][0]["digest"]).read_text())
    return oci.parse_config(_blob(layout, manifest["config"]["digest"]).read_bytes())


SCRIPT = ("grep Seccomp: /proc/self/status; unshare -m true; echo rc=$?; "
          "hostname; echo done")


def _bundle(busybox: Path, bundle: Path, profile: dict[str, Any] | None,
            cap_add: tuple[str, ...] = ()) -> None:
    subprocess.run(["umoci", "unpack", "--image", f"{busybox}:latest", str(bundle)],
                   check=True, capture_output=True, timeout=120)
    write_bundle(bundle, _image_config(busybox), None,
                 RunOptions(args=("sh", "-c", SCRIPT), hostname="sc", cap_add=cap_add,
                            seccomp=profile))


def test_runc_runs_the_default_profile(busybox: Path, tmp_path: Path, runc: Any) -> None:
    _bundle(busybox, tmp_path / "b", default_profile(DEFAULT_CAPABILITIES))
    r = runc(tmp_path / "b")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "Seccomp:\t2"
    assert lines[1].startswith("rc=") and lines[1] != "rc=0"
    assert lines[2:] == ["sc", "done"]
    assert "Operation not permitted" in r.stderr


def test_runc_seccomp_is_what_blocks(busybox: Path, tmp_path: Path, runc: Any) -> None:
    """With CAP_SYS_ADMIN granted, only the filter stands between sh and unshare."""
    caps = ("CAP_SYS_ADMIN",)
    _bundle(busybox, tmp_path / "strict", default_profile(DEFAULT_CAPABILITIES), caps)
    _bundle(busybox, tmp_path / "admin",
            default_profile((*DEFAULT_CAPABILITIES, *caps)), caps)
    strict, admin = runc(tmp_path / "strict"), runc(tmp_path / "admin")
    assert strict.returncode == 0 and admin.returncode == 0, strict.stderr + admin.stderr
    assert strict.stdout.splitlines()[:2] == ["Seccomp:\t2", "rc=1"]
    assert admin.stdout.splitlines()[:2] == ["Seccomp:\t2", "rc=0"]


def test_install_after_preload_needs_no_file_system(tmp_path: Path) -> None:
    """The launcher preloads libseccomp, then pivots into a rootfs without it."""
    code = PRELUDE + r"""
seccomp.preload()
status = os.open("/proc/self/status", os.O_RDONLY)
os.chroot(sys.argv[2]); os.chdir("/")       # nothing in here: no libseccomp, no libc
no_new_privs()
seccomp.install(json.loads(sys.argv[1]))
mode = [ln for ln in os.pread(status, 4096, 0).decode().splitlines() if ln.startswith("Secc")]
print(mode[0].split()[1], sc("unshare", 0x20000))
"""
    r = subprocess.run([sys.executable, "-c", code,
                        json.dumps(default_profile(DEFAULT_CAPABILITIES)), str(tmp_path)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["2", "EPERM"]
