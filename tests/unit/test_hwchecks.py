"""The hardware checks on the simulated GPU layer's failure profiles (built from the
simulator's real output) and on parsed lspci text."""

from __future__ import annotations

import pytest

from rigctl.core import hwchecks, pcidev
from tests.captures import read_capture

from .test_gpufacts import sim_facts

NO_DISPLAY = {"read": True, "gpus": {}}


def run_checks(tmp_path, profile, flavor="p2p", policy=None, p2p_base=None, display=NO_DISPLAY):
    facts = sim_facts(tmp_path, profile)
    return hwchecks.evaluate(facts, facts["iommu"], facts["profile"]["cpu_vendor"], flavor, policy,
                             p2p_base=p2p_base, display=display)


def by_name(report):
    return {r["name"]: r for r in report["results"]}


def test_good_rig_passes_everything(tmp_path):
    report = run_checks(tmp_path, "4x3090")
    assert {r["name"]: r["status"] for r in report["results"]} == dict.fromkeys(hwchecks.CHECKS, "pass")
    assert report["policy"] == "enforce" and report["stop"] is False


@pytest.mark.parametrize("profile,check,needles", [
    ("4x3090-smallbar", "rebar", ["GPU 0 (0000:01:00.0)", "BAR1 is 256 MiB", "24576 MiB VRAM",
                                  "Above 4G Decoding", "vBIOS"]),
    ("4x3090-iommu", "iommu", ["translating DMA", "rig_iommu_policy: passthrough", "iommu=pt amd_iommu=on"]),
    ("4x3090-acs", "acs", ["bridge 0000:00:01.1 above GPU 0 (0000:01:00.0)", "ReqRedir+", "setpci"]),
    ("4x3090-x4riser", "pcie_links", ["GPU 2 (0000:41:00.0)", "x4 where the card does x16",
                                      "Gen3 where Gen4"]),
    ("6x3090", "chipset", ["GPU 1 (0000:05:00.0)", "through the chipset"]),
    ("mixed-3090-4090", "generations", ["Ampere", "Ada", "P2P", "RTX 3090", "RTX 4090",
                                        "byte patch of the installed libcuda",
                                        "rigctl never applies"]),
])
def test_each_failure_profile_fails_its_check_with_a_clear_message(tmp_path, profile, check, needles):
    report = run_checks(tmp_path, profile)
    result = by_name(report)[check]
    assert result["status"] == "fail", result
    text = " ".join(result["problems"])
    for needle in needles:
        assert needle in text, (needle, text)
    assert check in report["failed"] and report["stop"] is True
    # warn reports the same problems and does not stop
    warned = run_checks(tmp_path / "w", profile, policy="warn")
    assert warned["stop"] is False and warned["problems"] == report["problems"]


def test_acs_names_only_bridges_with_redirect(tmp_path):
    result = by_name(run_checks(tmp_path, "4x3090-acs"))["acs"]
    assert len(result["problems"]) == 2
    assert "GPU 1 (0000:21:00.0)" in result["problems"][1]


def test_policy_defaults_by_flavor():
    assert hwchecks.effective_policy(None, "p2p") == "enforce"
    assert hwchecks.effective_policy(None, "open") == "warn"
    assert hwchecks.effective_policy("warn", "p2p") == "warn"
    assert hwchecks.effective_policy("enforce", "open") == "enforce"


def test_mixed_generations_fine_without_p2p(tmp_path):
    result = by_name(run_checks(tmp_path, "mixed-3090-4090", flavor="open"))["generations"]
    assert result["status"] == "pass" and "fine without P2P" in result["summary"]


def test_unknown_facts_never_fail():
    gpus = [{"index": 0, "bus_id": "0000:01:00.0", "name": "x", "bar1_mib": None, "vram_mib": None,
             "link": {}, "behind_chipset": None, "generation": "Ampere"},
            {"index": 1, "bus_id": "0000:02:00.0", "name": "x", "bar1_mib": None, "vram_mib": None,
             "link": {}, "behind_chipset": None, "generation": "Ampere"}]
    report = hwchecks.evaluate({"gpus": gpus, "bridges": None}, {"mode": "unknown"}, "AMD", "p2p")
    statuses = {r["name"]: r["status"] for r in report["results"]}
    assert statuses == {"rebar": "unknown", "iommu": "unknown", "acs": "unknown",
                        "pcie_links": "unknown", "chipset": "unknown", "generations": "pass",
                        "display": "unknown"}
    assert report["stop"] is False


def test_idle_gen1_link_is_not_a_failure():
    gpu = {"index": 0, "bus_id": "0000:01:00.0", "name": "x",
           "link": {"gen_current": 1, "gen_max": 4, "width_current": 16, "width_max": 16,
                    "device_gen_max": 4, "device_width_max": 16}}
    assert hwchecks.check_pcie_links([gpu])["status"] == "pass"
    gpu["link"]["gen_max"] = 3  # the slot allows Gen3 only
    assert "Gen3 where the card does Gen4" in hwchecks.check_pcie_links([gpu])["problems"][0]


def test_iommu_cmdline_by_vendor():
    assert hwchecks.iommu_cmdline("passthrough", "AMD") == "iommu=pt amd_iommu=on"
    assert hwchecks.iommu_cmdline("passthrough", "Intel") == "iommu=pt intel_iommu=on"
    assert hwchecks.iommu_cmdline("off", "Intel") == "intel_iommu=off"
    assert hwchecks.iommu_cmdline("check", "AMD") is None


LSPCI_BRIDGE = (
    "0000:40:01.1 PCI bridge [0604]: Advanced Micro Devices, Inc. [AMD] Starship/Matisse GPP "
    "Bridge [1022:1483] (prog-if 00 [Normal decode])\n"
) + """\
\tBus: primary=40, secondary=41, subordinate=41, sec-latency=0
\tCapabilities: [2a0 v1] Access Control Services
\t\tACSCap:\tSrcValid+ TransBlk+ ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl- DirectTrans+
\t\tACSCtl:\tSrcValid+ TransBlk- ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl- DirectTrans-
\tKernel driver in use: pcieport
"""


def test_parser_reads_bridge_bus_range_and_acs():
    (dev,) = pcidev.parse_lspci_vv(LSPCI_BRIDGE)
    assert dev["bus"] == {"primary": 0x40, "secondary": 0x41, "subordinate": 0x41}
    assert dev["acs_ctl"]["ReqRedir"] is True and dev["acs_ctl"]["EgressCtrl"] is False
    assert dev["acs_cap"]["DirectTrans"] is True
    bridges = [{"bdf": dev["bdf"], "bus": dev["bus"], "acs_ctl": dev["acs_ctl"]}]
    gpus = [{"index": 2, "bus_id": "0000:41:00.0"}, {"index": 3, "bus_id": "0000:61:00.0"}]
    result = hwchecks.check_acs(bridges, gpus)
    assert result["status"] == "fail" and "above GPU 2 (0000:41:00.0) " in result["problems"][0]


def _display_on(bus):
    return {"read": True, "gpus": {bus: {"active": True, "connectors": ["DP-1"]}}}


def test_display_on_a_5090_before_610_fails_naming_the_gpu_and_the_fix(tmp_path):
    facts = sim_facts(tmp_path, "8x5090")
    bus = facts["gpus"][0]["bus_id"]
    report = hwchecks.evaluate(facts, facts["iommu"], "AMD", "p2p", None, p2p_base="595.58.03",
                               display=_display_on(bus))
    result = by_name(report)["display"]
    assert result["status"] == "fail" and report["stop"] is True
    text = result["problems"][0]
    for needle in (f"GPU 0 ({bus})", "RTX 5090", "Display Active", "DP-1", "before 610.x",
                   "595.58.03", "headless", "610.43.02"):
        assert needle in text, (needle, text)
    # warn: reported, no stop
    warned = hwchecks.evaluate(facts, facts["iommu"], "AMD", "p2p", "warn", p2p_base="595.58.03",
                               display=_display_on(bus))
    assert warned["stop"] is False and by_name(warned)["display"]["status"] == "fail"


@pytest.mark.parametrize("profile, flavor, base", [
    ("8x5090", "p2p", "610.43.02"),   # fixed in the 610.x branches
    ("8x5090", "open", None),         # no P2P module
    ("4x3090", "p2p", "570.86.16"),   # not a 5090 rig
])
def test_display_is_no_problem_elsewhere(tmp_path, profile, flavor, base):
    facts = sim_facts(tmp_path, profile)
    bus = facts["gpus"][0]["bus_id"]
    result = by_name(hwchecks.evaluate(facts, facts["iommu"], "AMD", flavor, None, p2p_base=base,
                                       display=_display_on(bus)))["display"]
    assert result["status"] == "pass" and f"display on GPU 0 ({bus})" in result["summary"]


def test_display_read_from_nvidia_smi_and_drm_connectors(tmp_path):
    assert hwchecks.parse_display_csv("00000000:01:00.0, Enabled\n00000000:21:00.0, Disabled\n") \
        == {"0000:01:00.0": True, "0000:21:00.0": False}
    dev = tmp_path / "bus" / "pci" / "devices" / "0000:01:00.0"
    (dev / "drm" / "card0" / "card0-HDMI-A-1").mkdir(parents=True)
    (dev / "drm" / "card0" / "card0-HDMI-A-1" / "status").write_text("connected\n")
    (dev / "drm" / "card0" / "card0-DP-2").mkdir(parents=True)
    (dev / "drm" / "card0" / "card0-DP-2" / "status").write_text("disconnected\n")
    (tmp_path / "bus" / "pci" / "devices" / "0000:21:00.0").mkdir(parents=True)
    assert hwchecks.drm_connectors(str(tmp_path), "0000:01:00.0") == ["HDMI-A-1"]
    assert hwchecks.drm_connectors(str(tmp_path), "0000:21:00.0") is None
    layer = {"nvidia_smi": "/nonexistent/nvidia-smi", "sys_root": str(tmp_path)}
    got = hwchecks.read_display(layer, [{"bus_id": "0000:01:00.0"}, {"bus_id": "0000:21:00.0"}],
                                driver_answers=False)
    assert got == {"read": True, "gpus": {"0000:01:00.0": {"active": None,
                                                          "connectors": ["HDMI-A-1"]}}}


def test_4090_with_rtx_6000_ada_refused_although_one_generation():
    gpus = [{"index": 0, "bus_id": "0000:01:00.0", "name": "NVIDIA GeForce RTX 4090",
             "generation": "Ada"},
            {"index": 1, "bus_id": "0000:21:00.0", "name": "NVIDIA RTX 6000 Ada Generation",
             "generation": "Ada"}]
    result = hwchecks.check_generations(gpus, "p2p")
    assert result["status"] == "fail"
    assert "GPU 0 (0000:01:00.0) GeForce RTX 4090" in result["problems"][0]
    assert "GPU 1 (0000:21:00.0) RTX 6000 Ada Generation" in result["problems"][0]
    assert hwchecks.check_generations(gpus, "open")["status"] == "pass"


def test_display_active_read_from_real_query_gpu_captures():
    # an RTX 4080 SUPER driving a display, and a headless H200 (full --query-gpu CSV)
    desktop = hwchecks.parse_display_csv(read_capture("query-gpu-csv__rtx4080super__1.txt"),
                                         fields=None)
    assert desktop == {"0000:01:00.0": True}
    server = hwchecks.parse_display_csv(read_capture("query-gpu-csv__h200__1.txt"), fields=None)
    assert server == {"0000:83:00.0": False}
