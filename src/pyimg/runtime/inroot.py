"""Paths resolved inside a root directory, never outside it (``chroot``-like).

Every component is looked up relative to a directory fd with ``O_NOFOLLOW``;
symlinks are followed by hand, absolute targets restarting at the root and
``..`` stopping there (the CVE-2021-30465 and CVE-2024-21626 classes).
Standard library only: the spec generator and the container init share it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

_O_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_LINKS = 40


def fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def resolve(root_fd: int, path: str, create: str | None = None) -> int:
    """An ``O_PATH`` fd of ``path`` resolved inside the directory ``root_fd``.

    Symlinks (the last component's too) are followed inside the root;
    ``create`` is None, ``"dir"`` or ``"file"``: what to create when the path
    is missing (parents are always directories).  The caller closes the fd.
    """
    stack = [os.dup(root_fd)]
    try:
        pending = [c for c in path.split("/") if c and c != "."][::-1]
        links = 0
        while pending:
            name = pending.pop()
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            cur = stack[-1]
            try:
                st = os.lstat(name, dir_fd=cur)
            except FileNotFoundError:
                if create is None:
                    raise
                _create(cur, name, "dir" if pending else create)
                st = os.lstat(name, dir_fd=cur)
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > _MAX_LINKS:
                    raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
                target = os.readlink(name, dir_fd=cur)
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                pending.extend([c for c in target.split("/") if c and c != "."][::-1])
                continue
            flags = _O_PATH_DIR if pending else os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
            stack.append(os.open(name, flags, dir_fd=cur))
        return stack.pop()
    finally:
        for fd in stack:
            os.close(fd)


def _create(dir_fd: int, name: str, kind: str) -> None:
    with contextlib.suppress(FileExistsError):
        if kind == "dir":
            os.mkdir(name, 0o755, dir_fd=dir_fd)
        else:
            os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o755, dir_fd=dir_fd))
