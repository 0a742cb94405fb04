"""The CLI end to end through ansible-runner against lab rigs (never the machine running the
tests): facts as JSON from another directory, a preflight failure (exit 1, the failing task,
kept artifacts), check mode, `provision fleet`, plain progress lines, and the installed wheel
run outside the checkout.

Everything here is read only on the rigs (facts, a run stopped by preflight before any
change, check mode), so it shares the session's two-rig lab with test_rigs.py in any order.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.wheel import build_and_install

pytestmark = [pytest.mark.lab, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def with_rig_vars(lab, path: Path, rig: str, **rig_vars) -> str:
    """A copy of the lab inventory with variables added to one rig."""
    data = yaml.safe_load(Path(lab.inventory).read_text())
    data["all"]["children"]["rigs"]["children"]["lab"]["hosts"][rig].update(rig_vars)
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_facts_json_from_another_directory(lab2, tmp_path):
    rc, data = lab2.rigctl.json("facts", "-i", lab2.inventory, "lab-rig-1", "--json",
                                cwd=tmp_path)
    assert rc == 0, data
    facts = data["hosts"]["lab-rig-1"]
    assert facts["os"]["id"] == "debian"
    assert facts["gpu_view"] == "simulated"
    assert data["run"]["hosts"]["lab-rig-1"]["failed"] == 0
    assert Path(data["run"]["artifacts"]).is_dir()


def test_preflight_failure_exits_1_with_task_message_and_artifacts(lab2, tmp_path):
    # stops in preflight, after the read-only facts and before any change
    inv = with_rig_vars(lab2, tmp_path / "hosts.yml", "lab-rig-1", rig_min_free_disk_gib=9999)
    proc = lab2.rigctl("provision", "host", "lab-rig-1", "-i", inv, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "lab-rig-1" in proc.stdout
    assert "Stop when a preflight check fails" in proc.stderr
    assert "disk_space" in proc.stderr and "need 9999" in proc.stderr
    assert "run artifacts kept in" in proc.stderr


@pytest.fixture(scope="module")
def check_run(lab2, tmp_path_factory):
    """`rigctl provision host lab-rig-1 --check`, output not on a terminal."""
    return lab2.rigctl("provision", "host", "lab-rig-1", "-i", lab2.inventory, "--check",
                       cwd=tmp_path_factory.mktemp("check"))


def test_check_mode_reports_nothing_changed(check_run):
    assert check_run.returncode == 0, check_run.stdout + check_run.stderr
    assert "check mode: nothing was changed" in check_run.stdout


def test_plain_progress_when_not_a_tty(check_run):
    assert check_run.returncode == 0, check_run.stderr
    # one plain line per step: "[ 3.4s] lab-rig-1: ok: rig_facts / Gather rig facts"
    assert re.search(r"\blab-rig-1: ok: .*Gather rig facts$", check_run.stderr, re.M), (
        check_run.stderr)
    assert "Validating arguments" not in check_run.stderr  # Ansible's plumbing is not a step
    assert "\x1b[" not in check_run.stdout + check_run.stderr  # no terminal control codes


def test_provision_fleet_runs_every_selected_rig(lab2, tmp_path):
    proc = lab2.rigctl("provision", "fleet", "-i", lab2.inventory, "--check", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "provision lab-rig-1, lab-rig-2" in proc.stdout
    assert "check mode: nothing was changed" in proc.stdout
    proc = lab2.rigctl("provision", "fleet", "-i", lab2.inventory, "--limit", "no-such-rig",
                       cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr


def test_installed_wheel_runs_outside_the_checkout(lab2, tmp_path):
    """`pip install .` carries playbooks, roles, modules and ansible.cfg in the package, and
    that copy (not the checkout's) runs a playbook on a lab rig."""
    site = build_and_install(tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site), RIGCTL_HOME=str(work / "state"))
    probe = subprocess.run(
        [sys.executable, "-c", "import rigctl.paths as p; print(p.ansible_dir())"],
        cwd=work, env=env, capture_output=True, text=True, check=True)
    assert Path(probe.stdout.strip()) == site / "rigctl" / "_ansible"
    assert not Path(probe.stdout.strip()).is_relative_to(ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "rigctl", "facts", "-i", lab2.inventory, "lab-rig-2", "--json"],
        cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["hosts"]["lab-rig-2"]["schema"] == 1
    assert data["hosts"]["lab-rig-2"]["gpu_view"] == "simulated"
