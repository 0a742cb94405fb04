"""Options shared by the commands, so every command spells them the same way."""

from __future__ import annotations

import functools
import os

import click

INVENTORY_ENV = "RIGCTL_INVENTORY"


def inventory_option(f):
    return click.option(
        "-i",
        "--inventory",
        "inventory",
        multiple=True,
        type=click.Path(dir_okay=True, file_okay=True, path_type=str),
        help=f"Inventory file or directory (repeatable). Default: ${INVENTORY_ENV}, "
        "else ./inventory/hosts.yml.",
    )(f)


def resolve_inventory_paths(given: tuple[str, ...]) -> list[str]:
    """The inventory paths to use: -i values, else $RIGCTL_INVENTORY (colon separated),
    else ./inventory/hosts.yml. Existence is checked by the inventory loader."""
    if given:
        return list(given)
    env = os.environ.get(INVENTORY_ENV)
    if env:
        return [p for p in env.split(os.pathsep) if p]
    return [os.path.join("inventory", "hosts.yml")]


def run_options(f):
    """Options of every command that runs a playbook."""

    @inventory_option
    @click.option(
        "-l", "--limit", default=None, help="Only these hosts or groups (Ansible pattern)."
    )
    @click.option(
        "--check", is_flag=True, help="Dry run: report what would change, change nothing."
    )
    @click.option(
        "--diff", is_flag=True, help="Show the changes made (or, with --check, that would be)."
    )
    @click.option(
        "-v", "--verbose", count=True, help="More output (-v, -vv, -vvv: passed to Ansible)."
    )
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable summary on stdout.")
    @connect_timeout_option
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        return f(*args, **kwargs)

    return wrapper


def _set_connect_timeout(ctx, _param, value):
    from rigctl.hostkeys import set_connect_timeout

    set_connect_timeout(ctx, value)
    return value


def connect_timeout_option(f):
    """--connect-timeout SECONDS (else $RIGCTL_CONNECT_TIMEOUT, else 10): how long to wait
    for a rig's SSH answer. Read by rigctl.hostkeys.connect_timeout(); no parameter."""
    return click.option(
        "--connect-timeout",
        type=click.IntRange(1, 600),
        default=None,
        expose_value=False,
        callback=_set_connect_timeout,
        metavar="SECONDS",
        help="Wait this long for a rig's SSH answer (default: $RIGCTL_CONNECT_TIMEOUT, else "
        "10). Ansible tries a failing connection 3 times.",
    )(f)


def json_option(f):
    return click.option(
        "--json", "as_json", is_flag=True, help="Machine-readable output on stdout."
    )(f)


def exits_on_errors(f):
    """Turn RigctlError into `error: ...` on stderr and its exit code, the same way
    rigctl's main() does, so the commands behave alike under click's test runner."""
    from rigctl.errors import RigctlError

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except RigctlError as exc:
            click.echo(f"error: {exc.render()}", err=True)
            raise click.exceptions.Exit(exc.exit_code) from exc

    return wrapper
