"""The wheel carries everything rigctl needs (playbooks, roles, modules, ansible.cfg, the
example inventory) and, installed outside the checkout, runs from another directory. No
playbook runs here: no host, not even this machine, is touched (running the installed wheel
against a lab rig is tests/integration/test_cli_lab.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.wheel import build_and_install

RIGCTL = [sys.executable, "-m", "rigctl"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("wheel")
    site = build_and_install(base)
    work = base / "elsewhere"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site), RIGCTL_HOME=str(work / "state"))
    env.pop("RIGCTL_INVENTORY", None)
    return site, work, env


def run(args, work: Path, env: dict):
    return subprocess.run(RIGCTL + list(args), cwd=work, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_wheel_carries_the_ansible_content(installed):
    site, _, _ = installed
    shipped = site / "rigctl" / "_ansible"
    for rel in ("ansible.cfg", "playbooks/provision.yml", "playbooks/facts.yml",
                "roles/rig_facts/tasks/main.yml", "roles/rig_preflight/tasks/main.yml",
                "plugins/modules/rig_facts.py", "inventory/example/hosts.yml"):
        assert (shipped / rel).is_file(), rel


def test_the_installed_package_finds_its_own_copy_from_another_directory(installed):
    site, work, env = installed
    probe = subprocess.run(
        [sys.executable, "-c", "import rigctl, rigctl.paths as p; print(rigctl.__file__); "
         "print(p.ansible_dir()); print(p.module_utils_dir())"],
        cwd=work, env=env, capture_output=True, text=True, check=True)
    package, ansible_dir, module_utils = probe.stdout.split()
    assert Path(package).is_relative_to(site)
    assert Path(ansible_dir) == site / "rigctl" / "_ansible"
    assert (Path(module_utils) / "rigctl" / "core").is_dir()


def test_the_installed_cli_checks_the_shipped_example_inventory(installed):
    site, work, env = installed
    inv = work / "inventory"
    shutil.copytree(site / "rigctl" / "_ansible" / "inventory" / "example", inv)
    proc = run(["inventory", "check", "-i", str(inv), "--json"], work, env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["ok"] is True and data["rigs"] == ["rig-epyc-1", "rig-epyc-2", "rig-tr-1"]


def test_the_installed_cli_stops_an_unknown_host_before_any_run(installed):
    _, work, env = installed
    inv = work / "one.yml"
    inv.write_text("all:\n  children:\n    rigs:\n      hosts:\n"
                   "        rig-a: {ansible_host: 192.0.2.10}\n")
    proc = run(["provision", "host", "rig-nope", "-i", str(inv)], work, env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "rig-nope" in proc.stderr and "Traceback" not in proc.stderr
    assert not (work / "state" / "runs").exists()  # no playbook was started
