"""`rigctl verify`: run the shipped testinfra suites against rigs over SSH."""

from __future__ import annotations

import json
import sys

import click

from rigctl.cli import _run
from rigctl.cli.common import inventory_option
from rigctl.errors import EXIT_FAILED, EXIT_OK, InputError

_MARK = {"passed": "pass", "failed": "FAIL", "skipped": "skip", "error": "ERROR"}


def render(result) -> None:
    hosts = result.hosts()
    names = []
    for checks in hosts.values():
        for c in checks:
            if c.name not in names:
                names.append(c.name)
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title="verify", title_justify="left")
        table.add_column("check")
        for host in hosts:
            table.add_column(host)
        style = {"passed": "green", "failed": "bold red", "error": "bold red", "skipped": "dim"}
        for name in names:
            row = [name]
            for checks in hosts.values():
                c = next((c for c in checks if c.name == name), None)
                row.append(f"[{style[c.outcome]}]{_MARK[c.outcome]}[/]" if c else "")
            table.add_row(*row)
        Console().print(table)
    else:
        width = max([len(n) for n in names] + [5])
        click.echo("check".ljust(width) + "  " + "  ".join(h.ljust(12) for h in hosts))
        for name in names:
            cells = []
            for checks in hosts.values():
                c = next((c for c in checks if c.name == name), None)
                cells.append((_MARK[c.outcome] if c else "").ljust(12))
            click.echo(name.ljust(width) + "  " + "  ".join(cells))
    click.echo("")
    for host, checks in hosts.items():
        counts = {k: sum(1 for c in checks if c.outcome == k) for k in _MARK}
        click.echo(
            f"{host}: {counts['passed']} passed, {counts['failed'] + counts['error']} failed, "
            f"{counts['skipped']} skipped"
        )
    for host, checks in hosts.items():
        for c in checks:
            if c.outcome in ("failed", "error"):
                click.echo(f"\nFAIL {host} {c.name}: {c.message}")
                if c.details:
                    click.echo(f"  expected: {c.details['expected']}")
                    click.echo(f"  found:    {c.details['found']}")
                    click.echo(f"  fix:      {c.details['fix']}")
            elif c.outcome == "skipped" and c.message:
                click.echo(f"skip {host} {c.name}: {c.message}")


@click.command()
@click.argument("hosts", nargs=-1)
@inventory_option
@click.option("-l", "--limit", default=None, help="Only these hosts or groups (Ansible pattern).")
@click.option(
    "--junit", "junit", type=click.Path(dir_okay=False), help="Also write a JUnit XML report."
)
@click.option("-k", "keyword", default=None, help="Only checks matching this pytest -k expression.")
@click.option("-v", "--verbose", count=True, help="Show pytest's own output (on stderr).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result on stdout.")
@click.pass_context
def verify(ctx, hosts, inventory, limit, junit, keyword, verbose, as_json):
    """Verify HOSTS (default: every rig) against the state the inventory describes.

    Runs the testinfra suites shipped with rigctl over SSH, with the same SSH settings
    and known_hosts as the playbooks. Checks that need real GPUs are skipped on lab
    rigs (simulated GPUs), never passed. Exit 0 all pass, 1 a check failed, 2 input error.
    """
    paths, _inv, selected = _run.select_hosts(inventory, hosts, limit)
    if len(paths) != 1:
        raise InputError(
            "verify takes one inventory (file or directory)",
            fix="merge the inventories into one directory and pass it with -i",
        )
    from rigctl.runner import ansible_env
    from rigctl.verify.run import run_suites

    result = run_suites(
        selected, paths[0], junit=junit, verbose=verbose, keyword=keyword, env=ansible_env()
    )
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2, sort_keys=True))
    else:
        render(result)
        if junit:
            click.echo(f"\nJUnit report: {junit}")
    if result.exit_status not in (0,):
        click.echo(
            f"error: the verification suites did not run cleanly (pytest exit {result.exit_status})",
            err=True,
        )
        ctx.exit(EXIT_FAILED)
    ctx.exit(EXIT_OK if result.ok else EXIT_FAILED)
