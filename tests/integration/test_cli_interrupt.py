"""Ctrl-C (SIGINT to the CLI process, as a terminal sends it) on a lab of two rigs (module
scope), asserted on the rigs themselves, in the output and in the exit code.

`rigctl provision host`: a task of the real playbook is made slow on the rig (a systemd
drop-in gives nvidia-persistenced an ExecStartPre that marks its start, sleeps, marks its
end), so "Enable and start nvidia-persistenced" is in flight when the signal comes. The
first Ctrl-C lets that task finish on the rig and stops the play before the next one
(nothing of the power-limit block after it was written, no Ansible temporary file left);
a second Ctrl-C cancels the run during the task and the output names it as cut; a run
after that brings the rig to the inventory's state.

`rigctl fleet update --confirm`: Ctrl-C at the question between batches, and EOF on
stdin, stop the rollout as not confirmed with the summary printed, the record written,
the second rig untouched, exit 1.
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

SLOW_TASK = "gpu_tuning / Enable and start nvidia-persistenced"
DROP_IN = "/etc/systemd/system/nvidia-persistenced.service.d/rigctl-test-slow.conf"
SLOW_S = 12


class Lab:
    def __init__(self, session):
        self.s = session
        self.base = yaml.safe_load(open(session.inventory).read())

    def container(self, rig: str) -> str:
        return f"rigctl-{self.s.name}-{rig.removeprefix('lab-')}"

    def sh(self, rig: str, command: str, check=True) -> str:
        """A shell command as root in the rig's container (test setup and inspection)."""
        proc = subprocess.run(["docker", "exec", self.container(rig), "sh", "-c", command],
                              capture_output=True, text=True, timeout=120)
        if check:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    def inventory(self, watts: int) -> str:
        data = yaml.safe_load(yaml.safe_dump(self.base))
        data["all"]["children"]["rigs"]["children"]["lab"]["vars"]["rig_power_limit_w"] = watts
        path = self.s.home / f"inv-{watts}-{uuid.uuid4().hex[:6]}.yml"
        path.write_text(yaml.safe_dump(data))
        return str(path)

    def limits(self, rig: str) -> list[float]:
        out = self.sh(rig, "nvidia-smi --query-gpu=power.limit --format=csv,noheader,nounits")
        return [float(x) for x in out.split()]

    def start(self, *args, stdin=subprocess.DEVNULL):
        """`rigctl ARGS` in the background, its output in files (no pipe to fill up)."""
        tag = uuid.uuid4().hex[:6]
        out, err = self.s.home / f"{tag}.out", self.s.home / f"{tag}.err"
        proc = subprocess.Popen([str(BIN / "rigctl"), *args], env=self.s.rigctl.env,
                                cwd=self.s.home, stdin=stdin, stdout=open(out, "w"),
                                stderr=open(err, "w"), text=True)
        return proc, out, err

    def slow_persistenced(self, rig: str) -> None:
        """nvidia-persistenced stopped and disabled (the provision starts it: a change), its
        start made slow by a drop-in that marks the start and the end in /run."""
        self.sh(rig, "systemctl disable --now nvidia-persistenced.service; "
                f"mkdir -p {DROP_IN.rsplit('/', 1)[0]}; rm -f /run/rigctl-test-slow.*; "
                f"printf '[Service]\\nExecStartPre=/bin/sh -c \"touch /run/rigctl-test-slow.started; "
                f"sleep {SLOW_S}; touch /run/rigctl-test-slow.finished\"\\n' > {DROP_IN}; "
                "systemctl daemon-reload")

    def fast_persistenced(self, rig: str) -> None:
        self.sh(rig, f"rm -f {DROP_IN} /run/rigctl-test-slow.*; systemctl daemon-reload")

    def wait_for(self, rig: str, path: str, proc, timeout=300) -> None:
        deadline = time.monotonic() + timeout
        while self.sh(rig, f"test -e {path} && echo yes || true").strip() != "yes":
            assert proc.poll() is None, f"rigctl ended (rc {proc.returncode}) before {path} appeared"
            assert time.monotonic() < deadline, f"{path} did not appear in {timeout} s"
            time.sleep(0.3)

    def ansible_leftovers(self, rig: str) -> str:
        """Ansible's temporary files on the rig (a cut module run leaves them)."""
        return self.sh(rig, "find /etc /usr/local /tmp /var/tmp /root /home -xdev "
                       "\\( -name '.ansible_tmp*' -o -name 'ansible-tmp-*' -o -name 'AnsiballZ_*' \\) "
                       "2>/dev/null || true").strip()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with lab_session(tmp_path_factory, "b-int", "--rigs", "2", "--profile", "4x3090") as s:
        yield Lab(s)


def test_provision_first_ctrl_c_lets_the_running_task_finish(lab):
    rig = "lab-rig-1"
    inv = lab.inventory(300)
    before = lab.limits(rig)
    lab.slow_persistenced(rig)
    try:
        proc, out, err = lab.start("provision", "host", rig, "-i", inv)
        lab.wait_for(rig, "/run/rigctl-test-slow.started", proc)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=300)
        stdout, stderr = out.read_text(), err.read_text()
        # the task in flight finished on the rig: its unit start ran to its end
        assert lab.sh(rig, "ls /run/rigctl-test-slow.finished", check=False).strip(), stderr
        assert lab.sh(rig, "systemctl is-active nvidia-persistenced.service").strip() == "active"
    finally:
        lab.fast_persistenced(rig)
    assert rc == 1, stdout + stderr
    assert "Ctrl-C: the task running on the rigs finishes, then the play stops" in stderr
    assert f"{rig}: changed: {SLOW_TASK}" in stderr
    assert "interrupted (Ctrl-C): the play stopped between two tasks; no task was cut" in stdout
    assert f"{rig}: left as: partly provisioned: every task that started finished, the last " \
           f"one '{SLOW_TASK}'" in stdout
    assert f"to finish: rigctl provision host {rig} -i {inv}" in stdout
    assert any(line.split()[:2] == [rig, "stopped"] for line in stdout.splitlines()), stdout
    # nothing after it ran: the power-limit block (its first task creates /etc/rigctl) never
    # started, the limits are as before, and no half-written file or temporary file is left
    assert lab.sh(rig, "test -e /etc/rigctl && echo present || echo absent").strip() == "absent"
    assert lab.limits(rig) == before
    assert lab.ansible_leftovers(rig) == ""


def test_provision_second_ctrl_c_cancels_then_a_rerun_finishes(lab):
    rig = "lab-rig-2"
    inv = lab.inventory(300)
    before = lab.limits(rig)
    lab.slow_persistenced(rig)
    try:
        proc, out, err = lab.start("provision", "host", rig, "-i", inv)
        lab.wait_for(rig, "/run/rigctl-test-slow.started", proc)
        proc.send_signal(signal.SIGINT)
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        rc = proc.wait(timeout=120)
        took = time.monotonic() - started
        # cancelled while the task ran: the unit's start had not finished
        assert lab.sh(rig, "ls /run/rigctl-test-slow.finished 2>/dev/null || true").strip() == ""
    finally:
        lab.sh(rig, "systemctl stop nvidia-persistenced.service", check=False)
        lab.fast_persistenced(rig)
    stdout, stderr = out.read_text(), err.read_text()
    assert rc == 1, stdout + stderr
    assert took < SLOW_S, f"the cancel took {took:.0f} s"
    assert "Ctrl-C again: cancelling the run now" in stderr
    assert f"cancelled (Ctrl-C twice): ansible-playbook was killed during '{SLOW_TASK}'" in stdout
    assert f"{rig}: left as: unknown: '{SLOW_TASK}' was cut on it and may be half done" in stdout
    assert any(line.split()[:2] == [rig, "cut"] for line in stdout.splitlines()), stdout
    assert lab.sh(rig, "test -e /etc/rigctl && echo present || echo absent").strip() == "absent"
    assert lab.limits(rig) == before
    # a run after the cancel brings the rig to the inventory's state
    again = lab.s.rigctl("provision", "host", rig, "-i", inv, "--json", timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)["interrupted"] is None
    assert lab.limits(rig) == [300.0] * 4
    assert "300" in lab.sh(rig, "cat /etc/rigctl/*")
    assert lab.sh(rig, "systemctl is-active nvidia-persistenced.service").strip() == "active"


def _rollout(lab, stdin, interrupt: bool):
    inv = lab.inventory(280)
    before = lab.limits("lab-rig-2")
    proc, out, err = lab.start("fleet", "update", "-i", inv, "--confirm", "--canary", "1",
                               "--batch", "1", stdin=stdin)
    if interrupt:
        deadline = time.monotonic() + 600
        while "continue with lab-rig-2? [y/N]" not in err.read_text():
            assert proc.poll() is None, out.read_text() + err.read_text()
            assert time.monotonic() < deadline, "no question in 600 s"
            time.sleep(0.5)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=600)
    stdout, stderr = out.read_text(), err.read_text()
    assert rc == 1, stdout + stderr
    root = lab.s.home / "rollouts"
    rid = sorted(p.name for p in root.iterdir())[-1]
    data = json.loads((root / rid / "rollout.json").read_text())
    assert data["state"] == "stopped" and data["stop_reason"] == "not confirmed"
    assert data["finished"]
    assert data["rigs"]["lab-rig-1"]["result"] == "done"
    assert data["rigs"]["lab-rig-2"]["result"] == "not started"
    assert f"rollout {rid}: stopped (not confirmed): 1 done" in stdout
    assert f"resume: rigctl fleet update --resume {rid}" in stdout
    assert lab.limits("lab-rig-1") == [280.0] * 4
    assert lab.limits("lab-rig-2") == before
    return stderr


def test_fleet_confirm_ctrl_c_at_the_question_stops_the_rollout(lab):
    stdin = subprocess.PIPE  # kept open: only the Ctrl-C can end the question
    stderr = _rollout(lab, stdin, interrupt=True)
    assert "Ctrl-C at the question: not confirmed, the rollout stops here" in stderr


# EOF on stdin at the question (no answer: not confirmed) is tests/unit/test_cli_confirm.py,
# with a real stdin pipe; a second rollout here would only repeat the record checks above.
