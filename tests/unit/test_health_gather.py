"""Gathering on a rig (rigctl.core.healthfacts) and judging it (rigctl.core.health), against
the simulated GPU layer run from a temporary directory (its profile, state and sysfs tree
there; nothing on this machine is read as a GPU or changed): kernel log, bridges and AER
counters, topo/nvlink, the probe's load with samples, and a rig whose every check fails.

Everything here is simulated; the real formats are covered by test_health.py on captures.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest

from rigctl.core import health, healthfacts
from rigctl.simgpu import install, load_profile
from rigctl.simgpu.tool import sysfs as tool_sysfs


class SimRig:
    def __init__(self, base, profile):
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.profile = profile
        (base / "profile.json").write_bytes(install.profile_json(profile))
        archive = base / "rigctl-simgpu-archive"
        archive.write_bytes(install.simulator_script())
        archive.chmod(0o755)
        self.tool = str(base / "rigctl-simgpu")
        self.smi = str(base / "nvidia-smi")
        os.symlink(archive, self.tool)
        os.symlink(archive, self.smi)
        self.sys_root = base / "sys"
        resolved = load_profile(str(base / "profile.json"))
        for path, content, mode in tool_sysfs.sysfs_files(resolved, str(self.sys_root)):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(content)
            os.chmod(path, mode)
        self.env = {
            "RIGCTL_SIMGPU_PROFILE": str(base / "profile.json"),
            "RIGCTL_SIMGPU_STATE_DIR": str(base / "run"),
            "RIGCTL_SIMGPU_SYSFS_ROOT": str(self.sys_root),
            "RIGCTL_SIMGPU_ASSUME_ROOT": "1",
            "RIGCTL_SIMGPU_PROBE_SECONDS": "3",
        }

    def layer(self):
        return {
            "simulated": True,
            "simulation": {"profile": self.profile["name"], "profile_path": "profile.json",
                           "sysfs_root": str(self.sys_root), "nvidia_smi": self.tool},
            "sys_root": str(self.sys_root),
            "nvidia_smi": self.smi,
            "lspci": [self.tool, "lspci"],
            "kernel_log": [self.tool, "kernel-log"],
            "probe": [self.tool, "probe"],
            "simgpu_tool": self.tool,
        }

    def fault(self, *args):
        out = subprocess.run([sys.executable, self.tool, "fault", "add", *args],
                             env=dict(os.environ, **self.env), capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr


@pytest.fixture
def rig(tmp_path, monkeypatch):
    def make(profile):
        sim = SimRig(tmp_path / "rig", profile)
        for key, value in sim.env.items():
            monkeypatch.setenv(key, value)
        return sim

    return make


def _by_check(report, check):
    return [f for f in report["findings"] if f["check"] == check]


def test_healthy_4x3090_passes_every_check_that_applies(rig):
    sim = rig(load_profile("4x3090"))
    data, sources = healthfacts.gather(sim.layer(), load=True, dcgm=True)
    report = health.evaluate(data, psu_watts=[1600, 1000], platform_w=200)
    assert sources["gpu_view"] == "simulated"
    assert sources["kernel_log"]["source"].endswith("rigctl-simgpu kernel-log")
    assert [g["bus_id"] for g in data["gpus"]] == ["0000:01:00.0", "0000:21:00.0", "0000:41:00.0",
                                                    "0000:61:00.0"]
    # the root port above each GPU, from the simulated lspci bus numbers
    assert all(len(p) == 1 for p in data["paths"].values())
    assert data["load"]["samples"], sources["load"]
    assert {health.worst([f]) for f in report["findings"]} <= {"info"}
    checked = {k for k, v in report["checks"].items() if v["status"] == "checked"}
    assert checked == {"xid", "pcie_aer", "pcie_link_load", "throttle", "numa", "power_budget"}
    assert report["checks"]["dcgm"] == {
        "status": "not_applicable", "reason": "the GPUs are simulated: DCGM diagnoses real GPUs only"}
    assert report["checks"]["nvlink"]["status"] == "not_applicable"


def test_faulty_rig_fails_each_check_naming_gpu_evidence_and_fix(rig):
    profile = copy.deepcopy(load_profile("4x3090"))
    profile["name"] = "health-faults"
    profile["numa_nodes"] = 2
    profile["numa_cpus"] = ["0-31", "32-63"]
    for gpu in profile["gpus"][2:]:
        gpu["numa_node"] = 1
    profile["gpus"][3]["link_width_current"] = 8
    profile["nvlink"] = [{"gpus": [0, 1]}]
    sim = rig(profile)
    sim.fault("xid", "--gpu", "2", "--code", "79")
    sim.fault("aer", "--gpu", "1", "--errors", "RxErr=40,BadTLP=3", "--device", "root_port")
    sim.fault("throttle", "--gpu", "0", "--reason", "hw_power_brake_slowdown")
    sim.fault("nvlink_down", "--gpu", "0", "--links", "2,3")
    data, sources = healthfacts.gather(sim.layer(), load=True, dcgm=False)
    report = health.evaluate(data, psu_watts=1000)

    (xid,) = _by_check(report, "xid")
    assert (xid["severity"], xid["gpu"]) == ("fail", {"index": 2, "bus_id": "0000:41:00.0"})
    assert "Xid 79 (GPU has fallen off the bus)" in xid["evidence"] and "riser" in xid["fix"]

    aer = _by_check(report, "pcie_aer")
    assert {f["gpu"]["index"] for f in aer} == {1}
    assert any("aer_dev_correctable counts 43 corrected errors" in f["evidence"] for f in aer)
    assert all("slot path" in f["evidence"] for f in aer)

    (link,) = [f for f in _by_check(report, "pcie_link_load") if f["severity"] == "fail"]
    assert link["gpu"]["index"] == 3 and "x8 of x16" in link["evidence"]

    throttled = [f for f in _by_check(report, "throttle") if f["severity"] == "fail"]
    assert {f["gpu"]["index"] for f in throttled} == {0}
    assert any("HW Power Brake Slowdown active" in f["evidence"] for f in throttled)

    (nvlink,) = _by_check(report, "nvlink")
    assert nvlink["severity"] == "fail" and "2 of 4 links active" in nvlink["evidence"]
    assert report["nvlink_pairs"][0]["state"] == "degraded"

    (numa,) = _by_check(report, "numa")
    assert numa["severity"] == "warn" and "0-2 (SYS)" in numa["evidence"]

    budget = _by_check(report, "power_budget")
    assert {f["severity"] for f in budget} == {"fail", "warn"}
    assert report["checks"]["dcgm"]["reason"] == "not asked (dcgm: false)"


def test_busy_gpus_are_not_loaded(rig):
    sim = rig(load_profile("2x4090"))
    out = subprocess.run([sys.executable, sim.tool, "apps", "add", "--gpu", "0", "--pid", "4242",
                          "--name", "python3"], env=dict(os.environ, **sim.env),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    data, _ = healthfacts.gather(sim.layer(), load=True, dcgm=False)
    assert data["load"]["samples"] == []
    assert data["load"]["error"].startswith("not loaded: 1 compute process use the GPUs (python3 (pid 4242)")
    report = health.evaluate(data)
    assert report["checks"]["throttle"]["status"] == "unknown"


def test_a_probe_too_quick_to_sample_runs_again_then_says_so(rig, monkeypatch):
    sim = rig(load_profile("2x4090"))
    monkeypatch.setenv("RIGCTL_SIMGPU_PROBE_SECONDS", "0")
    data, sources = healthfacts.gather(sim.layer(), load=True, dcgm=False)
    assert data["load"]["samples"] == [] and data["load"]["runs"] == healthfacts.MAX_RUNS
    assert data["load"]["error"].startswith("no sample while the probe ran (rc 0")
    assert sources["load"]["runs"] == healthfacts.MAX_RUNS
    report = health.evaluate(data)
    assert report["checks"]["pcie_link_load"]["status"] == "unknown"
