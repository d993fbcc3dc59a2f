"""login and logout, the docker way (config.json or a credential helper)."""

from __future__ import annotations

import sys

import click


@click.command()
@click.argument("server")
@click.option("-u", "--username", help="Username.")
@click.option("-p", "--password", help="Password (prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@click.pass_obj
def login(obj, server, username, password, password_stdin):  # type: ignore[no-untyped-def]
    """Log in to a registry and store the credentials in docker's config.json."""
    from pyimg import api
    from pyimg.errors import InvalidArgument

    if password_stdin:
        if password:
            raise InvalidArgument("login: --password and --password-stdin exclude each other")
        password = sys.stdin.read().rstrip("\r\n")
    if not username:
        username = click.prompt("Username")
    if password is None:
        password = click.prompt("Password", hide_input=True)
    api.login(obj.settings(), server, username, password)
    click.echo("Login Succeeded")


@click.command()
@click.argument("server")
@click.pass_obj
def logout(obj, server):  # type: ignore[no-untyped-def]
    """Remove stored credentials for a registry."""
    from pyimg import api

    api.logout(obj.settings(), server)
    click.echo(f"Removing login credentials for {server}")


COMMANDS = (login, logout)
