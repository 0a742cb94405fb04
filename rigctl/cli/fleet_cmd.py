"""`rigctl fleet ...`: the fleet at a glance (`status`)."""

from __future__ import annotations

import json
import sys

import click

from rigctl.cli.common import connect_timeout_option, inventory_option, json_option


@click.group()
def fleet():
    """The whole fleet: `status` (one table of every rig, read only) and `update` (a
    rolling, canaried, resumable rollout of the inventory's state)."""


def _render(rigs) -> None:
    from rigctl.fleet import status as st

    rows = [st.row(r.data) for r in rigs]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title="fleet status", title_justify="left")
        for col in st.COLUMNS:
            table.add_column(col)
        for r, cells in zip(rigs, rows, strict=True):
            style = "" if r.reachable == "yes" else "bold red"
            table.add_row(*[f"[{style}]{c}[/]" if style and i == 1 else c
                            for i, c in enumerate(cells)])
        Console().print(table)
    else:
        widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(st.COLUMNS)]
        click.echo("  ".join(c.ljust(w) for c, w in zip(st.COLUMNS, widths, strict=True)).rstrip())
        for cells in rows:
            click.echo("  ".join(v.ljust(w) for v, w in zip(cells, widths, strict=True)).rstrip())
    for r in rigs:
        if r.reachable != "yes":
            click.echo(f"{r.name}: {r.reachable}: {r.problem}")
    for r in rigs:
        reboot = (r.data.get("reboot") or {})
        if reboot.get("required"):
            click.echo(f"reboot needed: {r.name}: " + "; ".join(reboot["reasons"] or ["no reason recorded"]))
    if any((r.data.get("gpus") or {}).get("simulated") for r in rigs):
        click.echo("simulated: GPUs of lab rigs are simulated (rigctl.simgpu), not real hardware")


@fleet.command()
@click.argument("hosts", nargs=-1)
@inventory_option
@click.option("-l", "--limit", default=None, help="Only these hosts or groups (Ansible pattern).")
@click.option("-v", "--verbose", count=True, help="More output (passed to Ansible).")
@json_option
@connect_timeout_option
@click.pass_context
def status(ctx, hosts, inventory, limit, verbose, as_json):
    """One row per rig (HOSTS, default every rig), read only: reachable, driver flavor and
    version (fork and commit of a patched P2P module), GPUs, power limits, CUDA and NCCL,
    pending reboot, the last `rigctl verify` result and the last rollout that touched it.

    One Ansible run over every rig in parallel (one task per rig), after the SSH host key
    check; an unreachable rig is one row saying so. GPUs of lab rigs read `simulated`.
    Exit 0 every rig reachable, 1 any rig not, 2 input error (nothing contacted).
    """
    from rigctl.cli import _run
    from rigctl.errors import EXIT_FAILED, EXIT_OK
    from rigctl.fleet import status as st

    paths, inv, selected = _run.select_hosts(inventory, hosts, limit)
    rigs, result = st.collect(paths, inv, selected, verbose=verbose)
    ok = all(r.reachable == "yes" for r in rigs)
    if as_json:
        payload = {"ok": ok, "rigs": {r.name: r.data for r in rigs},
                   "order": [r.name for r in rigs], "run": result.as_dict()}
        click.echo(json.dumps(payload, indent=2, sort_keys=True))
    else:
        _render(rigs)
        click.echo(f"run artifacts kept in {result.artifacts}")
    ctx.exit(EXIT_OK if ok else EXIT_FAILED)


def confirm_between_batches(stop):
    """The --confirm question before each batch after the first, for Rollout(confirm=...).

    Only a yes goes on. Ctrl-C at the question, or no answer at all (stdin closed: EOF),
    is a no: the rollout stops as not confirmed, with everything recorded, the summary
    printed and exit 1. While the question waits, SIGINT interrupts it: the rollout's own
    handler (fleet.update.Stop) only notes a Ctrl-C so that rigs in flight can finish,
    which would leave the question waiting forever."""
    from rigctl.fleet import update as up
    from rigctl.runner import SigintScope

    class AtTheQuestion(SigintScope):
        hit = False

        def _handler(self, signum, frame):
            self.hit = True
            raise KeyboardInterrupt

    def ask(question: str) -> bool:
        with AtTheQuestion() as scope:
            try:
                return click.confirm(question, default=False, err=True)
            except (KeyboardInterrupt, click.exceptions.Abort):  # click's Abort: Ctrl-C or EOF
                pass
        hit = scope.hit
        if hit:
            stop.requested, stop.reason = True, "interrupted (Ctrl-C)"
        why = "Ctrl-C at the question" if hit else "no answer (stdin closed)"
        up._say(f"\n{why}: not confirmed, the rollout stops here (no further rig is started)")
        return False

    return ask


def _render_update(rec) -> None:
    from rigctl.fleet import update as up

    rows = up.table_rows(rec)
    cols = up.COLUMNS
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"fleet update {rec.id}", title_justify="left")
        for col in cols:
            table.add_column(col)
        style = {"done": "green", "failed": "bold red", "unreachable": "bold red",
                 "skipped": "yellow", "not started": "dim"}
        for cells in rows:
            s = style.get(cells[2], "")
            table.add_row(*[f"[{s}]{c}[/]" if s and i == 2 else c for i, c in enumerate(cells)])
        Console().print(table)
    else:
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
        click.echo("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
        for cells in rows:
            click.echo("  ".join(v.ljust(w) for v, w in zip(cells, widths, strict=True)).rstrip())
    for line in up.summary_lines(rec):
        click.echo(line)


def _render_check(plan) -> None:
    click.echo(f"fleet update --check: {len(plan['batches'])} batch(es), nothing changed")
    for i, batch in enumerate(plan["batches"], 1):
        click.echo(f"batch {i}{' (canary)' if i == 1 and plan['options']['canary'] else ''}: "
                   + ", ".join(batch))
    for name, r in plan["rigs"].items():
        if r["problem"]:
            what = f"{'UNREACHABLE' if not r['reachable'] else 'PROBLEM'}: {r['problem'].splitlines()[0]}"
        elif r["busy"]:
            what = "busy (skipped unless --force): " + ", ".join(r.get("busy_what") or [])
        elif r["changes"]:
            what = f"would change ({len(r['changes'])}): " + "; ".join(r["changes"])
        else:
            what = "no change"
        if r.get("reboot"):
            what += f"; reboot needed: {r['reboot']}"
        click.echo(f"  {name}: {what}")


@fleet.command()
@click.argument("hosts", nargs=-1)
@inventory_option
@click.option("-l", "--limit", default=None, help="Only these hosts or groups (Ansible pattern).")
@click.option("--canary", type=click.IntRange(0, None), default=None, metavar="N",
              help="Rigs in the first batch, alone (default 1; 0: no canary). A failing canary "
              "stops the rollout before any other rig is touched.")
@click.option("--batch", "batch", default=None, metavar="N|P%|LIST",
              help="Batch sizes after the canary: a count, a percentage of the rigs, or a list "
              "(1,5,20%) whose last entry repeats (default 20%).")
@click.option("--max-fail", "max_fail", default=None, metavar="N|P%",
              help="Failure budget of the whole rollout (failed and unreachable rigs alike; "
              "default 0). More failures than this stop it after the batch.")
@click.option("--force", is_flag=True, help="Update busy rigs too (GPU processes, active "
              "rig_drain_units); drain units are still stopped and started again.")
@click.option("--pause", type=click.FloatRange(0, 86400), default=0, metavar="SECONDS",
              help="Wait between batches (Ctrl-C during the wait stops the rollout).")
@click.option("--confirm", is_flag=True, help="Ask before each batch after the first.")
@click.option("--check", is_flag=True, help="Plan the rollout and show what would change "
              "(Ansible check mode); touch nothing, record nothing.")
@click.option("--reboot-timeout", type=click.IntRange(30, 7200), default=None, metavar="SECONDS",
              help="How long a rebooting rig may take to come back (default 600).")
@click.option("--resume", "resume", is_flag=False, flag_value="latest", default=None,
              metavar="[ID]", help="Continue a stopped rollout (default: the newest): done "
              "rigs stay done.")
@click.option("--retry-failed", is_flag=True, help="With --resume: run failed and unreachable "
              "rigs again.")
@click.option("--junit", type=click.Path(dir_okay=False), default=None,
              help="Also write a JUnit XML report (one test case per rig).")
@click.option("-v", "--verbose", count=True, help="More output (passed to Ansible).")
@json_option
@connect_timeout_option
@click.pass_context
def update(ctx, hosts, inventory, limit, canary, batch, max_fail, force, pause, confirm, check,
           reboot_timeout, resume, retry_failed, junit, verbose, as_json):
    """Roll the inventory's state out to HOSTS (default every rig), batch by batch.

    The whole inventory is checked first (exit 2, nothing contacted). Then a canary batch
    (--canary), then --batch sizes. Per rig: SSH host key check, preflight (busy: GPU
    compute processes or active rig_drain_units: skipped unless --force; drain units
    stopped), converge (playbooks/provision.yml), a reboot when the change needs one and
    rig_reboot_policy is auto (boot checked), drain units started again, then `rigctl
    verify`'s suites. Only a rig that verifies is done; the others are reported with the
    state they were left in. Ctrl-C lets the batch in flight finish, records everything and
    stops. The run record is under $RIGCTL_HOME/rollouts/<id>/; --resume continues it.
    Exit 0 every rig done (busy rigs skipped allowed), 1 a rig failed, the budget or a
    stop ended the rollout, 2 input error (nothing touched).
    """
    from rigctl.cli import _run
    from rigctl.errors import InputError
    from rigctl.fleet import records
    from rigctl.fleet import update as up

    if retry_failed and resume is None:
        raise InputError("--retry-failed only applies to a resumed rollout",
                         fix="add --resume [ID]")
    rec = None
    if resume is not None:
        if check or hosts or limit or canary is not None or batch is not None:
            raise InputError("--resume continues a recorded plan: it takes no HOSTS, --limit, "
                             "--canary, --batch or --check",
                             fix=f"rigctl fleet update --resume {resume if resume != 'latest' else ''}"
                             .rstrip())
        rec = up.Record.load(resume)
        if rec.data.get("state") == up.R_DONE:
            raise InputError(f"rollout {rec.id} is already done", fix="start a new rollout")
        opts_rec = rec.data.get("options") or {}
        inventory = inventory or tuple(rec.data.get("inventory") or ())
        paths, inv, selected = _run.select_hosts(inventory, tuple(rec.data["rigs"]), None)
        missing = [r for r in rec.data["rigs"] if r not in selected]
        if missing:
            raise InputError(f"--resume {rec.id}: {', '.join(missing)} no longer in the inventory",
                             fix="resume with the rollout's inventory (-i), or start a new rollout")
        opts = up.Options(canary=opts_rec.get("canary", 1), batch=opts_rec.get("batch", up.DEFAULT_BATCH),
                          max_fail=max_fail if max_fail is not None else opts_rec.get("max_fail"),
                          force=force or False, pause=pause, confirm=confirm,
                          reboot_timeout=reboot_timeout or opts_rec.get("reboot_timeout")
                          or up.DEFAULT_REBOOT_TIMEOUT, verbose=verbose)
        opts_rec["max_fail"] = opts.max_fail
        todo = up.resume_todo(rec, retry_failed)
    else:
        paths, inv, selected = _run.select_hosts(inventory, hosts, limit)
        opts = up.Options(canary=1 if canary is None else canary, batch=batch or up.DEFAULT_BATCH,
                          max_fail=max_fail, force=force, pause=pause, confirm=confirm,
                          reboot_timeout=reboot_timeout or up.DEFAULT_REBOOT_TIMEOUT,
                          verbose=verbose)
        up.parse_max_fail(opts.max_fail)
        todo = up.plan_batches(selected, opts.canary, opts.batch)
    if len(paths) != 1:
        raise InputError("fleet update takes one inventory (file or directory): its verify step "
                         "reads one", fix="merge the inventories into one directory and pass it with -i")
    if check:
        plan = up.check_plan(paths, inv, selected, todo, opts)
        click.echo(up.json_dumps(plan)) if as_json else _render_check(plan)
        ctx.exit(0 if plan["ok"] else 1)
    if rec is None:
        addrs = {h: records.address(h, inv.host_vars(h)) for h in selected}
        rec = up.Record.create(paths, opts.recorded(), todo, addrs)
        up._say(f"rollout {rec.id}: {len(selected)} rig(s) in {len(todo)} batch(es); "
                f"record {rec.dir}")
    else:
        up._say(f"resuming rollout {rec.id}: {sum(len(b) for b in todo)} rig(s) to run")

    with up.Stop() as stop:
        rec = up.Rollout(rec, paths, inv, opts, stop=stop, confirm=confirm_between_batches(stop)
                         ).run(todo)
    if junit:
        up.write_junit(rec, junit)
    if as_json:
        click.echo(up.json_dumps(up.as_json(rec)))
    else:
        _render_update(rec)
    ctx.exit(up.exit_code(rec))
