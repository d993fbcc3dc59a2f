"""Seccomp: Docker's default profile, and loading a ``linux.seccomp`` filter.

* :func:`default_profile` gives the OCI runtime-spec ``linux.seccomp`` object
  that Docker (moby's ``profiles/seccomp``) puts in a container's spec: the
  allow list of :mod:`pyimg.runtime.seccomp_default` filtered by the
  container's capabilities, the architecture and the host kernel, with
  everything else failing with EPERM.  runc loads it unchanged.
* :func:`install` builds the filter a spec describes with libseccomp (through
  ctypes, loaded on first use) and loads it into the calling thread, with
  runc's semantics: syscall names this libseccomp does not know are skipped,
  a rule whose action is the default action is dropped, several conditions
  on one argument become separate rules, ``errnoRet`` defaults to EPERM.
* The BPF program libseccomp compiles is cached (:func:`cache_dir`, one file
  per spec, native architecture, libseccomp build and kernel release): a hit
  is loaded with ``prctl(PR_SET_SECCOMP)`` / ``seccomp(2)`` directly, without
  libseccomp (compiling Docker's profile takes ~10 ms of a container start).

Importing this module is cheap: no ctypes, no data table, until asked.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

from pyimg.errors import FailedPrecondition, InvalidArgument

TYPE_CHECKING = False  # loaded by every container init: no typing
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ACTIONS", "OPERATORS", "default_profile", "go_arch", "install", "native_arch",
           "preload"]

EPERM = 1
EEXIST = 17
EACCES = 13
ESRCH = 3

#: runtime-spec action name → libseccomp action value (errno/trace data ORed in)
ACTIONS: dict[str, int] = {
    "SCMP_ACT_KILL": 0x00000000,  # = KILL_THREAD
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
_WITH_DATA = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")

#: runtime-spec operator name → ``enum scmp_compare``
OPERATORS: dict[str, int] = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# enum scmp_filter_attr
_FLTATR_CTL_NNP = 3
_FLTATR_CTL_TSYNC = 4
_FLTATR_CTL_LOG = 6
_FLTATR_CTL_SSB = 7
_FLTATR_API_SYSRAWRC = 9

#: runtime-spec ``flags`` → the libseccomp attribute that sets the kernel flag
_FLAGS: dict[str, int] = {
    "SECCOMP_FILTER_FLAG_TSYNC": _FLTATR_CTL_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": _FLTATR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": _FLTATR_CTL_SSB,
}

_NR_SCMP_ERROR = -1
_MAX_ARGS = 6

#: ``uname -m`` (or Go) name → (Go ``GOARCH``, native libseccomp architecture)
_ARCHES: dict[str, tuple[str, str]] = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"),
    "amd64": ("amd64", "SCMP_ARCH_X86_64"),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "arm64": ("arm64", "SCMP_ARCH_AARCH64"),
    "i386": ("386", "SCMP_ARCH_X86"),
    "i686": ("386", "SCMP_ARCH_X86"),
    "386": ("386", "SCMP_ARCH_X86"),
    "arm": ("arm", "SCMP_ARCH_ARM"),
    "armv6l": ("arm", "SCMP_ARCH_ARM"),
    "armv7l": ("arm", "SCMP_ARCH_ARM"),
    "armv8l": ("arm", "SCMP_ARCH_ARM"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "ppc64": ("ppc64", "SCMP_ARCH_PPC64"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
    "mips64": ("mips64", "SCMP_ARCH_MIPS64"),
    "mips64el": ("mips64le", "SCMP_ARCH_MIPSEL64"),
    "mips64le": ("mips64le", "SCMP_ARCH_MIPSEL64"),
}


# The default profile ------------------------------------------------------------


def _arch(arch: str | None) -> tuple[str, str]:
    name = arch if arch is not None else os.uname().machine
    try:
        return _ARCHES[name.strip().lower()]
    except KeyError:
        raise InvalidArgument(f"unsupported architecture {name!r} for the default seccomp "
                              "profile", hint="use x86_64, aarch64, arm, ppc64le, s390x, "
                              "riscv64 or mips64") from None


def go_arch(arch: str | None = None) -> str:
    """The Go name (``amd64``, ``arm64``...) of ``arch`` (default: this machine)."""
    return _arch(arch)[0]


def native_arch(arch: str | None = None) -> str:
    """The libseccomp name (``SCMP_ARCH_X86_64``...) of ``arch`` (default: this machine)."""
    return _arch(arch)[1]


def _kernel_version(kernel: str | tuple[int, int] | None) -> tuple[int, int]:
    if isinstance(kernel, tuple):
        return kernel
    release = kernel if kernel is not None else os.uname().release
    parts: list[int] = []
    for piece in release.split(".")[:2]:
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        parts.append(int(digits) if digits else 0)
    while len(parts) < 2:
        parts.append(0)
    return parts[0], parts[1]


def _cap_name(cap: str) -> str:
    c = cap.strip().upper()
    return c if c.startswith("CAP_") else "CAP_" + c


def _applies(rule: Mapping[str, Any], caps: set[str], goarch: str,
             kernel: tuple[int, int]) -> bool:
    inc = rule.get("includes") or {}
    exc = rule.get("excludes") or {}
    if "arches" in inc and goarch not in inc["arches"]:
        return False
    if "caps" in inc and not all(c in caps for c in inc["caps"]):
        return False
    if "minKernel" in inc and kernel < _kernel_version(inc["minKernel"]):
        return False
    if "arches" in exc and goarch in exc["arches"]:
        return False
    if "caps" in exc and any(c in caps for c in exc["caps"]):
        return False
    return not ("minKernel" in exc and kernel >= _kernel_version(exc["minKernel"]))


def default_profile(capabilities: Iterable[str], arch: str | None = None, *,
                    kernel: str | tuple[int, int] | None = None) -> dict[str, Any]:
    """Docker's default ``linux.seccomp`` for a container with ``capabilities``.

    ``capabilities`` is the container's (bounding) set, with or without the
    ``CAP_`` prefix: each capability unlocks moby's group for it (CAP_SYS_ADMIN:
    mount, umount2, unshare, setns, clone with namespace flags, clone3, bpf...;
    CAP_SYS_PTRACE: kcmp, pidfd_getfd, process_madvise; CAP_SYS_BOOT: reboot;
    CAP_SYS_MODULE; CAP_SYS_TIME; CAP_SYS_NICE; CAP_SYS_RAWIO; CAP_SYS_PACCT;
    CAP_SYSLOG; CAP_SYS_TTY_CONFIG; CAP_DAC_READ_SEARCH; CAP_BPF; CAP_PERFMON).
    ``arch`` is a ``uname -m`` or Go architecture name (default: this machine);
    ``kernel`` a release string or ``(major, minor)`` (default: this kernel),
    compared with moby's ``minKernel`` (ptrace and process_vm_* are allowed
    from 4.8, where ptrace can no longer bypass seccomp).

    Never allowed without a capability, as in Docker: keyctl, add_key,
    request_key, kexec_load, userfaultfd, pivot_root, swapon, ... (default
    action SCMP_ACT_ERRNO with EPERM).  The result is JSON-serialisable and a
    fresh object on every call; a name appears in at most one unconditional
    rule (moby may list one twice, e.g. bpf with CAP_SYS_ADMIN and CAP_BPF).
    """
    from pyimg.runtime import seccomp_default as data

    goarch, native = _arch(arch)
    caps = {_cap_name(c) for c in capabilities}
    kver = _kernel_version(kernel)
    architectures = [native, *data.ARCH_MAP[native]] if native in data.ARCH_MAP else [native]

    syscalls: list[dict[str, Any]] = [{"names": data.ALLOWED.split(), "action": data.ALLOW}]
    plain: set[tuple[str, str, int | None]] = {
        (n, data.ALLOW, None) for n in syscalls[0]["names"]}
    for rule in data.RULES:
        if not _applies(rule, caps, goarch, kver):
            continue
        action, errno_ret = rule["action"], rule.get("errnoRet")
        names = list(rule["names"])
        if "args" not in rule:
            names = [n for n in names if (n, action, errno_ret) not in plain]
            plain.update((n, action, errno_ret) for n in names)
            if not names:
                continue
        entry: dict[str, Any] = {"names": names, "action": action}
        if errno_ret is not None:
            entry["errnoRet"] = errno_ret
        if "args" in rule:
            entry["args"] = [dict(a) for a in rule["args"]]
        syscalls.append(entry)
    return {
        "defaultAction": data.DEFAULT_ACTION,
        "defaultErrnoRet": data.DEFAULT_ERRNO_RET,
        "architectures": architectures,
        "syscalls": syscalls,
    }


# Loading a filter with libseccomp ---------------------------------------------------

_lib: Any = None
_ArgCmp: Any = None  # ctypes struct scmp_arg_cmp, defined with the library


def _libseccomp() -> Any:
    """libseccomp.so.2 through ctypes, with prototypes (loaded once)."""
    global _lib, _ArgCmp
    if _lib is not None:
        return _lib
    import ctypes

    lib = None
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:
        import ctypes.util  # slow (runs ldconfig): only when the usual soname is missing

        name = ctypes.util.find_library("seccomp")
        if name:
            try:
                lib = ctypes.CDLL(name, use_errno=True)
            except OSError:
                lib = None
    if lib is None:
        raise FailedPrecondition("cannot load libseccomp (libseccomp.so.2) to install the "
                                 "seccomp filter",
                                 hint="install it: apt-get install libseccomp2 "
                                      "(dnf install libseccomp, apk add libseccomp)")
    vp, u32, c_int = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int
    lib.seccomp_init.argtypes, lib.seccomp_init.restype = [u32], vp
    lib.seccomp_release.argtypes, lib.seccomp_release.restype = [vp], None
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_resolve_name.restype = u32
    lib.seccomp_arch_add.argtypes, lib.seccomp_arch_add.restype = [vp, u32], c_int
    lib.seccomp_attr_set.argtypes, lib.seccomp_attr_set.restype = [vp, c_int, u32], c_int
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name.restype = c_int
    lib.seccomp_rule_add_array.argtypes = [vp, u32, c_int, ctypes.c_uint, vp]
    lib.seccomp_rule_add_array.restype = c_int
    lib.seccomp_load.argtypes, lib.seccomp_load.restype = [vp], c_int
    lib.seccomp_export_bpf.argtypes = [vp, c_int]
    lib.seccomp_export_bpf.restype = c_int

    class ArgCmp(ctypes.Structure):  # struct scmp_arg_cmp
        _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                    ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]

    _ArgCmp = ArgCmp
    _lib = lib
    return lib


def preload(seccomp: Mapping[str, Any] | None = None) -> None:
    """Get ready to :func:`install` with no file system (before ``pivot_root``
    or ``setns``): from then on, :func:`install` reads no cache file and loads
    no library, since paths may lead into the container.

    With the ``seccomp`` that will be installed, its BPF program is read from
    the cache, or compiled now (and cached); libseccomp is loaded only then.
    Without it (or if that fails) libseccomp is loaded for :func:`install`.
    Raises :class:`FailedPrecondition` when libseccomp is needed and missing.
    """
    global _pinned
    _pinned = True
    if seccomp is not None:
        key = _cache_key(seccomp)
        if key is not None:
            program = _read_cached(key)
            if program is None:
                ctx = _build(seccomp, _compile(seccomp))
                try:
                    program = _export(ctx)
                finally:
                    _lib.seccomp_release(ctx)
                if program is not None:
                    _write_cached(key, program)
            doc = _canonical(seccomp)
            if program is not None and doc is not None:
                _ready[doc] = program
                _ready_for[id(seccomp)] = (seccomp, program)
                _loader()  # ctypes too is a file to import
                return
    _libseccomp()


def _uint(value: Any, what: str, bits: int = 64) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise InvalidArgument(f"invalid seccomp profile: {what} must be an unsigned "
                              f"{bits}-bit integer, got {value!r}")
    return value


def _action(name: Any, errno_ret: Any, where: str) -> int:
    if not isinstance(name, str) or name not in ACTIONS:
        if name == "SCMP_ACT_NOTIFY":
            raise FailedPrecondition(f"seccomp action SCMP_ACT_NOTIFY ({where}) is not "
                                     "supported: pyimg has no seccomp agent")
        raise InvalidArgument(f"invalid seccomp profile: unknown action {name!r} ({where})",
                              hint="use one of " + ", ".join(sorted(ACTIONS)))
    value = ACTIONS[name]
    if name in _WITH_DATA:
        data = EPERM if errno_ret is None else _uint(errno_ret, f"errnoRet ({where})", 16)
        return value | data
    if errno_ret is not None:
        raise InvalidArgument(f"invalid seccomp profile: errnoRet is only valid with "
                              f"SCMP_ACT_ERRNO and SCMP_ACT_TRACE, not {name} ({where})")
    return value


_Rule = tuple[str, int, list[list[tuple[int, int, int, int]]]]


def _compile(seccomp: Mapping[str, Any]) -> tuple[int, list[str], list[int], list[_Rule]]:
    """Validate a ``linux.seccomp`` object; return (default action, architectures,
    attributes to set, [(name, action, [conditions per rule])])."""
    if not isinstance(seccomp, Mapping):
        raise InvalidArgument("invalid seccomp profile: expected a JSON object")
    default = _action(seccomp.get("defaultAction"), seccomp.get("defaultErrnoRet"),
                      "defaultAction")
    arches = seccomp.get("architectures") or []
    flags = seccomp.get("flags") or []
    if not isinstance(arches, Sequence) or isinstance(arches, str) \
            or not all(isinstance(a, str) and a.startswith("SCMP_ARCH_") for a in arches):
        raise InvalidArgument("invalid seccomp profile: architectures must be a list of "
                              "SCMP_ARCH_* names")
    if not isinstance(flags, Sequence) or isinstance(flags, str) \
            or not all(f in _FLAGS for f in flags):
        raise InvalidArgument(f"invalid seccomp profile: unsupported flags {flags!r}",
                              hint="supported: " + ", ".join(sorted(_FLAGS)))
    if seccomp.get("listenerPath"):
        raise FailedPrecondition("seccomp listenerPath is not supported: pyimg has no "
                                 "seccomp agent")
    rules: list[_Rule] = []
    calls = seccomp.get("syscalls") or []
    if not isinstance(calls, Sequence) or isinstance(calls, str):
        raise InvalidArgument("invalid seccomp profile: syscalls must be a list")
    for i, call in enumerate(calls):
        where = f"syscalls[{i}]"
        if not isinstance(call, Mapping):
            raise InvalidArgument(f"invalid seccomp profile: {where} must be an object")
        names = call.get("names")
        if not isinstance(names, Sequence) or isinstance(names, str) or not names \
                or not all(isinstance(n, str) and n for n in names):
            raise InvalidArgument(f"invalid seccomp profile: {where}.names must be a "
                                  "non-empty list of syscall names")
        action = _action(call.get("action"), call.get("errnoRet"), where)
        conds: list[tuple[int, int, int, int]] = []
        for j, arg in enumerate(call.get("args") or []):
            aw = f"{where}.args[{j}]"
            if not isinstance(arg, Mapping):
                raise InvalidArgument(f"invalid seccomp profile: {aw} must be an object")
            index = _uint(arg.get("index"), f"{aw}.index")
            if index >= _MAX_ARGS:
                raise InvalidArgument(f"invalid seccomp profile: {aw}.index must be below "
                                      f"{_MAX_ARGS}, got {index}")
            op = arg.get("op")
            if op not in OPERATORS:
                raise InvalidArgument(f"invalid seccomp profile: unknown operator {op!r} "
                                      f"({aw})", hint="use one of " + ", ".join(OPERATORS))
            conds.append((index, OPERATORS[op], _uint(arg.get("value", 0), f"{aw}.value"),
                          _uint(arg.get("valueTwo", 0), f"{aw}.valueTwo")))
        # libseccomp refuses two comparisons of one argument in a rule; runc then
        # adds each condition as a rule of its own
        indexes = [c[0] for c in conds]
        groups = [[c] for c in conds] if len(set(indexes)) < len(indexes) else [conds]
        for name in names:
            rules.append((name, action, groups))
    attrs = [_FLAGS[f] for f in flags]
    return default, list(arches), attrs, rules


def install(seccomp: Mapping[str, Any]) -> None:
    """Build the filter ``seccomp`` (a runtime-spec ``linux.seccomp``) and load it.

    The filter applies to the calling thread (all threads with
    ``SECCOMP_FILTER_FLAG_TSYNC``) and everything it starts afterwards; call it
    last before ``execve`` in a single-threaded process.  Like runc, it does not
    set no_new_privs: the caller must have set it (``prctl(PR_SET_NO_NEW_PRIVS)``)
    or hold CAP_SYS_ADMIN.

    The compiled program comes from the cache when it can (:func:`cache_dir`;
    after :func:`preload`, only what it prepared), and goes into it otherwise.

    Raises :class:`InvalidArgument` for a malformed profile (checked before
    anything is loaded) and :class:`FailedPrecondition` when libseccomp is
    missing or the kernel refuses the filter.
    """
    prepared = _ready_for.get(id(seccomp))
    if prepared is not None and prepared[0] is seccomp and _try_load(prepared[1], seccomp):
        # preload() had this very object's program: a program is cached only for a
        # document that compiled before, so there is nothing left to validate
        return
    compiled = _compile(seccomp)  # validation first, cache or not
    key = program = None
    if _pinned:  # only what preload() prepared: no file looked at now (nor our euid)
        doc = _canonical(seccomp) if _ready else None
        program = _ready.get(doc) if doc is not None else None
    else:
        key = _cache_key(seccomp)
        program = _read_cached(key) if key is not None else None
    if program is not None and _try_load(program, seccomp):
        return
    if _pinned and _lib is None:
        # preload() found the program, so libseccomp was not loaded: a library
        # path now might lead into the container's file system
        raise FailedPrecondition("seccomp: the filter to install is not the one prepared "
                                 "before the root changed")
    ctx = _build(seccomp, compiled)
    try:
        if key is not None:
            program = _export(ctx)
            if program is not None:
                _write_cached(key, program)
        rc = _lib.seccomp_load(ctx)
        if rc < 0:
            raise _load_failed(rc)
    finally:
        _lib.seccomp_release(ctx)


def _try_load(program: bytes, seccomp: Mapping[str, Any]) -> bool:
    """Load a compiled program; False when the kernel did not take it (then build it)."""
    try:
        _load_program(program, _kernel_flags(seccomp))
        return True
    except OSError as exc:
        if exc.errno in (EACCES, EPERM):
            raise _load_failed(-exc.errno) from None
        return False


def _load_failed(rc: int) -> FailedPrecondition:
    hint = None
    if rc == -EACCES:
        hint = "set no_new_privs first (prctl PR_SET_NO_NEW_PRIVS) or hold CAP_SYS_ADMIN"
    return FailedPrecondition(f"seccomp: loading the filter failed: {os.strerror(-rc)}",
                              hint=hint)


def _build(seccomp: Mapping[str, Any],
           compiled: tuple[int, list[str], list[int], list[_Rule]]) -> Any:
    """A libseccomp filter context for ``seccomp``, ``_compile``'d (the caller
    releases it)."""
    default, arches, attrs, rules = compiled
    lib = _libseccomp()
    import ctypes

    ctx = lib.seccomp_init(default)
    if not ctx:
        raise FailedPrecondition("seccomp_init failed: libseccomp refused the default action "
                                 f"{seccomp.get('defaultAction')}")
    try:
        for arch in arches:
            token = lib.seccomp_arch_resolve_name(arch[len("SCMP_ARCH_"):].lower().encode())
            if token == 0:
                raise InvalidArgument(f"invalid seccomp profile: unknown architecture {arch}")
            rc = lib.seccomp_arch_add(ctx, token)
            if rc < 0 and rc != -EEXIST:
                raise FailedPrecondition(f"seccomp: cannot add architecture {arch}: "
                                         f"{os.strerror(-rc)}")
        lib.seccomp_attr_set(ctx, _FLTATR_API_SYSRAWRC, 1)  # real errnos (libseccomp ≥ 2.5)
        for attr, value in [(_FLTATR_CTL_NNP, 0), *((a, 1) for a in attrs)]:
            rc = lib.seccomp_attr_set(ctx, attr, value)
            if rc < 0:
                raise FailedPrecondition(f"seccomp: cannot set filter attribute {attr}: "
                                         f"{os.strerror(-rc)}",
                                         hint="a newer libseccomp/kernel may be needed")
        resolved: dict[str, int] = {}
        for name, action, groups in rules:
            if action == default:
                continue  # redundant, and libseccomp refuses it
            nr = resolved.get(name)
            if nr is None:
                nr = resolved[name] = lib.seccomp_syscall_resolve_name(name.encode())
            if nr == _NR_SCMP_ERROR:
                continue  # unknown to this libseccomp/architecture, as runc skips it
            for conds in groups:
                array = (_ArgCmp * max(len(conds), 1))(
                    *(_ArgCmp(i, op, a, b) for i, op, a, b in conds))
                rc = lib.seccomp_rule_add_array(ctx, action, nr, len(conds),
                                                ctypes.cast(array, ctypes.c_void_p))
                if rc < 0:
                    raise FailedPrecondition(f"seccomp: cannot add the rule for {name}: "
                                             f"{os.strerror(-rc)}")
    except BaseException:
        lib.seccomp_release(ctx)
        raise
    return ctx


# The compiled-filter cache ----------------------------------------------------------
#
# One file per key, ``MAGIC key\n`` then the raw ``struct sock_filter`` array that
# seccomp_export_bpf(3) writes (what seccomp_load would hand the kernel).  The key
# is the sha256 of the spec's canonical JSON, the machine, the libseccomp build
# (the real path, e.g. .../libseccomp.so.2.5.4, size and mtime of the library the
# dynamic linker would load) and the kernel release.  A file is used only if it
# and its directory belong to us (root, as a runtime) and nobody else may write
# or read them: 0700 directory, 0600 regular file with one link.  Any doubt
# means a miss, and a miss means libseccomp compiles the filter as before.

_CACHE_MAGIC = b"pyimg-seccomp-bpf/1 "
_BPF_MAXINSNS = 4096
_SECCOMP_SET_MODE_FILTER = 1  # seccomp(2) operation
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2  # prctl(2)
#: runtime-spec flag → SECCOMP_FILTER_FLAG_* bit
_FLAG_BITS: dict[str, int] = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
}
#: ``uname -m`` → __NR_seccomp (only needed for flags: prctl takes none)
_NR_SECCOMP: dict[str, int] = {
    "x86_64": 317, "aarch64": 277, "i386": 354, "i686": 354, "armv6l": 383, "armv7l": 383,
    "armv8l": 383, "ppc64le": 358, "ppc64": 358, "s390x": 348, "riscv64": 277,
}

_pinned = False  # preload() ran: install() touches no file from now on
_ready: dict[str, bytes] = {}  # canonical spec JSON → program, prepared by preload()
#: id(spec object) → (that object, its program): install() of the object preload() saw
_ready_for: dict[int, tuple[Mapping[str, Any], bytes]] = {}
_libc: Any = None
_SockFprog: Any = None
_lib_id: str | None = None  # memo of _library_id(): "" for none


def cache_dir() -> str | None:
    """Where compiled filters are cached: ``$PYIMG_SECCOMP_CACHE`` (empty: no cache),
    else ``/run/pyimg/seccomp-cache`` as root, else under ``$XDG_RUNTIME_DIR``."""
    explicit = os.environ.get("PYIMG_SECCOMP_CACHE")
    if explicit is not None:
        return explicit or None
    if os.geteuid() == 0:
        return "/run/pyimg/seccomp-cache"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return f"{runtime}/pyimg/seccomp-cache" if runtime else None


def _library_path() -> str | None:
    """The libseccomp.so.2 the dynamic linker would load (the usual directories, in
    ld.so's order), resolved; None when that is not certain (LD_LIBRARY_PATH...)."""
    if os.environ.get("LD_LIBRARY_PATH") or os.environ.get("LD_PRELOAD"):
        return None
    import sys

    multiarch = getattr(sys.implementation, "_multiarch", "")
    for d in (f"/usr/local/lib/{multiarch}", "/usr/local/lib", f"/lib/{multiarch}",
              f"/usr/lib/{multiarch}", "/lib64", "/usr/lib64", "/lib", "/usr/lib"):
        path = f"{d}/libseccomp.so.2"
        if os.path.exists(path):
            return os.path.realpath(path)
    return None


def _library_id() -> str | None:
    """The libseccomp part of a key: looked up once per process (preload() does it
    before the root changes, install() reuses it)."""
    global _lib_id
    if _lib_id is None:
        path = _library_path()
        try:
            st = os.stat(path) if path is not None else None
        except OSError:
            st = None
        _lib_id = f"{path}:{st.st_size}:{st.st_mtime_ns}" if st is not None else ""
    return _lib_id or None


def _kernel_flags(seccomp: Mapping[str, Any]) -> int:
    bits = 0
    for flag in seccomp.get("flags") or []:
        bits |= _FLAG_BITS[flag]
    return bits


def _canonical(seccomp: Mapping[str, Any]) -> str | None:
    """``seccomp`` as canonical JSON (None if it is not JSON)."""
    import json

    try:
        return json.dumps(seccomp, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return None


def _cache_key(seccomp: Mapping[str, Any]) -> str | None:
    """The cache key of ``seccomp`` here, or None if it cannot be cached."""
    try:
        if cache_dir() is None:
            return None
        if _kernel_flags(seccomp) and os.uname().machine not in _NR_SECCOMP:
            return None
    except (KeyError, TypeError, AttributeError):
        return None
    library = _library_id()
    doc = _canonical(seccomp)
    if library is None or doc is None:
        return None
    try:
        from _sha256 import sha256  # type: ignore[import-not-found]  # 2 ms less than hashlib
    except ImportError:
        from hashlib import sha256
    uname = os.uname()
    h = sha256()
    for part in (_CACHE_MAGIC.decode(), doc, uname.machine, library, uname.release):
        h.update(part.encode() + b"\0")
    return str(h.hexdigest())


def _owned(st: os.stat_result, mode: int) -> bool:
    return st.st_uid == os.geteuid() and (st.st_mode & 0o7777) == mode


def _read_cached(key: str) -> bytes | None:
    """The cached program for ``key``, if there is a trustworthy one."""
    import stat

    directory = cache_dir()
    if directory is None:
        return None
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not _owned(os.fstat(dfd), 0o700):
            return None
        fd = os.open(key, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dfd)
        try:
            st = os.fstat(fd)
            limit = len(_CACHE_MAGIC) + len(key) + 1 + 8 * _BPF_MAXINSNS
            if not stat.S_ISREG(st.st_mode) or not _owned(st, 0o600) or st.st_nlink != 1 \
                    or st.st_size > limit:
                return None
            data = os.pread(fd, limit + 1, 0)
        finally:
            os.close(fd)
    except OSError:
        return None
    finally:
        os.close(dfd)
    header = _CACHE_MAGIC + key.encode() + b"\n"
    program = data[len(header):]
    if not data.startswith(header) or not program or len(program) % 8 \
            or len(program) > 8 * _BPF_MAXINSNS:
        return None
    return program


def _mapped_library() -> str | None:
    """The libseccomp this process has loaded (from /proc/self/maps)."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split(None, 5)[-1].strip()
                if "/libseccomp.so" in path:
                    return path
    except OSError:
        pass
    return None


def _write_cached(key: str, program: bytes) -> None:
    """Best effort.  Only when the library that compiled ``program`` is the one the
    key names, and into a directory that is ours and private."""
    directory = cache_dir()
    if directory is None or _mapped_library() != _library_path():
        return
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        st = os.lstat(directory)
        import stat

        if not stat.S_ISDIR(st.st_mode) or not _owned(st, 0o700):
            return
        from pathlib import Path

        from pyimg.fsutil import atomic_write

        atomic_write(Path(directory) / key, _CACHE_MAGIC + key.encode() + b"\n" + program,
                     0o600, durable=False)
    except OSError:
        pass


def _export(ctx: Any) -> bytes | None:
    """The BPF program of a libseccomp context (seccomp_export_bpf), or None."""
    fd = os.memfd_create("pyimg-seccomp", os.MFD_CLOEXEC)
    try:
        if _lib.seccomp_export_bpf(ctx, fd) < 0:
            return None
        size = os.fstat(fd).st_size
        program = os.pread(fd, size, 0)
    except OSError:
        return None
    finally:
        os.close(fd)
    if not program or size % 8 or size > 8 * _BPF_MAXINSNS or len(program) != size:
        return None
    return program


def _loader() -> tuple[Any, Any]:
    """(libc, struct sock_fprog) through ctypes, set up once."""
    global _libc, _SockFprog
    if _libc is None:
        import ctypes

        class SockFprog(ctypes.Structure):  # struct sock_fprog
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

        libc = ctypes.CDLL(None, use_errno=True)  # this process's libc: no file opened
        libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong,
                               ctypes.c_ulong]
        libc.prctl.restype = ctypes.c_int
        libc.syscall.restype = ctypes.c_long
        _libc, _SockFprog = libc, SockFprog
    return _libc, _SockFprog


def _load_program(program: bytes, flags: int) -> None:
    """Load a raw BPF program as a seccomp filter: prctl(PR_SET_SECCOMP) or, with
    flags, seccomp(SECCOMP_SET_MODE_FILTER, flags); raises OSError."""
    libc, sock_fprog = _loader()
    import ctypes

    buf = ctypes.create_string_buffer(program, len(program))
    prog = sock_fprog(len(program) // 8, ctypes.addressof(buf))
    address = ctypes.c_void_p(ctypes.addressof(prog))
    ctypes.set_errno(0)
    if flags:
        rc = int(libc.syscall(ctypes.c_long(_NR_SECCOMP[os.uname().machine]),
                              ctypes.c_long(_SECCOMP_SET_MODE_FILTER), ctypes.c_long(flags),
                              address))
        if rc > 0:  # TSYNC: the id of a thread that could not be synchronised
            raise OSError(ESRCH, f"seccomp: thread {rc} cannot take the filter (TSYNC)")
    else:
        rc = int(libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, address, 0, 0))
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp: {os.strerror(err)}")
