"""`rigctl provision`: bring rigs to the state the inventory describes."""

from __future__ import annotations

import click

from rigctl.cli import _run
from rigctl.cli.common import run_options


@click.group()
def provision():
    """Provision rigs (runs playbooks/provision.yml).

    In order: rig facts and preflight; the hardware checks (rig_hw_check_policy, IOMMU
    kernel options); the NVIDIA driver (open or P2P-patched, built by DKMS for every
    target kernel); GPU tuning (persistence, power limits, clock locks, compute mode,
    re-applied at every boot by a systemd unit); the CUDA toolkit; NCCL. A change that
    needs a reboot is recorded and reported, or rebooted for (rig_reboot_policy). `host NAME`
    provisions one rig; `fleet` every rig (or those --limit selects) in one run, in
    parallel. The inventory is checked first: any inventory problem stops the run with
    exit 2 before a host is contacted.
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
    _provision(ctx, paths, _inv, selected, f"provision {name}", check, diff, verbose, as_json)


@provision.command("fleet")
@run_options
@click.pass_context
def provision_fleet(ctx, inventory, limit, check, diff, verbose, as_json):
    """Provision every rig of the inventory's `rigs` group (narrowed by --limit) in one
    run: the rigs converge in parallel (Ansible forks), e.g. their driver builds."""
    paths, _inv, selected = _run.select_hosts(inventory, (), limit)
    _provision(ctx, paths, _inv, selected, f"provision {', '.join(selected)}", check, diff, verbose,
               as_json)


def _provision(ctx, paths, inv, selected, title, check, diff, verbose, as_json):
    """Run playbooks/provision.yml on the selected rigs and exit with its result."""
    result = _run.run(
        "provision.yml",
        paths,
        selected,
        check=check,
        diff=diff,
        verbose=verbose,
        as_json=as_json,
        title=title,
        kind="provision",
        inv=inv,
    )
    ctx.exit(_run.exit_code(result))
