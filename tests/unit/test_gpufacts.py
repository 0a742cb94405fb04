"""GPU facts and the power-limit plan: on real captures (RTX 3090, RTX 4090) and on the
simulated GPU layer's output for the shipped profiles."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rigctl import paths
from rigctl.core import constants, gpufacts, gpumodel, hostfacts, pcidev, smiquery, smitopo
from rigctl.simgpu import install, load_profile
from tests.captures import read_capture

SCRIPT = Path(install.SIMULATOR_SOURCE)


def sim_facts(tmp_path: Path, profile_name: str, state: dict | None = None) -> dict:
    """What gpufacts.gather returns on a lab rig with this profile, built from the
    simulator's real output (run as a subprocess) and its sysfs tree in tmp_path."""
    profile = load_profile(profile_name)
    root = tmp_path / profile_name
    for path, content, _mode in install.sysfs_files(profile):
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(content)
    (root / "profile.json").write_bytes(install.profile_json(profile))
    env = dict(os.environ, RIGCTL_SIMGPU_PROFILE=str(root / "profile.json"),
               RIGCTL_SIMGPU_STATE_DIR=str(root / "state"), RIGCTL_SIMGPU_ASSUME_ROOT="1")

    def smi(*args, tool="nvidia-smi"):
        argv = [sys.executable, str(SCRIPT), *args]
        if tool == "rigctl-simgpu":
            link = root / "rigctl-simgpu"
            if not link.exists():
                link.symlink_to(SCRIPT)
            argv = [sys.executable, str(link), *args]
        return subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout

    pci = hostfacts.pci_gpus(str(root / constants.SIMGPU_SYSFS_ROOT.lstrip("/")), simulated=True)
    rows = smiquery.parse_query_gpu_csv(
        smi("--query-gpu=" + ",".join(gpumodel.QUERY_FIELDS), "--format=csv,noheader,nounits"),
        fields=list(gpumodel.QUERY_FIELDS),
    )
    bar1 = gpufacts.bar1_from_q(smi("-q", "-d", "MEMORY"))
    chipset = gpufacts.chipset_from_p2p(smitopo.parse_topo_p2p(smi("topo", "-p2p", "r")))
    devices = pcidev.parse_lspci_vv(smi("lspci", tool="rigctl-simgpu"))
    gpus = gpumodel.build(pci, rows, bar1, gpufacts.bar1_from_lspci(devices), chipset)
    bridges = [{"bdf": d["bdf"], "bus": d["bus"], "acs_ctl": d["acs_ctl"],
                "description": d["description"]} for d in devices if d["bus"]]
    iommu = hostfacts.iommu(str(root / constants.SIMGPU_SYSFS_ROOT.lstrip("/")), {})
    return {"gpu_view": "simulated", "gpus": gpus, "bridges": bridges, "iommu": iommu,
            "profile": profile}


def test_bar1_from_real_captures_two_generations():
    ampere = gpufacts.bar1_from_q(read_capture("nvidia-smi-q__rtx3090x2__1.txt"))
    ada = gpufacts.bar1_from_q(read_capture("nvidia-smi-q__rtx4090x8__1.txt"))
    assert ampere and ada and len(ada) == 8
    assert all(isinstance(v, int) and v >= 256 for v in (*ampere.values(), *ada.values()))
    assert all(bus.count(":") == 2 and len(bus) == 12 for bus in (*ampere, *ada))


def test_bar1_from_real_lspci_capture_small_bar():
    devices = pcidev.parse_lspci_vv(read_capture("lspci-vv__rtxa6000x4__1.txt"))
    sizes = gpufacts.bar1_from_lspci(devices)
    assert sizes and set(sizes.values()) == {256}


def test_merge_on_sim_has_every_fact(tmp_path):
    facts = sim_facts(tmp_path, "6x3090")
    gpus = facts["gpus"]
    assert [g["index"] for g in gpus] == list(range(6))
    gpu = gpus[1]
    assert gpu["bus_id"] == "0000:05:00.0" and gpu["uuid"].startswith("GPU-")
    assert gpu["name"] == "NVIDIA GeForce RTX 3090" and gpu["generation"] == "Ampere"
    assert gpu["vram_mib"] == 24576 and gpu["bar1_mib"] == 32768
    assert gpu["bar1_source"] == "nvidia-smi -q -d MEMORY"
    assert gpu["power"] == {"current_w": 350, "default_w": 350, "min_w": 100, "max_w": 350}
    assert gpu["persistence"] is False
    assert gpu["link"]["width_current"] == 4 and gpu["link"]["device_width_max"] == 16
    assert gpu["behind_chipset"] is True
    assert [g["behind_chipset"] for g in gpus].count(True) == 1


def test_merge_without_driver_uses_sysfs_and_lspci(tmp_path):
    facts = sim_facts(tmp_path, "4x3090-smallbar")
    pci = [dict(g, link={"gen_current": 4, "gen_max": 4, "width_current": 16, "width_max": 16},
                model="GeForce RTX 3090", device_id="2204") for g in facts["gpus"]]
    lspci = {g["bus_id"]: 256 for g in facts["gpus"]}
    gpus = gpumodel.build(pci, [], {}, lspci, {})
    assert all(g["bar1_mib"] == 256 and g["bar1_source"] == "lspci -vv" for g in gpus)
    assert all(g["vram_mib"] == 24576 and g["power"]["current_w"] is None for g in gpus)
    assert all(g["behind_chipset"] is None for g in gpus)


def _gpus():
    return [
        {"index": i, "bus_id": bus, "uuid": f"GPU-0000000{i}-0000-0000-0000-000000000000",
         "name": "NVIDIA GeForce RTX 3090",
         "power": {"current_w": 350.0, "default_w": 350.0, "min_w": 100.0, "max_w": 350.0}}
        for i, bus in enumerate(["0000:01:00.0", "0000:21:00.0", "0000:41:00.0"])
    ]


def test_power_plan_default_overrides_and_selectors():
    plan = gpufacts.plan_power_limits(
        _gpus(), 275, {"41:00.0": 250, "GPU-00000001-0000-0000-0000-000000000000": 300}
    )
    assert plan["errors"] == []
    assert [(g["target_w"], g["change"]) for g in plan["gpus"]] == [(275, True), (300, True), (250, True)]
    assert plan["configured"] == {"0000:01:00.0": 275, "0000:21:00.0": 300, "0000:41:00.0": 250}
    assert plan["gpus"][2]["source"] == "rig_power_limit_overrides['41:00.0']"
    assert "0000:41:00.0 250  # GPU 2" in gpufacts.settings_conf(plan)


def test_power_plan_no_setting_restores_default_and_nothing_configured():
    gpus = _gpus()
    gpus[0]["power"]["current_w"] = 275.0
    plan = gpufacts.plan_power_limits(gpus, None, {})
    assert plan["errors"] == [] and plan["configured"] == {}
    assert [g["change"] for g in plan["gpus"]] == [True, False, False]
    assert plan["gpus"][0]["target_w"] == 350.0 and plan["gpus"][0]["source"] == "default"


def test_power_plan_refuses_out_of_range_naming_gpu_range_and_key():
    plan = gpufacts.plan_power_limits(_gpus(), None, {2: 400, 7: 250})
    assert len(plan["errors"]) == 2
    out_of_range = [e for e in plan["errors"] if "outside" in e][0]
    assert "GPU 2 (0000:41:00.0" in out_of_range and "100-350 W" in out_of_range
    assert "rig_power_limit_overrides[2]" in out_of_range
    assert any("[7] names no GPU" in e for e in plan["errors"])


def test_power_plan_same_gpu_twice_and_no_driver():
    plan = gpufacts.plan_power_limits(_gpus(), None, {0: 250, "0000:01:00.0": 260})
    assert any("both name GPU 0" in e for e in plan["errors"])
    gpus = _gpus()
    for g in gpus:
        g["power"] = {"current_w": None, "default_w": None, "min_w": None, "max_w": None}
    assert gpufacts.plan_power_limits(gpus, None, {})["errors"] == []
    assert "no NVIDIA driver" in gpufacts.plan_power_limits(gpus, 250, {})["errors"][0]


def _clock_gpus(record=None):
    gpus = _gpus()
    for g in gpus:
        g["clocks"] = {"max_sm_mhz": 2100, "max_graphics_mhz": 2100,
                       "locked_mhz": (record or {}).get(g["bus_id"])}
        g["compute_mode"] = "default"
    return gpus


def test_settings_plan_locks_overrides_compute_mode_and_conf():
    plan = gpufacts.plan_gpu_settings(
        _clock_gpus({"0000:01:00.0": [210, 1695]}), {"min": 210, "max": 1695},
        {"41:00.0": {"min": 210, "max": 1500}}, "exclusive_process")
    assert plan["errors"] == []
    assert [(g["clocks_target"], g["clocks_change"]) for g in plan["gpus"]] == [
        ([210, 1695], None), ([210, 1695], "lock"), ([210, 1500], "lock")]
    assert plan["gpus"][2]["clocks_source"] == "rig_gpu_clock_lock_overrides['41:00.0']"
    assert all(g["compute_change"] and g["compute_target"] == "exclusive_process"
               for g in plan["gpus"])
    assert plan["configured"]["0000:41:00.0"] == {"clocks": [210, 1500], "compute": 3}
    power = gpufacts.plan_power_limits(_gpus(), 275, {})
    conf = gpufacts.settings_conf(power, plan)
    assert "0000:41:00.0 275  # GPU 2" in conf
    assert "0000:41:00.0 clocks 210,1500  # GPU 2" in conf and "0000:41:00.0 compute 3" in conf
    # what the boot script and the tuning suite read back is exactly the plan
    read = gpufacts.parse_settings_conf(conf)
    assert read["power"] == {bus: float(w) for bus, w in power["configured"].items()}
    assert read["clocks"] == {b: c["clocks"] for b, c in plan["configured"].items() if "clocks" in c}
    assert read["compute"] == {b: c["compute"] for b, c in plan["configured"].items()}
    assert read["unreadable"] == []


def test_settings_conf_reader_reports_what_the_boot_script_cannot_apply():
    read = gpufacts.parse_settings_conf("# c\n0000:01:00.0 270.5 # GPU 0\n0000:01:00.0 clocks 210\n"
                                     "0000:01:00.0 compute x\n\n")
    assert read["power"] == {"0000:01:00.0": 270.5} and read["clocks"] == {}
    assert read["unreadable"] == ["0000:01:00.0 clocks 210", "0000:01:00.0 compute x"]


def test_settings_plan_removed_setting_restores_defaults():
    gpus = _clock_gpus({"0000:21:00.0": [210, 1695]})
    gpus[0]["compute_mode"] = "prohibited"
    plan = gpufacts.plan_gpu_settings(gpus, None, {}, None)
    assert plan["errors"] == [] and plan["configured"] == {}
    assert [g["clocks_change"] for g in plan["gpus"]] == [None, "reset", None]
    assert [g["compute_change"] for g in plan["gpus"]] == [True, False, False]
    assert plan["gpus"][0]["compute_target"] == "default"


def test_settings_plan_refuses_out_of_range_naming_gpu_range_and_key():
    plan = gpufacts.plan_gpu_settings(_clock_gpus(), None, {2: {"min": 210, "max": 2500},
                                                            7: {"min": 210, "max": 1500}})
    assert len(plan["errors"]) == 2
    bad = [e for e in plan["errors"] if "outside" in e][0]
    assert "GPU 2 (0000:41:00.0" in bad and "0-2100 MHz" in bad
    assert "rig_gpu_clock_lock_overrides[2]" in bad and "210-2500 MHz" in bad
    assert any("[7] names no GPU" in e for e in plan["errors"])
    gpus = _clock_gpus()
    for g in gpus:
        g["clocks"] = {"max_sm_mhz": None, "max_graphics_mhz": None, "locked_mhz": None}
        g["compute_mode"] = None
    errors = gpufacts.plan_gpu_settings(gpus, {"min": 210, "max": 1500}, {}, "prohibited")["errors"]
    assert len(errors) == 6 and all("no NVIDIA driver" in e for e in errors)
    assert gpufacts.plan_gpu_settings(gpus, None, {}, None)["errors"] == []


def test_clock_record_round_trip(tmp_path):
    assert gpufacts.read_clock_record(str(tmp_path)) == {}
    gpufacts.write_clock_record({"0000:01:00.0": [210, 1695]}, str(tmp_path))
    assert gpufacts.read_clock_record(str(tmp_path)) == {"0000:01:00.0": [210, 1695]}
    # what the boot script writes (shell, no spaces inside the pair, 8-digit domain)
    path = tmp_path / gpufacts.CLOCKS_RECORD.lstrip("/")
    path.write_text('{"00000000:21:00.0": [210,1500], "bogus": [1]}\n')
    assert gpufacts.read_clock_record(str(tmp_path)) == {"0000:21:00.0": [210, 1500]}
    gpufacts.write_clock_record({}, str(tmp_path))
    assert not path.exists()


def test_merge_on_sim_reads_compute_mode_and_max_clocks(tmp_path):
    gpus = sim_facts(tmp_path, "2x4090")["gpus"]
    assert {g["compute_mode"] for g in gpus} == {"default"}
    assert {g["clocks"]["max_sm_mhz"] for g in gpus} == {3105}
    assert {g["clocks"]["locked_mhz"] for g in gpus} == {None}


@pytest.mark.parametrize("text,expected", [
    ("GPU0 GPU1 GPU2\nGPU0 X CNS CNS\nGPU1 CNS X OK\nGPU2 CNS OK X\n", {0: True, 1: False, 2: False}),
    ("GPU0 GPU1\nGPU0 X OK\nGPU1 OK X\n", {0: False, 1: False}),
])
def test_chipset_from_p2p(text, expected):
    assert gpufacts.chipset_from_p2p(smitopo.parse_topo_p2p(text)) == expected


def test_locked_clocks_read_from_the_simulated_gpus(tmp_path):
    """What the lab's GPU layer really has locked (-lgc, then -rgc by hand), read through
    its status output: the live state provision converges, not rigctl's record."""
    facts = sim_facts(tmp_path, "4x3090")
    root = tmp_path / "4x3090"
    env = dict(os.environ, RIGCTL_SIMGPU_PROFILE=str(root / "profile.json"),
               RIGCTL_SIMGPU_STATE_DIR=str(root / "state"), RIGCTL_SIMGPU_ASSUME_ROOT="1")

    def tool(*args):
        return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, check=True,
                              capture_output=True, text=True).stdout

    tool("-i", "0000:21:00.0", "-lgc", "210,1500")
    live = gpufacts.locks_from_simgpu_status(_status(env))
    assert live == {"0000:01:00.0": None, "0000:21:00.0": [210, 1500],
                    "0000:41:00.0": None, "0000:61:00.0": None}
    pci = [dict(g) for g in facts["gpus"]]
    gpus = gpumodel.build(pci, [], clock_record={"0000:01:00.0": [210, 1695]}, clock_live=live)
    assert [(g["clocks"]["locked_mhz"], g["clocks"]["locked_source"]) for g in gpus] == [
        (None, "gpu"), ([210, 1500], "gpu"), (None, "gpu"), (None, "gpu")]
    tool("-i", "0000:21:00.0", "-rgc")
    assert gpufacts.locks_from_simgpu_status(_status(env))["0000:21:00.0"] is None
    with pytest.raises(ValueError):
        gpufacts.locks_from_simgpu_status("not json")


def _status(env):
    link = Path(env["RIGCTL_SIMGPU_STATE_DIR"]).parent / "rigctl-simgpu"
    if not link.exists():
        link.symlink_to(SCRIPT)
    return subprocess.run([sys.executable, str(link), "status", "--json"], env=env, check=True,
                          capture_output=True, text=True).stdout


def _tuned_gpus(power=(275.0, 275.0, 250.0), locks=([210, 1695], [210, 1695], [210, 1500]),
                modes=("exclusive_process",) * 3):
    gpus = _clock_gpus()
    for gpu, watts, lock, mode in zip(gpus, power, locks, modes, strict=True):
        gpu["power"]["current_w"] = watts
        gpu["clocks"].update(locked_mhz=lock, locked_source="gpu")
        gpu["compute_mode"] = mode
    return gpus


TUNING = dict(power_limit_w=275, power_limit_overrides={"41:00.0": 250},
              clock_lock_mhz={"min": 210, "max": 1695},
              clock_lock_overrides={2: {"min": 210, "max": 1500}},
              compute_mode="exclusive_process")


def test_plan_tuning_in_place_has_no_drift_and_no_diff():
    plan = gpufacts.plan_tuning(_tuned_gpus(), **TUNING)
    assert plan["errors"] == [] and plan["drift"] == []
    assert gpufacts.tuning_diff(plan, gpufacts.SETTINGS_UNIT) == []


def test_plan_tuning_finds_each_hand_made_drift():
    # nvidia-smi -i 1 -pl 300; nvidia-smi -i 2 -rgc; nvidia-smi -i 0 -c 3 ... -c 0 by hand
    gpus = _tuned_gpus(power=(275.0, 300.0, 250.0), locks=([210, 1695], [210, 1695], None),
                       modes=("default", "exclusive_process", "exclusive_process"))
    plan = gpufacts.plan_tuning(gpus, **TUNING)
    assert [(d["index"], d["what"], d["found"], d["expected"]) for d in plan["drift"]] == [
        (0, "compute", "default", "exclusive_process"),
        (1, "power", "300 W", "275 W"),
        (2, "clocks", "unlocked", "locked 210-1500 MHz"),
    ]
    assert plan["drift"][2]["source"] == "rig_gpu_clock_lock_overrides[2]"
    diff = gpufacts.tuning_diff(plan, gpufacts.SETTINGS_UNIT, unit_start=True)
    assert [d["before_header"] for d in diff] == [
        "GPU 0 (0000:01:00.0) NVIDIA GeForce RTX 3090", "GPU 1 (0000:21:00.0) NVIDIA GeForce RTX 3090",
        "GPU 2 (0000:41:00.0) NVIDIA GeForce RTX 3090", gpufacts.SETTINGS_UNIT]
    assert diff[1]["before"] == ("power limit: 300 W\nclocks: locked 210-1695 MHz\n"
                                 "compute mode: exclusive_process\n")
    assert diff[1]["after"] == ("power limit: 275 W\nclocks: locked 210-1695 MHz\n"
                                "compute mode: exclusive_process\n")
    assert "clocks: unlocked" in diff[2]["before"] and "clocks: locked 210-1500 MHz" in diff[2]["after"]


def test_plan_tuning_null_means_the_cards_default_for_both_sides():
    """No setting configured: a hand-made -c 3, -lgc or -pl is drift (verify fails it,
    provision resets it); at the defaults there is none."""
    defaults = dict(power_limit_w=None, power_limit_overrides={}, clock_lock_mhz=None,
                    clock_lock_overrides={}, compute_mode=None)
    gpus = _tuned_gpus(power=(350.0, 350.0, 350.0), locks=(None, None, None),
                       modes=("default",) * 3)
    assert gpufacts.plan_tuning(gpus, **defaults)["drift"] == []
    gpus[0]["compute_mode"] = "exclusive_process"
    gpus[1]["clocks"]["locked_mhz"] = [210, 1200]
    gpus[2]["power"]["current_w"] = 200.0
    plan = gpufacts.plan_tuning(gpus, **defaults)
    assert [(d["index"], d["what"], d["expected"], d["source"]) for d in plan["drift"]] == [
        (0, "compute", "default", "default"), (1, "clocks", "unlocked", "default"),
        (2, "power", "350 W", "default")]
    assert plan["settings"]["configured"] == {} and plan["power"]["configured"] == {}
    # "default" spelled out means the same as null
    same = gpufacts.plan_tuning(gpus, **dict(defaults, compute_mode="default"))
    assert [(d["index"], d["what"], d["expected"]) for d in same["drift"]] == [
        (0, "compute", "default"), (1, "clocks", "unlocked"), (2, "power", "350 W")]
    assert same["drift"][0]["source"] == "rig_compute_mode"


def test_plan_tuning_unreadable_state_is_not_drift():
    gpus = _clock_gpus()
    for g in gpus:
        g["power"] = {"current_w": None, "default_w": None, "min_w": None, "max_w": None}
        g["compute_mode"] = None
    plan = gpufacts.plan_tuning(gpus)
    assert plan["errors"] == [] and plan["drift"] == []


def test_role_names_the_boot_unit_files_as_gpufacts_does():
    """The gpu_tuning role writes (and migrates from) the paths gpufacts reads: one set of
    names, repeated in the role's vars only because Jinja cannot import them."""
    role = yaml.safe_load((paths.ansible_dir() / "roles/gpu_tuning/vars/main.yml").read_text())
    assert (role["gpu_tuning_settings_unit"], role["gpu_tuning_settings_conf"],
            role["gpu_tuning_settings_script"]) == (
        gpufacts.SETTINGS_UNIT, gpufacts.SETTINGS_CONF, gpufacts.SETTINGS_SCRIPT)
    assert (role["gpu_tuning_legacy_unit"], role["gpu_tuning_legacy_conf"],
            role["gpu_tuning_legacy_script"]) == (
        gpufacts.LEGACY_SETTINGS_UNIT, gpufacts.LEGACY_SETTINGS_CONF,
        gpufacts.LEGACY_SETTINGS_SCRIPT)
    assert role["gpu_tuning_clocks_record"] == gpufacts.CLOCKS_RECORD
