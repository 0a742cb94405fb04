"""`rigctl pull`: pull mode, where each rig converges itself with ansible-pull."""

from __future__ import annotations

import tempfile

import click

from rigctl.cli import _run
from rigctl.cli.common import run_options


@click.group()
def pull():
    """Pull mode: rigs that converge themselves (ansible-pull on a systemd timer).

    For fleets where the control machine is not always there: each rig runs `ansible-pull`
    of your inventory repository at the pinned commit `rig_pull_commit` every
    `rig_pull_interval`, with rigctl's collection (`rigctl.rig`) installed on the rig. The
    repository holds your inventory and a playbook (`rig_pull_playbook`, default local.yml)
    that imports `rigctl.rig.provision`. A rig never follows a branch: a new commit reaches
    it when you change rig_pull_commit and run `rigctl pull setup` again.
    """


@pull.command("setup")
@click.argument("hosts", nargs=-1)
@run_options
@click.pass_context
def pull_setup(ctx, hosts, inventory, limit, check, diff, verbose, as_json):
    """Set up pull mode on the selected rigs (rig_pull_enabled true), or remove it
    (rig_pull_enabled false): ansible-core and git from the distribution (Debian 13: the
    roles need ansible-core 2.17 to 2.19), this rigctl's collection (reinstalled only when
    its files differ), /etc/rigctl/pull.env and rigctl-pull.service/.timer. The first run
    comes one interval later; `systemctl start rigctl-pull.service` on a rig runs it now."""
    from rigctl.fleet import collection

    paths, inv, selected = _run.select_hosts(inventory, hosts, limit)
    with tempfile.TemporaryDirectory(prefix="rigctl-pull-") as tmp:
        tarball = collection.build(tmp)
        result = _run.run(
            "pull.yml",
            paths,
            selected,
            check=check,
            diff=diff,
            verbose=verbose,
            as_json=as_json,
            title=f"pull setup {', '.join(selected)}",
            kind="pull",
            inv=inv,
            extravars={"rigctl_pull_collection": str(tarball),
                       "rigctl_pull_collection_digest": collection.files_digest(tarball)},
        )
    ctx.exit(_run.exit_code(result))
