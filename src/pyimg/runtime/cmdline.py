"""`pyimg runtime ...` parsed and run without click, in runc's conventions.

Container tooling (containerd's shim, scripts written for runc) calls the
runtime many times a second; click alone costs ~25 ms to import here, most of
a `runc run`.  :func:`parse` understands exactly runc's spellings of the verbs
below and returns None for anything else, which :mod:`pyimg.entry` then hands
to the click group (:mod:`pyimg.cli.runtime`, the reference: help, and the
explanation of a mistake).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyimg.fsutil import StrPath

Value = str | bool | list[str]
FLAG, VALUE, MULTI = "flag", "value", "multi"

_CONSOLE = {"--console-socket": ("console_socket", VALUE),
            "--pid-file": ("pid_file", VALUE)}
#: verb → {option: (key, kind)}; ``--no-new-keyring`` is accepted and ignored:
#: pyimg never creates a session keyring.
_VERB_OPTS: dict[str, dict[str, tuple[str, str]]] = {
    "create": {"--bundle": ("bundle", VALUE), "-b": ("bundle", VALUE),
               "--no-new-keyring": ("", FLAG), **_CONSOLE},
    "start": {}, "state": {}, "kill": {}, "pause": {}, "resume": {},
    "delete": {"--force": ("force", FLAG), "-f": ("force", FLAG)},
    "ps": {"--format": ("format", VALUE), "-f": ("format", VALUE)},
    "exec": {"--process": ("process", VALUE), "-p": ("process", VALUE),
             "--detach": ("detach", FLAG), "-d": ("detach", FLAG),
             "--tty": ("tty", FLAG), "-t": ("tty", FLAG),
             "--cwd": ("cwd", VALUE), "--env": ("env", MULTI), "-e": ("env", MULTI),
             "--user": ("user", VALUE), "-u": ("user", VALUE), **_CONSOLE},
}
_VERB_OPTS["run"] = _VERB_OPTS["create"]
#: verb → (required positionals, optional positionals with defaults, variadic name)
_VERB_ARGS: dict[str, tuple[tuple[str, ...], tuple[tuple[str, str], ...], str | None]] = {
    "kill": (("container_id",), (("sig", "SIGTERM"),), None),
    "exec": (("container_id",), (), "command"),
}
_GROUP_OPTS = {"--root": ("root", VALUE), "--log": ("log", VALUE),
               "--log-format": ("log_format", VALUE)}
#: the verbs that start a container (and so warm the cgroup attach)
STARTS = frozenset({"create", "run", "exec"})


def parse(rest: list[str]) -> dict[str, Value] | None:
    """runc-style ``[--root D] [--log F] [--log-format text|json] VERB [opts] ARGS``,
    or None for anything else."""
    out: dict[str, Value] = {}
    args = list(rest)
    table = _GROUP_OPTS
    positional: list[str] = []
    verb = None
    while args:
        a = args.pop(0)
        if a == "--" or (positional and verb is not None and verb in _VERB_ARGS
                         and _VERB_ARGS[verb][2] is not None):
            # after `--`, and (as runc exec) after the id of a verb with a command
            positional += args if a == "--" else [a, *args]
            break
        if a.startswith("-") and a != "-":
            name, eq, value = a.partition("=")
            if name not in table:
                return None
            key, kind = table[name]
            if kind == FLAG:
                if eq:
                    return None
                if key:
                    out[key] = True
                continue
            if not eq:
                if not args:
                    return None
                value = args.pop(0)
            if kind == MULTI:
                seen = out.setdefault(key, [])
                assert isinstance(seen, list)
                seen.append(value)
            else:
                out[key] = value
        elif verb is None:
            if a not in _VERB_OPTS:
                return None
            verb = a
            table = _VERB_OPTS[a]
        else:
            positional.append(a)
    if verb is None or out.get("log_format", "text") not in ("text", "json"):
        return None
    required, optional, variadic = _VERB_ARGS.get(verb, (("container_id",), (), None))
    if len(positional) < len(required) or (
            variadic is None and len(positional) > len(required) + len(optional)):
        return None
    names = list(required) + [k for k, _ in optional]
    out.update(dict(optional))
    out.update(zip(names, positional, strict=False))  # optional ones may be absent
    if variadic is not None:
        out[variadic] = positional[len(names):]
    out["verb"] = verb
    return out


def _str(value: Value | None) -> str | None:
    return value if isinstance(value, str) else None


def dispatch(a: dict[str, Value], state: str | None, debug: bool,
             warm: int | None = None) -> int:
    """Run a parsed call; the exit code (errors: one line on stderr, and in --log)."""
    from pyimg.errors import PyimgError
    from pyimg.runtime import ops

    try:
        root = ops.state_root(_str(a.get("root")), state)
        return _call(str(a["verb"]), root, str(a["container_id"]), a, warm)
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


def _call(verb: str, root: StrPath, cid: str, a: dict[str, Value], warm: int | None) -> int:
    import json

    from pyimg.runtime import ops as _ops

    pid_file, console = _str(a.get("pid_file")), _str(a.get("console_socket"))
    bundle = _str(a.get("bundle")) or "."
    if verb == "create":
        _ops.create(root, bundle, pid_file, cid, console_socket=console, warm=warm)
    elif verb == "run":
        return _ops.run(root, bundle, pid_file, cid, console_socket=console, warm=warm)
    elif verb == "start":
        _ops.start(root, cid)
    elif verb == "state":
        sys.stdout.write(json.dumps(_ops.state(root, cid), indent=2) + "\n")
    elif verb == "kill":
        _ops.kill(root, cid, str(a["sig"]))
    elif verb == "delete":
        _ops.delete(root, cid, bool(a.get("force")))
    elif verb == "pause":
        _ops.pause(root, cid)
    elif verb == "resume":
        _ops.resume(root, cid)
    elif verb == "ps":
        sys.stdout.write(_ops.ps(root, cid, _str(a.get("format")) or "table"))
    elif verb == "exec":
        env = a.get("env")
        command = a.get("command")
        return _ops.exec_(root, cid, process_file=_str(a.get("process")),
                          args=command if isinstance(command, list) else [],
                          env=env if isinstance(env, list) else [],
                          cwd=_str(a.get("cwd")), user=_str(a.get("user")),
                          tty=bool(a.get("tty")), detach=bool(a.get("detach")),
                          pid_file=pid_file, console_socket=console, warm=warm)
    return 0


def main(rest: list[str], state: str | None, debug: bool) -> int | None:
    """Run ``pyimg runtime REST`` if :func:`parse` understands it, else None."""
    a = parse(rest)
    if a is None:
        return None
    warm = None
    if a["verb"] in STARTS:
        from pyimg.runtime import attachwarm

        warm = attachwarm.start()
    return dispatch(a, state, debug or bool(os.environ.get("PYIMG_DEBUG")), warm)
