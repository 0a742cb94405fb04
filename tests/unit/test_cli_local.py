"""The CLI end to end through ansible-runner, against this machine over a local connection
(read-only roles: facts and preflight). No Docker, no network."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RIGCTL = [sys.executable, "-m", "rigctl"]
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the local rig needs root (become via su)")


def local_inventory(path: Path, **rig_vars) -> Path:
    extra = "".join(f"          {k}: {json.dumps(v)}\n" for k, v in rig_vars.items())
    path.write_text(
        textwrap.dedent(
            f"""\
            all:
              children:
                rigs:
                  hosts:
                    local-rig:
                      ansible_connection: local
                      ansible_python_interpreter: {PYTHON}
                      ansible_become_method: su
            """
        )
        + extra
    )
    return path


def rigctl(*args, cwd: Path, env_extra=None):
    env = dict(os.environ, RIGCTL_HOME=str(cwd / "state"), PYTHONPATH=str(ROOT))
    env.update(env_extra or {})
    return subprocess.run(RIGCTL + list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_facts_json_from_another_directory(tmp_path):
    inv = local_inventory(tmp_path / "hosts.yml")
    proc = rigctl("facts", "-i", str(inv), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    facts = data["hosts"]["local-rig"]
    with open("/etc/os-release") as fh:
        os_id = next(line.split("=", 1)[1].strip().strip('"') for line in fh if line.startswith("ID="))
    assert facts["os"]["id"] == os_id
    assert facts["gpu_view"] == "none"  # this machine has no GPU, and no simulated layer
    assert data["run"]["hosts"]["local-rig"]["failed"] == 0
    assert Path(data["run"]["artifacts"]).is_dir()


def test_provision_runs_and_rerun_changes_nothing(tmp_path):
    inv = local_inventory(tmp_path / "hosts.yml")
    proc = rigctl("provision", "host", "local-rig", "-i", str(inv), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["ok"] is True
    assert summary["hosts"]["local-rig"]["changed"] == 0
    assert summary["changes"] == []


def test_preflight_failure_exits_1_with_task_message_and_artifacts(tmp_path):
    inv = local_inventory(tmp_path / "hosts.yml", rig_min_free_disk_gib=9999)
    proc = rigctl("provision", "host", "local-rig", "-i", str(inv), cwd=tmp_path)
    assert proc.returncode == 1
    assert "local-rig" in proc.stdout
    assert "Stop when a preflight check fails" in proc.stderr
    assert "disk_space" in proc.stderr and "need 9999" in proc.stderr
    assert "run artifacts kept in" in proc.stderr


def test_check_mode_reports_nothing_changed(tmp_path):
    inv = local_inventory(tmp_path / "hosts.yml")
    proc = rigctl("provision", "host", "local-rig", "-i", str(inv), "--check", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "check mode: nothing was changed" in proc.stdout


def test_plain_progress_when_not_a_tty(tmp_path):
    inv = local_inventory(tmp_path / "hosts.yml")
    proc = rigctl("provision", "host", "local-rig", "-i", str(inv), cwd=tmp_path)
    assert proc.returncode == 0
    assert "local-rig: ok: Gather rig facts" in proc.stderr
    assert "\x1b[" not in proc.stdout + proc.stderr  # no terminal control codes in logs


def test_installed_wheel_works_outside_the_checkout(tmp_path):
    """`pip install .` carries playbooks, roles, modules and ansible.cfg in the package."""
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    site = tmp_path / "site"
    wheel = next(wheels.glob("rigctl-*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    shipped = site / "rigctl" / "_ansible"
    for rel in (
        "ansible.cfg",
        "playbooks/provision.yml",
        "roles/rig_facts/tasks/main.yml",
        "plugins/modules/rig_facts.py",
        "inventory/example/hosts.yml",
    ):
        assert (shipped / rel).is_file(), rel
    work = tmp_path / "elsewhere"
    work.mkdir()
    inv = local_inventory(work / "hosts.yml")
    probe = subprocess.run(
        [sys.executable, "-c", "import rigctl.paths as p; print(p.ansible_dir())"],
        cwd=work,
        env=dict(os.environ, PYTHONPATH=str(site)),
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(probe.stdout.strip()) == shipped
    proc = subprocess.run(
        RIGCTL + ["facts", "-i", str(inv), "--json"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PYTHONPATH=str(site), RIGCTL_HOME=str(work / "state")),
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["hosts"]["local-rig"]["schema"] == 1
    shutil.rmtree(wheels)
