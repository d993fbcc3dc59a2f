"""The `pyimg` console entry point.

Everything goes to the click application (:mod:`pyimg.cli`), except the
runc-style `pyimg runtime create|start|state|kill|delete|run` calls that
container tooling makes many times a second: those are parsed here by a
small table-driven parser and run without importing click (~25 ms on this project's
machines, where `runc run` of /bin/true takes ~30 ms in all).  Help and
anything unusual still go through click, which stays the reference CLI.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing costs ~3 ms here, a tenth of a runc start-up
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NoReturn

_GLOBAL_VALUE = ("--root", "--config", "--state")
_console = False  # main() runs: this process is the `pyimg` command


def main(argv: Sequence[str] | None = None) -> None:
    global _console
    _console = True
    args = list(sys.argv[1:] if argv is None else argv)
    fast = _split_runtime(args)
    if fast is not None:
        finish(_run_fast(*fast, warm=_warm_attach(fast[1])))
    from pyimg.cli import main as cli_main

    cli_main(args)


def finish(code: int) -> NoReturn:
    """Exit with ``code`` -- at once when this process is the `pyimg` command and
    nothing is left running in it (no other non-daemon thread, no multiprocessing
    child): output flushed, then ``os._exit``, which skips the interpreter's
    teardown (freeing every module and object: ~10 ms, a quarter of `runc run`).
    Callers use it where their work is done (nothing left for atexit)."""
    if _console and _nothing_running():
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            sys.exit(code)  # let the usual exit report it (e.g. a closed stdout)
        os._exit(code)
    sys.exit(code)


def _nothing_running() -> bool:
    threading = sys.modules.get("threading")
    if threading is not None and any(
            t.is_alive() and not t.daemon for t in threading.enumerate()
            if t is not threading.main_thread()):
        return False
    mp = sys.modules.get("multiprocessing")
    return mp is None or not mp.active_children()


def _split_runtime(args: list[str]) -> tuple[dict[str, str | bool], list[str]] | None:
    """(global options, runtime arguments) for a fast-path call, else None."""
    opts: dict[str, str | bool] = {}
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--debug":
            opts["debug"] = True
        elif a in _GLOBAL_VALUE and i + 1 < len(args):
            opts[a[2:]] = args[i + 1]
            i += 1
        elif a.split("=", 1)[0] in _GLOBAL_VALUE and "=" in a:
            key, value = a.split("=", 1)
            opts[key[2:]] = value
        elif a == "runtime":
            rest = args[i + 1:]
            if any(x in ("-h", "--help") for x in rest):
                return None
            return opts, rest
        else:
            return None
        i += 1
    return None


#: verb → {option: (key, takes a value)}; runc's spellings.  ``--no-new-keyring``
#: is accepted and ignored: pyimg never creates a session keyring anyway.
_VERB_OPTS: dict[str, dict[str, tuple[str, bool]]] = {
    "create": {"--bundle": ("bundle", True), "-b": ("bundle", True),
               "--pid-file": ("pid_file", True), "--console-socket": ("console_socket", True),
               "--no-new-keyring": ("", False)},
    "start": {}, "state": {}, "kill": {},
    "delete": {"--force": ("force", False), "-f": ("force", False)},
}
_VERB_OPTS["run"] = _VERB_OPTS["create"]
#: verb → (required positionals, optional positionals with defaults)
_VERB_ARGS: dict[str, tuple[tuple[str, ...], tuple[tuple[str, str], ...]]] = {
    "kill": (("container_id",), (("sig", "SIGTERM"),)),
}
_GROUP_OPTS = {"--root": "root", "--log": "log", "--log-format": "log_format"}


def _parse_runtime(rest: list[str]) -> dict[str, str | bool] | None:
    """runc-style ``[--root D] [--log F] [--log-format text|json] VERB [opts] ARGS``,
    or None for anything else (click then explains the mistake)."""
    out: dict[str, str | bool] = {}
    args = list(rest)
    table: dict[str, tuple[str, bool]] = {k: (v, True) for k, v in _GROUP_OPTS.items()}
    positional: list[str] = []
    verb = None
    while args:
        a = args.pop(0)
        if a == "--":
            positional += args
            break
        if a.startswith("-") and a != "-":
            name, eq, value = a.partition("=")
            if name not in table:
                return None
            key, takes = table[name]
            if takes:
                if not eq:
                    if not args:
                        return None
                    value = args.pop(0)
                out[key] = value
            elif eq:
                return None
            elif key:
                out[key] = True
        elif verb is None:
            if a not in _VERB_OPTS:
                return None
            verb = a
            table = _VERB_OPTS[a]
        else:
            positional.append(a)
    if verb is None or out.get("log_format", "text") not in ("text", "json"):
        return None
    required, optional = _VERB_ARGS.get(verb, (("container_id",), ()))
    if not len(required) <= len(positional) <= len(required) + len(optional):
        return None
    names = list(required) + [k for k, _ in optional]
    out.update(dict(optional))
    out.update(zip(names, positional, strict=False))  # optional ones may be absent
    out["verb"] = verb
    return out


def _warm_attach(rest: list[str]) -> int | None:
    """Start the cgroup attach's grace period now (:mod:`pyimg.runtime.attachwarm`)
    when this call will start a container."""
    if "create" not in rest and "run" not in rest:
        return None
    from pyimg.runtime import attachwarm

    return attachwarm.start()


def _run_fast(opts: dict[str, str | bool], rest: list[str], warm: int | None = None) -> int:
    a = _parse_runtime(rest)
    if a is None:
        from pyimg.cli import main as cli_main  # let click explain the mistake

        g = [f"--{k}={v}" for k, v in opts.items() if isinstance(v, str)]
        cli_main(g + (["--debug"] if opts.get("debug") else []) + ["runtime", *rest])
        return 0
    return _dispatch(a, opts, warm)


def _dispatch(a: dict[str, str | bool], opts: dict[str, str | bool],
              warm: int | None = None) -> int:
    import json

    from pyimg.errors import PyimgError
    from pyimg.runtime import ops

    debug = bool(opts.get("debug") or os.environ.get("PYIMG_DEBUG"))
    try:
        root = ops.state_root(_str(a.get("root")), _str(opts.get("state")))
        verb, cid = a["verb"], str(a["container_id"])
        pid_file = _str(a.get("pid_file"))
        bundle = str(a.get("bundle") or ".")
        if verb == "create":
            ops.create(root, bundle, pid_file, cid, console_socket=_str(a.get("console_socket")),
                       warm=warm)
        elif verb == "start":
            ops.start(root, cid)
        elif verb == "state":
            sys.stdout.write(json.dumps(ops.state(root, cid), indent=2) + "\n")
        elif verb == "kill":
            ops.kill(root, cid, str(a["sig"]))
        elif verb == "delete":
            ops.delete(root, cid, bool(a.get("force")))
        else:
            return ops.run(root, bundle, pid_file, cid,
                           console_socket=_str(a.get("console_socket")), warm=warm)
        return 0
    except PyimgError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        sys.stderr.write(f"pyimg: error: {exc}\n")
        ops.log_error(_str(a.get("log")), str(a.get("log_format") or "text"), str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("pyimg: error: interrupted\n")
        return 130
    except Exception as exc:  # a bug: one line unless debugging
        if debug:
            raise
        sys.stderr.write(f"pyimg: error: internal error: {type(exc).__name__}: {exc}"
                         " (rerun with --debug for a traceback and report it)\n")
        return 70


def _str(value: str | bool | None) -> str | None:
    return value if isinstance(value, str) else None
