"""`pyimg runtime ...` parsed and run without click, in runc's conventions.

Container tooling (containerd's shim, scripts written for runc) calls the
runtime many times a second; click alone costs ~25 ms to import here, most of
a `runc run`.  :func:`parse` reads the verbs below as the click group
(:mod:`pyimg.cli.runtime`, the reference: help, and the explanation of a
mistake) reads them, with the table-driven reader of :mod:`pyimg.cli.fastparse`,
and returns None for anything else, which :mod:`pyimg.entry` then hands to click.
"""

from __future__ import annotations

import sys

from pyimg.cli.fastparse import Command, Unsure, parse_group, parse_options

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pyimg.fsutil import StrPath

Value = str | bool | list[str]

_CONSOLE_VALUES = {"--console-socket": "console_socket", "--pid-file": "pid_file"}
_CREATE = Command(
    "create", flags={"--no-new-keyring": ("no_new_keyring", True)},
    values={"--bundle": "bundle", "-b": "bundle", **_CONSOLE_VALUES},
    defaults={"bundle": ".", "pid_file": None, "console_socket": None,
              "no_new_keyring": False}, interspersed=True)
#: each verb as the click group (:mod:`pyimg.cli.runtime`) declares it, with the
#: names of its positional arguments: (required, optional with a default, variadic)
_VERBS: dict[str, tuple[Command, tuple[str, ...], tuple[tuple[str, str], ...], str | None]] = {
    "create": (_CREATE, ("container_id",), (), None),
    "run": (_CREATE, ("container_id",), (), None),
    "start": (Command("start", flags={}, values={}, defaults={}, interspersed=True),
              ("container_id",), (), None),
    "state": (Command("state", flags={}, values={}, defaults={}, interspersed=True),
              ("container_id",), (), None),
    "pause": (Command("pause", flags={}, values={}, defaults={}, interspersed=True),
              ("container_id",), (), None),
    "resume": (Command("resume", flags={}, values={}, defaults={}, interspersed=True),
               ("container_id",), (), None),
    "kill": (Command("kill", flags={}, values={}, defaults={}, interspersed=True),
             ("container_id",), (("sig", "SIGTERM"),), None),
    "delete": (Command("delete", flags={"--force": ("force", True), "-f": ("force", True)},
                       values={}, defaults={"force": False}, interspersed=True),
               ("container_id",), (), None),
    "ps": (Command("ps", flags={}, values={"--format": "format", "-f": "format"},
                   defaults={"format": "table"}, interspersed=True),
           ("container_id",), (), None),
    # as runc exec: options end at the container id, the rest is the command
    "exec": (Command("exec", flags={"--detach": ("detach", True), "-d": ("detach", True),
                                    "--tty": ("tty", True), "-t": ("tty", True)},
                     values={"--process": "process", "-p": "process", "--cwd": "cwd",
                             "--user": "user", "-u": "user", **_CONSOLE_VALUES},
                     multiple={"--env": "env", "-e": "env"},
                     defaults={"process": None, "detach": False, "tty": False, "cwd": None,
                               "user": None, "pid_file": None, "console_socket": None},
                     interspersed=False),
             ("container_id",), (), "command"),
}
_GROUP = Command("runtime", flags={},
                 values={"--root": "root", "--log": "log", "--log-format": "log_format"},
                 defaults={"root": None, "log": None, "log_format": "text"},
                 interspersed=False)
#: the verbs that start a container (and so warm the cgroup attach)
STARTS = frozenset({"create", "run", "exec"})


def parse(rest: list[str]) -> dict[str, Value] | None:
    """``[--root D] [--log F] [--log-format text|json] VERB [opts] ARGS`` (what follows
    ``pyimg runtime``) read as the click group reads it, or None for anything else."""
    try:
        group, after = parse_options(_GROUP, rest)
        if not after or after[0] not in _VERBS or group["log_format"] not in ("text", "json"):
            return None
        verb = after[0]
        command, required, optional, variadic = _VERBS[verb]
        params, positional = parse_options(command, after[1:])
    except Unsure:
        return None
    if params.get("format", "table") not in ("table", "json"):
        return None  # click.Choice: click explains
    if len(positional) < len(required) or (
            variadic is None and len(positional) > len(required) + len(optional)):
        return None
    # what was given (the defaults are the dispatcher's)
    defaults = {**_GROUP.defaults, **command.defaults}
    out: dict[str, Value] = {k: v for k, v in {**group, **params}.items()
                             if v is not None and v != defaults.get(k) and v != ()}
    out.pop("no_new_keyring", None)  # accepted, and nothing to do: pyimg makes no keyring
    if "env" in out:
        out["env"] = list(params["env"])
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


def main(args: list[str]) -> int | None:
    """Run ``pyimg [GLOBAL OPTIONS] runtime ...`` if :func:`parse` understands it
    (the exit code), else None: click then reads it."""
    try:
        rest, group = parse_group(args, "runtime")
    except Unsure:
        return None
    a = parse(rest)
    if a is None:
        return None
    warm = None
    if a["verb"] in STARTS:
        from pyimg.runtime import attachwarm

        warm = attachwarm.start()
    return dispatch(a, group["state"], group["debug"], warm)
