"""The simulated GPU layer's health faults (issue 12): kernel log (Xid, AER), AER counters in
sysfs, NVLink, NUMA, throttling under load, the simulated probe and compute processes.

Every output is read back with the parser that reads the real tool's output (rigctl.core:
kernlog, nvsmi, parsers, pcitopo, probe), and where a real capture of that tool exists the
simulated output is parsed side by side with it. The simulator runs as rigs get it: the one
zipapp file, in a subprocess, on a tmp profile, state dir and sysfs tree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rigctl.core import constants, kernlog, nvsmi, parsers, pcidev, pcitopo, probe, smiquery, smitopo
from rigctl.simgpu import install, load_profile, validate_profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from captures import read_capture  # noqa: E402

NEW_PROFILES = {
    "4x3090-xid", "4x3090-aer", "2x3090-nvlink", "2x3090-nvlink-degraded", "4x3090-2socket",
    "4x3090-throttle", "4x3090-p2p-broken",
}


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("simgpu") / "rigctl-simgpu"
    path.write_bytes(install.simulator_script())
    path.chmod(0o755)
    return path


class Rig:
    """One simulated rig in a tmp dir: profile, runtime state and the sysfs tree."""

    def __init__(self, root: Path, archive: Path, profile: str | dict):
        self.root = root
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        root.mkdir(parents=True, exist_ok=True)
        (root / "profile.json").write_bytes(install.profile_json(self.profile))
        for path, content, _mode in install.sysfs_files(self.profile):
            dest = root / path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(content)
        self.tool = root / "rigctl-simgpu"
        self.tool.symlink_to(archive)

    @property
    def sysfs(self) -> Path:
        return self.root / constants.SIMGPU_SYSFS_ROOT.lstrip("/")

    @property
    def state_file(self) -> Path:
        return self.root / "state" / "state.json"

    def env(self, root=True, probe_seconds="0") -> dict:
        return dict(
            os.environ, RIGCTL_SIMGPU_PROFILE=str(self.root / "profile.json"),
            RIGCTL_SIMGPU_STATE_DIR=str(self.root / "state"), RIGCTL_SIMGPU_SYSFS_ROOT=str(self.sysfs),
            RIGCTL_SIMGPU_ASSUME_ROOT="1" if root else "0", RIGCTL_SIMGPU_PROBE_SECONDS=probe_seconds,
        )

    def run(self, *args, root=True):
        return subprocess.run([str(self.tool), *args], env=self.env(root), capture_output=True,
                              text=True, timeout=60)

    def ok(self, *args) -> str:
        result = self.run(*args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout

    def aer(self, bdf: str, name: str = "aer_dev_correctable") -> dict:
        return kernlog.parse_aer_counters((self.sysfs / "bus/pci/devices" / bdf / name).read_text())

    def loaded(self, seconds_ago: float = 60.0):
        """The load flag as the probe writes it, raised ``seconds_ago`` (past the ramp)."""
        flags = self.root / "state" / "load"
        flags.mkdir(parents=True, exist_ok=True)
        now = time.time()
        flag = {"started": now - seconds_ago, "until": now + 120, "owner": "probe"}
        (flags / f"{os.geteuid()}.json").write_text(json.dumps(flag))


@pytest.fixture
def rig(tmp_path, archive):
    made = []

    def make(profile="4x3090"):
        made.append(profile)
        return Rig(tmp_path / f"rig{len(made)}", archive, profile)

    return make


# --- profiles ----------------------------------------------------------------------------


def test_new_profiles_carry_their_faults():
    profiles = {name: load_profile(name) for name in NEW_PROFILES}
    kinds = {name: sorted({f["kind"] for f in p["faults"]}) for name, p in profiles.items()}
    assert kinds["4x3090-xid"] == ["xid"] and kinds["4x3090-aer"] == ["aer"]
    assert kinds["2x3090-nvlink"] == [] and profiles["2x3090-nvlink"]["nvlink"][0]["gpus"] == [0, 1]
    assert kinds["2x3090-nvlink-degraded"] == ["nvlink_down", "nvlink_slow"]
    assert kinds["4x3090-throttle"] == ["throttle"] and kinds["4x3090-p2p-broken"] == ["p2p_broken"]
    assert profiles["4x3090-p2p-broken"]["p2p"] == "patched"
    two = profiles["4x3090-2socket"]
    assert two["numa_nodes"] == 2 and [g["numa_node"] for g in two["gpus"]] == [0, 0, 1, 1]
    assert [g["pcie_switch"] for g in profiles["4x3090-aer"]["gpus"]] == [None, None, 1, 1]


@pytest.mark.parametrize(
    "fault, words",
    [
        ({"kind": "xid", "gpu": 9, "code": 79}, "gpu 9 does not exist"),
        ({"kind": "xid", "gpu": 0}, "needs 'code'"),
        ({"kind": "aer", "gpu": 0, "errors": {"Nope": 1}}, "not a correctable AER error name"),
        ({"kind": "aer", "gpu": 0, "errors": {"RxErr": 1}, "device": "switch_upstream", "x": 1},
         "'x' is not a field"),
        ({"kind": "throttle", "gpu": 0, "reason": "hot"}, "reason must be one of"),
        ({"kind": "boom", "gpu": 0}, "kind must be one of"),
    ],
)
def test_bad_profile_faults_name_the_field(fault, words):
    data = json.loads(install.profile_json("4x3090"))
    data["faults"] = [fault]
    with pytest.raises(ValueError, match=r"faults\[0\]") as err:
        validate_profile(data, "t")
    assert words in str(err.value)


# --- kernel log: Xid and AER ---------------------------------------------------------------


def test_kernel_log_xid_profile_parses_as_real_xid_lines(rig):
    sim = rig("4x3090-xid")
    text = sim.ok("kernel-log")
    lines = text.splitlines()
    assert all(" kernel: " in line for line in lines)
    assert parsers.strip_ansi(text) == text
    xid = kernlog.parse_xid(text)
    assert xid["driver_version"] == sim.profile["driver_version"]
    fell = xid["gpus"]["0000:41:00.0"]
    assert fell["codes"] == [79] and fell["fallen_off_bus"] and fell["worst_severity"] == "fail"
    assert fell["uuid"] == sim.profile["gpus"][2]["uuid"]
    app = xid["gpus"]["0000:01:00.0"]
    assert app["xids"][0]["count"] == 3 and app["xids"][0]["processes"] == ["python3"]
    assert app["worst_severity"] == "warn"
    assert {e["pid"] for e in xid["events"] if e["code"] == 13} == {48211}
    # the same parser on a real capture of the same code gives the same shape
    real = kernlog.parse_xid(read_capture("dmesg-xid__rtx5080-xid79-154__1.txt"))
    real_gpu = real["gpus"]["0000:01:00.0"]
    assert real_gpu["fallen_off_bus"] and sorted(real_gpu) == sorted(fell)
    # timestamps: ISO, in order, after boot and not in the future
    prefix, wall, _ = kernlog.split_kernel_prefix(lines[-1])
    assert prefix is None and wall and wall[:4].isdigit()


def test_kernel_log_of_a_healthy_rig_has_no_xid_or_aer(rig):
    text = rig("4x3090").ok("kernel-log")
    parsed = kernlog.parse_kernel_log(text)
    assert parsed["xid"]["count"] == 0 and parsed["aer"]["count"] == 0
    assert parsed["xid"]["driver_version"] == "535.261.03"


def test_aer_profile_kernel_records_and_sysfs_counters(rig):
    sim = rig("4x3090-aer")
    aer = kernlog.parse_aer(sim.ok("kernel-log"))
    gpu = aer["devices"]["0000:43:00.0"]
    assert gpu["driver"] == "nvidia" and gpu["vendor_id"] == "10de" and gpu["device_id"] == "2204"
    assert gpu["reporting_ports"] == ["0000:40:03.1"] and set(gpu["severities"]) == {"corrected"}
    assert set(gpu["errors"]) == {"RxErr", "BadTLP", "BadDLLP"} and gpu["count"] == 8
    port = aer["devices"]["0000:42:00.0"]
    assert port["driver"] == "pcieport" and port["errors"] == {"Timeout": 8}
    assert {r["type"] for r in aer["records"]} == {"Physical Layer", "Data Link Layer"}
    # sysfs: the kernel's counter files, every error counted (the log is rate limited)
    counters = sim.aer("0000:43:00.0")
    assert counters["errors"]["RxErr"] == 212 and counters["total"] == 260
    assert counters["total_key"] == "TOTAL_ERR_COR"
    assert sim.aer("0000:42:00.0")["errors"]["Timeout"] == 9
    assert sim.aer("0000:43:00.0", "aer_dev_fatal")["total"] == 0
    assert sim.aer("0000:01:00.0")["total"] == 0
    root = sim.sysfs / "bus/pci/devices/0000:40:03.1"
    assert (root / "aer_rootport_total_err_cor").read_text() == "269\n"


def test_aer_slot_path_from_lspci_and_sysfs_bus_numbers(rig):
    sim = rig("4x3090-aer")
    devices = pcidev.parse_lspci_vv(sim.ok("lspci"))
    path = pcitopo.upstream_bridges(devices, "0000:43:00.0")
    assert path == ["0000:42:00.0", "0000:41:00.0", "0000:40:03.1"]
    assert pcitopo.upstream_bridges(devices, "0000:01:00.0") == ["0000:00:01.1"]
    by_bdf = {d["bdf"]: d for d in devices}
    assert "PEX880xx" in by_bdf["0000:41:00.0"]["description"]
    for bdf in path:
        base = sim.sysfs / "bus/pci/devices" / bdf
        assert (base / "class").read_text() == "0x060400\n"
        assert int((base / "secondary_bus_number").read_text()) == by_bdf[bdf]["bus"]["secondary"]
        assert int((base / "subordinate_bus_number").read_text()) == by_bdf[bdf]["bus"]["subordinate"]
    assert smitopo.parse_topo_matrix(sim.ok("topo", "-m"))["links"]["GPU2"]["GPU3"] == "PIX"


def test_runtime_faults_add_list_clear(rig):
    sim = rig("4x3090")
    assert "fault 1 added" in sim.ok("fault", "add", "aer", "--gpu", "1", "--errors", "RxErr=5,BadTLP=2")
    assert sim.aer("0000:21:00.0")["errors"] == dict(
        sim.aer("0000:01:00.0")["errors"], RxErr=5, BadTLP=2)
    sim.ok("fault", "add", "xid", "--gpu", "3", "--code", "119")
    log = kernlog.parse_kernel_log(sim.ok("kernel-log"))
    assert log["xid"]["gpus"]["0000:61:00.0"]["codes"] == [119]
    assert log["aer"]["devices"]["0000:21:00.0"]["count"] == 7
    listed = json.loads(sim.ok("fault", "list", "--json"))
    assert [(f["id"], f["kind"], f["source"]) for f in listed] == [
        (1, "aer", "runtime"), (2, "xid", "runtime")]
    sim.ok("fault", "clear", "1")
    assert sim.aer("0000:21:00.0")["total"] == 0
    assert "1 run-time fault(s) cleared" in sim.ok("fault", "clear")
    assert kernlog.parse_kernel_log(sim.ok("kernel-log"))["xid"]["count"] == 0


def test_runtime_fault_errors(rig):
    sim = rig("4x3090")
    denied = sim.run("fault", "add", "xid", "--gpu", "0", "--code", "79", root=False)
    assert denied.returncode == 4 and "must run as root" in denied.stderr
    bad = sim.run("fault", "add", "xid", "--gpu", "7", "--code", "79")
    assert bad.returncode == 2 and "gpu 7 does not exist" in bad.stderr
    bad = sim.run("fault", "add", "xid", "--gpu", "zero")
    assert bad.returncode == 2 and "--gpu" in bad.stderr
    assert sim.run("fault", "clear", "9").returncode == 2
    assert not sim.state_file.exists() or "faults" not in json.loads(sim.state_file.read_text()) or \
        json.loads(sim.state_file.read_text())["faults"] == []
    sim.ok("fault", "add", "xid", "--gpu", "0", "--code", "79")
    sim.ok("reset")  # a reboot drops run-time faults, like the kernel log
    assert kernlog.parse_xid(sim.ok("kernel-log"))["count"] == 0


# --- NVLink --------------------------------------------------------------------------------


def test_nvlink_bridge_like_the_real_capture(rig):
    sim = rig("2x3090-nvlink")
    ours = nvsmi.parse_nvlink_status(sim.ok("nvlink", "-s"))
    real = nvsmi.parse_nvlink_status(read_capture("nvlink-s__rtx3090x2__1.txt"))
    strip = [{k: v for k, v in g.items() if k not in ("uuid",)} for g in ours["gpus"]]
    assert strip == [{k: v for k, v in g.items() if k != "uuid"} for g in real["gpus"]]
    topo = smitopo.parse_topo_matrix(sim.ok("topo", "-m"))
    real_topo = smitopo.parse_topo_matrix(read_capture("topo-m__rtx3090x2-nv4__1.txt"))
    assert topo["nvlink_pairs"] == real_topo["nvlink_pairs"] == [{"gpus": ["GPU0", "GPU1"], "links": 4}]
    for mode in ("r", "n"):
        assert smitopo.parse_topo_p2p(sim.ok("topo", "-p2p", mode))["status"]["GPU0"]["GPU1"] == "OK"
    one = sim.ok("nvlink", "-s", "-i", "0")
    assert one.startswith("GPU 0: ") and "GPU 1" not in one


def test_nvlink_degraded_and_down(rig):
    sim = rig("2x3090-nvlink-degraded")
    status = nvsmi.parse_nvlink_status(sim.ok("nvlink", "--status"))
    gpu0 = status["gpus"][0]
    assert gpu0["active_links"] == 3
    assert [link["speed_gbs"] for link in gpu0["links"]] == [14.062, 14.062, 7.031, None]
    assert smitopo.parse_topo_matrix(sim.ok("topo", "-m"))["nvlink_pairs"][0]["links"] == 3
    sim.ok("fault", "add", "nvlink-down", "--gpu", "1")
    status = nvsmi.parse_nvlink_status(sim.ok("nvlink", "-s"))
    assert all(g["all_inactive"] and not g["links"] for g in status["gpus"])
    topo = smitopo.parse_topo_matrix(sim.ok("topo", "-m"))
    assert topo["nvlink_pairs"] == [] and topo["links"]["GPU0"]["GPU1"] == "PHB"
    assert smitopo.parse_topo_p2p(sim.ok("topo", "-p2p", "r"))["status"]["GPU0"]["GPU1"] == "NS"
    # the real capture of a GPU without active links reads the same way
    real = nvsmi.parse_nvlink_status(read_capture("nvlink-s__rtxa6000x3__1.txt"))["gpus"][2]
    assert real["all_inactive"] and not real["links"]


# --- NUMA / dual socket --------------------------------------------------------------------


def test_dual_socket_topology(rig):
    sim = rig("4x3090-2socket")
    topo = smitopo.parse_topo_matrix(sim.ok("topo", "-m"))
    assert topo["numa_node"] == {"GPU0": 0, "GPU1": 0, "GPU2": 1, "GPU3": 1}
    assert topo["cpu_affinity"]["GPU2"] == "24-47,72-95"
    assert topo["links"]["GPU0"]["GPU2"] == "SYS" and topo["links"]["GPU0"]["GPU1"] == "NODE"
    real = smitopo.parse_topo_matrix(read_capture("topo-m__rtx5090-4090x5-2numa__1.txt"))
    assert topo["affinity_columns"] == real["affinity_columns"]
    for gpu in sim.profile["gpus"]:
        bdf = gpu["bus_id"][4:].lower()
        assert (sim.sysfs / "bus/pci/devices" / bdf / "numa_node").read_text() == f"{gpu['numa_node']}\n"
    lspci = {d["bdf"]: d for d in pcidev.parse_lspci_vv(sim.ok("lspci"))}
    assert lspci["0000:86:00.0"]["numa_node"] == 1


# --- throttling under load -----------------------------------------------------------------

REASON_FIELDS = [
    "index", "power.draw", "power.limit", "temperature.gpu", "clocks.sm", "pstate",
    "clocks_event_reasons.active", "clocks_event_reasons.hw_slowdown",
    "clocks_event_reasons.hw_thermal_slowdown", "clocks_event_reasons.hw_power_brake_slowdown",
    "clocks_event_reasons.sw_thermal_slowdown", "clocks_event_reasons.sw_power_cap",
    "clocks_throttle_reasons.active", "clocks_throttle_reasons.hw_slowdown",
]


def _reasons(sim):
    out = sim.ok("--query-gpu=" + ",".join(REASON_FIELDS), "--format=csv")
    return smiquery.parse_query_gpu_csv(out)


def test_idle_rig_reads_idle(rig):
    rows = _reasons(rig("4x3090-throttle"))
    assert {r["clocks_event_reasons.active"] for r in rows} == {"0x0000000000000001"}
    assert {r["pstate"] for r in rows} == {"P8"} and all(r["power.draw"] < 40 for r in rows)


def test_throttle_under_load(rig):
    sim = rig("4x3090-throttle")
    sim.loaded()
    rows = _reasons(sim)
    gpu1 = rows[1]
    assert gpu1["clocks_event_reasons.active"] == "0x0000000000000088"  # HW slowdown + power brake
    assert gpu1["clocks_event_reasons.hw_power_brake_slowdown"] == "Active"
    assert gpu1["clocks_throttle_reasons.hw_slowdown"] == "Active"
    assert gpu1["clocks.sm"] < 600 and gpu1["power.draw"] < 0.5 * gpu1["power.limit"]
    for row in (rows[0], rows[2], rows[3]):
        # loaded, at the power limit: SW power cap, the normal state of a busy GeForce card
        assert row["clocks_event_reasons.active"] == "0x0000000000000004"
        assert row["power.draw"] > 0.95 * row["power.limit"] and row["pstate"] == "P2"
        assert row["temperature.gpu"] >= 70 and row["clocks.sm"] > 1800
    q = smiquery.parse_nvidia_smi_q(sim.ok("-q", "-d", "PERFORMANCE"))
    assert q["gpus"][1]["clocks_event_reasons_active"] == ["HW Slowdown", "HW Power Brake Slowdown"]
    assert q["gpus"][0]["clocks_event_reasons_active"] == ["SW Power Cap"]
    real = smiquery.parse_nvidia_smi_q(read_capture("nvidia-smi-q__rtx3090x2__1.txt"))
    assert set(q["gpus"][1]["clocks_event_reasons"]) == set(real["gpus"][0]["clocks_event_reasons"])


def test_load_flag_by_hand_needs_no_root(rig):
    sim = rig("4x3090-throttle")
    assert sim.run("load", "on", "--seconds", "60", root=False).returncode == 0
    assert sim.ok("load", "status") == "on\n"
    assert _reasons(sim)[1]["clocks_event_reasons.hw_slowdown"] == "Active"
    assert json.loads(sim.ok("status", "--json"))["load"] is True
    assert sim.run("load", "off", root=False).returncode == 0
    assert sim.ok("load", "status") == "off\n"
    assert sim.run("load", "on", "--seconds", "0").returncode == 2


def test_power_and_temperature_rise_during_the_ramp(rig):
    sim = rig("4x3090")
    draws = []
    for seconds in (0.5, 2.5, 30):
        sim.loaded(seconds)
        draws.append(_reasons(sim)[0])
    assert draws[0]["power.draw"] < draws[1]["power.draw"] < draws[2]["power.draw"]
    assert draws[0]["temperature.gpu"] < draws[2]["temperature.gpu"]


@pytest.mark.parametrize("driver, block", [("525.147.05", "Clocks Throttle Reasons"),
                                           ("595.58.03", "Clocks Event Reasons Counters")])
def test_performance_section_follows_the_driver(rig, driver, block):
    data = json.loads(install.profile_json("4x3090-throttle"))
    data["driver_version"] = driver
    sim = rig(data)
    sim.loaded()
    text = sim.ok("-q", "-d", "PERFORMANCE", "-i", "1")
    assert f"    {block}\n" in text
    gpu = smiquery.parse_nvidia_smi_q(text)["gpus"][0]
    assert "HW Power Brake Slowdown" in gpu["clocks_event_reasons_active"]
    if driver.startswith("595"):
        assert gpu["clocks_event_counters_us"]["HW Power Braking"] > 0
    real = smiquery.parse_nvidia_smi_q(read_capture("nvidia-smi-q-d-performance__geforce-495.44__1.txt"))
    assert set(real["gpus"][0]["clocks_event_reasons"]) == set(gpu["clocks_event_reasons"])


# --- the simulated probe -------------------------------------------------------------------


def _probe(sim, *args):
    result = sim.run("probe", *args)
    assert result.returncode in (0, 1), result.stderr
    assert "SIMULATED" in result.stderr
    parsed = probe.parse_probe_output(result.stdout)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(line["simulated"] is True for line in lines)
    assert parsed["summary"]["exit_code"] == result.returncode
    return parsed


def test_probe_stock_driver_runs_staged(rig):
    parsed = _probe(rig("4x3090"))
    verdict = probe.evaluate_probe(parsed, expect_p2p=False)
    assert verdict["ok"] and verdict["pairs_tested"] == 12 and verdict["pairs_staged"] == 12
    theory = 16 * 1.9692  # Gen4 x16, per direction
    assert all(0.25 * theory < p["gbps"] < 0.35 * theory for p in parsed["pairs"])
    assert all(p["can_access_peer"] is False for p in parsed["pairs"])
    assert all(0.75 * theory < h["h2d_gbps"] < 0.9 * theory for h in parsed["host_transfers"])


def test_probe_patched_p2p_is_a_fraction_of_link_theory(rig):
    parsed = _probe(rig("4x3090-p2p"), "--iterations", "3", "--size-mib", "16")
    assert parsed["header"]["options"] == {"size_mib": 16, "iterations": 3, "p2p": True,
                                           "latency_bytes": 4, "latency_copies": 100}
    verdict = probe.evaluate_probe(parsed, expect_p2p=True)
    assert verdict["ok"] and verdict["pairs_p2p"] == 12
    theory = 16 * 1.9692
    assert all(0.7 * theory < p["gbps"] < 0.85 * theory for p in parsed["pairs"])
    staged = _probe(rig("4x3090-p2p"), "--no-p2p")
    assert {p["mode"] for p in staged["pairs"]} == {"staged"}
    assert max(p["gbps"] for p in staged["pairs"]) < min(p["gbps"] for p in parsed["pairs"])


def test_probe_p2p_broken_gpu0_while_topo_says_ok(rig):
    sim = rig("4x3090-p2p-broken")
    topo = smitopo.parse_topo_p2p(sim.ok("topo", "-p2p", "r"))
    assert {topo["status"]["GPU0"][f"GPU{i}"] for i in (1, 2, 3)} == {"OK"}
    parsed = _probe(sim)
    verdict = probe.evaluate_probe(parsed, expect_p2p=True)
    assert not verdict["ok"] and verdict["exit_code"] == 1
    bad = {(p["src"], p["dst"]) for p in verdict["data_failed_pairs"]}
    assert bad == {(0, i) for i in (1, 2, 3)} | {(i, 0) for i in (1, 2, 3)}
    # the other fault modes: peer access cannot be enabled, or runs slower than staged copies
    data = json.loads(install.profile_json("4x3090-p2p-broken"))
    data["faults"][0]["mode"] = "enable_fails"
    parsed = _probe(rig(data))
    zero = [p for p in parsed["pairs"] if 0 in (p["src"], p["dst"])]
    assert {p["mode"] for p in zero} == {"staged"} and all(p["can_access_peer"] for p in zero)
    assert {p["peer_access_error"]["cuda_error"] for p in zero} == {"cudaErrorPeerAccessUnsupported"}
    data["faults"][0]["mode"] = "slow"
    parsed = _probe(rig(data))
    slow = max(p["gbps"] for p in parsed["pairs"] if 0 in (p["src"], p["dst"]))
    staged = _probe(rig(data), "--no-p2p")
    assert slow < min(p["gbps"] for p in staged["pairs"])


def test_probe_nvlink_numa_narrow_links_and_slow_pair(rig):
    nv = _probe(rig("2x3090-nvlink"))
    assert {p["mode"] for p in nv["pairs"]} == {"p2p"}
    assert all(0.85 * 56.25 < p["gbps"] < 56.25 for p in nv["pairs"])
    numa = _probe(rig("4x3090-2socket"))
    same = [p["gbps"] for p in numa["pairs"] if {p["src"], p["dst"]} in ({0, 1}, {2, 3})]
    cross = [p["gbps"] for p in numa["pairs"] if {p["src"], p["dst"]} not in ({0, 1}, {2, 3})]
    assert max(cross) < min(same)
    riser = _probe(rig("4x3090-x4riser"))
    narrow = [p["gbps"] for p in riser["pairs"] if 2 in (p["src"], p["dst"])]
    wide = [p["gbps"] for p in riser["pairs"] if 2 not in (p["src"], p["dst"])]
    assert max(narrow) < 0.2 * min(wide)
    sim = rig("4x3090")
    sim.ok("fault", "add", "slow-pair", "--gpus", "1,3", "--fraction", "0.2")
    pairs = {(p["src"], p["dst"]): p["gbps"] for p in _probe(sim)["pairs"]}
    assert pairs[(1, 3)] < 0.25 * pairs[(1, 2)] and pairs[(3, 1)] < 0.25 * pairs[(3, 2)]
    assert [p["src"] for p in _probe(sim, "--pairs", "1:3")["pairs"]] == [1]


def test_probe_usage_errors(rig):
    sim = rig("4x3090")
    for args in (("--size-mib", "0"), ("--pairs", "0:9"), ("--bogus",)):
        result = sim.run("probe", *args)
        assert result.returncode == 2 and result.stderr.startswith("rigctl-probe: error:")


def test_probe_raises_the_load_flag_while_it_runs(rig):
    sim = rig("4x3090-throttle")
    env = sim.env(probe_seconds="3")
    running = subprocess.Popen([str(sim.tool), "probe"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 10
        seen = False
        while time.time() < deadline and running.poll() is None:
            if sim.ok("load", "status") == "on\n":
                seen = True
                break
            time.sleep(0.1)
        assert seen
        assert _reasons(sim)[1]["clocks_event_reasons.hw_power_brake_slowdown"] == "Active"
    finally:
        out, _ = running.communicate(timeout=30)
    assert probe.parse_probe_output(out)["complete"]
    assert sim.ok("load", "status") == "off\n"
    assert _reasons(sim)[1]["clocks_event_reasons.active"] == "0x0000000000000001"


# --- compute processes ---------------------------------------------------------------------

APP_FIELDS = "timestamp,gpu_name,gpu_bus_id,gpu_serial,gpu_uuid,pid,process_name,used_gpu_memory"


def test_compute_apps_in_the_real_csv_format(rig):
    sim = rig("4x3090")
    empty = sim.ok(f"--query-compute-apps={APP_FIELDS}", "--format=csv")
    real_header = read_capture("query-compute-apps-csv__rtx4080super__1.txt").splitlines()[0]
    assert empty.splitlines() == [real_header]
    assert nvsmi.parse_query_compute_apps_csv(empty) == []
    sim.ok("apps", "add", "--gpu", "2", "--pid", "5022", "--name", "ffmpeg", "--used-mib", "503")
    sim.ok("apps", "add", "--gpu", "00000000:01:00.0", "--pid", "77", "--used-mib", "2048")
    rows = nvsmi.parse_query_compute_apps_csv(sim.ok(f"--query-compute-apps={APP_FIELDS}", "--format=csv"))
    assert [(r["bus_id"], r["pid"], r["process_name"], r["used_memory_mib"]) for r in rows] == [
        ("0000:01:00.0", 77, "python3", 2048), ("0000:41:00.0", 5022, "ffmpeg", 503)]
    real = nvsmi.parse_query_compute_apps_csv(read_capture("query-compute-apps-csv__rtx4080super__1.txt"))
    assert sorted(rows[0]) == sorted(real[0])
    used = smiquery.parse_query_gpu_csv(sim.ok("--query-gpu=memory.used", "--format=csv,noheader,nounits"),
                                       fields=["memory.used"])
    assert used[2]["memory.used"] == 505 and used[1]["memory.used"] == 2
    table = sim.ok("nvidia-smi").splitlines()
    rows_ = [line for line in table if "ffmpeg" in line]
    assert len(rows_) == 1 and rows_[0].endswith("503MiB |") and len(rows_[0]) == len(table[1])
    assert not any("No running processes found" in line for line in table)
    one = sim.ok("--query-compute-apps=pid", "--format=csv,noheader", "-i", "2")
    assert one == "5022\n"
    sim.ok("apps", "clear", "--gpu", "2")
    left = sim.ok(f"--query-compute-apps={APP_FIELDS}", "--format=csv")
    assert len(nvsmi.parse_query_compute_apps_csv(left)) == 1
    assert sim.run("apps", "add", "--gpu", "0", "--pid", "1", root=False).returncode == 4
    assert sim.run("--query-compute-apps=pid,bogus", "--format=csv").returncode == 2


def test_tmpfiles_entry_remakes_state_and_resets_aer_counters_at_boot():
    files = {path: content for path, content, _mode in install.files_for_profile("4x3090-aer")}
    lines = files[install.TMPFILES_PATH].decode().splitlines()
    assert f"d {constants.SIMGPU_STATE_DIR}/load 1777 root root -" in lines
    resets = {}
    for line in lines:
        if line.startswith("f+ "):
            kind, path, mode, user, group, age, argument = line.split(" ", 6)
            assert (mode, user, group, age) == ("0444", "root", "root", "-")
            resets[path] = argument.replace("\\n", "\n").replace("\\\\", "\\").encode()
    aer = {path: content for path, content in files.items() if path.rsplit("/", 1)[1].startswith("aer_")}
    assert resets == aer and len(aer) == 10 * 3 + 3 * 3  # 10 devices; 3 root ports' totals


def test_p2p_follows_the_patched_module_rigctl_installed(tmp_path):
    """A stock-profile rig on which rigctl's driver role installed the patched module (its
    record says flavor p2p) does GeForce P2P; without the record, or with flavor open, not."""
    from rigctl.simgpu.tool import profile as simprofile

    record = tmp_path / "nvidia-driver.json"
    stock = {"p2p": "stock"}
    assert not simprofile.p2p_patched(stock, str(record))
    record.write_text('{"flavor": "open"}')
    assert not simprofile.p2p_patched(stock, str(record))
    record.write_text('{"flavor": "p2p", "commit": "0123"}')
    assert simprofile.p2p_patched(stock, str(record))
    assert simprofile.p2p_patched({"p2p": "patched"}, str(tmp_path / "none.json"))
