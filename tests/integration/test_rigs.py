"""rigctl against lab rigs over real SSH: inventory check, facts, provision, verify."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET

import pytest

from rigctl.lab.model import DEFAULT_RELEASE

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def test_lab_inventory_passes_the_check(lab2):
    proc = lab2.rigctl("inventory", "check", "-i", lab2.inventory)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_facts_over_ssh_mark_gpus_simulated(lab2):
    rc, data = lab2.rigctl.json("facts", "-i", lab2.inventory, "--json")
    assert rc == 0, data
    assert sorted(data["hosts"]) == ["lab-rig-1", "lab-rig-2"]
    for facts in data["hosts"].values():
        # the lab's default image (Debian 13 trixie; Debian 12 with --release bookworm)
        want_version = {"bookworm": "12", "trixie": "13"}[DEFAULT_RELEASE]
        assert facts["os"]["id"] == "debian" and facts["os"]["version_id"] == want_version
        assert facts["gpu_view"] == "simulated"
        assert facts["simulation"]["profile"] == "4x3090"
        assert len(facts["gpus"]) == 4
        assert all(g["simulated"] for g in facts["gpus"])
        assert {g["name"] for g in facts["gpus"]} == {"NVIDIA GeForce RTX 3090"}
        # The simulated driver answers nvidia-smi; the real facts still say no module is loaded.
        assert all(g["driver_visible"] and g["power"]["current_w"] for g in facts["gpus"])
        assert facts["driver"]["loaded"] is None
        assert facts["container"] == "docker"
    # The human view says SIMULATED, never presents these as real hardware.
    proc = lab2.rigctl("facts", "-i", lab2.inventory, "lab-rig-1")
    assert proc.returncode == 0
    assert "SIMULATED" in proc.stdout and "not real hardware" in proc.stdout
    assert "real (" not in proc.stdout


def test_provision_host_then_rerun_changes_nothing(lab2):
    rc, first = lab2.rigctl.json("provision", "host", "lab-rig-1", "-i", lab2.inventory, "--json")
    assert rc == 0, first
    assert list(first["hosts"]) == ["lab-rig-1"]  # only the named host was touched
    assert first["hosts"]["lab-rig-1"]["failed"] == 0
    rc, second = lab2.rigctl.json("provision", "host", "lab-rig-1", "-i", lab2.inventory, "--json")
    assert rc == 0
    assert second["hosts"]["lab-rig-1"]["changed"] == 0 and second["changes"] == []


def test_provision_unknown_host_is_an_input_error(lab2):
    proc = lab2.rigctl("provision", "host", "lab-rig-9", "-i", lab2.inventory)
    assert proc.returncode == 2
    assert "lab-rig-9" in proc.stderr
    assert not (lab2.home / "runs").exists() or not any(
        p.name.endswith("provision") for p in (lab2.home / "runs").iterdir()
    )


def test_verify_fails_an_unprovisioned_rig_then_passes(lab2, tmp_path):
    # lab-rig-2 has not been provisioned yet: persistence is not set up there.
    rc, data = lab2.rigctl.json("verify", "-i", lab2.inventory, "--json", "lab-rig-2")
    assert rc == 1
    failed = {c["name"] for c in data["hosts"]["lab-rig-2"]["checks"] if c["outcome"] == "failed"}
    assert "test_persistenced_enabled" in failed
    rc, _ = lab2.rigctl.json("provision", "host", "lab-rig-2", "-i", lab2.inventory, "--json")
    assert rc == 0
    junit = tmp_path / "verify.xml"
    rc, data = lab2.rigctl.json("verify", "-i", lab2.inventory, "--json", "--junit", str(junit))
    assert rc == 0, data
    assert data["ok"] is True
    for host in ("lab-rig-1", "lab-rig-2"):
        checks = {c["name"]: c for c in data["hosts"][host]["checks"]}
        assert checks["test_become_gives_root"]["outcome"] == "passed"
        assert checks["test_os_supported"]["outcome"] == "passed"
        assert checks["test_gpu_view_reported_honestly"]["outcome"] == "passed"
        real_only = checks["test_gpu_count_matches_inventory"]
        assert real_only["outcome"] == "skipped" and "simulated" in real_only["message"]
    cases = ET.parse(junit).getroot().iter("testcase")
    assert len(list(cases)) == sum(len(h["checks"]) for h in data["hosts"].values())


def test_verify_reports_a_broken_rig(lab2):
    """Take sudo away from the SSH user on rig 2: verify must fail that check with a fix."""
    container = f"rigctl-{lab2.name}-rig-2"
    listing = subprocess.run(
        ["docker", "exec", container, "ls", "/etc/sudoers.d"], capture_output=True, text=True, check=True
    ).stdout.split()
    sudoers = [f for f in listing if f != "README"]
    assert sudoers, listing
    subprocess.run(["docker", "exec", container, "mkdir", "-p", "/root/sudoers.off"], check=True)
    for f in sudoers:
        subprocess.run(
            ["docker", "exec", container, "mv", f"/etc/sudoers.d/{f}", "/root/sudoers.off/"], check=True
        )
    try:
        rc, data = lab2.rigctl.json("verify", "-i", lab2.inventory, "--json", "lab-rig-2", "-k", "become")
        assert rc == 1
        check = next(c for c in data["hosts"]["lab-rig-2"]["checks"] if c["name"] == "test_become_gives_root")
        assert check["outcome"] == "failed"
        assert "passwordless sudo" in check["details"]["fix"]
        proc = lab2.rigctl("verify", "-i", lab2.inventory, "lab-rig-2", "-k", "become")
        assert proc.returncode == 1
        assert "FAIL lab-rig-2 test_become_gives_root" in proc.stdout
    finally:
        for f in sudoers:
            subprocess.run(
                ["docker", "exec", container, "mv", f"/root/sudoers.off/{f}", "/etc/sudoers.d/"], check=True
            )


def test_unreachable_rig_is_reported_and_others_still_gathered(lab2):
    """Runs last in this module: stops rig 2, then brings the lab back with `lab up`."""
    container = f"rigctl-{lab2.name}-rig-2"
    subprocess.run(["docker", "stop", container], check=True, capture_output=True)
    try:
        rc, data = lab2.rigctl.json("facts", "-i", lab2.inventory, "--json")
        assert rc == 1
        assert list(data["hosts"]) == ["lab-rig-1"]  # the reachable rig is still reported
        failure = data["run"]["failures"][0]
        assert failure["host"] == "lab-rig-2" and failure["unreachable"] is True
        assert "Connection refused" in failure["message"]
        proc = lab2.rigctl("facts", "-i", lab2.inventory)
        assert proc.returncode == 1
        # The pre-connection host key check finds it first: Ansible never tries it.
        assert "unreachable: lab-rig-2: task 'SSH host key check'" in proc.stderr
        assert "run artifacts kept in" in proc.stderr
    finally:
        lab2.rigctl("lab", "up", "--name", lab2.name, check=True)
    rc, _ = lab2.rigctl.json("facts", "-i", lab2.inventory, "--json")
    assert rc == 0
