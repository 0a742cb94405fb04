"""Progress while a playbook runs (stderr) and the summary after it (stdout).

On a TTY: a live rich table, one row per host with its current task and counts. Otherwise
plain lines, one per host event that matters, so logs and CI stay readable.
"""

from __future__ import annotations

import sys
import time

import click

from rigctl.runner import RunResult

_STYLE = {
    "ok": "green",
    "changed": "yellow",
    "failed": "bold red",
    "unreachable": "bold red",
    "skipped": "cyan",
    "running": "blue",
    "waiting": "dim",
}


class PlainProgress:
    """One line per host result; ok/skipped only with -v."""

    def __init__(self, hosts: list[str], verbose: int = 0, stream=None):
        self.verbose = verbose
        self.stream = stream or sys.stderr
        self.started = time.monotonic()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def _line(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", file=self.stream, flush=True)

    def task_started(self, task: str) -> None:
        if self.verbose:
            self._line(f"TASK {task}")

    def host_event(self, host: str, task: str, status: str) -> None:
        if status in ("changed", "failed", "unreachable") or self.verbose:
            self._line(f"{host}: {status}: {task}")
        elif status == "ok":
            self._line(f"{host}: ok: {task}")


class LiveProgress:
    """A rich Live table refreshed as events arrive."""

    def __init__(self, hosts: list[str], verbose: int = 0):
        from rich.console import Console
        from rich.live import Live

        self.console = Console(stderr=True)
        self.rows = {
            h: {"status": "waiting", "task": "", "ok": 0, "changed": 0, "failed": 0} for h in hosts
        }
        self.task = ""
        self.started = time.monotonic()
        self.live = Live(
            self._render(), console=self.console, refresh_per_second=8, transient=True
        )

    def _render(self):
        from rich.table import Table

        table = Table(
            title=f"{self.task or 'starting'}  ({time.monotonic() - self.started:.0f}s)",
            title_justify="left",
            expand=False,
        )
        for col in ("host", "state", "task", "ok", "changed", "failed"):
            table.add_column(col)
        for host, row in self.rows.items():
            style = _STYLE.get(row["status"], "")
            table.add_row(
                host,
                f"[{style}]{row['status']}[/]",
                row["task"],
                str(row["ok"]),
                str(row["changed"]),
                str(row["failed"]),
            )
        return table

    def __enter__(self):
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        self.live.update(self._render())
        return self.live.__exit__(*exc)

    def task_started(self, task: str) -> None:
        self.task = task
        for row in self.rows.values():
            if row["status"] not in ("failed", "unreachable"):
                row["status"], row["task"] = "running", task
        self.live.update(self._render())

    def host_event(self, host: str, task: str, status: str) -> None:
        row = self.rows.setdefault(
            host, {"status": "", "task": "", "ok": 0, "changed": 0, "failed": 0}
        )
        row["task"] = task
        row["status"] = status
        if status in ("ok", "changed", "failed"):
            row[status if status != "ok" else "ok"] += 1
        elif status == "unreachable":
            row["failed"] += 1
        self.live.update(self._render())


def make_progress(hosts: list[str], verbose: int = 0, quiet: bool = False):
    if quiet:
        return None
    from rigctl.runner import stderr_is_tty

    if stderr_is_tty():
        return LiveProgress(hosts, verbose)
    return PlainProgress(hosts, verbose)


class _Null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def progress_context(progress):
    return progress if progress is not None else _Null()


def print_summary(result: RunResult, title: str) -> None:
    """The per-host table, then the failures with their messages and the artifacts path."""
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        console = Console()
        table = Table(title=title, title_justify="left")
        for col in ("host", "result", "ok", "changed", "failed", "unreachable", "skipped"):
            table.add_column(col)
        for host, st in result.hosts.items():
            table.add_row(
                host,
                f"[{_STYLE.get(st.status, '')}]{st.status}[/]",
                str(st.ok),
                str(st.changed),
                str(st.failed),
                str(st.unreachable),
                str(st.skipped),
            )
        console.print(table)
    else:
        click.echo(title)
        fmt = "{:<24} {:<12} {:>4} {:>8} {:>7} {:>12} {:>8}"
        click.echo(fmt.format("host", "result", "ok", "changed", "failed", "unreachable", "skipped"))
        for host, st in result.hosts.items():
            click.echo(fmt.format(host, st.status, st.ok, st.changed, st.failed, st.unreachable, st.skipped))
    if result.check_mode:
        click.echo("check mode: nothing was changed on any host")
    for warning in result.warnings:
        click.echo(f"warning: {warning['host']}: {warning['message']}")
    for change in result.changes:
        click.echo(f"changed: {change['host']}: {change['task']}")
    for failure in result.failures:
        kind = "unreachable" if failure.unreachable else "failed"
        click.echo(f"{kind}: {failure.host}: task '{failure.task}':", err=True)
        for line in failure.message.splitlines():
            click.echo(f"    {line}", err=True)
    if result.failures or not result.ok:
        click.echo(f"run artifacts kept in {result.artifacts}", err=True)
