"""Rig health on lab rigs over SSH: every health check fails on its failure profile with a
message naming the GPU, the evidence and the fix, passes as `simulated` where the rig is
healthy, and the findings reach `--json` (the report's data) under `health`.

One lab, one rig per profile (the simulated GPU layer's failure profiles: Xid, AER on a
switch riser, HW power brake under load, a Gen3 x4 riser, a degraded NVLink bridge, a
dual-socket board); only the health suite runs (`-k test_health`). The GPUs are simulated:
nothing here reads as real.
"""

from __future__ import annotations

import uuid

import pytest
import yaml

from .conftest import lab_session

pytestmark = [pytest.mark.lab, pytest.mark.slow]

PROFILES = ["4x3090-xid", "4x3090-aer", "4x3090-throttle", "4x3090-x4riser",
            "2x3090-nvlink-degraded", "4x3090-2socket"]


@pytest.fixture(scope="module")
def verified(tmp_path_factory):
    with lab_session(tmp_path_factory, "it-health", "--profiles", ",".join(PROFILES)) as session:
        data = yaml.safe_load(open(session.inventory).read())
        hosts = data["all"]["children"]["rigs"]["children"]["lab"]["hosts"]
        by_profile = {v["rig_lab_profile"]: k for k, v in hosts.items()}
        # the dual-socket rig also gets a PSU its stock 4 x 350 W cannot live with
        hosts[by_profile["4x3090-2socket"]].update(rig_psu_watts=1000, rig_platform_watts=150)
        inv = session.home / f"inv-{uuid.uuid4().hex[:6]}.yml"
        inv.write_text(yaml.safe_dump(data))
        rc, result = session.rigctl.json("verify", "-i", str(inv), "--json", "-k", "test_health",
                                         timeout=1200)
        yield rc, result, by_profile


def _checks(result, rig):
    return {c["name"].split("[")[0]: c for c in result["hosts"][rig]["checks"]}


def _failed(verified, profile, test):
    rc, result, by_profile = verified
    check = _checks(result, by_profile[profile])[test]
    assert check["outcome"] == "failed", check
    return check["details"]


def test_run_fails_and_says_simulated(verified):
    rc, result, by_profile = verified
    assert rc == 1
    for rig in by_profile.values():
        assert result["hosts"][rig]["gpu_view"] == "simulated"


def test_xid_79_fails_naming_gpu_2_and_the_riser(verified):
    details = _failed(verified, "4x3090-xid", "test_no_xid_errors_since_boot")
    assert "GPU 2 (0000:41:00.0): Xid 79 (GPU has fallen off the bus) x1" in details["found"]
    assert "Xid 13" not in details["found"]  # the warn-level Xid 13 is not the failure shown
    assert "riser" in details["fix"]


def test_aer_on_the_switch_riser_fails_with_the_slot_path(verified):
    details = _failed(verified, "4x3090-aer", "test_no_pcie_errors_on_gpu_slot_paths")
    assert "GPU 2 (0000:43:00.0): the GPU itself, slot path " in details["found"]
    assert "aer_dev_correctable counts 260 corrected errors" in details["found"]
    assert "riser" in details["fix"]


def test_power_brake_under_load_fails_naming_gpu_1(verified):
    details = _failed(verified, "4x3090-throttle", "test_no_throttling_under_load")
    assert "GPU 1 (0000:21:00.0): HW Power Brake Slowdown active" in details["found"]
    assert "PSU" in details["fix"]


def test_x4_riser_fails_under_load(verified):
    details = _failed(verified, "4x3090-x4riser", "test_pcie_links_at_max_under_load")
    assert ("GPU 2 (0000:41:00.0): under load the link ran at Gen3 of Gen4 and x4 of x16"
            in details["found"])


def test_degraded_nvlink_bridge_fails(verified):
    details = _failed(verified, "2x3090-nvlink-degraded", "test_nvlink_bridges_up")
    assert "NVLink bridge between GPU 0 (0000:01:00.0) and GPU 1" in details["found"]
    assert "3 of 4 links active" in details["found"]
    assert "reseat the NVLink bridge" in details["fix"]


def test_dual_socket_warns_and_power_budget_fails(verified):
    rc, result, by_profile = verified
    checks = _checks(result, by_profile["4x3090-2socket"])
    numa = checks["test_gpus_on_one_cpu_socket"]
    assert numa["outcome"] == "warn", numa
    assert "pairs crossing sockets: 0-2 (SYS)" in numa["details"]["found"]
    budget = checks["test_power_limits_within_psu_budget"]
    assert budget["outcome"] == "failed", budget
    assert ("4 GPU limits 1400 W + platform 150 W = 1550 W against 900 W (90% of 1000 W PSU)"
            in budget["details"]["found"])
    assert checks["test_default_power_limits_within_psu_budget"]["outcome"] == "warn"


def test_healthy_parts_pass_as_simulated_and_findings_reach_the_report(verified):
    rc, result, by_profile = verified
    rig = by_profile["4x3090-xid"]
    checks = _checks(result, rig)
    for name in ("test_no_pcie_errors_on_gpu_slot_paths", "test_pcie_links_at_max_under_load",
                 "test_no_throttling_under_load", "test_gpus_on_one_cpu_socket"):
        assert checks[name]["outcome"] == "simulated", checks[name]
    assert checks["test_dcgm_diag_level1"]["outcome"] == "skipped"
    assert checks["test_nvlink_bridges_up"]["outcome"] == "skipped"
    findings = result["hosts"][rig]["report"]["health"]
    assert {"check", "gpu", "severity", "evidence", "fix"} == set(findings[0])
    assert any(f["check"] == "xid" and f["severity"] == "fail" and f["gpu"]["index"] == 2
               for f in findings)
