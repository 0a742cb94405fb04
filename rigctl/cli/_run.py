"""Shared steps of the commands that run a playbook: validate, select, run, report."""

from __future__ import annotations

import json

import click

from rigctl.cli.common import resolve_inventory_paths
from rigctl.errors import EXIT_FAILED, EXIT_OK, InputError


def select_hosts(inventory: tuple[str, ...], hosts: tuple[str, ...] = (), limit: str | None = None):
    """Validate the inventory (exit 2 on any problem, nothing contacted) and return
    (paths, Inventory, selected host names)."""
    from rigctl import inventory as inv_mod

    paths = resolve_inventory_paths(inventory)
    inv, selected = inv_mod.require_valid(paths, limit=limit)
    if hosts:
        wanted = inv.select(",".join(hosts))
        selected = [h for h in selected if h in wanted]
        if not selected:
            raise InputError(
                f"no host matches both {','.join(hosts)!r} and --limit {limit!r}",
                fix="drop one of the two selections",
            )
    if not selected:
        raise InputError("no host selected", fix="check the inventory's 'rigs' group and --limit")
    return paths, inv, selected


def run(
    playbook: str,
    paths,
    selected,
    *,
    check=False,
    diff=False,
    verbose=0,
    as_json=False,
    title: str,
    extravars=None,
    kind=None,
    quiet=False,
    summary=True,
):
    from rigctl.progress import make_progress, print_summary, progress_context
    from rigctl.runner import run_playbook

    progress = make_progress(selected, verbose, quiet=quiet)
    with progress_context(progress):
        result = run_playbook(
            playbook,
            paths,
            limit=",".join(selected),
            check=check,
            diff=diff,
            verbosity=verbose,
            extravars=extravars,
            progress=progress,
            kind=kind,
        )
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2, sort_keys=True))
    elif summary and not quiet:
        print_summary(result, title)
    return result


def exit_code(result) -> int:
    return EXIT_OK if result.ok else EXIT_FAILED
