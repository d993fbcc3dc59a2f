"""Linux system calls Python 3.11 lacks, through ctypes: the one place for them.

Every wrapper raises :class:`OSError` with the C ``errno`` and a message that
names the call and the path (``mount(overlay): Invalid argument: '/x'``), so
callers handle ``exc.errno`` exactly as for :mod:`os` functions.

libc is loaded once, with ``use_errno=True`` so that ``ctypes.get_errno()``
reads the errno of *our* call rather than whatever ran last.
"""

from __future__ import annotations

import ctypes
import os

# mount(2) flags (<linux/mount.h>)
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

# umount2(2) flags
MNT_FORCE = 0x1
MNT_DETACH = 0x2
MNT_EXPIRE = 0x4
UMOUNT_NOFOLLOW = 0x8


def _load_libc() -> ctypes.CDLL:
    try:  # the usual soname first: find_library runs ldconfig (slow on the run path)
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        from ctypes import util
        libc = ctypes.CDLL(util.find_library("c") or "libc.so.6", use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                           ctypes.c_ulong, ctypes.c_char_p]
    libc.mount.restype = ctypes.c_int
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    libc.umount2.restype = ctypes.c_int
    libc.syncfs.argtypes = [ctypes.c_int]
    libc.syncfs.restype = ctypes.c_int
    return libc


_libc = _load_libc()


def _fsencode(path: str | os.PathLike[str] | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def _check(result: int, call: str, path: str | os.PathLike[str] | None) -> None:
    if result == 0:
        return
    err = ctypes.get_errno()
    raise OSError(err, f"{call}: {os.strerror(err)}", None if path is None else os.fspath(path))


def mount(source: str | None, target: str | os.PathLike[str], fstype: str | None,
          flags: int = 0, data: str | bytes | None = None) -> None:
    """mount(2).  ``data`` is the filesystem's option string (at most one page)."""
    raw = data.encode() if isinstance(data, str) else data
    rc = _libc.mount(_fsencode(source), _fsencode(target), _fsencode(fstype), flags, raw)
    _check(rc, f"mount({fstype or source or 'none'})", target)


def umount(target: str | os.PathLike[str], flags: int = 0) -> None:
    """umount2(2)."""
    _check(_libc.umount2(_fsencode(target), flags), "umount2", target)


def syncfs(fd: int) -> None:
    """syncfs(2): flush the whole filesystem that ``fd`` lives on."""
    _check(_libc.syncfs(fd), "syncfs", f"/proc/self/fd/{fd}")


# Namespaces, pivot_root, prctl and capabilities: the container launcher's calls.

# clone(2) / unshare(2) / setns(2) flags (<linux/sched.h>)
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# prctl(2) options (<linux/prctl.h>)
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _setup_ns_calls(libc: ctypes.CDLL) -> None:
    libc.unshare.argtypes = [ctypes.c_int]
    libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                           ctypes.c_ulong]
    libc.syscall.restype = ctypes.c_long
    libc.capset.argtypes = [ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData)]
    libc.capget.argtypes = [ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData)]


_setup_ns_calls(_libc)

_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine, 155)


def unshare(flags: int) -> None:
    """unshare(2): move this process into new namespaces (``CLONE_NEW*`` flags)."""
    _check(_libc.unshare(flags), "unshare", None)


def setns(fd: int, nstype: int = 0) -> None:
    """setns(2): join the namespace ``fd`` (an open ``/proc/<pid>/ns/<type>``)."""
    _check(_libc.setns(fd, nstype), "setns", f"/proc/self/fd/{fd}")


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2), through syscall(2): glibc has no wrapper."""
    rc = _libc.syscall(_SYS_PIVOT_ROOT, os.fsencode(new_root), os.fsencode(put_old))
    _check(int(rc), "pivot_root", new_root)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2); returns the call's non-negative result."""
    rc = int(_libc.prctl(option, arg2, arg3, arg4, arg5))
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")
    return rc


def capget() -> tuple[int, int, int]:
    """This thread's (effective, permitted, inheritable) capability masks (64-bit)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget", None)
    lo, hi = data[0], data[1]
    return (lo.effective | hi.effective << 32, lo.permitted | hi.permitted << 32,
            lo.inheritable | hi.inheritable << 32)


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) for this thread, with 64-bit masks (capability version 3)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in (0, 1):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_libc.capset(ctypes.byref(header), data), "capset", None)


_SYS_BPF = {"x86_64": 321, "aarch64": 280}.get(os.uname().machine, 321)


def bpf(cmd: int, attr: bytes) -> int:
    """bpf(2) with ``attr`` (a packed ``union bpf_attr``); returns the result (an fd
    for loads)."""
    buf = ctypes.create_string_buffer(attr, len(attr))
    rc = int(_libc.syscall(_SYS_BPF, ctypes.c_int(cmd), buf, ctypes.c_uint(len(attr))))
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({cmd}): {os.strerror(err)}")
    return rc


def set_child_subreaper(on: bool = True) -> None:
    """PR_SET_CHILD_SUBREAPER: orphaned descendants are reparented to this process."""
    prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0)


def is_child_subreaper() -> bool:
    out = ctypes.c_int(0)
    prctl(PR_GET_CHILD_SUBREAPER, ctypes.addressof(out))
    return bool(out.value)
