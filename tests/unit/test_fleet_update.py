"""`rigctl fleet update` without a rig: batch planning (canary, counts, percentages, lists
whose last entry repeats), the whole-rollout failure budget (failed and unreachable alike,
a retried rig's failure cleared), the run record (format, atomic writes, read back, the
newest one), resume (which rigs run again), the stop rules (canary, budget, Ctrl-C) driven
through a Rollout whose batches are stubbed, the summary, JUnit, and the CLI's input
errors (exit 2, nothing touched, no record). The lab runs are
tests/integration/test_fleet_update.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from rigctl.errors import InputError
from rigctl.fleet import records
from rigctl.fleet import update as up

RIGS = [f"r{i}" for i in range(1, 11)]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("RIGCTL_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


# --- batch planning -----------------------------------------------------------------------


def test_canary_then_counts():
    assert up.plan_batches(RIGS, 1, "3") == [["r1"], ["r2", "r3", "r4"], ["r5", "r6", "r7"],
                                             ["r8", "r9", "r10"]]


def test_percent_is_of_every_rig_truncated_at_least_one():
    assert [len(b) for b in up.plan_batches(RIGS, 2, "25%")] == [2, 2, 2, 2, 2]
    assert [len(b) for b in up.plan_batches(RIGS[:3], 0, "10%")] == [1, 1, 1]
    assert [len(b) for b in up.plan_batches(RIGS, 1, "100%")] == [1, 9]


def test_a_list_repeats_its_last_entry_like_serial():
    assert [len(b) for b in up.plan_batches(RIGS, 1, "1,2,30%")] == [1, 1, 2, 3, 3]
    plan = up.plan_batches(RIGS, 0, "4,1")
    assert [len(b) for b in plan] == [4, 1, 1, 1, 1, 1, 1]
    assert [r for b in plan for r in b] == RIGS  # every rig once, in order


def test_canary_larger_than_the_fleet_is_one_batch():
    assert up.plan_batches(RIGS[:2], 5, "1") == [["r1", "r2"]]


@pytest.mark.parametrize("bad", ["0", "-1", "x", "150%", "1,,2", "", "0%"])
def test_bad_batch_is_an_input_error_naming_the_entry(bad):
    with pytest.raises(InputError) as exc:
        up.parse_batch(bad)
    assert "--batch" in str(exc.value) and "1,5,20%" in exc.value.fix


def test_max_fail():
    assert up.parse_max_fail(None) == (0, False)
    assert up.parse_max_fail("2") == (2, False)
    assert up.parse_max_fail("10%") == (10, True)
    for bad in ("x", "101%", "-1"):
        with pytest.raises(InputError):
            up.parse_max_fail(bad)


# --- budget -------------------------------------------------------------------------------


def test_budget_counts_failed_and_unreachable_alike_across_the_rollout():
    b = up.Budget.of((1, False), 10)
    b.count("r1", up.FAILED)
    assert not b.spent
    b.count("r2", up.UNREACHABLE)
    assert b.spent and b.as_dict() == {"allowed": 1, "failed": 2, "spent": True}


def test_budget_percent_and_retried_rigs_leave_it():
    b = up.Budget.of((25, True), 10)  # 2.5 -> 2 rigs
    assert b.allowed == 2
    for r in ("r1", "r2", "r3"):
        b.count(r, up.FAILED)
    assert b.spent
    b.count("r3", up.DONE)  # retried and done
    assert not b.spent
    b.count("r4", up.SKIPPED)  # busy: not a failure
    assert len(b.failed) == 2


# --- record -------------------------------------------------------------------------------


def _record(home, batches=None, rid=None):
    batches = batches or up.plan_batches(RIGS[:5], 1, "2")
    rigs = [r for b in batches for r in b]
    return up.Record.create(["inv.yml"], {"canary": 1, "batch": "2", "max_fail": None,
                                          "force": False, "reboot_timeout": 600},
                            batches, {r: f"rig@127.0.0.1:{22200 + i}" for i, r in enumerate(rigs)},
                            rid=rid)


def test_record_format_and_atomic_write(home):
    rec = _record(home)
    assert rec.path == home / "rollouts" / rec.id / "rollout.json"
    assert rec.id[:8].isdigit() and rec.id[8] == "T"
    data = json.loads(rec.path.read_text())
    assert data["schema"] == records.SCHEMA and data["state"] == "running"
    assert data["plan"]["batches"] == [["r1"], ["r2", "r3"], ["r4", "r5"]]
    assert data["inventory"] == [os.path.abspath("inv.yml")]
    r2 = data["rigs"]["r2"]
    assert r2["batch"] == 2 and r2["result"] == "not started" and r2["address"].startswith("rig@")
    for key in ("started", "finished", "driver_before", "driver_after", "rebooted", "verify",
                "state", "message", "seconds"):
        assert key in r2
    rec.set_rig("r2", result=up.DONE)
    rec.save()
    assert not [p for p in rec.dir.iterdir() if p.name.startswith(".tmp-")]
    assert up.Record.load(rec.id).rig("r2")["result"] == "done"


def test_fleet_status_reads_the_rollout_record(home):
    rec = _record(home)
    rec.set_rig("r1", result=up.DONE)
    rec.save()
    last = records.last_rollout("r1", rec.rig("r1")["address"])
    assert last["id"] == rec.id and last["rig"]["result"] == "done"
    assert records.last_rollout("r1", "rig@elsewhere:22") is None


def test_load_latest_and_missing(home):
    _record(home, rid="20261201T000000Z-aaaaaa")
    newer = _record(home, rid="20261202T000000Z-bbbbbb")
    assert up.Record.load(None).id == newer.id == up.Record.load("latest").id
    with pytest.raises(InputError) as exc:
        up.Record.load("20990101T000000Z-cccccc")
    assert "no readable rollout record" in str(exc.value)


def test_load_with_no_rollout_at_all(home):
    with pytest.raises(InputError) as exc:
        up.Record.load(None)
    assert "no rollout recorded" in str(exc.value)


# --- resume -------------------------------------------------------------------------------


def test_resume_runs_what_is_not_done_and_failed_only_when_asked(home):
    rec = _record(home)
    for r, result in (("r1", up.DONE), ("r2", up.FAILED), ("r3", up.SKIPPED),
                      ("r4", up.RUNNING), ("r5", up.UNREACHABLE)):
        rec.set_rig(r, result=result)
    assert up.resume_todo(rec, retry_failed=False) == [["r3"], ["r4"]]
    assert up.resume_todo(rec, retry_failed=True) == [["r2", "r3"], ["r4", "r5"]]


# --- the stop rules, with stubbed batches -------------------------------------------------


class StubRollout(up.Rollout):
    """run_batch sets each rig's result from ``outcomes`` (default done)."""

    def __init__(self, rec, outcomes, **kw):
        super().__init__(rec, ["inv.yml"], None, up.Options(**kw))
        self.outcomes = outcomes
        self.batches_run = []

    def run_batch(self, batch_no, rigs):
        self.batches_run.append(batch_no)
        for r in rigs:
            self._finish_rig(r, self.outcomes.get(r, up.DONE))


def test_all_done(home):
    rec = StubRollout(_record(home), {}).run(up.plan_batches(RIGS[:5], 1, "2"))
    assert rec.data["state"] == "done" and up.exit_code(rec) == 0
    assert json.loads(rec.path.read_text())["state"] == "done"


def test_a_failing_canary_stops_before_any_other_rig(home):
    ro = StubRollout(_record(home), {"r1": up.FAILED}, max_fail="3")
    rec = ro.run(up.plan_batches(RIGS[:5], 1, "2"))
    assert ro.batches_run == [1]
    assert rec.data["state"] == "stopped" and rec.data["stop_reason"] == "the canary failed"
    assert [rec.rig(r)["result"] for r in RIGS[1:5]] == ["not started"] * 4
    assert up.exit_code(rec) == 1


def test_budget_spent_in_batch_two_stops_there(home):
    ro = StubRollout(_record(home), {"r2": up.FAILED, "r3": up.UNREACHABLE}, max_fail="1")
    rec = ro.run(up.plan_batches(RIGS[:5], 1, "2"))
    assert ro.batches_run == [1, 2]
    assert "failure budget spent: 2 rigs failed, 1 allowed" in rec.data["stop_reason"]
    assert rec.data["budget"] == {"allowed": 1, "failed": 2, "spent": True}
    assert rec.rig("r4")["result"] == "not started"


def test_within_budget_goes_on_and_fails_at_the_end(home):
    ro = StubRollout(_record(home), {"r2": up.FAILED}, max_fail="20%")  # 1 of 5
    rec = ro.run(up.plan_batches(RIGS[:5], 1, "2"))
    assert ro.batches_run == [1, 2, 3] and rec.data["state"] == "failed"
    assert up.exit_code(rec) == 1


def test_skipped_busy_rigs_do_not_fail_the_rollout(home):
    rec = StubRollout(_record(home), {"r3": up.SKIPPED}).run(up.plan_batches(RIGS[:5], 1, "2"))
    assert rec.data["state"] == "done" and up.exit_code(rec) == 0


def test_ctrl_c_finishes_the_batch_then_stops_and_resume_finishes(home):
    rec = _record(home)
    ro = StubRollout(rec, {})

    def run_batch(batch_no, rigs, orig=ro.run_batch):
        orig(batch_no, rigs)
        ro.stop.requested, ro.stop.reason = True, "interrupted (Ctrl-C)"

    ro.run_batch = run_batch
    rec = ro.run(up.plan_batches(RIGS[:5], 1, "2"))
    assert rec.data["state"] == "stopped" and up.exit_code(rec) == 1
    assert rec.rig("r1")["result"] == "done" and rec.rig("r2")["result"] == "not started"
    again = up.Record.load(rec.id)
    todo = up.resume_todo(again, retry_failed=False)
    assert todo == [["r2", "r3"], ["r4", "r5"]]
    ro2 = StubRollout(again, {})
    done = ro2.run(todo)
    assert ro2.batches_run == [2, 3] and done.data["state"] == "done"


def test_a_second_ctrl_c_marks_rigs_in_flight_as_interrupted(home):
    rec = _record(home)
    ro = StubRollout(rec, {})

    def run_batch(batch_no, rigs):
        for r in rigs:
            rec.set_rig(r, result=up.RUNNING)
        raise KeyboardInterrupt

    ro.run_batch = run_batch
    rec = ro.run(up.plan_batches(RIGS[:5], 1, "2"))
    assert rec.data["state"] == "stopped"
    assert rec.rig("r1")["result"] == "not started"
    assert "interrupted" in rec.rig("r1")["state"]


def test_standing_failures_count_on_resume(home):
    rec = _record(home)
    rec.set_rig("r1", result=up.DONE)
    rec.set_rig("r2", result=up.FAILED)
    ro = StubRollout(rec, {}, max_fail="0")
    assert ro.budget.spent  # r2 still failed: resuming without --retry-failed stops at once
    rec = ro.run(up.resume_todo(rec, retry_failed=False))
    assert ro.batches_run == [] and rec.data["state"] == "stopped"
    assert "failure budget spent" in rec.data["stop_reason"]
    # with --retry-failed r2 leaves the budget until its new result
    ro = StubRollout(up.Record.load(rec.id), {}, max_fail="0")
    rec = ro.run(up.resume_todo(ro.rec, retry_failed=True))
    assert ro.batches_run == [2, 3] and rec.data["state"] == "done"


# --- output -------------------------------------------------------------------------------


def test_left_state_words():
    assert up.left_state({"result": "done"}) == "new state verified"
    assert up.left_state({"result": "skipped", "state": "running"}) == "untouched"
    assert up.left_state({"result": "failed", "driver_before": "open 570.1",
                          "driver_after": "open 570.1"}) == "previous driver kept (open 570.1)"
    assert up.left_state({"result": "failed", "driver_before": "open 570.1",
                          "driver_after": "open 575.2"}) == "driver now open 575.2, not verified"
    assert up.left_state({"result": "unreachable", "driver_before": "none",
                          "driver_after": None}).startswith("unknown")


def test_summary_table_and_junit(home, tmp_path):
    rec = StubRollout(_record(home), {"r2": up.FAILED, "r3": up.SKIPPED}, max_fail="1").run(
        up.plan_batches(RIGS[:5], 1, "2"))
    rows = {r[0]: r for r in up.table_rows(rec)}
    assert rows["r2"][2] == "failed" and rows["r3"][2] == "skipped"
    lines = up.summary_lines(rec)
    assert lines[0].startswith(f"rollout {rec.id}: failed: 3 done, 1 failed, 0 unreachable, "
                               "1 skipped, 0 not started")
    assert f"resume: rigctl fleet update --resume {rec.id} --retry-failed" in lines
    path = tmp_path / "u.xml"
    up.write_junit(rec, str(path))
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite.get("tests") == "5" and suite.get("failures") == "1" and suite.get("skipped") == "1"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["r2"].find("failure") is not None and cases["r3"].find("skipped") is not None
    assert cases["r1"].find("failure") is None
    data = up.as_json(rec)
    assert data["counts"]["done"] == 3 and data["exit"] == 1


# --- CLI input errors: exit 2, nothing touched, nothing recorded --------------------------


def _cli(home, *args):
    env = dict(os.environ, RIGCTL_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "rigctl", "fleet", "update", *args],
                          capture_output=True, text=True, env=env, timeout=120)


def _inventory(tmp_path, extra=""):
    path = tmp_path / "inventory.yml"
    path.write_text("all:\n  children:\n    rigs:\n      hosts:\n"
                    "        r1: {ansible_host: 127.0.0.1, ansible_port: 1}\n" + extra)
    return str(path)


@pytest.mark.parametrize("args,words", [
    (("--batch", "0"), "--batch '0'"),
    (("--max-fail", "lots"), "--max-fail 'lots'"),
    (("--retry-failed",), "--retry-failed only applies"),
    (("--resume",), "no rollout recorded"),
])
def test_input_errors_exit_2_and_record_nothing(tmp_path, home, args, words):
    proc = _cli(home, "-i", _inventory(tmp_path), *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert words in proc.stderr and "fix:" in proc.stderr
    assert not (home / "rollouts").exists() or not list((home / "rollouts").iterdir())


def test_a_bad_inventory_anywhere_stops_before_anything(tmp_path, home):
    inv = _inventory(tmp_path, "        r2: {ansible_host: 127.0.0.1, rig_power_limit_w: 9999}\n")
    proc = _cli(home, "r1", "-i", inv)  # r2 is not even selected: the whole inventory counts
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "rig_power_limit_w" in proc.stderr
    assert not (home / "rollouts").exists()


def test_first_ctrl_c_asks_to_stop_the_second_cancels_the_job():
    stop = up.Stop()
    with stop:
        import signal as sig

        assert sig.getsignal(sig.SIGINT) == stop._handler
        stop._handler(sig.SIGINT, None)
        assert stop.requested and not stop.cancelled()
        stop.check()  # nothing to raise yet
        stop._handler(sig.SIGINT, None)
        assert stop.cancelled()
        with pytest.raises(KeyboardInterrupt):
            stop.check()
    assert sig.getsignal(sig.SIGINT) != stop._handler


class _Inv:
    def __init__(self, hv):
        self.hv = hv

    def host_vars(self, name):
        return self.hv.get(name, {})


def _facts(view, loaded, boot="b2"):
    return {"boot": boot, "host": {"gpu_view": view,
                                   "driver": {"loaded": {"version": loaded} if loaded else None}}}


def test_after_a_reboot_the_boot_must_change_and_a_real_gpu_load_the_asked_module(home):
    rec = _record(home)
    ro = up.Rollout(rec, ["inv.yml"], _Inv({"r1": {"rig_driver_version": "570.86.16"}}),
                    up.Options())
    rec.set_rig("r1", boot_before="b1")
    assert ro._module_check("r1", _facts("real", "570.86.16")) is None
    assert "not 570.86.16" in ro._module_check("r1", _facts("real", "565.57.01"))
    assert "loaded NVIDIA module is none" in ro._module_check("r1", _facts("real", None))
    # simulated GPUs: no module can load in a lab container; the boot still must change
    assert ro._module_check("r1", _facts("simulated", None)) is None
    assert "boot did not change" in ro._module_check("r1", _facts("simulated", None, boot="b1"))


def test_job_problems_unreachable_failed_and_missing_hosts():
    from rigctl.runner import Failure, HostStats, RunResult

    res = RunResult(playbook="p", status="failed", rc=2, artifacts="a")
    res.hosts = {"r1": HostStats(ok=3), "r2": HostStats(failed=1), "r3": HostStats(unreachable=1)}
    res.failures = [Failure("r2", "Set the GPU power limits", "400 W is outside 100-350 W"),
                    Failure("r3", "Gather rig facts", "ssh: connect refused", unreachable=True)]
    out = up.Rollout._problems(res, ["r1", "r2", "r3", "r4"])
    assert "r1" not in out
    assert out["r2"] == ("failed", "Set the GPU power limits: 400 W is outside 100-350 W")
    assert out["r3"][0] == "unreachable"
    assert out["r4"][0] == "failed" and "no result" in out["r4"][1]


def test_update_job_problems_are_placed_at_the_step_that_failed():
    """The one update job (prepare, converge, finish in one play): each rig's first failure
    says its step; the converge's rescued failure comes before the play's own fail task."""
    from rigctl.runner import Failure, HostStats, RunResult

    res = RunResult(playbook="fleet_update.yml", status="failed", rc=2, artifacts="a")
    res.hosts = {"r1": HostStats(ok=9), "r2": HostStats(failed=1, rescued=1),
                 "r3": HostStats(unreachable=1), "r4": HostStats(failed=1),
                 "r5": HostStats(failed=1), "r6": HostStats(failed=1)}
    res.failures = [
        Failure("r2", "Set the GPU power limits", "400 W is outside 100-350 W"),
        Failure("r3", "Rollout step prepare", "ssh: connect refused", unreachable=True),
        Failure("r4", "Rollout step finish", "systemctl start trainer.service failed"),
        Failure("r2", "Fail the rig whose converge failed (its drain units were started again)",
                "converge failed: Set the GPU power limits: 400 W is outside 100-350 W"),
    ]
    res.host_facts = {"r1": {"rig_rollout_prepare": {"busy": False}},
                      "r5": {"rig_rollout_prepare": {"busy": False}}}
    out = up.Rollout._problems_by_step(res, ["r1", "r2", "r3", "r4", "r5", "r6"])
    assert out["converge"]["r2"] == ("failed", "Set the GPU power limits: 400 W is outside 100-350 W")
    assert out["prepare"]["r3"][0] == "unreachable"
    assert out["finish"]["r4"] == ("failed", "Rollout step finish: systemctl start trainer.service failed")
    # failed without an event: after prepare answered it is the converge, else prepare
    assert out["converge"]["r5"] == ("failed", "the step failed")
    assert out["prepare"]["r6"] == ("failed", "the step failed")
    assert not any("r1" in step for step in out.values())
    assert up.Rollout._facts(res, "r1", "prepare") == {"busy": False}
    assert up.Rollout._facts(res, "r1", "finish") == {}


def test_update_playbook_keeps_provision_yml_roles_in_order():
    """fleet_update.yml converges with the roles of provision.yml, in the same order; its
    task names are the ones the rollout places failures by."""
    import yaml

    from rigctl import paths

    prov = yaml.safe_load(paths.playbook("provision.yml").read_text())[0]
    upd = yaml.safe_load(paths.playbook("fleet_update.yml").read_text())[0]
    want = [r["role"] if isinstance(r, dict) else r for r in prov["roles"]]
    block = next(t for t in upd["tasks"] if "block" in t)
    got = [t["ansible.builtin.import_role"]["name"] for t in block["block"]
           if "ansible.builtin.import_role" in t]
    assert got == want
    names = [t["name"] for t in upd["tasks"]] + [t["name"] for t in block["always"]]
    assert up.Rollout._PREPARE_TASK in names and up.Rollout._FINISH_TASK in names
