"""`rigctl fleet update`: a rolling, canaried, resumable rollout of the inventory's state.

The rollout is planned once (``plan_batches``: a canary batch, then ``--batch`` sizes like
Ansible's ``serial``), recorded under ``$RIGCTL_HOME/rollouts/<id>/rollout.json`` and
carried out batch by batch. rigctl owns the failure budget (``Budget``): it counts failed
and unreachable rigs of the whole rollout, which Ansible's ``max_fail_percentage`` cannot
(its count restarts every batch and ignores unreachable hosts).

Per batch, the rigs go through these steps together, each job one ansible-runner run over
the rigs still in the running (forks = the batch's size), so a rig that fails or does not
answer drops out and never stalls the others:

1. the SSH host key gate (rigctl.hostkeys): a rig whose key changed is never contacted;
2. one update job (playbooks/fleet_update.yml, step ``update`` in the record), three steps
   in one play so a no-op update costs one ansible-playbook start-up:
   prepare (rig_rollout step prepare): busy check (GPU compute processes, active
   ``rig_drain_units``; a busy rig is left untouched and skipped unless --force), drain
   units stopped; converge: the roles of playbooks/provision.yml, with
   ``rig_reboot_policy`` forced to ``never`` so that a pending reboot is only marked (their
   first facts give the driver before); finish (step finish, in the block's ``always``):
   drain units started again, the driver after and the boot read back, on every rig that
   got through prepare, its converge failed or not. Each failure is placed at its step by
   the task that failed;
3. reboot (playbooks/fleet_reboot.yml), for rigs the converge left with a pending reboot
   and whose ``rig_reboot_policy`` is ``auto`` (their finish in step 2 was deferred): wait
   up to --reboot-timeout, boot id checked;
4. finish after the reboot (fleet_rollout.yml, step finish; on a real GPU the loaded module
   must be the one asked for);
5. verify: rigctl verify's suites for the batch (rigctl.verify.run.run_suites).

Only a rig that verifies is ``done``. Every other rig ends ``failed``, ``unreachable``,
``skipped`` (busy) or ``not started``, with a ``state`` line saying what it was left as.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import re
import secrets
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rigctl.errors import InputError
from rigctl.fleet import records
from rigctl.runner import SigintScope

# rig results
DONE, FAILED, UNREACHABLE, SKIPPED, NOT_STARTED, RUNNING = (
    "done", "failed", "unreachable", "skipped", "not started", "running")
RESULTS = (DONE, FAILED, UNREACHABLE, SKIPPED, NOT_STARTED, RUNNING)
FAILING = (FAILED, UNREACHABLE)
# rollout states
R_RUNNING, R_DONE, R_FAILED, R_STOPPED = "running", "done", "failed", "stopped"

DEFAULT_BATCH = "20%"
DEFAULT_REBOOT_TIMEOUT = 600
MAX_FORKS = 50

_ENTRY = re.compile(r"^\s*(\d+)\s*(%?)\s*$")


# --- planning -----------------------------------------------------------------------------


def parse_batch(text: str) -> list[tuple[int, bool]]:
    """``--batch`` as a list of (value, is_percent): ``3``, ``25%``, ``1,5,20%``. Input error
    for anything else (zero, negative, over 100%)."""
    entries = []
    for part in str(text).split(","):
        m = _ENTRY.match(part)
        if not m or int(m.group(1)) < 1 or (m.group(2) and int(m.group(1)) > 100):
            raise InputError(
                f"--batch {text!r}: {part.strip()!r} is not a batch size",
                fix="give a count (3), a percentage of the rigs (25%) or a list whose last "
                "entry repeats (1,5,20%)",
            )
        entries.append((int(m.group(1)), bool(m.group(2))))
    return entries


def batch_size(entry: tuple[int, bool], total: int) -> int:
    """One entry as a number of rigs: a percentage is of every rig of the rollout,
    truncated, at least 1 (Ansible's ``serial`` rule)."""
    value, pct = entry
    return max(1, math.floor(total * value / 100)) if pct else value


def plan_batches(rigs: list[str], canary: int, batch: str) -> list[list[str]]:
    """The batches: the first ``canary`` rigs alone (none with 0), then ``batch`` sizes
    over the rest, the last entry repeating."""
    if canary < 0:
        raise InputError(f"--canary {canary}: not a number of rigs", fix="--canary 1 (or 0: none)")
    entries = parse_batch(batch)
    total = len(rigs)
    out: list[list[str]] = []
    rest = list(rigs)
    if canary:
        out.append(rest[:canary])
        rest = rest[canary:]
    i = 0
    while rest:
        n = batch_size(entries[min(i, len(entries) - 1)], total)
        out.append(rest[:n])
        rest = rest[n:]
        i += 1
    return out


def parse_max_fail(text: str | None) -> tuple[int, bool]:
    """``--max-fail N`` or ``P%`` as (value, is_percent); default 0 (no failure allowed)."""
    if text is None or str(text).strip() == "":
        return (0, False)
    m = re.match(r"^\s*(\d+)\s*(%?)\s*$", str(text))
    if not m or (m.group(2) and int(m.group(1)) > 100):
        raise InputError(f"--max-fail {text!r} is not a number of rigs or a percentage",
                         fix="--max-fail 2 (rigs) or --max-fail 10% (of the rollout's rigs)")
    return (int(m.group(1)), bool(m.group(2)))


@dataclass
class Budget:
    """The whole rollout's failure budget: ``allowed`` failed-or-unreachable rigs; it is
    spent when more than that failed."""

    allowed: int
    failed: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, max_fail: tuple[int, bool], total: int) -> Budget:
        value, pct = max_fail
        return cls(math.floor(total * value / 100) if pct else value)

    def count(self, rig: str, result: str) -> None:
        if result in FAILING:
            self.failed.add(rig)
        else:
            self.failed.discard(rig)

    @property
    def spent(self) -> bool:
        return len(self.failed) > self.allowed

    def as_dict(self) -> dict:
        return {"allowed": self.allowed, "failed": len(self.failed), "spent": self.spent}


# --- the record ---------------------------------------------------------------------------


def new_id(now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now(datetime.UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


@dataclass
class Record:
    """``rollouts/<id>/rollout.json``, written atomically at every change of state.

    ``{"schema": 1, "id", "started", "finished", "state", "inventory": [paths], "options":
    {canary, batch, max_fail, force, reboot_timeout}, "plan": {"batches": [[rig, ...],
    ...]}, "budget": {allowed, failed, spent}, "stop_reason", "runs": [{"step", "batch",
    "artifacts", "seconds"}], "rigs": {rig: {"address", "batch", "result", "state", "message",
    "started", "finished", "seconds", "driver_before", "driver_after", "rebooted",
    "verify", "attempts"}}}``"""

    path: Path
    data: dict

    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def dir(self) -> Path:
        return self.path.parent

    def save(self) -> None:
        records._write_json(self.path, self.data)

    def rig(self, name: str) -> dict:
        return self.data["rigs"][name]

    def set_rig(self, name: str, **values: Any) -> None:
        self.data["rigs"][name].update(values)

    @classmethod
    def create(cls, inventory: list[str], options: dict, batches: list[list[str]],
               addresses: dict[str, str], root: Path | None = None, rid: str | None = None
               ) -> Record:
        rid = rid or new_id()
        path = (root or records.rollouts_dir()) / rid / "rollout.json"
        rigs = {}
        for b, names in enumerate(batches, 1):
            for name in names:
                rigs[name] = {"address": addresses[name], "batch": b, "result": NOT_STARTED,
                              "state": "untouched", "message": "", "started": None,
                              "finished": None, "seconds": None, "driver_before": None,
                              "driver_after": None, "rebooted": False, "verify": None,
                              "attempts": 0}
        data = {"schema": records.SCHEMA, "id": rid, "started": records.now(),
                "finished": None, "state": R_RUNNING,
                "inventory": [str(Path(p).resolve()) for p in inventory],
                "options": options, "plan": {"batches": batches},
                "budget": None, "stop_reason": None, "runs": [], "rigs": rigs}
        rec = cls(path, data)
        rec.save()
        return rec

    @classmethod
    def load(cls, rid: str | None, root: Path | None = None) -> Record:
        """The rollout ``rid`` (None or ``latest``: the newest one)."""
        root = root or records.rollouts_dir()
        if rid in (None, "", "latest"):
            try:
                ids = sorted(p.name for p in root.iterdir() if (p / "rollout.json").is_file())
            except OSError:
                ids = []
            if not ids:
                raise InputError(f"--resume: no rollout recorded under {root}",
                                 fix="start one: rigctl fleet update -i INVENTORY")
            rid = ids[-1]
        path = root / str(rid) / "rollout.json"
        data = records._read_json(path)
        if not data or data.get("schema") != records.SCHEMA or not isinstance(data.get("rigs"), dict):
            raise InputError(f"--resume {rid}: no readable rollout record at {path}",
                             fix=f"see the rollouts under {root} (their ids) or start a new one")
        return cls(path, data)


def resume_todo(rec: Record, retry_failed: bool) -> list[list[str]]:
    """The rigs a resumed rollout runs, in their batches: every rig not done; failed and
    unreachable ones only with ``retry_failed``. A rig left ``running`` (the rollout was
    killed) runs again."""
    out = []
    for batch in rec.data["plan"]["batches"]:
        todo = [r for r in batch if rec.rig(r)["result"] != DONE
                and (retry_failed or rec.rig(r)["result"] not in FAILING)]
        if todo:
            out.append(todo)
    return out


def counts(rec: Record) -> dict[str, int]:
    c = {k: 0 for k in RESULTS}
    for r in rec.data["rigs"].values():
        c[r["result"]] = c.get(r["result"], 0) + 1
    return c


# --- what a rig says ----------------------------------------------------------------------


def driver_of(facts: dict | None) -> str | None:
    """``open 570.86.16``, ``p2p 575.51.02 [fork@commit]`` or ``none``, from the rig's facts
    (the same words as `rigctl fleet status`)."""
    if not isinstance(facts, dict) or not isinstance(facts.get("host"), dict):
        return None
    from rigctl.fleet import status as st

    return st.driver_text(st.driver_summary(facts["host"], facts.get("driver_record")))


def left_state(entry: dict) -> str:
    """What a rig was left as, in words, from its entry."""
    result, before, after = entry["result"], entry.get("driver_before"), entry.get("driver_after")
    if result == DONE:
        return "new state verified"
    if result == SKIPPED or entry.get("state") == "untouched":
        return "untouched"
    if after is None and str(entry.get("message") or "").startswith("reboot"):
        return "unknown: did not come back from its reboot"
    if after is None:
        return "unknown: not reachable after the change started"
    if before is not None and after == before:
        return f"previous driver kept ({after})"
    return f"driver now {after}, not verified"


# --- the run ------------------------------------------------------------------------------


@dataclass
class Options:
    canary: int = 1
    batch: str = DEFAULT_BATCH
    max_fail: str | None = None
    force: bool = False
    pause: float = 0
    confirm: bool = False
    reboot_timeout: int = DEFAULT_REBOOT_TIMEOUT
    verbose: int = 0

    def recorded(self) -> dict:
        return {"canary": self.canary, "batch": self.batch, "max_fail": self.max_fail,
                "force": self.force, "reboot_timeout": self.reboot_timeout}


class Stop(SigintScope):
    """Ctrl-C: the first SIGINT lets the rigs in flight finish their batch and stops
    before the next one; a second one cancels the running Ansible job (ansible-runner's
    cancel callback) and stops at once (rigs in flight are recorded as not finished).
    Every job gets ``cancelled`` as its cancel callback, so ansible-runner never installs
    its own SIGINT handler (which would cancel the job at the first Ctrl-C)."""

    def __init__(self):
        self.requested = False
        self.abort = False
        self.reason: str | None = None

    def cancelled(self) -> bool:
        return self.abort

    def check(self) -> None:
        """After a step: raise KeyboardInterrupt when a second Ctrl-C came."""
        if self.abort:
            raise KeyboardInterrupt

    def _handler(self, signum, frame):
        if self.requested:
            self.abort = True
            _say("Ctrl-C again: cancelling the running step")
            return
        self.requested = True
        self.reason = "interrupted (Ctrl-C)"
        _say("Ctrl-C: the rigs in flight finish their batch, then the rollout stops "
             "(Ctrl-C again to stop at once)")


def _say(text: str) -> None:
    import click

    click.echo(text, err=True)


@contextlib.contextmanager
def _forks(n: int):
    old = os.environ.get("ANSIBLE_FORKS")
    os.environ["ANSIBLE_FORKS"] = str(max(1, min(n, MAX_FORKS)))
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("ANSIBLE_FORKS", None)
        else:
            os.environ["ANSIBLE_FORKS"] = old


class Rollout:
    def __init__(self, rec: Record, paths: list[str], inv, opts: Options,
                 stop: Stop | None = None, confirm: Callable[[str], bool] | None = None):
        self.rec, self.paths, self.inv, self.opts = rec, paths, inv, opts
        self.stop = stop or Stop()
        self.confirm = confirm
        total = len(rec.data["rigs"])
        self.budget = Budget.of(parse_max_fail(opts.max_fail), total)
        for name, entry in rec.data["rigs"].items():
            self.budget.count(name, entry["result"])
        self.canary = rec.data["plan"]["batches"][0] if opts.canary else []
        self._t0: dict[str, float] = {}

    # -- bookkeeping
    def _finish_rig(self, name: str, result: str, message: str = "", **values) -> None:
        entry = self.rec.rig(name)
        entry.update(values)
        entry["result"] = result
        if message:
            entry["message"] = message
        entry["finished"] = records.now()
        if name in self._t0:
            entry["seconds"] = round(time.monotonic() - self._t0.pop(name), 1)
        entry["state"] = left_state(entry)
        self.budget.count(name, result)
        self.rec.data["budget"] = self.budget.as_dict()
        self.rec.save()
        tail = f": {message.splitlines()[0]}" if message else ""
        _say(f"{name}: {result}{tail}")

    def _job(self, playbook: str, rigs: list[str], batch_no: int, step: str, *, digest,
             extravars=None, progress=False):
        from rigctl.runner import run_playbook

        prog = None
        if progress:
            from rigctl.progress import make_progress

            prog = make_progress(rigs, self.opts.verbose)
        from rigctl.progress import progress_context

        started = time.monotonic()
        with _forks(len(rigs)), progress_context(prog):
            result = run_playbook(playbook, self.paths, limit=",".join(rigs),
                                  verbosity=self.opts.verbose, extravars=extravars,
                                  progress=prog, kind=f"b{batch_no}-{step}",
                                  control_digest=digest, run_root=self.rec.dir / "runs",
                                  cancel_callback=self.stop.cancelled)
        self.rec.data["runs"].append({"step": step, "batch": batch_no,
                                      "artifacts": str(result.artifacts),
                                      "seconds": round(time.monotonic() - started, 2)})
        self.stop.check()
        return result

    @staticmethod
    def _problems(result, rigs):
        """{rig: (result, message)} for the rigs a job failed or could not reach."""
        out = {}
        for f in result.failures:
            if f.host in rigs and f.host not in out:
                out[f.host] = (UNREACHABLE if f.unreachable else FAILED,
                               f"{f.task}: {f.message.strip()}")
        for host, stats in result.hosts.items():
            if host in rigs and host not in out and (stats.failed or stats.unreachable):
                out[host] = (UNREACHABLE if stats.unreachable else FAILED, "the step failed")
        for host in rigs:  # a rig the job never reported on (the run died)
            if host not in result.hosts and host not in out:
                out[host] = (FAILED, f"no result (ansible-playbook {result.status}, rc {result.rc})")
        return out

    # the update job's own tasks (playbooks/fleet_update.yml): everything else is the converge
    _PREPARE_TASK, _FINISH_TASK = "Rollout step prepare", "Rollout step finish"
    _ROLLOUT_TASKS = (_PREPARE_TASK, _FINISH_TASK, "Leave a busy rig untouched")

    @staticmethod
    def _facts(result, rig: str, step: str) -> dict:
        """What the rig_rollout module said for ``step`` in this job ({} when it did not run)."""
        return (result.host_facts.get(rig) or {}).get(f"rig_rollout_{step}") or {}

    @classmethod
    def _problems_by_step(cls, result, rigs) -> dict[str, dict]:
        """The update job's problems per step: {"prepare"|"converge"|"finish": {rig:
        (result, message)}}, each rig's first failure, placed by the task that failed (a rig
        the job failed without saying where, or never reported on, is placed at prepare when
        prepare said nothing for it)."""
        out: dict[str, dict] = {"prepare": {}, "converge": {}, "finish": {}}
        seen = set()
        for f in result.failures:
            if f.host not in rigs or f.host in seen:
                continue
            seen.add(f.host)
            step = ("prepare" if f.task == cls._PREPARE_TASK else
                    "finish" if f.task == cls._FINISH_TASK else "converge")
            out[step][f.host] = (UNREACHABLE if f.unreachable else FAILED,
                                 f"{f.task}: {f.message.strip()}")
        for host, problem in cls._problems(result, rigs).items():
            if host not in seen:
                out["converge" if cls._facts(result, host, "prepare") else "prepare"][host] = problem
        return out

    # -- one batch
    def run_batch(self, batch_no: int, rigs: list[str]) -> None:
        from rigctl.cli import _run

        n_batches = len(self.rec.data["plan"]["batches"])
        label = " (canary)" if rigs == self.canary and batch_no == 1 else ""
        _say(f"batch {batch_no}/{n_batches}{label}: {', '.join(rigs)}")
        for r in rigs:
            entry = self.rec.rig(r)
            entry.update(result=RUNNING, state="running", message="", started=records.now(),
                         finished=None, attempts=entry.get("attempts", 0) + 1,
                         rebooted=False, verify=None)
            self._t0[r] = time.monotonic()
        self.rec.save()
        live = list(rigs)

        # 1. host keys
        passed, digest, blocked = _run.gate(self.inv, live)
        for c in blocked:
            self._finish_rig(c.host, UNREACHABLE if c.outcome == "unreachable" else FAILED,
                             f"SSH host key check: {c.message}", state="untouched")
        live = [r for r in live if r in passed]
        if not live:
            return

        # 2-5. one job: prepare (driver before, busy check, drain), converge, finish
        auto = [r for r in live
                if self.inv.host_vars(r).get("rig_reboot_policy", "never") == "auto"]
        res = self._job("fleet_update.yml", live, batch_no, "update", digest=digest,
                        extravars={"rig_reboot_policy": "never", "rigctl_force": self.opts.force,
                                   "rigctl_reboot_auto": auto}, progress=True)
        steps = self._problems_by_step(res, live)
        for r, (result, msg) in steps["prepare"].items():
            self._finish_rig(r, result, f"preflight: {msg}", state="untouched")
        live = [r for r in live if r not in steps["prepare"]]
        for r in list(live):
            facts = self._facts(res, r, "prepare")
            conv = res.host_facts.get(r) or {}
            host = facts.get("host") or conv.get("rig_host") or {}
            self.rec.set_rig(r, driver_before=driver_of({"host": host,
                                                         "driver_record": facts.get("driver_record")}),
                             boot_before=facts.get("boot"), gpu_view=host.get("gpu_view"))
            if facts.get("busy") and not self.opts.force:
                what = [f"GPU process {a.get('pid')} ({a.get('name')})" for a in facts.get("apps") or []]
                what += [f"unit {u} active" for u in facts.get("units_active") or []]
                self._finish_rig(r, SKIPPED, "busy: " + ", ".join(what) + " (--force updates it anyway)",
                                 state="untouched", driver_after=self.rec.rig(r)["driver_before"])
                live.remove(r)
            elif facts.get("stopped"):
                self.rec.set_rig(r, drained=list(facts["stopped"]))
        self.rec.save()
        if not live:
            return
        touched = list(live)
        failed_converge = {r: v for r, v in steps["converge"].items() if r in live}
        for r in live:
            self.rec.set_rig(r, changes=sum(1 for c in res.changes if c["host"] == r
                                            and c["task"] not in self._ROLLOUT_TASKS))
        pending = res.reboots()
        ok = [r for r in live if r not in failed_converge]
        finish_bad = {r: v for r, v in steps["finish"].items() if r in live}
        finished = {r: self._facts(res, r, "finish") for r in live}
        for r, facts in finished.items():
            if facts and not facts.get("deferred") and r not in finish_bad:
                self.rec.set_rig(r, driver_after=driver_of(facts), boot_after=facts.get("boot"))

        # reboot (rig_reboot_policy auto), else say it is pending
        reboot = [r for r in ok if r in pending and r in auto]
        for r in ok:
            if r in pending and r not in reboot:
                self.rec.set_rig(r, reboot_pending="; ".join(pending[r]) or "reboot needed")
        failed_reboot = {}
        if reboot:
            _say(f"rebooting {', '.join(reboot)} (wait up to {self.opts.reboot_timeout} s)")
            rres = self._job("fleet_reboot.yml", reboot, batch_no, "reboot", digest=digest,
                             extravars={"rigctl_reboot_timeout": self.opts.reboot_timeout})
            failed_reboot = {r: (UNREACHABLE if res_ == UNREACHABLE or "timed out" in m.lower()
                                 else res_, f"reboot: {m}")
                             for r, (res_, m) in self._problems(rres, reboot).items()}
            for r in reboot:
                if r not in failed_reboot:
                    self.rec.set_rig(r, rebooted=True)

        # finish after the reboot (or where the update job's finish did not happen: deferred
        # for a reboot that was not needed after all), on the rigs still reachable
        again = [r for r in touched
                 if (r in reboot or not finished.get(r) or finished[r].get("deferred"))
                 and r not in finish_bad
                 and not (r in failed_converge and failed_converge[r][0] == UNREACHABLE)
                 and not (r in failed_reboot and failed_reboot[r][0] == UNREACHABLE)]
        if again:
            fres = self._job("fleet_rollout.yml", again, batch_no, "finish", digest=digest,
                             extravars={"rigctl_rollout_step": "finish"})
            finish_bad.update(self._problems(fres, again))
            for r in again:
                facts = (fres.host_facts.get(r) or {}).get("rig_rollout_finish")
                if facts:
                    self.rec.set_rig(r, driver_after=driver_of(facts), boot_after=facts.get("boot"))
                    if self.rec.rig(r).get("rebooted"):
                        err = self._module_check(r, facts)
                        if err:
                            failed_reboot[r] = (FAILED, err)
        for r, (result, msg) in failed_converge.items():
            self._finish_rig(r, result, f"converge: {msg}")
        for r, (result, msg) in failed_reboot.items():
            self._finish_rig(r, result, msg)
        live = [r for r in ok if r not in failed_reboot]
        for r in list(live):
            if r in finish_bad:
                self._finish_rig(r, finish_bad[r][0], f"after the change: {finish_bad[r][1]}")
                live.remove(r)
        if not live:
            return

        # 5. verify
        from rigctl.hostkeys import connect_timeout
        from rigctl.runner import ansible_env
        from rigctl.verify.run import run_suites

        _say(f"verifying {', '.join(live)}")
        junit = self.rec.dir / "runs" / f"b{batch_no}-verify-{len(self.rec.data['runs']):03d}.xml"
        junit.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        vres = run_suites(live, self.paths[0], env=ansible_env(digest),
                          connect_timeout=connect_timeout(), junit=str(junit), record=True)
        vdata = vres.as_dict()["hosts"]
        self.rec.data["runs"].append({"step": "verify", "batch": batch_no, "artifacts": str(junit),
                                      "seconds": round(time.monotonic() - started, 2)})
        for r in live:
            h = vdata.get(r) or {}
            verdict = h.get("result") or "failed"
            n = {k: h.get(k, 0) for k in ("passed", "simulated", "warn", "failed", "error", "skipped")}
            words = (f"{verdict}{' (simulated)' if h.get('gpu_view') == 'simulated' else ''}: "
                     f"{n['passed'] + n['simulated']} passed, {n['warn']} warn, "
                     f"{n['failed'] + n['error']} failed")
            if verdict == "ok":
                note = self.rec.rig(r).get("reboot_pending")
                self._finish_rig(r, DONE, f"reboot still needed (rig_reboot_policy never): {note}"
                                 if note else "", verify=words)
            else:
                bad_checks = [c for c in h.get("checks") or []
                              if c.get("outcome") in ("failed", "error", "unreachable", "refused")]
                first = bad_checks[0] if bad_checks else {}
                self._finish_rig(r, UNREACHABLE if verdict == "unreachable" else FAILED,
                                 f"verify: {first.get('name', verdict)}: {first.get('message', '')}".strip(),
                                 verify=words)

    def _module_check(self, rig: str, facts: dict) -> str | None:
        """After a reboot on a real GPU: the loaded module is the version asked for."""
        host = facts.get("host") or {}
        if facts.get("boot") and facts.get("boot") == self.rec.rig(rig).get("boot_before"):
            return "reboot: the boot did not change (boot id and PID 1 start are the old ones)"
        want = self.inv.host_vars(rig).get("rig_driver_version")
        if host.get("gpu_view") != "real" or not want:
            return None
        loaded = ((host.get("driver") or {}).get("loaded") or {}).get("version")
        if loaded != want:
            return (f"reboot: the loaded NVIDIA module is {loaded or 'none'}, not {want} (check "
                    "`modinfo -n nvidia`, `dmesg | grep -i nvrm`, Secure Boot signing)")
        return None

    # -- the whole rollout
    def run(self, batches: list[list[str]]) -> Record:
        data = self.rec.data
        data.update(state=R_RUNNING, finished=None, stop_reason=None)
        data["budget"] = self.budget.as_dict()
        self.rec.save()
        plan = data["plan"]["batches"]
        for rigs in batches:  # a rig run again leaves the budget until its new result
            for r in rigs:
                self.budget.count(r, NOT_STARTED)
        try:
            for i, rigs in enumerate(batches):
                if self.stop.requested:
                    break
                if self.budget.spent:  # failures of an earlier run of this rollout
                    self.stop.requested = True
                    self.stop.reason = (f"failure budget spent: {len(self.budget.failed)} rigs "
                                        f"failed, {self.budget.allowed} allowed")
                    break
                if i and self.opts.pause:
                    _say(f"pausing {self.opts.pause:g} s before the next batch")
                    end = time.monotonic() + self.opts.pause
                    while time.monotonic() < end and not self.stop.requested:
                        time.sleep(min(0.5, end - time.monotonic()))
                    if self.stop.requested:
                        break
                if i and self.opts.confirm and self.confirm and not self.confirm(
                        f"continue with {', '.join(rigs)}?"):
                    self.stop.requested, self.stop.reason = True, "not confirmed"
                    break
                batch_no = plan.index(next(b for b in plan if rigs[0] in b)) + 1
                self.run_batch(batch_no, rigs)
                results = [self.rec.rig(r)["result"] for r in rigs]
                if batch_no == 1 and self.canary and any(x in FAILING for x in results):
                    self.stop.requested, self.stop.reason = True, "the canary failed"
                    break
                if self.budget.spent:
                    self.stop.requested = True
                    self.stop.reason = (f"failure budget spent: {len(self.budget.failed)} rigs "
                                        f"failed, {self.budget.allowed} allowed")
                    break
        except KeyboardInterrupt:
            self.stop.requested, self.stop.reason = True, "interrupted (Ctrl-C twice)"
            for entry in data["rigs"].values():
                if entry["result"] == RUNNING:
                    entry.update(result=NOT_STARTED, state="unknown: interrupted during its update",
                                 message="interrupted before it finished (resume runs it again)")
        c = counts(self.rec)
        if self.stop.requested and (c[NOT_STARTED] or self.stop.reason):
            data["state"] = R_STOPPED
            data["stop_reason"] = self.stop.reason
        else:
            data["state"] = R_DONE if not (c[FAILED] or c[UNREACHABLE]) else R_FAILED
        data["finished"] = records.now()
        data["budget"] = self.budget.as_dict()
        self.rec.save()
        return self.rec


def exit_code(rec: Record) -> int:
    """0: every rig done (busy rigs skipped do not fail the rollout), nothing stopped; 1
    otherwise."""
    c = counts(rec)
    if rec.data["state"] == R_STOPPED or c[FAILED] or c[UNREACHABLE] or c[NOT_STARTED] or c[RUNNING]:
        return 1
    return 0


# --- check mode ---------------------------------------------------------------------------


def check_plan(paths: list[str], inv, rigs: list[str], batches: list[list[str]], opts: Options):
    """``--check``: the plan, each rig's busy state and what the converge would change
    (Ansible check mode over every rig at once); nothing is changed or recorded."""
    from rigctl.cli import _run
    from rigctl.runner import run_playbook

    passed, digest, blocked = _run.gate(inv, rigs)
    out: dict[str, dict] = {r: {"batch": next(i for i, b in enumerate(batches, 1) if r in b),
                                "reachable": r in passed, "busy": None, "changes": [],
                                "problem": None, "reboot": None} for r in rigs}
    for c in blocked:
        out[c.host]["problem"] = f"SSH host key check: {c.message}"
    runs = []
    if passed:
        with _forks(len(passed)):
            prep = run_playbook("fleet_rollout.yml", paths, limit=",".join(passed), check=True,
                                extravars={"rigctl_rollout_step": "prepare"},
                                kind="update-check", control_digest=digest)
            conv = run_playbook("provision.yml", paths, limit=",".join(passed), check=True,
                                extravars={"rig_reboot_policy": "never"}, kind="update-check",
                                control_digest=digest, verbosity=opts.verbose)
        runs = [str(prep.artifacts), str(conv.artifacts)]
        for r, (result, msg) in Rollout._problems(prep, passed).items():
            out[r].update(reachable=result != UNREACHABLE, problem=msg)
        for r, (result, msg) in Rollout._problems(conv, passed).items():
            out[r]["problem"] = out[r]["problem"] or f"converge (check mode): {msg}"
            if result == UNREACHABLE:
                out[r]["reachable"] = False
        for r in passed:
            facts = (prep.host_facts.get(r) or {}).get("rig_rollout_prepare") or {}
            if facts:
                out[r]["busy"] = bool(facts.get("busy"))
                out[r]["busy_what"] = ([f"GPU process {a.get('pid')}" for a in facts.get("apps") or []]
                                       + [f"unit {u}" for u in facts.get("units_active") or []])
                out[r]["driver"] = driver_of(facts)
            out[r]["changes"] = [c["task"] for c in conv.changes if c["host"] == r]
        for r, reasons in conv.reboots().items():
            if r in out:
                out[r]["reboot"] = "; ".join(reasons) or "needed"
    return {"check": True, "batches": batches, "options": opts.recorded(), "rigs": out,
            "runs": runs, "ok": all(v["reachable"] and not v["problem"] for v in out.values())}


# --- output -------------------------------------------------------------------------------

COLUMNS = ["rig", "batch", "result", "driver before -> after", "rebooted", "verify", "time",
           "left as"]


def table_rows(rec: Record) -> list[list[str]]:
    rows = []
    for name, e in rec.data["rigs"].items():
        before, after = e.get("driver_before"), e.get("driver_after")
        drv = "-" if before is None and after is None else f"{before or '?'} -> {after or '?'}"
        rows.append([name, str(e["batch"]), e["result"], drv, "yes" if e.get("rebooted") else "no",
                     e.get("verify") or "-",
                     f"{e['seconds']:.0f} s" if e.get("seconds") is not None else "-",
                     e.get("state") or "-"])
    return rows


def summary_lines(rec: Record) -> list[str]:
    c = counts(rec)
    d = rec.data
    lines = [f"rollout {d['id']}: {d['state']}"
             + (f" ({d['stop_reason']})" if d.get("stop_reason") else "")
             + f": {c[DONE]} done, {c[FAILED]} failed, {c[UNREACHABLE]} unreachable, "
             f"{c[SKIPPED]} skipped, {c[NOT_STARTED]} not started"]
    b = d.get("budget") or {}
    if b:
        lines.append(f"failure budget: {b['failed']} of {b['allowed']} allowed"
                     + (" (spent)" if b.get("spent") else ""))
    for name, e in d["rigs"].items():
        if e.get("message") and e["result"] != DONE:
            lines.append(f"{name}: {e['result']}: {e['message'].splitlines()[0]}")
        elif e.get("message"):
            lines.append(f"{name}: {e['message'].splitlines()[0]}")
    if any(e.get("gpu_view") == "simulated" for e in d["rigs"].values()):
        lines.append("simulated: GPUs of lab rigs are simulated (rigctl.simgpu), not real hardware")
    if d["state"] in (R_STOPPED, R_FAILED):
        lines.append(f"resume: rigctl fleet update --resume {d['id']}"
                     + (" --retry-failed" if c[FAILED] or c[UNREACHABLE] else ""))
    lines.append(f"record: {rec.path}")
    return lines


def write_junit(rec: Record, path: str) -> None:
    """One testsuite (the rollout), one testcase per rig: failed/unreachable a failure,
    skipped/not started a skip."""
    c = counts(rec)
    suite = ET.Element("testsuite", name=f"rigctl fleet update {rec.id}",
                       tests=str(len(rec.data["rigs"])),
                       failures=str(c[FAILED] + c[UNREACHABLE]),
                       skipped=str(c[SKIPPED] + c[NOT_STARTED]), errors="0")
    for name, e in rec.data["rigs"].items():
        case = ET.SubElement(suite, "testcase", classname=f"rollout.batch{e['batch']}", name=name,
                             time=str(e.get("seconds") or 0))
        props = ET.SubElement(case, "properties")
        for k in ("result", "state", "driver_before", "driver_after", "verify", "gpu_view"):
            ET.SubElement(props, "property", name=k, value=str(e.get(k)))
        if e["result"] in FAILING:
            ET.SubElement(case, "failure", message=e["result"]).text = e.get("message") or ""
        elif e["result"] in (SKIPPED, NOT_STARTED, RUNNING):
            ET.SubElement(case, "skipped", message=e.get("message") or e["result"])
    root = ET.Element("testsuites", name="rigctl fleet update")
    root.append(suite)
    ET.ElementTree(root).write(path, encoding="unicode", xml_declaration=True)


def as_json(rec: Record) -> dict:
    return {**rec.data, "counts": counts(rec), "exit": exit_code(rec)}


def json_dumps(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str)
