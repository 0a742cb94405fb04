"""Run playbooks through ansible-runner, with live progress and a per-host summary.

Results come from ansible-runner's event stream (never from parsing ansible-playbook's
text output). Every run keeps its artifacts (job events, stdout, stats) under
``<state home>/runs/<id>/`` for post-mortems; the summary names that path.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from rigctl import paths

KEEP_RUNS = 50

_HOST_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
    "runner_item_on_failed": "failed",
}


@dataclass
class Failure:
    host: str
    task: str
    message: str
    unreachable: bool = False

    def as_dict(self):
        return {
            "host": self.host,
            "task": self.task,
            "message": self.message,
            "unreachable": self.unreachable,
        }


@dataclass
class HostStats:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0

    @property
    def status(self) -> str:
        if self.unreachable:
            return "unreachable"
        if self.failed:
            return "failed"
        if self.changed:
            return "changed"
        return "ok"

    def as_dict(self):
        return {
            "ok": self.ok,
            "changed": self.changed,
            "failed": self.failed,
            "unreachable": self.unreachable,
            "skipped": self.skipped,
            "status": self.status,
        }


@dataclass
class RunResult:
    playbook: str
    status: str  # successful | failed | timeout | canceled
    rc: int
    artifacts: Path
    hosts: dict[str, HostStats] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    changes: list[dict] = field(default_factory=list)  # {host, task} of every change
    warnings: list[dict] = field(default_factory=list)  # {host, task, message} from modules
    host_facts: dict[str, dict] = field(default_factory=dict)  # ansible_facts set by modules
    check_mode: bool = False
    # Ctrl-C (see Interrupt): None, or {"how": "stopped" | "cancelled", "stopped_before":
    # {"task", "role"} (stopped: the first task not run; None: the play had ended),
    # "in_flight": {"task", "role", "hosts"} (cancelled: the task cut, on these hosts),
    # "last_done": {host: {"task", "role"}} (each host's last task that ran, not skipped)}
    interrupted: dict | None = None

    @property
    def ok(self) -> bool:
        return (self.rc == 0 and not self.interrupted
                and not any(h.failed or h.unreachable for h in self.hosts.values()))

    def reboots(self) -> dict[str, list[str]]:
        """Rigs that need a reboot, with the reasons: the last reboot mark each reported
        (`rig_reboot` from the rig_reboot_mark module, else `rig_host.reboot` from rig_facts)."""
        out = {}
        for host, facts in sorted(self.host_facts.items()):
            mark = facts.get("rig_reboot") or (facts.get("rig_host") or {}).get("reboot") or {}
            if isinstance(mark, dict) and mark.get("required"):
                out[host] = [str(r) for r in mark.get("reasons") or ()]
        return out

    def as_dict(self):
        return {
            "playbook": self.playbook,
            "ok": self.ok,
            "status": self.status,
            "rc": self.rc,
            "check_mode": self.check_mode,
            "hosts": {name: stats.as_dict() for name, stats in self.hosts.items()},
            "changes": self.changes,
            "warnings": self.warnings,
            "reboot_required": self.reboots(),
            "failures": [f.as_dict() for f in self.failures],
            "interrupted": self.interrupted,
            "artifacts": str(self.artifacts),
        }


def _failure_message(res: dict) -> str:
    if not isinstance(res, dict):
        return str(res)
    parts = []
    msg = res.get("msg")
    if msg:
        parts.append(str(msg).strip())
    for key in ("stderr", "module_stderr"):
        value = res.get(key)
        if value and str(value).strip() and str(value).strip() not in parts:
            parts.append(str(value).strip())
    if not parts and res.get("results"):
        for item in res["results"]:
            if isinstance(item, dict) and item.get("failed"):
                parts.append(_failure_message(item))
    from rigctl.core.credurl import mask_text  # a URL's credentials never reach the summary

    return mask_text("\n".join(parts)) or "task failed (no message)"


def new_run_dir(kind: str, root: Path | None = None) -> Path:
    """A fresh run directory under ``root`` (default: ``<state home>/runs``, pruned to the
    last KEEP_RUNS; a caller's own root, e.g. a rollout's record, is not pruned)."""
    own = root is None
    root = paths.runs_dir() if own else Path(root)
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = root / f"{stamp}-{kind}-{uuid.uuid4().hex[:6]}"
    run_dir.mkdir(mode=0o700)
    if own:
        _prune(root)
    return run_dir


def _prune(root: Path) -> None:
    runs = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name)
    for old in runs[:-KEEP_RUNS]:
        shutil.rmtree(old, ignore_errors=True)


def ansible_env(control_digest: str | None = None, timeout: int | None = None) -> dict[str, str]:
    """Environment for every Ansible process rigctl starts (playbooks, ad-hoc modules,
    testinfra). It overrides the caller's environment key by key (ansible-runner merges
    it over os.environ, and would otherwise set ANSIBLE_HOST_KEY_CHECKING=False when the
    caller leaves it unset): host key checking is always on, StrictHostKeyChecking=yes
    comes first on every ssh command line, and ControlMaster sockets live in a directory
    named by ``control_digest`` (the known host keys the gate accepted, see
    rigctl.hostkeys; a fresh directory when None), so no master opened before a key change
    carries a run. ``timeout``: the SSH connect timeout (default: the setting)."""
    from rigctl import hostkeys

    adir = paths.ansible_dir()
    # ansible-runner and testinfra start `ansible-playbook`, `ansible`, `ansible-inventory`
    # by name: use the ones installed next to this Python, also when the venv is not active.
    bindir = os.path.dirname(sys.executable)
    cfg = adir / "ansible.cfg"
    return {
        "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
        "ANSIBLE_CONFIG": str(cfg),
        "ANSIBLE_ROLES_PATH": str(adir / "roles"),
        "ANSIBLE_LIBRARY": str(adir / "plugins" / "modules"),
        "ANSIBLE_MODULE_UTILS": str(paths.module_utils_dir()),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_SSH_HOST_KEY_CHECKING": "True",
        "ANSIBLE_SSH_ARGS": hostkeys.config_ssh_args(cfg),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": hostkeys.control_path_dir(control_digest),
        "ANSIBLE_SSH_CONTROL_PATH": "%(directory)s/%%C",
        "ANSIBLE_TIMEOUT": str(timeout or hostkeys.connect_timeout()),
    }


STRATEGY = "rigctl_stoppable"  # rigctl/strategy/rigctl_stoppable.py
STOP_FILE_ENV = "RIGCTL_STOP_FILE"  # the same name in the plugin (it never imports rigctl)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class SigintScope:
    """A context manager that routes SIGINT to ``self._handler`` while it is entered (main
    thread only: signal handlers can be set nowhere else) and puts the previous handler
    back on exit. Interrupt (here) and the rollout's Stop (rigctl.fleet.update) build on it."""

    _old = None

    def _handler(self, signum, frame) -> None:
        raise NotImplementedError

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None
        return False


class Interrupt(SigintScope):
    """Ctrl-C (SIGINT) while rigctl runs playbooks, as a context manager around the runs.

    The first Ctrl-C stops each play between two tasks: the task running on the rigs
    finishes there, no new task starts, the handlers already notified still run (the
    strategy plugin rigctl_stoppable, told through the run's stop file). A second one
    cancels the run at once (ansible-runner's cancel: ansible-playbook is killed, the task
    in flight is cut and may be left half done). A third one raises KeyboardInterrupt.
    Ctrl-C reaches rigctl only: ansible-runner starts ansible-playbook in a pty of its own,
    and with a cancel callback given it installs no SIGINT handler of its own (which would
    cancel at the first Ctrl-C)."""

    def __init__(self, say=None):
        self.requested = False
        self.abort = False
        self._files: list[Path] = []
        self._say = say or _say

    def stop_file(self, run_dir: Path) -> Path:
        """The stop file of a run in ``run_dir`` (created at once when a stop was asked)."""
        path = Path(run_dir) / "rigctl-stop"
        self._files.append(path)
        if self.requested:
            path.touch()
        return path

    def cancelled(self) -> bool:
        """ansible-runner's cancel callback: True after the second Ctrl-C."""
        return self.abort

    def request(self) -> None:
        """What one Ctrl-C does (the SIGINT handler calls it)."""
        if self.abort:
            raise KeyboardInterrupt
        if self.requested:
            self.abort = True
            self._say("Ctrl-C again: cancelling the run now; the task in flight is cut and may "
                      "be left half done on the rigs")
            return
        self.requested = True
        for path in self._files:
            try:
                path.touch()
            except OSError:
                pass
        self._say("Ctrl-C: the task running on the rigs finishes, then the play stops (no new "
                  "task starts; handlers already notified still run). Ctrl-C again cancels at "
                  "once, cutting the task in flight")

    def _handler(self, signum, frame) -> None:
        self.request()


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_playbook(
    name: str,
    inventory: list[str],
    *,
    limit: str | None = None,
    check: bool = False,
    diff: bool = False,
    verbosity: int = 0,
    extravars: dict | None = None,
    progress=None,
    kind: str | None = None,
    control_digest: str | None = None,
    run_root: Path | None = None,
    cancel_callback=None,
    interrupt: Interrupt | None = None,
) -> RunResult:
    """Run playbooks/<name> and return what happened per host. ``run_root``: where the
    run's directory goes (default ``<state home>/runs``); ``cancel_callback``:
    ansible-runner's (polled; True stops the run); ``interrupt``: Ctrl-C stops the play
    between tasks, twice cancels it (see Interrupt; ``RunResult.interrupted`` says what
    happened)."""
    import ansible_runner  # slow import: only when a playbook really runs

    playbook = paths.playbook(name)
    run_dir = new_run_dir(kind or Path(name).stem, run_root)
    cmdline = []
    if check:
        cmdline.append("--check")
    if diff:
        cmdline.append("--diff")

    result = RunResult(
        playbook=name, status="running", rc=-1, artifacts=run_dir / "artifacts", check_mode=check
    )
    lock = threading.Lock()
    current_task = {"name": "", "role": "", "done": set()}
    last_done: dict[str, dict] = {}  # host: {"task", "role"} of its last task that ran
    seen: dict[str, HostStats] = {}  # per-host counts from the events (a killed run has no stats)
    stopped_hosts: set[str] = set()  # failed or unreachable: they run no further task

    def on_event(event: dict) -> bool:
        kind_ = event.get("event", "")
        data = event.get("event_data", {}) or {}
        with lock:
            if kind_ in ("playbook_on_task_start", "playbook_on_handler_task_start"):
                current_task["name"] = data.get("task") or data.get("name") or ""
                current_task["role"] = data.get("role") or ""
                current_task["done"] = set()
                if progress and kind_ == "playbook_on_task_start":
                    progress.task_started(current_task["name"], data)
            elif kind_ in _HOST_EVENTS:
                host = data.get("host") or "?"
                task = data.get("task") or current_task["name"]
                res = data.get("res") or {}
                status = _HOST_EVENTS[kind_]
                if not kind_.startswith("runner_item_"):
                    current_task["done"].add(host)
                    if status != "skipped":
                        last_done[host] = {"task": task, "role": data.get("role") or ""}
                    st = seen.setdefault(host, HostStats())
                    attr = {"ok": "ok", "failed": "failed", "unreachable": "unreachable",
                            "skipped": "skipped"}[status]
                    setattr(st, attr, getattr(st, attr) + 1)
                    if status == "ok" and isinstance(res, dict) and res.get("changed"):
                        st.changed += 1
                    if status in ("failed", "unreachable") and not data.get("ignore_errors"):
                        stopped_hosts.add(host)
                if status == "ok" and isinstance(res, dict) and res.get("changed"):
                    status = "changed"
                    change = {"host": host, "task": task}
                    if diff and res.get("diff"):  # --diff: the module's before/after
                        change["diff"] = res["diff"]
                    result.changes.append(change)
                if status in ("failed", "unreachable") and not data.get("ignore_errors"):
                    if kind_ != "runner_item_on_failed":
                        result.failures.append(
                            Failure(host, task, _failure_message(res), status == "unreachable")
                        )
                if isinstance(res, dict):
                    for message in res.get("warnings") or ():
                        result.warnings.append({"host": host, "task": task,
                                                "message": _failure_message({"msg": message})})
                if isinstance(res, dict) and isinstance(res.get("ansible_facts"), dict):
                    result.host_facts.setdefault(host, {}).update(res["ansible_facts"])
                if progress:
                    progress.host_event(host, task, status, data)
        return True

    env = ansible_env(control_digest)
    stop_file = None
    settings = None
    if interrupt is not None:
        stop_file = interrupt.stop_file(run_dir)
        env.update({"ANSIBLE_STRATEGY": STRATEGY,
                    "ANSIBLE_STRATEGY_PLUGINS": str(paths.PACKAGE_DIR / "strategy"),
                    STOP_FILE_ENV: str(stop_file)})
        cancel_callback = cancel_callback or interrupt.cancelled
        settings = {"pexpect_timeout": 1}  # a second Ctrl-C cancels within a second
    runner = ansible_runner.run(
        private_data_dir=str(run_dir),
        project_dir=str(paths.ansible_dir()),
        playbook=str(playbook),
        inventory=[str(Path(p).resolve()) for p in inventory],
        limit=limit,
        cmdline=" ".join(cmdline) or None,
        verbosity=verbosity or None,
        extravars=extravars or None,
        envvars=env,
        event_handler=on_event,
        cancel_callback=cancel_callback,
        settings=settings,
        quiet=True,
        ident="run",
    )
    result.status = runner.status
    result.rc = runner.rc
    result.artifacts = Path(runner.config.artifact_dir)
    stats = runner.stats or {}
    hosts: dict[str, HostStats] = {}
    for key, attr in (
        ("ok", "ok"),
        ("changed", "changed"),
        ("failures", "failed"),
        ("dark", "unreachable"),
        ("skipped", "skipped"),
        ("rescued", "rescued"),
        ("ignored", "ignored"),
    ):
        for host, count in (stats.get(key) or {}).items():
            setattr(hosts.setdefault(host, HostStats()), attr, count)
    for host in stats.get("processed", {}) or {}:
        hosts.setdefault(host, HostStats())
    if not hosts and runner.status == "canceled":  # killed: no stats event, the events' counts
        hosts = dict(seen)
    result.hosts = dict(sorted(hosts.items()))
    if interrupt is not None and interrupt.requested:
        cancelled = runner.status == "canceled"
        targets = limit.split(",") if limit else sorted(seen)
        cut = [h for h in targets if h not in current_task["done"] and h not in stopped_hosts]
        result.interrupted = {
            "how": "cancelled" if cancelled else "stopped",
            "stopped_before": None if cancelled else _read_json(Path(f"{stop_file}.json")),
            "in_flight": ({"task": current_task["name"], "role": current_task["role"], "hosts": cut}
                          if cancelled and cut and current_task["name"] else None),
            "last_done": {h: last_done[h] for h in sorted(last_done)},
        }
    elif not result.hosts and result.rc != 0 and not result.failures:
        tail = _stdout_tail(result.artifacts)
        result.failures.append(
            Failure("-", "ansible-playbook", tail or f"exited with rc {result.rc}")
        )
    return result


def _stdout_tail(artifacts: Path, lines: int = 15) -> str:
    try:
        text = (artifacts / "stdout").read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def stderr_is_tty() -> bool:
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
