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

    Ctrl-C: the task running on the rigs finishes there, then the play stops (no task is
    left half done; handlers already notified still run); Ctrl-C again cancels at once,
    cutting the task in flight. Either way the summary says what each rig was left as and
    the command that finishes the job, and the exit code is 1.
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
    _provision(ctx, paths, _inv, selected, f"provision {name}", check, diff, verbose, as_json,
               again=_again(f"rigctl provision host {name}", paths, check))


@provision.command("fleet")
@run_options
@click.pass_context
def provision_fleet(ctx, inventory, limit, check, diff, verbose, as_json):
    """Provision every rig of the inventory's `rigs` group (narrowed by --limit) in one
    run: the rigs converge in parallel (Ansible forks), e.g. their driver builds."""
    paths, _inv, selected = _run.select_hosts(inventory, (), limit)
    cmd = "rigctl provision fleet" + (f" --limit {limit}" if limit else "")
    _provision(ctx, paths, _inv, selected, f"provision {', '.join(selected)}", check, diff, verbose,
               as_json, again=_again(cmd, paths, check))


def _again(cmd: str, paths, check: bool) -> str:
    """The command that runs the same provisioning again (after a Ctrl-C)."""
    import shlex

    return " ".join([cmd, *(f"-i {shlex.quote(str(p))}" for p in paths), *(["--check"] if check else [])])


def _provision(ctx, paths, inv, selected, title, check, diff, verbose, as_json, again=None):
    """Run playbooks/provision.yml on the selected rigs and exit with its result. Ctrl-C:
    the task running on the rigs finishes and the play stops there; a second one cancels
    (exit 1 either way; the summary says what each rig was left as)."""
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
        again=again,
    )
    ctx.exit(_run.exit_code(result))
