"""`rigctl fleet update` on ONE shared lab of six rigs (module scope). The updates change GPU
power limits (cheap: no driver build), each scenario to its own value so that what a rig
shows afterwards says which rollout reached it. Asserted on the rigs themselves (their
simulated nvidia-smi's power limits, a drain unit's state), in the summary and in the run
record under $RIGCTL_HOME/rollouts/<id>/, not only in exit codes.

Scenarios: --check touches nothing; one rollout with a rig stopped before the run
(unreachable), a busy rig (a GPU compute process) skipped, a rig whose host_vars carry a
power limit the role refuses on the rig (fails mid-converge, previous state kept) and the
other rigs done; a failing canary (mid-converge, its drain unit started again by the finish
step all the same) that stops the rollout before any other rig; the budget
spent in batch 2, then --resume --retry-failed with the value fixed; Ctrl-C (SIGINT to the
CLI) mid-batch with a drain unit under --force, then --resume.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid

import pytest
import yaml

from tests.integration.conftest import BIN, lab_session

pytestmark = [pytest.mark.lab, pytest.mark.slow]

DEFAULT_W = 350.0  # the 4x3090 profile's default limit
UNIT = "rigctl-test-trainer.service"


def _docker(*args):
    return subprocess.run(["docker", *args], capture_output=True, text=True)


class Lab:
    def __init__(self, session):
        self.s = session
        self.base = yaml.safe_load(open(session.inventory).read())

    def inventory(self, watts: int, **per_rig) -> str:
        """The lab inventory with rig_power_limit_w for every rig and per-rig extras."""
        data = yaml.safe_load(yaml.safe_dump(self.base))
        lab = data["all"]["children"]["rigs"]["children"]["lab"]
        lab["vars"]["rig_power_limit_w"] = watts
        for rig, extra in per_rig.items():
            lab["hosts"][rig].update(extra)
        path = self.s.home / f"inv-{watts}-{uuid.uuid4().hex[:6]}.yml"
        path.write_text(yaml.safe_dump(data))
        return str(path)

    def ssh(self, rig: str, command: str, check=True) -> str:
        proc = self.s.rigctl("lab", "ssh", "--name", self.s.name, rig, command, timeout=120)
        if check:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    def limits(self, rig: str) -> list[float]:
        out = self.ssh(rig, "nvidia-smi --query-gpu=power.limit --format=csv,noheader,nounits")
        return [float(x) for x in out.split()]

    def update(self, *args, timeout=900):
        return self.s.rigctl("fleet", "update", *args, timeout=timeout)

    def record(self, rid: str | None = None) -> dict:
        root = self.s.home / "rollouts"
        rid = rid or sorted(p.name for p in root.iterdir())[-1]
        return json.loads((root / rid / "rollout.json").read_text())

    def rollouts(self) -> list[str]:
        root = self.s.home / "rollouts"
        return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    started = time.monotonic()
    with lab_session(tmp_path_factory, "it-roll", "--rigs", "6", "--profile", "4x3090") as s:
        yield Lab(s)
    print(f"\ntest_fleet_update: whole module {time.monotonic() - started:.0f} s")


def _rigs(data):
    return data["rigs"]


def test_check_plans_and_touches_nothing(lab):
    inv = lab.inventory(300)
    proc = lab.update("lab-rig-1", "lab-rig-2", "-i", inv, "--check", "--batch", "1", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["check"] is True and plan["batches"] == [["lab-rig-1"], ["lab-rig-2"]]
    for rig in ("lab-rig-1", "lab-rig-2"):
        r = plan["rigs"][rig]
        assert r["reachable"] and r["busy"] is False and not r["problem"]
        assert any("power limits" in t for t in r["changes"]), r["changes"]
        assert lab.limits(rig) == [DEFAULT_W] * 4
    assert lab.rollouts() == []  # --check records no rollout


def _trainer(lab, rig: str) -> str:
    """A running drain unit on the rig; its ActiveEnterTimestampMonotonic line."""
    lab.ssh(rig, f"printf '[Service]\\nExecStart=/bin/sleep infinity\\n' | sudo -n tee "
            f"/etc/systemd/system/{UNIT} >/dev/null && sudo -n systemctl daemon-reload && "
            f"sudo -n systemctl start {UNIT}")
    return lab.ssh(rig, f"systemctl show -p ActiveEnterTimestampMonotonic {UNIT}")


def test_rollout_with_a_stopped_a_busy_and_a_refusing_rig(lab):
    inv = lab.inventory(300, **{"lab-rig-3": {"rig_power_limit_w": 400}})
    lab.ssh("lab-rig-2", "sudo -n rigctl-simgpu apps add --gpu 0 --pid 4242 --name train.py")
    stopped = f"rigctl-{lab.s.name}-rig-4"
    assert _docker("stop", stopped).returncode == 0
    junit = lab.s.home / "update.xml"
    try:
        started = time.monotonic()
        proc = lab.update("-i", inv, "--canary", "1", "--batch", "5", "--max-fail", "2",
                          "--json", "--junit", str(junit))
        took = time.monotonic() - started
    finally:
        lab.ssh("lab-rig-2", "sudo -n rigctl-simgpu apps clear")
        _docker("start", stopped)
    print(f"rollout over 6 rigs (2 batches): {took:.0f} s")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    rigs = _rigs(data)
    assert data["state"] == "failed" and data["plan"]["batches"] == [
        ["lab-rig-1"], ["lab-rig-2", "lab-rig-3", "lab-rig-4", "lab-rig-5", "lab-rig-6"]]
    assert data["counts"] == {"done": 3, "failed": 1, "unreachable": 1, "skipped": 1,
                              "not started": 0, "running": 0}
    for rig in ("lab-rig-1", "lab-rig-5", "lab-rig-6"):
        assert rigs[rig]["result"] == "done" and rigs[rig]["state"] == "new state verified"
        assert rigs[rig]["verify"].startswith("ok (simulated)")
        assert lab.limits(rig) == [300.0] * 4
    busy = rigs["lab-rig-2"]
    assert busy["result"] == "skipped" and "GPU process 4242 (train.py)" in busy["message"]
    assert busy["state"] == "untouched" and lab.limits("lab-rig-2") == [DEFAULT_W] * 4
    bad = rigs["lab-rig-3"]
    assert bad["result"] == "failed" and bad["message"].startswith("converge: ")
    assert "400 W" in bad["message"]
    assert bad["state"] == "previous driver kept (none)"
    assert lab.limits("lab-rig-3") == [DEFAULT_W] * 4
    down = rigs["lab-rig-4"]
    assert down["result"] == "unreachable" and down["state"] == "untouched"
    assert down["message"].startswith("SSH host key check:")
    assert data["budget"] == {"allowed": 2, "failed": 2, "spent": False}
    # the record on disk says the same, with the runner artifacts of every step
    rec = lab.record(data["id"])
    assert rec["rigs"] == data["rigs"]
    steps = [(r["batch"], r["step"]) for r in rec["runs"]]
    # prepare, converge and finish are one job per batch when no reboot is needed
    assert steps == [(1, "update"), (1, "verify"), (2, "update"), (2, "verify")], steps
    assert all(r["seconds"] > 0 for r in rec["runs"])
    assert all(lab.s.home.as_posix() in r["artifacts"] for r in rec["runs"])
    assert 'failures="2"' in junit.read_text()
    # fleet status shows the rollout for the rigs it touched
    _, status = lab.s.rigctl.json("fleet", "status", "-i", inv, "lab-rig-1", "--json", timeout=300)
    assert status["rigs"]["lab-rig-1"]["last_rollout"]["id"] == data["id"]
    assert status["rigs"]["lab-rig-1"]["last_rollout"]["rig"]["result"] == "done"


def test_a_failing_canary_stops_before_any_other_rig(lab):
    # the canary fails mid-converge with a drain unit (--force): its finish still starts it
    before = _trainer(lab, "lab-rig-1")
    inv = lab.inventory(280, **{"lab-rig-1": {"rig_power_limit_w": 400,
                                              "rig_drain_units": [UNIT]}})
    proc = lab.update("lab-rig-1", "lab-rig-5", "lab-rig-6", "-i", inv, "--max-fail", "5",
                      "--batch", "2", "--force")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "stopped (the canary failed)" in proc.stdout
    data = lab.record()
    assert data["state"] == "stopped" and data["stop_reason"] == "the canary failed"
    assert _rigs(data)["lab-rig-1"]["result"] == "failed"
    for rig in ("lab-rig-5", "lab-rig-6"):
        assert _rigs(data)[rig]["result"] == "not started"
        assert lab.limits(rig) == [300.0] * 4  # the last rollout's value, untouched
    assert lab.limits("lab-rig-1") == [300.0] * 4
    canary = _rigs(data)["lab-rig-1"]
    assert canary["message"].startswith("converge: ") and "400 W" in canary["message"]
    assert canary["drained"] == [UNIT] and canary["state"] == "previous driver kept (none)"
    assert lab.ssh("lab-rig-1", f"systemctl is-active {UNIT}").strip() == "active"
    assert lab.ssh("lab-rig-1", f"systemctl show -p ActiveEnterTimestampMonotonic {UNIT}") != before
    lab.ssh("lab-rig-1", f"sudo -n systemctl stop {UNIT}")  # not a drain unit of later tests


def test_budget_spent_in_batch_two_then_resume_with_the_fix(lab):
    inv = lab.inventory(270, **{"lab-rig-3": {"rig_power_limit_w": 400}})
    hosts = ("lab-rig-1", "lab-rig-3", "lab-rig-5", "lab-rig-6")
    proc = lab.update(*hosts, "-i", inv, "--canary", "1", "--batch", "2", "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["plan"]["batches"] == [["lab-rig-1"], ["lab-rig-3", "lab-rig-5"], ["lab-rig-6"]]
    assert data["state"] == "stopped" and "failure budget spent" in data["stop_reason"]
    assert [_rigs(data)[r]["result"] for r in hosts] == ["done", "failed", "done", "not started"]
    assert lab.limits("lab-rig-6") == [300.0] * 4 and lab.limits("lab-rig-5") == [270.0] * 4
    # without --retry-failed the standing failure keeps the budget spent
    fixed = lab.inventory(270)
    proc = lab.update("--resume", data["id"], "-i", fixed, "--retry-failed", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    again = json.loads(proc.stdout)
    assert again["id"] == data["id"] and again["state"] == "done"
    assert [_rigs(again)[r]["result"] for r in hosts] == ["done"] * 4
    assert _rigs(again)["lab-rig-1"]["attempts"] == 1  # done rigs stay done
    assert _rigs(again)["lab-rig-3"]["attempts"] == 2
    for rig in ("lab-rig-3", "lab-rig-6"):
        assert lab.limits(rig) == [270.0] * 4


def test_ctrl_c_mid_batch_then_resume_with_a_drain_unit(lab):
    before = _trainer(lab, "lab-rig-5")
    inv = lab.inventory(260, **{"lab-rig-5": {"rig_drain_units": [UNIT]}})
    earlier = lab.rollouts()
    six = lab.limits("lab-rig-6")
    proc = subprocess.Popen(
        [str(BIN / "rigctl"), "fleet", "update", "lab-rig-5", "lab-rig-6", "-i", inv,
         "--canary", "1", "--batch", "1", "--force"],
        env=lab.s.rigctl.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_step(lab, "b1-update", proc, earlier, task=CONVERGE_TASK)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, out + err
    assert "Ctrl-C" in err
    data = lab.record()
    assert data["state"] == "stopped" and data["stop_reason"] == "interrupted (Ctrl-C)"
    assert _rigs(data)["lab-rig-5"]["result"] == "done"  # in flight: finished
    assert _rigs(data)["lab-rig-6"]["result"] == "not started"
    assert _rigs(data)["lab-rig-5"]["drained"] == [UNIT]
    assert lab.limits("lab-rig-5") == [260.0] * 4 and lab.limits("lab-rig-6") == six
    # the drain unit was stopped for the update and runs again
    assert lab.ssh("lab-rig-5", f"systemctl is-active {UNIT}").strip() == "active"
    assert lab.ssh("lab-rig-5", f"systemctl show -p ActiveEnterTimestampMonotonic {UNIT}") != before
    assert "not started" in out and f"--resume {data['id']}" in out
    proc = lab.update("--resume", "-i", inv)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    done = lab.record(data["id"])
    assert done["state"] == "done" and _rigs(done)["lab-rig-6"]["result"] == "done"
    assert lab.limits("lab-rig-6") == [260.0] * 4


CONVERGE_TASK = "Gather rig facts"  # the converge's first task (the rig_facts role)


def _wait_for_step(lab, step: str, proc, earlier: list[str], timeout=300, task=None) -> None:
    """Until the new rollout (an id not in ``earlier``) has started ``step`` (its runner
    directory exists) and, with ``task``, that job has started the task of that name (its
    job events); the CLI still running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        new = [i for i in lab.rollouts() if i not in earlier]
        runs = lab.s.home / "rollouts" / new[-1] / "runs" if new else None
        dirs = [p for p in runs.iterdir() if step in p.name] if runs and runs.is_dir() else []
        if dirs and (task is None or _task_started(dirs[0], task)):
            return
        time.sleep(0.3)
    raise AssertionError(f"the rollout never reached {step} {task or ''} while running")


def _task_started(run_dir, task: str) -> bool:
    for path in run_dir.glob("artifacts/*/job_events/*.json"):
        try:
            event = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being written
        if event.get("event") == "playbook_on_task_start" and (
                event.get("event_data") or {}).get("task") == task:
            return True
    return False


def _mark_reboot(lab, rig: str) -> None:
    """A pending reboot of this boot (rigctl.core.reboot's format), as a role leaves it."""
    lab.ssh(rig, "sudo -n mkdir -p /var/lib/rigctl && "
            "printf '{\"schema\": 1, \"boot\": \"%s/%s\", \"since\": \"2026-12-02T00:00:00Z\", "
            "\"reasons\": {\"test\": \"rollout test\"}}' \"$(cat /proc/sys/kernel/random/boot_id)\" "
            "\"$(cut -d' ' -f22 /proc/1/stat)\" | sudo -n tee /var/lib/rigctl/reboot-required "
            ">/dev/null")


def test_a_reboot_that_returns_and_one_that_never_does(lab):
    for rig in ("lab-rig-2", "lab-rig-6"):
        _mark_reboot(lab, rig)
    auto = {"rig_reboot_policy": "auto"}
    inv = lab.inventory(250, **{"lab-rig-2": auto, "lab-rig-6": auto})
    earlier = lab.rollouts()
    proc = subprocess.Popen(
        [str(BIN / "rigctl"), "fleet", "update", "lab-rig-2", "lab-rig-6", "-i", inv,
         "--canary", "0", "--batch", "100%", "--reboot-timeout", "30", "--max-fail", "1"],
        env=lab.s.rigctl.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    container = f"rigctl-{lab.s.name}-rig-2"
    try:
        _wait_for_step(lab, "b1-reboot", proc, earlier)
        assert _docker("stop", "-t", "1", container).returncode == 0  # kept down during the wait
        out, err = proc.communicate(timeout=600)
    finally:
        _docker("start", container)
    assert proc.returncode == 1, out + err
    data = lab.record()
    back, lost = _rigs(data)["lab-rig-6"], _rigs(data)["lab-rig-2"]
    assert back["result"] == "done" and back["rebooted"] is True
    assert back["boot_after"] != back["boot_before"]
    assert lab.limits("lab-rig-6") == [250.0] * 4  # re-applied at boot, verified after it
    assert "rebooted" in out.splitlines()[0] and "yes" in next(
        line for line in out.splitlines() if line.startswith("lab-rig-6"))
    assert lost["result"] == "unreachable" and lost["message"].startswith("reboot:")
    assert lost["state"] == "unknown: did not come back from its reboot"
    assert lab.ssh("lab-rig-6", "test -e /var/lib/rigctl/reboot-required && echo marked || "
                   "echo clear").strip() == "clear"


def test_an_ssh_connection_cut_mid_converge(lab):
    inv = lab.inventory(240)
    earlier = lab.rollouts()
    proc = subprocess.Popen(
        [str(BIN / "rigctl"), "fleet", "update", "lab-rig-1", "-i", inv, "--canary", "0",
         "--json"], env=lab.s.rigctl.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    container = f"rigctl-{lab.s.name}-rig-1"
    try:
        _wait_for_step(lab, "b1-update", proc, earlier, task=CONVERGE_TASK)
        time.sleep(3)  # into the converge
        assert _docker("stop", "-t", "1", container).returncode == 0
        out, err = proc.communicate(timeout=600)
    finally:
        _docker("start", container)
    assert proc.returncode == 1, out + err
    rig = _rigs(json.loads(out))["lab-rig-1"]
    assert rig["result"] == "unreachable" and rig["message"].startswith("converge: ")
    assert rig["driver_before"] == "none" and rig["driver_after"] is None
    assert rig["state"] == "unknown: not reachable after the change started"
