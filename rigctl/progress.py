"""Progress while a playbook runs (stderr) and the summary after it (stdout).

On a TTY: a live rich table, one row per host with its current step, how long it has run,
and counts. Otherwise plain lines, one per meaningful step per host, so logs and CI stay
readable. Both drop Ansible's plumbing (argument-spec checks, includes, set_fact) unless
-v or it failed, and both show a long step (a DKMS build) still running with its time.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

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


# Tasks that are Ansible's plumbing, not a step a rig owner cares about: argument checks
# of every role, includes (their tasks follow under the same names), fact juggling.
# Shown with -v, and always when they fail.
INTERNAL_ACTIONS = frozenset(
    {
        "validate_argument_spec",
        "include_tasks",
        "import_tasks",
        "include_role",
        "import_role",
        "include_vars",
        "set_fact",
        "meta",
    }
)
INTERNAL_PREFIXES = ("Validating arguments against arg spec",)
# A step running this long shows it is still running (then every TICK_EVERY_S in plain lines).
LONG_STEP_S = 15.0
TICK_EVERY_S = 30.0
_SEVERITY = {"skipped": -1, "ok": 0, "changed": 1, "failed": 2, "unreachable": 2}


def is_internal(task: str, data: dict | None = None) -> bool:
    action = str((data or {}).get("task_action") or "").rsplit(".", 1)[-1]
    return action in INTERNAL_ACTIONS or task.startswith(INTERNAL_PREFIXES)


def step_label(task: str, data: dict | None = None) -> str:
    """`role / task` (or the task alone for a play's own tasks)."""
    role = (data or {}).get("role") or ""
    return f"{role} / {task}" if role else task


def fmt_elapsed(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


@dataclass
class _Row:
    status: str = "waiting"  # waiting | running | ok | changed | failed | unreachable
    step: str = ""  # the last meaningful step (running or done)
    running: str | None = None  # the meaningful step running now
    since: float = 0.0
    next_tick: float = 0.0
    last_line: tuple[str, str] | None = None  # (step, status) of the last line printed
    ok: int = 0
    changed: int = 0
    failed: int = 0


class StepTracker:
    """What each rig is doing, from the runner's events, as one line per meaningful step
    per rig: Ansible's internals dropped (unless verbose or failed), a step's name once per
    rig, skipped steps only with -v, and a step that runs long reported as still running
    with its elapsed time (`ticks`). Pure: no output, an injectable clock (tests)."""

    def __init__(self, hosts: list[str], verbose: int = 0, clock=time.monotonic):
        self.verbose = verbose
        self.clock = clock
        self.rows: dict[str, _Row] = {h: _Row() for h in hosts}

    def _row(self, host: str) -> _Row:
        return self.rows.setdefault(host, _Row())

    def task_started(self, task: str, data: dict | None = None) -> list[str]:
        internal = is_internal(task, data) and not self.verbose
        label = step_label(task, data)
        now = self.clock()
        for row in self.rows.values():
            if row.status in ("failed", "unreachable"):
                continue
            row.running = None if internal else label
            if not internal:
                row.since, row.next_tick = now, now + LONG_STEP_S
        return [f"TASK {label}"] if self.verbose and not internal else []

    def host_event(self, host: str, task: str, status: str, data: dict | None = None) -> list[str]:
        row = self._row(host)
        label = step_label(task, data)
        took = self.clock() - row.since if row.running == label else 0.0
        row.running = None
        if status in ("ok", "changed", "failed"):
            setattr(row, status, getattr(row, status) + 1)
        elif status == "unreachable":
            row.failed += 1
        bad = status in ("failed", "unreachable")
        if not bad:
            if is_internal(task, data) and not self.verbose:
                return []
            if status == "skipped" and not self.verbose:
                return []
        if status != "skipped":
            row.step, row.status = label, status
        if row.last_line and row.last_line[0] == label and _SEVERITY.get(status, 0) <= _SEVERITY.get(
            row.last_line[1], 0
        ):
            return []  # the same step again (a retry, a loop item, a same-named task)
        row.last_line = (label, status)
        suffix = f" ({fmt_elapsed(took)})" if took >= LONG_STEP_S else ""
        return [f"{host}: {status}: {label}{suffix}"]

    def ticks(self) -> list[str]:
        """`HOST: still running 1m30s: STEP` for every step past LONG_STEP_S, then every
        TICK_EVERY_S."""
        now = self.clock()
        lines = []
        for host, row in self.rows.items():
            if row.running and now >= row.next_tick:
                lines.append(f"{host}: still running {fmt_elapsed(now - row.since)}: {row.running}")
                row.next_tick = now + TICK_EVERY_S
        return lines

    def elapsed(self, host: str) -> float | None:
        row = self.rows.get(host)
        return self.clock() - row.since if row and row.running else None


class PlainProgress:
    """Plain lines on stderr (logs, CI): one per meaningful step per rig, and a `still
    running` line for a long step (a DKMS build) every TICK_EVERY_S."""

    def __init__(self, hosts: list[str], verbose: int = 0, stream=None, clock=time.monotonic):
        self.stream = stream or sys.stderr
        self.clock = clock
        self.started = clock()
        self.tracker = StepTracker(hosts, verbose, clock)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self):
        self._thread = threading.Thread(target=self._tick_loop, name="rigctl-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        return False

    def _tick_loop(self) -> None:
        while not self._stop.wait(1.0):
            self.tick()

    def _emit(self, lines: list[str]) -> None:
        for text in lines:
            print(f"[{self.clock() - self.started:6.1f}s] {text}", file=self.stream, flush=True)

    def tick(self) -> None:
        with self._lock:
            self._emit(self.tracker.ticks())

    def task_started(self, task: str, data: dict | None = None) -> None:
        with self._lock:
            self._emit(self.tracker.task_started(task, data))

    def host_event(self, host: str, task: str, status: str, data: dict | None = None) -> None:
        with self._lock:
            self._emit(self.tracker.host_event(host, task, status, data))


class LiveProgress:
    """A rich Live table, one row per rig: its state, its current (or last) meaningful
    step, how long that step has been running, and its counts; redrawn every refresh, so
    the elapsed time of a long step keeps moving."""

    def __init__(self, hosts: list[str], verbose: int = 0):
        from rich.console import Console
        from rich.live import Live

        self.console = Console(stderr=True)
        self.tracker = StepTracker(hosts, verbose)
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self.live = Live(
            console=self.console, refresh_per_second=4, transient=True, get_renderable=self._render
        )

    def _render(self):
        from rich.table import Table

        with self._lock:
            table = Table(
                title=f"rigctl  ({fmt_elapsed(time.monotonic() - self.started)})",
                title_justify="left",
                expand=False,
            )
            for col in ("host", "state", "step", "for", "ok", "changed", "failed"):
                table.add_column(col)
            for host, row in self.tracker.rows.items():
                state = "running" if row.running else row.status
                took = self.tracker.elapsed(host)
                table.add_row(
                    host,
                    f"[{_STYLE.get(state, '')}]{state}[/]",
                    row.running or row.step,
                    fmt_elapsed(took) if took is not None else "",
                    str(row.ok),
                    str(row.changed),
                    str(row.failed),
                )
            return table

    def __enter__(self):
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        self.live.refresh()
        return self.live.__exit__(*exc)

    def task_started(self, task: str, data: dict | None = None) -> None:
        with self._lock:
            self.tracker.task_started(task, data)

    def host_event(self, host: str, task: str, status: str, data: dict | None = None) -> None:
        with self._lock:
            self.tracker.host_event(host, task, status, data)


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


def _diff_lines(diff) -> list[str]:
    """Ansible `diff` results (a dict or a list of them) as unified diff lines; diffs with
    a ready-made `prepared` text are shown as they are."""
    lines: list[str] = []
    for item in diff if isinstance(diff, list) else [diff] if diff else []:
        if not isinstance(item, dict):
            continue
        if item.get("prepared"):
            lines.extend(str(item["prepared"]).splitlines())
            continue
        before, after = item.get("before"), item.get("after")
        if not isinstance(before, str) or not isinstance(after, str) or before == after:
            continue
        import difflib

        lines.extend(difflib.unified_diff(
            before.splitlines(), after.splitlines(), lineterm="",
            fromfile=f"{item.get('before_header') or 'before'}",
            tofile=f"{item.get('after_header') or 'after'}"))
    return lines


def interrupt_lines(result: RunResult, again: str | None = None) -> list[str]:
    """After Ctrl-C (``result.interrupted``): how the run ended and what each rig was left
    as, as far as the events say, and the command that finishes the job."""
    info = result.interrupted
    if not info:
        return []

    def label(t: dict | None) -> str:
        return step_label(t["task"], t) if t else ""

    def counts(host: str) -> str:
        st = result.hosts.get(host)
        return f" ({st.ok} ok, {st.changed} changed)" if st else ""

    failed = {f.host for f in result.failures}
    last = info.get("last_done") or {}
    lines = []
    if info["how"] == "stopped":
        before = info.get("stopped_before")
        lines.append("interrupted (Ctrl-C): the play stopped between two tasks; no task was cut")
        lines.append(f"not run: '{label(before)}' and every task after it" if before
                     else "the play had no task left to skip: it ran to its end")
        for host in result.hosts:
            if host in failed:
                continue
            if before:
                done = f"the last one '{label(last[host])}'" if host in last else "none"
                lines.append(f"{host}: left as: partly provisioned: every task that started "
                             f"finished, {done}{counts(host)}; the rest not run")
            else:
                lines.append(f"{host}: left as: every task of the play ran{counts(host)}")
    else:
        flight = info.get("in_flight") or {}
        cut = set(flight.get("hosts") or ())
        lines.append("cancelled (Ctrl-C twice): ansible-playbook was killed"
                     + (f" during '{label(flight)}'" if flight else ""))
        hosts = list(dict.fromkeys([*result.hosts, *sorted(cut)]))
        for host in hosts:
            prev = f"; before it '{label(last[host])}' finished" if host in last else ""
            if host in cut:
                lines.append(f"{host}: left as: unknown: '{label(flight)}' was cut on it and may "
                             f"be half done{prev}{counts(host)}")
            elif host not in failed:
                lines.append(f"{host}: left as: partly provisioned: the tasks up to "
                             f"'{label(last.get(host))}' finished{counts(host)}; the rest not run")
    if again:
        lines.append(f"to finish: {again}")
    return lines


def host_result(result: RunResult, host: str) -> str:
    """A host's word in the summary table: its Ansible status, or after Ctrl-C ``stopped``
    (the play stopped between tasks) or ``cut`` (the run was cancelled during its task)."""
    st = result.hosts[host]
    info = result.interrupted
    if not info or st.status in ("failed", "unreachable"):
        return st.status
    if info["how"] == "cancelled" and host in ((info.get("in_flight") or {}).get("hosts") or ()):
        return "cut"
    return "stopped" if info.get("stopped_before") or info["how"] == "cancelled" else st.status


def print_summary(result: RunResult, title: str, again: str | None = None) -> None:
    """The per-host table, then the failures with their messages, what a Ctrl-C left
    (``again``: the command that finishes the job) and the artifacts path."""
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        console = Console()
        table = Table(title=title, title_justify="left")
        for col in ("host", "result", "ok", "changed", "failed", "unreachable", "skipped"):
            table.add_column(col)
        for host, st in result.hosts.items():
            word = host_result(result, host)
            table.add_row(
                host,
                f"[{_STYLE.get(word, 'bold yellow')}]{word}[/]",
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
            click.echo(fmt.format(host, host_result(result, host), st.ok, st.changed, st.failed,
                                  st.unreachable, st.skipped))
    if result.check_mode:
        click.echo("check mode: nothing was changed on any host")
    for host, reasons in result.reboots().items():
        click.echo(f"reboot needed: {host}: {'; '.join(reasons) or 'no reason recorded'}")
    for warning in result.warnings:
        click.echo(f"warning: {warning['host']}: {warning['message']}")
    for change in result.changes:
        click.echo(f"changed: {change['host']}: {change['task']}")
        for line in _diff_lines(change.get("diff")):
            click.echo(f"    {line}")
    for failure in result.failures:
        kind = "unreachable" if failure.unreachable else "failed"
        click.echo(f"{kind}: {failure.host}: task '{failure.task}':", err=True)
        for line in failure.message.splitlines():
            click.echo(f"    {line}", err=True)
    for line in interrupt_lines(result, again):
        click.echo(line)
    if result.failures or not result.ok:
        click.echo(f"run artifacts kept in {result.artifacts}", err=True)
