"""OCI lifecycle hooks (runtime-spec ``config.md#posix-platform-hooks``).

Where each kind runs, as runc runs it:

=================  ========================================  ==========================
hook               when                                      where (namespaces, root)
=================  ========================================  ==========================
prestart           after the mounts, before pivot_root       runtime (the launcher)
createRuntime      same moment, after prestart               runtime (the launcher)
createContainer    same moment, inside init                  container, host's root
startContainer     at ``start``, just before the exec        container, its root
poststart          once the process has started              runtime
poststop           at ``delete``, after the cgroup is gone   runtime
=================  ========================================  ==========================

Each hook gets the container's state JSON on stdin; ``path`` must be
absolute; ``args`` is the whole argv (``args[0]`` included), ``env`` its
whole environment; ``timeout`` (seconds) kills it.  A failing hook before the
process runs stops the container (:class:`~pyimg.errors.LaunchError`); a
failing poststart or poststop hook is only reported, and the others still run.

Hooks are started with ``posix_spawn`` rather than ``fork``: the launcher may
be a threaded process (the shim), and it keeps the container's init free of
the subprocess module.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import time

from pyimg.errors import InvalidArgument, LaunchError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

#: every hook kind, in lifecycle order
KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
         "poststop")
#: the kinds whose failure is only a warning
WARN_ONLY = frozenset({"poststart", "poststop"})


def of(spec: Mapping[str, Any], *kinds: str) -> dict[str, list[dict[str, Any]]]:
    """The spec's hooks of ``kinds`` that are present (checked), by kind."""
    raw = spec.get("hooks") or {}
    if not isinstance(raw, dict):
        raise InvalidArgument("config.json: hooks must be an object")
    out: dict[str, list[dict[str, Any]]] = {}
    for kind in kinds:
        hooks = raw.get(kind) or []
        if not isinstance(hooks, list):
            raise InvalidArgument(f"config.json: hooks.{kind} must be a list")
        for h in hooks:
            _check(kind, h)
        if hooks:
            out[kind] = hooks
    return out


def _check(kind: str, hook: object) -> None:
    where = f"config.json: hooks.{kind}"
    if not isinstance(hook, dict):
        raise InvalidArgument(f"{where}: each hook must be an object")
    path = hook.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidArgument(f"{where}: path {path!r} must be absolute")
    for key in ("args", "env"):
        value = hook.get(key)
        if value is not None and (not isinstance(value, list)
                                  or not all(isinstance(v, str) for v in value)):
            raise InvalidArgument(f"{where}: {key} must be a list of strings")
    timeout = hook.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int)
                                or timeout <= 0):
        raise InvalidArgument(f"{where}: timeout must be a positive number of seconds")


def run(kind: str, hooks: Sequence[Mapping[str, Any]], state: Mapping[str, Any]) -> list[str]:
    """Run ``hooks`` of ``kind`` in order with ``state`` on their stdin.

    Raises :class:`LaunchError` at the first failure, except for the
    :data:`WARN_ONLY` kinds: those run every hook and return the failures.
    """
    data = json.dumps(dict(state)).encode()
    warnings = []
    for i, hook in enumerate(hooks):
        err = _run_one(hook, data)
        if err is None:
            continue
        msg = f"{kind} hook #{i} ({hook['path']}) {err}"
        if kind not in WARN_ONLY:
            raise LaunchError(msg, stage=f"{kind} hook")
        warnings.append(msg)
    return warnings


_OUTPUT_KEPT = 4096  # of a failing hook's output, quoted in the error


def _run_one(hook: Mapping[str, Any], data: bytes) -> str | None:
    """None when the hook exited 0, else what went wrong (with the end of its output)."""
    path = str(hook["path"])
    argv = list(hook.get("args") or [path])
    env = dict(e.split("=", 1) for e in hook.get("env") or [] if "=" in e)
    timeout = hook.get("timeout")
    stdin_r, stdin_w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        pid = os.posix_spawn(path, argv, env, file_actions=[
            (os.POSIX_SPAWN_DUP2, stdin_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_DUP2, out_w, 2)])
    except OSError as exc:
        for fd in (stdin_r, stdin_w, out_r, out_w):
            os.close(fd)
        return f"could not start: {exc.strerror or exc}"
    os.close(stdin_r)
    os.close(out_w)
    try:
        try:
            os.write(stdin_w, data)  # a state document: far below a pipe's buffer
        except BrokenPipeError:
            pass  # the hook does not read its stdin
        finally:
            os.close(stdin_w)
        output, finished = _collect(pid, out_r, timeout)
    finally:
        os.close(out_r)
    if not finished:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if not finished:
        return f"timed out after {timeout}s{_quote(output)}"
    if code == 0:
        return None
    how = f"exited with {code}" if code > 0 else f"was killed by signal {-code}"
    return how + _quote(output)


def _collect(pid: int, out: int, timeout: float | None) -> tuple[bytes, bool]:
    """(the last bytes of the hook's output, whether it exited within ``timeout``)."""
    pidfd = os.pidfd_open(pid)
    os.set_blocking(out, False)
    kept = b""
    deadline = None if timeout is None else time.monotonic() + timeout
    watch = [pidfd, out]
    try:
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select(watch, [], [], left)
            if out in ready or pidfd in ready:  # on exit: what it wrote last
                with contextlib.suppress(BlockingIOError):
                    chunk = os.read(out, 65536)
                    if not chunk and out in watch:
                        watch.remove(out)  # closed (a child of the hook may hold it)
                    kept = (kept + chunk)[-_OUTPUT_KEPT:]
            if pidfd in ready:
                return kept, True
            if not ready:
                return kept, False
    finally:
        os.close(pidfd)


def _quote(output: bytes) -> str:
    text = output.decode(errors="replace").strip()
    return f": {text}" if text else ""
