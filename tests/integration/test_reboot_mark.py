"""The IOMMU GRUB drop-in and the pending-reboot mark on a lab rig: rig_iommu_policy
passthrough writes the drop-in and marks a reboot (facts, verify and the provision
summary show it), back to check removes the drop-in (the reboot stays pending), a reboot
(container restart) clears the mark, the next provision tidies it away."""

from __future__ import annotations

import json

import pytest

from .conftest import lab_session
from .test_tuning import _tuning_lab

pytestmark = [pytest.mark.lab, pytest.mark.slow]

DROP_IN = "/etc/default/grub.d/rigctl-iommu.cfg"
MARK = "/var/lib/rigctl/reboot-required"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with lab_session(tmp_path_factory, "it-reboot", "--profile", "4x3090") as session:
        yield _tuning_lab(session)


def _provision(lab, inv):
    rc, summary = lab.rigctl.json("provision", "host", "lab-rig-1", "-i", inv, "--json")
    assert rc == 0, summary
    return summary


def _facts(lab, inv):
    rc, out = lab.rigctl.json("facts", "lab-rig-1", "-i", inv, "--json")
    assert rc == 0, out
    return out["hosts"]["lab-rig-1"]["reboot"]


def _reboot_check(lab, inv):
    rc, result = lab.rigctl.json("verify", "-i", inv, "-l", "lab-rig-1", "--json", "-k", "test_reboot")
    assert rc == 0, result  # a warn, never a failure
    (check,) = [c for c in result["hosts"]["lab-rig-1"]["checks"] if c["name"] == "test_no_reboot_pending"]
    return check


def _file(lab, path):
    return lab.ssh("lab-rig-1", f"sudo cat {path} 2>/dev/null || echo ABSENT").strip()


def test_drop_in_and_reboot_mark_follow_the_policy_and_the_reboot(lab):
    passthrough = lab.inventory("lab-rig-1", rig_iommu_policy="passthrough")
    summary = _provision(lab, passthrough)
    assert "iommu=pt" in _file(lab, DROP_IN)
    mark = json.loads(_file(lab, MARK))
    assert list(mark["reasons"]) == ["iommu"] and "iommu=pt" in mark["reasons"]["iommu"]
    assert list(summary["reboot_required"]) == ["lab-rig-1"]
    assert "iommu=pt" in summary["reboot_required"]["lab-rig-1"][0]
    facts = _facts(lab, passthrough)
    assert facts["required"] is True and "iommu=pt" in facts["reasons"][0]
    check = _reboot_check(lab, passthrough)
    assert check["outcome"] == "warn", check
    # plain output: one line per rig that needs a reboot
    proc = lab.rigctl("provision", "host", "lab-rig-1", "-i", passthrough)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("reboot needed: ")]
    assert len(lines) == 1 and lines[0].startswith("reboot needed: lab-rig-1: kernel command line"), lines

    # back to check: the drop-in goes, the reboot stays pending until the rig reboots
    check_inv = lab.inventory("lab-rig-1", rig_iommu_policy="check")
    summary = _provision(lab, check_inv)
    assert _file(lab, DROP_IN) == "ABSENT"
    assert summary["reboot_required"]["lab-rig-1"] == [
        "kernel command line: the IOMMU options of the GRUB drop-in removed (rig_iommu_policy: check)"
    ]
    again = _provision(lab, check_inv)
    assert again["hosts"]["lab-rig-1"]["changed"] == 0, again["changes"]
    assert list(again["reboot_required"]) == ["lab-rig-1"]

    # the reboot clears it; the next provision removes the old mark, then changes nothing
    lab.rigctl("lab", "restart", "--name", lab.name, "lab-rig-1", check=True)
    facts = _facts(lab, check_inv)
    assert facts["required"] is False and facts["cleared_by_reboot"] is True, facts
    assert _reboot_check(lab, check_inv)["outcome"] == "passed"
    summary = _provision(lab, check_inv)
    assert summary["reboot_required"] == {}
    assert _file(lab, MARK) == "ABSENT"
    assert _provision(lab, check_inv)["hosts"]["lab-rig-1"]["changed"] == 0
