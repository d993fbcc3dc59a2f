"""A private, throw-away containerd for the ``pullunpack`` and ``runtime`` suites.

``Containerd(base)`` is a context manager that starts ``containerd`` as a
child process with everything under ``base``: its own ``--root``, ``--state``,
``opt`` plugin dir and a gRPC unix socket (no TCP listener: the debug and
metrics addresses are empty, the CRI plugin — and with it CNI — is disabled).
It is waited for with ``ctr --address SOCK version`` and on exit stopped with
SIGTERM (SIGKILL after a grace period); then anything still mounted under its
root (overlay snapshot mounts of an interrupted unpack) is unmounted and the
whole ``base`` removed.  It never touches a system containerd (/run/containerd,
/var/lib/containerd).

Each ``ctr`` call takes a namespace: content, images and snapshots are per
namespace in containerd's metadata, so a run in a never-used namespace is cold
as far as containerd's bookkeeping goes.  On-disk blobs, however, are shared
by the content store backend, so :meth:`Containerd.reset` also removes the
previous namespace's images/content/snapshots and waits for the garbage
collector to delete them from disk, and :meth:`Containerd.assert_cold`
verifies that (no blob of the image on disk, no snapshot dirs left).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

CONTAINERD = "containerd"
CTR = "ctr"
SNAPSHOTTER = "overlayfs"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


def config_toml(root: Path, state: Path, sock: Path) -> str:
    return f"""\
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.tracing.processor.v1.otlp",
                    "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{sock}"
  tcp_address = ""

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  address = ""
  level = "warn"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{root}/opt"
  [plugins."io.containerd.snapshotter.v1.overlayfs"]
    root_path = "{root}/overlayfs"
"""


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root`` (deepest first), from /proc/self/mountinfo."""
    prefix = str(root).rstrip("/") + "/"
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == str(root) or point.startswith(prefix):
                points.append(point)
    return sorted(points, key=len, reverse=True)


def unmount_all(root: Path) -> None:
    for point in _mounts_under(root):
        subprocess.run(["umount", "-l", point], capture_output=True)


class Containerd:
    """A private containerd daemon rooted at a fresh temp dir under ``parent``."""

    def __init__(self, parent: Path, log_name: str = "containerd.log") -> None:
        parent.mkdir(parents=True, exist_ok=True)
        self.base = Path(tempfile.mkdtemp(prefix="ctrd-", dir=parent))
        self.root = self.base / "root"
        self.state = self.base / "state"
        # The socket path must fit sockaddr_un (108 bytes): its own short temp dir.
        self.sock_dir = Path(tempfile.mkdtemp(prefix="ctrd-"))
        self.sock = self.sock_dir / "c.sock"
        self.config = self.base / "config.toml"
        self.log_path = self.base / log_name
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: object | None = None
        self._used: list[str] = []
        self._namespaces: set[str] = set()  # every namespace a ctr call named

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> Containerd:
        if len(str(self.sock)) > 100:
            raise RuntimeError(f"containerd socket path too long: {self.sock}")
        self.config.write_text(config_toml(self.root, self.state, self.sock))
        log = self.log_path.open("wb")
        self._log = log
        self.proc = subprocess.Popen(
            [CONTAINERD, "--config", str(self.config), "--root", str(self.root),
             "--state", str(self.state), "--address", str(self.sock)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited {self.proc.returncode}:\n{self.log_tail()}")
            if self.sock.exists():
                r = subprocess.run([CTR, "--address", str(self.sock), "version"],
                                   capture_output=True, text=True, timeout=10)
                if r.returncode == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"containerd did not answer in {START_TIMEOUT_S}s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.05)
        self._check_no_tcp()
        return self

    def _check_no_tcp(self) -> None:
        """Refuse to run if our daemon opened any TCP listener."""
        assert self.proc is not None
        inodes = set()
        fd_dir = Path(f"/proc/{self.proc.pid}/fd")
        for fd in fd_dir.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as f:
                for line in f.readlines()[1:]:
                    cols = line.split()
                    if cols[3] == "0A" and cols[9] in inodes:  # 0A = LISTEN
                        raise RuntimeError(f"private containerd listens on TCP ({table}: "
                                           f"{cols[1]}); refusing to run")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)
        if self._log is not None:
            self._log.close()  # type: ignore[attr-defined]
            self._log = None
        unmount_all(self.base)
        shutil.rmtree(self.base, ignore_errors=True)
        shutil.rmtree(self.sock_dir, ignore_errors=True)
        # the runc shim keeps its --root at the fixed /run/containerd/runc/<namespace>:
        # remove the (empty) ones our namespaces left; never one still in use
        for ns in self._namespaces:
            with contextlib.suppress(OSError):
                os.rmdir(f"/run/containerd/runc/{ns}")

    def __enter__(self) -> Containerd:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """The daemon's user+sys CPU so far (all threads), from /proc/PID/stat."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def sync_probe_daemon(self, namespace: str, ref: str, calls: str) -> dict[str, int] | str:
        """Sync-family syscall counts of the daemon while ``ctr image pull`` runs."""
        if shutil.which("strace") is None:
            return "strace not installed"
        with tempfile.NamedTemporaryFile("r") as out:
            st = subprocess.Popen(["strace", "-f", "-c", "-o", out.name, "-e", f"trace={calls}",
                                   "-p", str(self.pid)], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            try:
                time.sleep(0.5)   # let strace attach to every thread
                subprocess.run(self.pull_argv(namespace, ref), check=True, capture_output=True,
                               timeout=600)
                time.sleep(0.2)
            finally:
                st.send_signal(signal.SIGINT)
                st.communicate(timeout=30)
            counts: dict[str, int] = {}
            for line in out.read().splitlines():
                cols = line.split()
                if len(cols) >= 5 and cols[-1] in calls.split(",") and cols[3].isdigit():
                    counts[cols[-1]] = int(cols[3])
            return counts

    # -- ctr ---------------------------------------------------------------

    def ctr_argv(self, namespace: str, *args: str) -> list[str]:
        self._namespaces.add(namespace)
        return [CTR, "--address", str(self.sock), "--namespace", namespace, *args]

    def ctr(self, namespace: str, *args: str, timeout: float = 300) -> str:
        r = subprocess.run(self.ctr_argv(namespace, *args), capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError(f"ctr -n {namespace} {' '.join(args)} exited {r.returncode}: "
                               f"{r.stderr.strip()}")
        return r.stdout

    def pull_argv(self, namespace: str, ref: str) -> list[str]:
        """The timed B command: pull and unpack into overlayfs snapshots."""
        self._used.append(namespace)
        return self.ctr_argv(namespace, "image", "pull", "--plain-http",
                             "--snapshotter", SNAPSHOTTER, ref)

    def run_argv(self, namespace: str, ref: str, container_id: str, *cmd: str) -> list[str]:
        """``ctr run --rm`` of a pulled image (the runtime suite's timed B command).

        containerd starts ``containerd-shim-runc-v2`` (runc underneath) for the
        task; ``--rm`` deletes the container and its active snapshot on exit.
        """
        return self.ctr_argv(namespace, "run", "--rm", "--snapshotter", SNAPSHOTTER, ref,
                             container_id, *cmd)

    def last_namespace(self) -> str:
        return self._used[-1]

    def lines(self, namespace: str, *args: str) -> list[str]:
        return [ln for ln in self.ctr(namespace, *args).splitlines() if ln.strip()]

    def reset(self) -> None:
        """Delete every namespace used so far (images -> GC of content and snapshots)."""
        existing = set(self.lines("default", "namespaces", "ls", "-q"))
        for ns in self._used:
            if ns not in existing:
                continue
            for ref in self.lines(ns, "images", "ls", "-q"):
                self.ctr(ns, "images", "rm", "--sync", ref)
            # Anything the image removal left (e.g. an interrupted pull's leases).
            for lease in self.lines(ns, "leases", "ls", "-q"):
                self.ctr(ns, "leases", "rm", "--sync", lease)
            for dgst in self.lines(ns, "content", "ls", "-q"):
                self.ctr(ns, "content", "rm", dgst)
            for key in reversed(self.lines(ns, "snapshots", "--snapshotter", SNAPSHOTTER,
                                           "ls")[1:]):
                self.ctr(ns, "snapshots", "--snapshotter", SNAPSHOTTER, "rm", key.split()[0])
            self.ctr(ns, "namespaces", "rm", ns)
        self._used.clear()

    def blob_files(self) -> list[str]:
        blobs = self.root / "io.containerd.content.v1.content" / "blobs" / "sha256"
        return sorted(os.listdir(blobs)) if blobs.is_dir() else []

    def snapshot_dirs(self) -> list[str]:
        snaps = self.root / "overlayfs" / "snapshots"
        return sorted(os.listdir(snaps)) if snaps.is_dir() else []

    def assert_cold(self, namespace: str, digests: list[str]) -> None:
        """``namespace`` is unused and no blob of ``digests`` / no snapshot is on disk."""
        if namespace in self.lines("default", "namespaces", "ls", "-q"):
            raise RuntimeError(f"containerd namespace {namespace} already exists")
        on_disk = set(self.blob_files())
        left = [d for d in digests if d.split(":", 1)[-1] in on_disk]
        if left:
            raise RuntimeError(f"containerd not cold: blobs {left} still on disk")
        snaps = self.snapshot_dirs()
        if snaps:
            raise RuntimeError(f"containerd not cold: snapshots {snaps} still on disk")
