"""Device rules on cgroup v2: a ``BPF_PROG_TYPE_CGROUP_DEVICE`` program.

cgroup v2 has no devices controller; the kernel asks the eBPF programs
attached to the cgroup instead (runc's ``devicefilter``, crun's ``ebpf.c``).
Without one, a container with ``CAP_MKNOD`` on a pure v2 host could create
and open the host's disks.  The program answers each access with the last
rule that matches it (the order a reader of the spec expects; runc
normalises v1-style lists to the same effect), and denies what no rule
matches.

The context is ``struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32
minor; }`` with ``access_type = access << 16 | type``.
"""

from __future__ import annotations

import ctypes
import os
import struct

from pyimg import linux
from pyimg.runtime.cgroups import CgroupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

_DEV_TYPE = {"b": 1, "c": 2}  # BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR
_ACCESS = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE

# instruction opcodes (<linux/bpf_common.h>, <linux/bpf.h>)
_LDX_W = 0x61  # BPF_LDX | BPF_MEM | BPF_W
_AND32_K = 0x54  # BPF_ALU | BPF_AND | BPF_K
_RSH32_K = 0x74  # BPF_ALU | BPF_RSH | BPF_K
_MOV64_X = 0xBF  # BPF_ALU64 | BPF_MOV | BPF_X
_MOV64_K = 0xB7  # BPF_ALU64 | BPF_MOV | BPF_K
_JNE_K = 0x55  # BPF_JMP | BPF_JNE | BPF_K
_EXIT = 0x95  # BPF_JMP | BPF_EXIT

_BPF_PROG_LOAD, _BPF_PROG_ATTACH = 5, 8
_PROG_TYPE_CGROUP_DEVICE = 15
_ATTACH_CGROUP_DEVICE = 6
_F_ALLOW_MULTI = 2


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, src << 4 | dst, off, imm)


def _rule_block(rule: Mapping[str, Any]) -> list[bytes]:
    """Instructions returning ``rule``'s answer when it matches, else falling through
    to the next block: each check jumps past the end of this block on a mismatch."""
    steps: list[tuple[int, int, int, int] | tuple[int, int, int]] = []  # insn | jump
    typ = rule.get("type") or "a"
    if typ != "a":
        steps.append((_JNE_K, 2, _DEV_TYPE[typ]))
    mask = sum(_ACCESS[c] for c in set(rule.get("access") or "rwm"))
    if mask != 7:  # asks for an access the rule does not give
        steps += [(_MOV64_X, 1, 3, 0), (_AND32_K, 1, 0, ~mask & 7), (_JNE_K, 1, 0)]
    for reg, key in ((4, "major"), (5, "minor")):
        v = rule.get(key)
        if typ != "a" and v is not None and v != -1:
            steps.append((_JNE_K, reg, int(v)))
    steps += [(_MOV64_K, 0, 0, 1 if rule.get("allow") else 0), (_EXIT, 0, 0, 0)]
    out = []
    for i, step in enumerate(steps):
        if len(step) == 3:
            code, dst, imm = step
            out.append(_insn(code, dst, off=len(steps) - i - 1, imm=imm))
        else:
            code, dst, src, imm = step
            out.append(_insn(code, dst, src, imm=imm))
    return out


def program(rules: Sequence[Mapping[str, Any]]) -> bytes:
    """The program for ``rules`` (OCI ``linux.resources.devices`` entries)."""
    insns = [
        _insn(_LDX_W, 2, 1, 0), _insn(_AND32_K, 2, imm=0xFFFF),  # r2 = type
        _insn(_LDX_W, 3, 1, 0), _insn(_RSH32_K, 3, imm=16),      # r3 = access
        _insn(_LDX_W, 4, 1, 4),                                   # r4 = major
        _insn(_LDX_W, 5, 1, 8),                                   # r5 = minor
    ]
    for rule in reversed(rules):  # the last matching rule decides
        insns += _rule_block(rule)
        if _matches_all(rule):
            break  # the verifier refuses unreachable instructions
    else:
        insns += [_insn(_MOV64_K, 0, imm=0), _insn(_EXIT)]  # nothing matched: deny
    return b"".join(insns)


def _matches_all(rule: Mapping[str, Any]) -> bool:
    return (rule.get("type") or "a") == "a" and set(rule.get("access") or "rwm") == set("rwm")


def attach(cgroup_dir: str, rules: Sequence[Mapping[str, Any]]) -> None:
    """Load the program for ``rules`` and attach it to ``cgroup_dir`` (a cgroup2
    directory).  The attachment lives as long as the cgroup."""
    code = program(rules)
    insns = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(b"Apache")
    log = ctypes.create_string_buffer(1 << 16)

    def load(log_level: int) -> int:
        attr = struct.pack("<IIQQIIQII16sII", _PROG_TYPE_CGROUP_DEVICE, len(code) // 8,
                           ctypes.addressof(insns), ctypes.addressof(license_), log_level,
                           len(log) if log_level else 0,
                           ctypes.addressof(log) if log_level else 0, 0, 0,
                           b"pyimg_devices", 0, _ATTACH_CGROUP_DEVICE)
        return linux.bpf(_BPF_PROG_LOAD, attr.ljust(128, b"\0"))

    try:
        try:
            prog = load(0)
        except OSError:
            prog = load(1)  # again, for the verifier's explanation
    except OSError as e:
        why = log.value.decode(errors="replace").strip().splitlines()[-1:] or [e.strerror or str(e)]
        raise CgroupError(f"cannot load the device filter for {cgroup_dir}: {why[0]}",
                          path=cgroup_dir, err=e.errno or 0,
                          hint="the kernel needs CONFIG_CGROUP_BPF for device rules on "
                               "cgroup v2") from e
    try:
        fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            linux.bpf(_BPF_PROG_ATTACH, struct.pack(
                "<IIIII", fd, prog, _ATTACH_CGROUP_DEVICE, _F_ALLOW_MULTI, 0).ljust(128, b"\0"))
        except OSError as e:
            raise CgroupError(f"cannot attach the device filter to {cgroup_dir}: "
                              f"{e.strerror}", path=cgroup_dir, err=e.errno or 0) from e
        finally:
            os.close(fd)
    finally:
        os.close(prog)
