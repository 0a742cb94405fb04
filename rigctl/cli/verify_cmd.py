"""`rigctl verify`: run the shipped testinfra suites against rigs over SSH."""

from __future__ import annotations

import json
import sys

import click

from rigctl.cli import _run
from rigctl.cli.common import connect_timeout_option, inventory_option
from rigctl.errors import EXIT_FAILED, EXIT_OK, InputError

_MARK = {
    "passed": "pass",
    "simulated": "pass (simulated)",
    "warn": "WARN",
    "recorded": "recorded, not observed",
    "failed": "FAIL",
    "error": "ERROR",
    "skipped": "skip",
    "unreachable": "UNREACHABLE",
    "refused": "REFUSED",
}
_STYLE = {
    "passed": "green",
    "simulated": "yellow",
    "warn": "bold yellow",
    "recorded": "cyan",
    "failed": "bold red",
    "error": "bold red",
    "skipped": "dim",
    "unreachable": "bold red",
    "refused": "bold red",
}
_VIEW = {
    "real": "real GPUs",
    "simulated": "SIMULATED GPUs",
    "none": "no GPU",
    "unknown": "GPUs not read",
}


def _view(result, host) -> str:
    view = result.gpu_view(host)
    profile = (result.rigs.get(host) or {}).get("profile")
    text = _VIEW.get(view, view)
    return f"{text} ({profile})" if view == "simulated" and profile else text


def summary_line(result, host, checks) -> str:
    """``host (gpu view): N passed, N passed (simulated), N warn, N failed, N skipped``."""
    outcome = result.host_outcome(host)
    if outcome:
        return f"{host}: {outcome}: {checks[0].message}"
    n = result.counts(checks)
    parts = [f"{n['passed']} passed"]
    if n["simulated"] or result.gpu_view(host) == "simulated":
        parts.append(f"{n['simulated']} passed (simulated)")
    parts.append(f"{n['warn']} warn")
    if n["recorded"]:
        parts.append(f"{n['recorded']} recorded, not observed")
    parts.append(f"{n['failed'] + n['error']} failed")
    parts.append(f"{n['skipped']} skipped")
    return f"{host} ({_view(result, host)}): " + ", ".join(parts)


def render(result) -> None:
    """The per-rig table (a gpu_view row, then one row per check), one line per rig that
    was not verified (unreachable / refused), the counts, then the details."""
    hosts = result.hosts()
    grid = {h: checks for h, checks in hosts.items() if not result.host_outcome(h)}
    names = []
    for checks in grid.values():
        for c in checks:
            if c.name not in names:
                names.append(c.name)
    if grid and sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title="verify", title_justify="left")
        table.add_column("check")
        for host in grid:
            table.add_column(host)
        table.add_row("gpu_view", *[_view(result, h) for h in grid])
        for name in names:
            row = [name]
            for checks in grid.values():
                c = next((c for c in checks if c.name == name), None)
                row.append(f"[{_STYLE[c.outcome]}]{_MARK[c.outcome]}[/]" if c else "")
            table.add_row(*row)
        Console().print(table)
    elif grid:
        width = max([len(n) for n in names] + [8])
        cols = {h: max(len(h), len(_view(result, h)), 16) for h in grid}
        click.echo("check".ljust(width) + "  " + "  ".join(h.ljust(cols[h]) for h in grid))
        click.echo("gpu_view".ljust(width) + "  "
                   + "  ".join(_view(result, h).ljust(cols[h]) for h in grid))
        for name in names:
            cells = []
            for host, checks in grid.items():
                c = next((c for c in checks if c.name == name), None)
                cells.append((_MARK[c.outcome] if c else "").ljust(cols[host]))
            click.echo(name.ljust(width) + "  " + "  ".join(cells).rstrip())
    for host in hosts:
        outcome = result.host_outcome(host)
        if outcome:
            click.echo(f"{host}  {_MARK[outcome]}  {hosts[host][0].message}")
    click.echo("")
    for host, checks in hosts.items():
        click.echo(summary_line(result, host, checks))
    for host, checks in grid.items():
        for c in checks:
            if c.outcome in ("failed", "error", "warn"):
                click.echo(f"\n{_MARK[c.outcome]} {host} {c.name}: {c.message}")
                if c.details:
                    click.echo(f"  expected: {c.details['expected']}")
                    click.echo(f"  found:    {c.details['found']}")
                    click.echo(f"  fix:      {c.details['fix']}")
        for line in skip_lines(host, checks):
            click.echo(line)


def skip_lines(host: str, checks) -> list[str]:
    """One line per skipped (or recorded, not observed) check, except that checks skipped
    for the same reason (the message up to its first ': ', e.g. ``GPUs are simulated (lab
    profile 4x3090)``) share one line naming them all; --json and --junit keep every
    check's own message."""
    groups: dict[tuple[str, str], list] = {}
    for c in checks:
        if c.outcome in ("skipped", "recorded") and c.message:
            reason = c.message.split(": ", 1)[0] if ": " in c.message else c.message
            groups.setdefault((c.outcome, reason), []).append(c)
    out = []
    for (outcome, reason), group in groups.items():
        word = "skip" if outcome == "skipped" else "recorded"
        if len(group) == 1:
            out.append(f"{word} {host} {group[0].name}: {group[0].message}")
        else:
            out.append(f"{word} {host}: {reason}: {len(group)} checks "
                       f"({', '.join(c.name for c in group)})")
    return out


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
@click.option(
    "--strict", is_flag=True,
    help="A check under the warn policy that does not hold (outcome warn) fails the run too.",
)
@click.option(
    "--rig-timeout", type=click.IntRange(10, 86400), default=900, show_default=True,
    metavar="SECONDS",
    help="Per-rig deadline for the whole run: a rig still not done is reported unreachable.",
)
@click.option(
    "--report", "report", type=click.Path(dir_okay=False), metavar="PATH",
    help="Also write a report: self-contained HTML (readable offline), Markdown when PATH "
    "ends in .md. Per rig: GPUs, links, BAR1, limits, P2P matrix, NCCL, health findings, checks.",
)
@click.option(
    "--report-md", "report_md", type=click.Path(dir_okay=False), metavar="PATH",
    help="Also write the report as Markdown to PATH.",
)
@click.option(
    "--local", is_flag=True,
    help="Verify the machine rigctl runs on, without SSH (testinfra's local backend; "
    "read-only). Rig variables come from the inventory's host named by HOST when -i is given, "
    "else the schema's defaults. Needs root (or passwordless sudo) for the GPU facts.",
)
@connect_timeout_option
@click.pass_context
def verify(ctx, hosts, inventory, limit, junit, keyword, verbose, as_json, strict, rig_timeout,
           report, report_md, local):
    """Verify HOSTS (default: every rig) against the state the inventory describes.

    Runs the testinfra suites shipped with rigctl over SSH, with the same SSH settings
    and known_hosts as the playbooks, every rig in parallel (its own process, at most 8 at
    once). A rig that cannot be reached, or stops answering, is one `unreachable` result
    with the SSH error, within the connect timeout; it never holds back another rig.
    Every rig's results carry its gpu_view (real, simulated, none). Checks that need real
    GPUs are skipped on lab rigs (simulated GPUs), never passed; checks that read the
    simulated GPU layer pass as `passed (simulated)` (JSON outcome "simulated"), counted
    apart. A hardware check that fails under the warn policy is a `warn`; a state rigctl
    can only compare with its own record (locked clocks on drivers that cannot read them
    back) is `recorded, not observed`, never a pass. --report writes the run as one
    self-contained HTML page (Markdown for a .md name, or --report-md): per rig its GPUs,
    links, BAR1, limits, P2P matrix (GB/s, % of link theory, verdict per pair), NCCL and
    health findings. --local verifies this machine without SSH. Exit 0 all pass
    (simulated passes, recorded and warns included; warns fail with --strict), 1 a check
    failed or a rig was unreachable, 2 input error.
    """
    if local:
        result = _verify_local(hosts, inventory, junit=junit, verbose=verbose, keyword=keyword,
                               strict=strict, rig_timeout=rig_timeout)
        _finish(ctx, result, as_json=as_json, junit=junit, report=report, report_md=report_md)
        return
    paths, _inv, selected = _run.select_hosts(inventory, hosts, limit)
    if len(paths) != 1:
        raise InputError(
            "verify takes one inventory (file or directory)",
            fix="merge the inventories into one directory and pass it with -i",
        )
    from rigctl.runner import ansible_env
    from rigctl.verify.run import VerifyResult, run_suites

    # SSH host keys first (rigctl.hostkeys): refused and unreachable rigs are reported,
    # never contacted by the suites; old testinfra masters of the others are stopped.
    passed, digest, blocked = _run.gate(_inv, selected, stop_testinfra_masters=True)
    result = VerifyResult(strict=strict)
    for c in blocked:
        result.add_host_result(c.host, c.outcome, c.message)
    from rigctl.hostkeys import connect_timeout

    result = run_suites(
        passed, paths[0], junit=junit, verbose=verbose, keyword=keyword,
        env=ansible_env(digest), connect_timeout=connect_timeout(), rig_timeout=rig_timeout,
        strict=strict, result=result, order=selected, record=True,
    )
    _finish(ctx, result, as_json=as_json, junit=junit, report=report, report_md=report_md)


def _finish(ctx, result, *, as_json, junit, report, report_md) -> None:
    """Print the result (table or JSON), write the reports, exit with the run's code."""
    written = []
    if report or report_md:
        from rigctl.verify import report as report_mod

        for path, markdown in ((report, None), (report_md, True)):
            if path:
                kind = report_mod.write_report(result, path, markdown=markdown)
                written.append(f"{'Markdown' if kind == 'markdown' else 'HTML'} report: {path}")
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2, sort_keys=True))
    else:
        render(result)
        if junit:
            click.echo(f"\nJUnit report: {junit}")
        for line in written:
            click.echo(line)
    if result.exit_status not in (0,):
        click.echo(
            f"error: the verification suites did not run cleanly (pytest exit {result.exit_status})",
            err=True,
        )
        ctx.exit(EXIT_FAILED)
    ctx.exit(EXIT_OK if result.ok else EXIT_FAILED)


def _verify_local(hosts, inventory, **kw):
    """``rigctl verify --local``: the suites against this machine through testinfra's local
    backend (an inventory of one host with ``ansible_connection: local``, in a temporary
    directory). HOST with -i: that host's rig variables (``rig_*`` only: no connection
    settings, no secrets) are the desired state."""
    import os
    import socket
    import tempfile

    import yaml

    from rigctl.verify.run import run_suites

    if len(hosts) > 1:
        raise InputError("--local verifies one machine: name at most one HOST",
                         fix="rigctl verify --local [-i INVENTORY HOST]")
    variables: dict = {}
    name = hosts[0] if hosts else (socket.gethostname().split(".")[0] or "localhost")
    if hosts:
        if not inventory:
            raise InputError(f"--local {name}: the rig variables of {name} come from an inventory",
                             fix=f"rigctl verify --local -i INVENTORY {name} (or no HOST: defaults)")
        _paths, inv, selected = _run.select_hosts(inventory, hosts, None)
        if name not in selected:
            raise InputError(f"{name} is not a rig in {', '.join(inventory)}",
                             fix="name a host of the rigs group")
        variables = {k: v for k, v in inv.host_vars(name).items() if k.startswith("rig_")}
    host_vars = dict(variables, ansible_connection="local", ansible_python_interpreter=sys.executable)
    with tempfile.TemporaryDirectory(prefix="rigctl-verify-local-") as tmp:
        path = os.path.join(tmp, "local.yml")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            yaml.safe_dump({"all": {"children": {"rigs": {"hosts": {name: host_vars}}}}}, handle)
        from rigctl.runner import ansible_env

        return run_suites([name], path, env=ansible_env(None), **kw)
