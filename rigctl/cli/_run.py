"""Shared steps of the commands that run a playbook: validate, select, run, report."""

from __future__ import annotations

import json
from pathlib import Path

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


def gate(inv, selected, *, stop_testinfra_masters=False):
    """The SSH host key check of rigctl.hostkeys on every selected host, before anything
    else contacts them: (hosts that passed, digest of their known keys, the others).
    ``stop_testinfra_masters``: testinfra's ssh uses ansible.cfg's control path
    (~/.ansible/cp/%C) whatever the environment says; masters there from before this check
    are stopped."""
    import os

    from rigctl import hostkeys

    checks = hostkeys.check_hosts(inv, list(selected))
    ok = [c for c in checks if c.ok]
    if stop_testinfra_masters and ok:
        hostkeys.stop_masters(ok, os.path.join(os.path.expanduser("~/.ansible/cp"), "%C"))
    return [c.host for c in ok], hostkeys.control_digest(checks), [c for c in checks if not c.ok]


def add_blocked(result, blocked) -> None:
    """Report hosts the gate stopped in a RunResult: one failure each (task 'SSH host key
    check'), counted failed (refused) or unreachable."""
    from rigctl.runner import Failure, HostStats

    for c in blocked:
        stats = HostStats(unreachable=1) if c.outcome == "unreachable" else HostStats(failed=1)
        result.hosts[c.host] = stats
        result.failures.append(
            Failure(c.host, "SSH host key check", c.message, c.outcome == "unreachable")
        )
    result.hosts = dict(sorted(result.hosts.items()))


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
    inv=None,
    again: str | None = None,
):
    """Gate, run ``playbook`` on the hosts that passed, report. Ctrl-C (runner.Interrupt):
    the first lets the task running on the rigs finish and stops the play there, a second
    cancels it; the result says so (``interrupted``, not ok) and the summary says what each
    rig was left as and ``again``, the command that finishes the job."""
    from rigctl.progress import make_progress, print_summary, progress_context
    from rigctl.runner import HostStats, Interrupt, RunResult, new_run_dir, run_playbook

    if inv is None:
        from rigctl import inventory as inv_mod

        inv = inv_mod.load(paths)
    with Interrupt() as interrupt:
        passed, digest, blocked = gate(inv, selected)
        if passed and not interrupt.requested:
            progress = make_progress(passed, verbose, quiet=quiet)
            with progress_context(progress):
                result = run_playbook(
                    playbook,
                    paths,
                    limit=",".join(passed),
                    check=check,
                    diff=diff,
                    verbosity=verbose,
                    extravars=extravars,
                    progress=progress,
                    kind=kind,
                    control_digest=digest,
                    interrupt=interrupt,
                )
        else:  # no host passed the check, or Ctrl-C came first: Ansible does not run at all
            run_dir = new_run_dir(kind or playbook.rsplit(".", 1)[0])
            result = RunResult(playbook=playbook, status="failed", rc=1,
                               artifacts=run_dir, check_mode=check)
            if interrupt.requested:
                result.interrupted = {"how": "stopped", "stopped_before": {
                    "task": "(the playbook did not start)", "role": ""}, "in_flight": None,
                    "last_done": {}}
                for h in passed:
                    result.hosts[h] = HostStats()
    if blocked:
        add_blocked(result, blocked)
        if Path(result.artifacts).is_dir():
            (Path(result.artifacts) / "hostkeys.json").write_text(
                json.dumps([c.as_dict() for c in blocked], indent=2) + "\n"
            )
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2, sort_keys=True))
    elif summary and not quiet:
        print_summary(result, title, again)
    return result


def exit_code(result) -> int:
    return EXIT_OK if result.ok else EXIT_FAILED
