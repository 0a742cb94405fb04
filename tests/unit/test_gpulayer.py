"""One decision (real or simulated GPU layer), one GPU model and one GPU list: the rig facts
and the GPU facts read the same layer and build their lists with the same function."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rigctl.core import constants, gpufacts, gpulayer, gpumodel, hostfacts, probe

from .test_hostfacts import pci_device, put

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def lab_root(tmp_path: Path) -> Path:
    put(tmp_path, "etc/os-release", "ID=debian\nVERSION_ID=12\n")
    put(tmp_path, constants.SIMGPU_PROFILE.lstrip("/"), json.dumps({"name": "2x3090"}))
    simsys = tmp_path / constants.SIMGPU_SYSFS_ROOT.lstrip("/")
    pci_device(simsys, "0000:01:00.0", "0x10de", "0x2204", "0x030000")
    pci_device(simsys, "0001:41:00.0", "0x10de", "0x2204", "0x030000", numa="1")
    put(simsys, "kernel/iommu_groups/0/type", "identity\n")
    # the container's real sysfs: never read for GPUs or the IOMMU on a lab rig
    pci_device(tmp_path / "sys", "0000:09:00.0", "0x10de", "0x2684", "0x030000")
    return tmp_path


def test_layer_real_and_simulated(tmp_path, lab_root):
    real = gpulayer.layer(str(tmp_path / "nothing"))
    assert real["simulated"] is False and real["simulation"] is None
    assert real["nvidia_smi"] == "nvidia-smi" and real["simgpu_tool"] is None
    assert real["sys_root"] == str(tmp_path / "nothing" / "sys")
    lab = gpulayer.layer(str(lab_root))
    assert lab["simulated"] is True and lab["simulation"]["profile"] == "2x3090"
    assert lab["nvidia_smi"] == constants.SIMGPU_TOOL
    assert lab["lspci"][0] == constants.SIMGPU_TOOL
    assert lab["sys_root"] == str(lab_root / constants.SIMGPU_SYSFS_ROOT.lstrip("/"))


def test_layer_kernel_log_and_probe(tmp_path, lab_root):
    """The kernel log since boot and the rig probe: the real commands, or the simulated
    layer's (same output formats, see tests/unit/test_simgpu_health.py)."""
    real = gpulayer.layer(str(tmp_path / "nothing"))
    assert real["kernel_log"] == ["journalctl", "-k", "-b", "--no-pager", "-o", "short-iso"]
    assert real["probe"] == [probe.PROBE_BINARY_PATH]
    lab = gpulayer.layer(str(lab_root))
    assert lab["kernel_log"] == [constants.SIMGPU_TOOL, "kernel-log"]
    assert lab["probe"] == [constants.SIMGPU_TOOL, "probe"]


def test_unreadable_profile_is_still_a_lab_rig(tmp_path):
    put(tmp_path, constants.SIMGPU_PROFILE.lstrip("/"), "[1, 2]")
    assert gpulayer.layer(str(tmp_path))["simulation"]["profile"] is None


def test_rig_facts_and_gpu_facts_have_one_gpu_list(lab_root, monkeypatch):
    monkeypatch.setattr(gpufacts, "unit_state", lambda unit: {"present": False})
    rig = hostfacts.gather(str(lab_root))
    gpus = gpufacts.gather(str(lab_root), lspci=False)
    assert rig["gpu_view"] == gpus["gpu_view"] == "simulated"
    assert rig["simulation"] == gpus["simulation"]
    assert [g["bus_id"] for g in rig["gpus"]] == [g["bus_id"] for g in gpus["gpus"]] == [
        "0000:01:00.0", "0001:41:00.0"]
    for a, b in zip(rig["gpus"], gpus["gpus"], strict=True):
        assert sorted(a) == sorted(b) and sorted(a["link"]) == sorted(b["link"])
        assert a["simulated"] and a["name"] == b["name"] == "NVIDIA GeForce RTX 3090"
    # what rig facts do not read is said as not read, not as "unlocked"
    assert rig["gpus"][0]["clocks"]["locked_source"] is None
    assert gpus["gpus"][0]["clocks"]["locked_source"] == "record"


def test_iommu_of_a_lab_rig_is_marked_simulated_by_every_reader(lab_root):
    # hw_checks read the simulated IOMMU groups without saying they were simulated, while
    # rig_facts said so: both call hostfacts.read_iommu now.
    iommu = hostfacts.read_iommu(str(lab_root))
    assert iommu["simulated"] is True and iommu["source"].startswith("simulated")
    assert iommu["groups"] == 1 and iommu["mode"] == "passthrough"
    assert hostfacts.gather(str(lab_root))["iommu"] == iommu


def test_only_gpulayer_decides_real_or_simulated():
    """No other host-side reader looks at the simulated layer's paths itself."""
    pattern = re.compile(r"SIMGPU_(PROFILE|SYSFS_ROOT|TOOL)\b|hostfacts\.simulation\(")
    offenders = []
    for path in [*(REPO / "rigctl" / "core").glob("*.py"), *(REPO / "plugins" / "modules").glob("*.py")]:
        if path.name in ("gpulayer.py", "constants.py"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == [], "ask rigctl.core.gpulayer.layer():\n" + "\n".join(offenders)


def test_gpu_model_keys_are_the_same_with_and_without_a_driver():
    pci = [{"bus_id": "0000:01:00.0", "device_id": "2204", "model": "GeForce RTX 3090",
            "generation": "Ampere", "link": {}, "simulated": False}]
    row = {"index": 0, "pci.bus_id": "00000000:01:00.0", "name": "NVIDIA GeForce RTX 3090",
           "power.limit": 350.0, "memory.total": 24576}
    bare, full = gpumodel.build(pci, []), gpumodel.build(pci, [row])
    assert sorted(bare[0]) == sorted(full[0])
    assert (bare[0]["driver_visible"], full[0]["driver_visible"]) == (False, True)
    assert full[0]["power"]["current_w"] == 350.0 and bare[0]["power"]["current_w"] is None
