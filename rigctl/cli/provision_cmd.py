"""`rigctl provision`: bring rigs to the state the inventory describes."""

from __future__ import annotations

import click

from rigctl.cli import _run
from rigctl.cli.common import run_options


@click.group()
def provision():
    """Provision rigs (runs playbooks/provision.yml).

    Today the provisioning play gathers facts and runs the preflight checks; the driver,
    tuning and CUDA/NCCL roles join it as they land. The inventory is checked first:
    any inventory problem stops the run with exit 2 before a host is contacted.
    """


@provision.command("host")
@click.argument("name")
@run_options
@click.pass_context
def provision_host(ctx, name, inventory, limit, check, diff, verbose, as_json):
    """Provision one host NAME from the inventory."""
    paths, _inv, selected = _run.select_hosts(inventory, (name,), limit)
    if len(selected) != 1 or selected[0] != name:
        from rigctl.errors import InputError

        raise InputError(
            f"'provision host' takes one host name, {name!r} selects {len(selected)} hosts",
            fix="name a single host, or use a group with a fleet command",
        )
    result = _run.run(
        "provision.yml",
        paths,
        selected,
        check=check,
        diff=diff,
        verbose=verbose,
        as_json=as_json,
        title=f"provision {name}",
        kind="provision",
    )
    ctx.exit(_run.exit_code(result))
