"""A faithful tree copy for the native snapshotter (containerd's ``fs.CopyDir``).

Faithful means a container cannot tell the copy from the original:

* hardlinks inside the tree stay hardlinks (one inode, several names);
* symlinks are copied as symlinks, never followed;
* fifos, sockets and device nodes (including overlay's 0/0 whiteouts) are
  recreated with ``mknod``;
* owner, mode (setuid/setgid/sticky included), xattrs (``security.capability``
  included) and atime/mtime are kept, in that order: ``chown`` clears setuid
  bits and file capabilities, so both are restored after it;
* sparse files keep their holes: only the data extents (``SEEK_DATA`` /
  ``SEEK_HOLE``) are copied, with ``copy_file_range`` (in-kernel, and a
  reflink on filesystems that can).

Directory times are set last, after their entries were written.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_Dir = tuple[str, str, os.stat_result]  # source, target, source's lstat


def copy_tree(src: Path, dst: Path) -> None:
    """Copy the tree at ``src`` to ``dst`` (which must not exist)."""
    links: dict[tuple[int, int], str] = {}
    dirs: list[_Dir] = []
    root = os.lstat(src)
    if not stat.S_ISDIR(root.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "copy tree: not a directory", os.fspath(src))
    os.mkdir(dst, 0o700)
    dirs.append((os.fspath(src), os.fspath(dst), root))
    _copy_entries(os.fspath(src), os.fspath(dst), links, dirs)
    # Deepest first, once all entries are written: creating an entry would
    # change its directory's mtime, and a read-only mode would block it.
    for source, target, st in reversed(dirs):
        _copy_metadata(target, st, source)


def _copy_entries(src: str, dst: str, links: dict[tuple[int, int], str],
                  dirs: list[_Dir]) -> None:
    with os.scandir(src) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        st = entry.stat(follow_symlinks=False)
        target = os.path.join(dst, entry.name)
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(target, 0o700)
            dirs.append((entry.path, target, st))
            _copy_entries(entry.path, target, links, dirs)
            continue
        ident = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and ident in links:
            os.link(links[ident], target)
            continue
        _copy_node(entry.path, target, st)
        if st.st_nlink > 1:
            links[ident] = target
        _copy_metadata(target, st, entry.path)


def _copy_node(src: str, dst: str, st: os.stat_result) -> None:
    mode = st.st_mode
    if stat.S_ISREG(mode):
        copy_file(src, dst, st.st_size)
    elif stat.S_ISLNK(mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISFIFO(mode):
        os.mkfifo(dst, 0o600)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISSOCK(mode):
        os.mknod(dst, stat.S_IFMT(mode) | 0o600, st.st_rdev)
    else:  # pragma: no cover - no other file types exist on Linux
        raise OSError(errno.EINVAL, f"copy: unknown file type {stat.S_IFMT(mode):o}", src)


def copy_file(src: str, dst: str, size: int) -> None:
    """Copy the data extents of ``src`` only, so holes stay holes."""
    fin = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                       | os.O_CLOEXEC, 0o600)
        try:
            for start, end in _extents(fin, size):
                _copy_range(fin, fout, start, end)
            os.ftruncate(fout, size)  # a trailing hole
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def _extents(fd: int, size: int) -> list[tuple[int, int]]:
    """Data ranges of ``fd``, via SEEK_DATA/SEEK_HOLE (the whole file if unsupported)."""
    out: list[tuple[int, int]] = []
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                break  # only a hole left
            if exc.errno == errno.EINVAL:
                return [(0, size)]  # the filesystem cannot tell: copy it all
            raise
        end = os.lseek(fd, start, os.SEEK_HOLE)
        out.append((start, min(end, size)))
        pos = end
    return out


def _copy_range(fin: int, fout: int, start: int, end: int) -> None:
    pos = start
    while pos < end:
        try:
            n = os.copy_file_range(fin, fout, end - pos, pos, pos)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            n = _copy_range_slow(fin, fout, pos, end)
        if n == 0:
            break  # the file shrank under us
        pos += n


def _copy_range_slow(fin: int, fout: int, pos: int, end: int) -> int:
    data = os.pread(fin, min(end - pos, 1 << 20), pos)
    written = 0
    while written < len(data):
        written += os.pwrite(fout, data[written:], pos + written)
    return len(data)


def _copy_metadata(dst: str, st: os.stat_result, src: str) -> None:
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    _copy_xattrs(src, dst)
    if not stat.S_ISLNK(st.st_mode):  # Linux symlinks have no mode of their own
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_xattrs(src: str, dst: str) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return
        raise
    for name in names:
        value = os.getxattr(src, name, follow_symlinks=False)
        try:
            os.setxattr(dst, name, value, follow_symlinks=False)
        except OSError as exc:
            # user.* xattrs cannot be set on symlinks or device nodes on Linux.
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
