"""The click application: the `pyimg` group, its global options, every command.

Errors become one stderr line and the error's exit code
(:func:`pyimg.cli.exit_on_error`); a traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import click

from pyimg import __version__
from pyimg.cli import exit_on_error, fail


@dataclass
class Context:
    root: str | None
    config: str | None
    debug: bool
    state: str | None = None

    def settings(self):  # type: ignore[no-untyped-def]
        from pyimg.settings import Settings

        return Settings.from_env(root=self.root, config=self.config, state=self.state)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--root", envvar="PYIMG_ROOT", metavar="DIR",
              help="Store location (default /var/lib/pyimg as root).")
@click.option("--config", envvar="PYIMG_CONFIG", metavar="DIR",
              help="Configuration directory holding certs.d/ (default /etc/pyimg as root).")
@click.option("--state", envvar="PYIMG_STATE", metavar="DIR",
              help="Runtime state directory (default /run/pyimg as root).")
@click.option("--debug", is_flag=True, envvar="PYIMG_DEBUG",
              help="Show tracebacks and HTTP traces.")
@click.version_option(__version__, prog_name="pyimg")
@click.pass_context
def cli(ctx: click.Context, root: str | None, config: str | None, state: str | None,
        debug: bool) -> None:
    """pyimg: pull, store and inspect container images, without a daemon."""
    ctx.obj = Context(root, config, debug, state)
    if debug:
        from pyimg import _debug

        _debug.enable()


def _register() -> None:
    from pyimg.cli import auth, containers, gc, images, inspect, runtime, saveload, unpack

    for module in (images, unpack, containers, inspect, runtime, auth, saveload, gc):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> None:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="pyimg", standalone_mode=False)
    except click.exceptions.Abort:
        fail("interrupted", 130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except (Exception, KeyboardInterrupt) as exc:
        exit_on_error(exc, debug)
