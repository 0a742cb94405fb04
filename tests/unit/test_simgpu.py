"""The simulated GPU layer: profiles, the nvidia-smi simulator, the install file list.

The simulator runs as a subprocess (as it does in lab rigs), with RIGCTL_SIMGPU_PROFILE
and RIGCTL_SIMGPU_STATE_DIR pointing at tmp paths and RIGCTL_SIMGPU_ASSUME_ROOT=1|0 to act
as root or not. Its output is read back with rigctl.core.parsers, which are tested on real
captures (test_parsers.py): that is how these tests show the simulator speaks the real
formats.
"""

from __future__ import annotations

import ast
import copy
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from rigctl.core import constants, pcidev, smiquery, smitopo
from rigctl.simgpu import install, list_profiles, load_profile, validate_profile
from rigctl.simgpu import tool as simtool
from rigctl.simgpu.tool import profile as simprofile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from captures import read_capture  # noqa: E402

# The simulator as rigs get it: one zipapp file (written once per session, see `_archive`).
SCRIPT = Path("/nonexistent/rigctl-simgpu")
MIB = 2**20

REQUIRED_PROFILES = {
    "4x3090", "6x3090", "2x4090", "8x5090", "4x3090-p2p",
    "4x3090-smallbar", "4x3090-x4riser", "mixed-3090-4090",
}
CSV_FIELDS = [
    "index", "pci.bus_id", "name", "uuid", "serial", "vbios_version", "memory.total",
    "memory.used", "memory.free", "power.limit", "power.min_limit", "power.max_limit",
    "power.default_limit", "enforced.power.limit", "power.draw", "persistence_mode",
    "pcie.link.gen.max", "pcie.link.gen.current", "pcie.link.gen.gpumax",
    "pcie.link.width.max", "pcie.link.width.current", "driver_version", "compute_mode",
    "clocks.max.sm", "temperature.gpu", "pci.device_id",
]


class Sim:
    """One simulated rig in a tmp dir."""

    def __init__(self, tmp_path: Path, profile: str | dict):
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.dir = tmp_path
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        self.profile_path = tmp_path / "profile.json"
        self.profile_path.write_bytes(install.profile_json(self.profile))
        self.state_dir = tmp_path / "run" / "rigctl-simgpu"
        for name in ("nvidia-smi", "rigctl-simgpu"):
            link = tmp_path / name
            if not link.exists():
                link.symlink_to(SCRIPT)

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    def env(self, root: bool = True) -> dict:
        env = dict(os.environ)
        env["RIGCTL_SIMGPU_PROFILE"] = str(self.profile_path)
        env["RIGCTL_SIMGPU_STATE_DIR"] = str(self.state_dir)
        env["RIGCTL_SIMGPU_ASSUME_ROOT"] = "1" if root else "0"
        return env

    def argv(self, *args: str, tool: str = "nvidia-smi") -> list[str]:
        return [sys.executable, str(self.dir / tool), *args]

    def run(self, *args: str, tool: str = "nvidia-smi", root: bool = True):
        return subprocess.run(
            self.argv(*args, tool=tool), env=self.env(root), capture_output=True, text=True,
            timeout=60,
        )

    def ok(self, *args: str, **kw) -> str:
        result = self.run(*args, **kw)
        assert result.returncode == 0, (result.stdout, result.stderr)
        return result.stdout

    def query(self, fields=CSV_FIELDS, extra=()) -> list[dict]:
        out = self.ok("--query-gpu=" + ",".join(fields), "--format=csv", *extra)
        return smiquery.parse_query_gpu_csv(out)


@pytest.fixture(scope="session", autouse=True)
def _archive(tmp_path_factory):
    global SCRIPT
    SCRIPT = tmp_path_factory.mktemp("simgpu") / "rigctl-simgpu-archive"
    SCRIPT.write_bytes(install.simulator_script())
    SCRIPT.chmod(0o755)
    return SCRIPT


@pytest.fixture
def sim(tmp_path):
    """sim(profile) -> a new Sim, each in its own directory (own profile and state)."""
    made = []

    def make(profile="4x3090"):
        made.append(profile)
        return Sim(tmp_path / f"rig{len(made)}", profile)

    return make


# --- profiles -------------------------------------------------------------------------


def test_shipped_profiles_are_there_and_load():
    names = list_profiles()
    assert REQUIRED_PROFILES <= set(names)
    for name in names:
        profile = load_profile(name)
        assert profile["name"] == name
        count = int(name.split("x")[0]) if name[0].isdigit() else None
        if count:
            assert len(profile["gpus"]) == count
        assert [g["index"] for g in profile["gpus"]] == list(range(len(profile["gpus"])))


@pytest.mark.parametrize("name", sorted(REQUIRED_PROFILES))
def test_profile_numbers_are_realistic(name):
    profile = load_profile(name)
    for gpu in profile["gpus"]:
        model = gpu["name"].rsplit(" ", 1)[-1]
        expected = {
            "3090": ("0x2204", 24576, 100, 350, "Ampere", 4),
            "4090": ("0x2684", 24564, 150, 450, "Ada Lovelace", 4),
            "5090": ("0x2B85", 32607, 400, 575, "Blackwell", 5),
        }[model]
        assert (gpu["pci_device_id"], gpu["vram_mib"], gpu["power_min_w"], gpu["power_default_w"],
                gpu["architecture"], gpu["device_gen_max"]) == expected
        assert gpu["power_default_w"] <= gpu["power_max_w"] <= 600
        assert gpu["uuid"].startswith("GPU-")


def test_failure_profiles_carry_their_fault():
    assert {g["bar1_mib"] for g in load_profile("4x3090-smallbar")["gpus"]} == {256}
    assert {g["bar1_mib"] for g in load_profile("4x3090")["gpus"]} == {32768}
    riser = load_profile("4x3090-x4riser")["gpus"]
    slow = [g for g in riser if (g["link_gen_current"], g["link_width_current"]) != (4, 16)]
    links = [(g["link_gen_current"], g["link_width_current"], g["link_width_max"]) for g in slow]
    assert links == [(3, 4, 16)]
    six = load_profile("6x3090")["gpus"]
    chipset = [g for g in six if g["behind_chipset"]]
    assert len(chipset) == 1 and (chipset[0]["link_gen_current"], chipset[0]["link_width_current"]) == (4, 4)
    mixed = {g["architecture"] for g in load_profile("mixed-3090-4090")["gpus"]}
    assert mixed == {"Ampere", "Ada Lovelace"}
    assert load_profile("4x3090-p2p")["p2p"] == "patched"
    assert load_profile("4x3090")["p2p"] == "stock"
    assert load_profile("8x5090")["numa_nodes"] == 2


def _raw(name="4x3090") -> dict:
    return json.loads((Path(install.__file__).parent / "profiles" / f"{name}.json").read_text())


def _mutate(path, value):
    def apply(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        if value is KeyError:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return apply


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (_mutate(("gpus", 1, "bus_id"), "00000000:01:00.0"), "gpus[1].bus_id", "also used by gpus[0]"),
        (_mutate(("gpus", 0, "power_min_w"), 400), "gpus[0].power_min_w", "<= power_default_w"),
        (_mutate(("gpus", 2, "power_default_w"), 390), "gpus[2].power_default_w", "<= power_max_w"),
        (_mutate(("gpus", 0, "link_gen_current"), 5), "gpus[0].link_gen_current", "link_gen_max"),
        (_mutate(("gpus", 0, "link_width_current"), 32), "gpus[0].link_width_current", "link_width_max"),
        (_mutate(("gpus", 3, "numa_node"), 1), "gpus[3].numa_node", "numa_nodes is 1"),
        (_mutate(("gpus", 0, "uuid"), "GPU-123"), "gpus[0].uuid", "must look like"),
        (_mutate(("gpus", 1, "uuid"), None), "gpus[1].uuid", "must be str"),
        (_mutate(("gpus", 0, "bar1_mib"), 300), "gpus[0].bar1_mib", "power of two"),
        (_mutate(("gpus", 0, "vram_mib"), KeyError), "gpus[0].vram_mib", "is missing"),
        (_mutate(("gpus", 0, "behind_chipset"), "no"), "gpus[0].behind_chipset", "must be bool"),
        (_mutate(("gpus", 0, "architecture"), "Hopper"), "gpus[0].architecture", "must be one of"),
        (_mutate(("gpus", 3, "bus_id"), "00000000:00:01.0"), "gpus[3].bus_id", "out of order"),
        (_mutate(("p2p",), "maybe"), "p2p", "'stock' or 'patched'"),
        (_mutate(("driver_version",), "latest"), "driver_version", "535.261.03"),
        (_mutate(("numa_cpus",), ["0-63", "64-127"]), "numa_cpus", "one CPU range per NUMA node"),
        (_mutate(("gpus",), []), "gpus", "1 to 16"),
    ],
)
def test_profile_validation_names_profile_and_field(change, field, words):
    data = _raw()
    change(data)
    with pytest.raises(ValueError) as info:
        validate_profile(data, "4x3090")
    message = str(info.value)
    assert "profile '4x3090'" in message
    assert repr(field) in message
    assert words in message


def test_load_profile_by_path_and_errors(tmp_path):
    path = tmp_path / "custom.json"
    data = _raw()
    data["name"] = "custom"
    path.write_text(json.dumps(data))
    assert load_profile(path)["name"] == "custom"
    assert load_profile(str(path))["gpus"][0]["index"] == 0
    with pytest.raises(ValueError, match="no such rig profile.*4x3090"):
        load_profile("9x9090")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_profile(bad)
    data["gpus"][0]["power_max_w"] = 10
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"profile '.*custom.json'.*gpus\[0\]"):
        load_profile(path)


# --- output formats, read back with the parsers ----------------------------------------


@pytest.mark.parametrize("name", sorted(REQUIRED_PROFILES))
def test_query_gpu_csv_matches_profile(sim, name):
    rig = sim(name)
    profile = rig.profile
    rows = rig.query()
    assert len(rows) == len(profile["gpus"])
    for row, gpu in zip(rows, profile["gpus"], strict=True):
        assert row["index"] == gpu["index"]
        assert row["pci.bus_id"] == gpu["bus_id"]
        assert row["name"] == gpu["name"]
        assert row["uuid"] == gpu["uuid"]
        assert row["serial"] is None
        assert row["vbios_version"] == gpu["vbios"]
        assert row["memory.total"] == gpu["vram_mib"]
        assert row["memory.used"] + row["memory.free"] <= gpu["vram_mib"]
        assert row["power.limit"] == gpu["power_default_w"]
        assert row["enforced.power.limit"] == gpu["power_default_w"]
        assert row["power.default_limit"] == gpu["power_default_w"]
        assert row["power.min_limit"] == gpu["power_min_w"]
        assert row["power.max_limit"] == gpu["power_max_w"]
        assert isinstance(row["power.draw"], float)
        assert row["persistence_mode"] == "Disabled"
        assert row["pcie.link.gen.max"] == gpu["link_gen_max"]
        assert row["pcie.link.gen.current"] == gpu["link_gen_current"]
        assert row["pcie.link.gen.gpumax"] == gpu["device_gen_max"]
        assert row["pcie.link.width.max"] == gpu["link_width_max"]
        assert row["pcie.link.width.current"] == gpu["link_width_current"]
        assert row["driver_version"] == profile["driver_version"]
        assert row["compute_mode"] == "Default"
        assert row["clocks.max.sm"] == gpu["clocks_max_sm_mhz"]
        assert isinstance(row["temperature.gpu"], int)
        assert row["pci.device_id"] == f"0x{gpu['pci_device_id'][2:].upper()}10DE"
    # noheader,nounits with the field list given: the same values
    out = rig.ok("--query-gpu=" + ",".join(CSV_FIELDS), "--format=csv,noheader,nounits")
    assert not out.startswith("index")
    assert smiquery.parse_query_gpu_csv(out, fields=CSV_FIELDS) == rows


def test_query_gpu_csv_layout_like_the_real_tool(sim):
    rig = sim("4x3090")
    out = rig.ok("--query-gpu=index,memory.total,power.limit,clocks.max.sm,name", "--format=csv", "-i", "0")
    assert out == (
        "index, memory.total [MiB], power.limit [W], clocks.max.sm [MHz], name\n"
        "0, 24576 MiB, 350.00 W, 2100 MHz, NVIDIA GeForce RTX 3090\n"
    )
    out = rig.ok("--query-gpu=index,power.limit", "--format=csv,noheader,nounits")
    assert out.splitlines() == ["0, 350.00", "1, 350.00", "2, 350.00", "3, 350.00"]
    # the header the exporter captures show, parsed the same way as the real one
    real = smiquery.parse_query_gpu_csv(read_capture("query-gpu-csv__rtx4080super__1.txt"))[0]
    ours = rig.query(fields=["power.limit", "memory.total", "pcie.link.gen.max"], extra=("-i", "0"))[0]
    assert set(ours) <= set(real)


@pytest.mark.parametrize("name", ["4x3090", "6x3090", "8x5090", "mixed-3090-4090", "4x3090-x4riser"])
def test_nvidia_smi_q_matches_profile(sim, name):
    rig = sim(name)
    profile = rig.profile
    result = smiquery.parse_nvidia_smi_q(rig.ok("-q"))
    assert result["driver_version"] == profile["driver_version"]
    assert result["cuda_version"] == profile["cuda_version"]
    assert result["attached_gpus"] == len(profile["gpus"])
    for parsed, gpu in zip(result["gpus"], profile["gpus"], strict=True):
        assert parsed["bus_id"] == gpu["bus_id"]
        assert parsed["product_name"] == gpu["name"]
        assert parsed["architecture"] == gpu["architecture"]
        assert parsed["uuid"] == gpu["uuid"]
        assert parsed["vbios_version"] == gpu["vbios"]
        assert parsed["persistence_mode"] == "Disabled"
        assert parsed["fb_total_mib"] == gpu["vram_mib"]
        assert parsed["bar1_total_mib"] == gpu["bar1_mib"]
        power = parsed["power"]
        assert power["current_limit_w"] == power["requested_limit_w"] == gpu["power_default_w"]
        assert power["default_limit_w"] == gpu["power_default_w"]
        assert power["min_limit_w"] == gpu["power_min_w"]
        assert power["max_limit_w"] == gpu["power_max_w"]
        assert power["draw_w"] > 0
        pci = parsed["pci"]
        assert (pci["link_gen_max"], pci["link_gen_current"]) == (
            gpu["link_gen_max"], gpu["link_gen_current"])
        assert (pci["link_width_max"], pci["link_width_current"]) == (
            gpu["link_width_max"], gpu["link_width_current"])
        assert pci["link_gen_device_max"] == gpu["device_gen_max"]
        assert pci["device_id"] == f"0x{gpu['pci_device_id'][2:].upper()}10DE"
        assert pci["sub_system_id"] == gpu["subsystem_id"]
        assert pci["bus_id"] == gpu["bus_id"]


def test_nvidia_smi_q_display_subsets_and_id(sim):
    rig = sim("4x3090-smallbar")
    result = smiquery.parse_nvidia_smi_q(rig.ok("-q", "-d", "MEMORY,POWER", "-i", "1"))
    assert result["attached_gpus"] == 4  # the real tool counts every GPU
    (gpu,) = result["gpus"]
    assert gpu["bus_id"] == "00000000:21:00.0"
    assert gpu["bar1_total_mib"] == 256
    assert gpu["fb_total_mib"] == 24576
    assert gpu["power"]["max_limit_w"] == 350.0
    assert gpu["product_name"] is None  # like the real tool, -d shows only its sections
    assert gpu["pci"]["link_gen_max"] is None
    temperature = smiquery.parse_nvidia_smi_q(rig.ok("-q", "-d", "temperature"))
    assert len(temperature["gpus"]) == 4
    assert all(g["bar1_total_mib"] is None for g in temperature["gpus"])
    # PCI is not a -d display type of the real tool: refused, pointing at the full -q
    result = rig.run("-q", "-d", "MEMORY,PCI")
    assert result.returncode == 2 and "-d PCI is not a display type" in result.stderr
    result = rig.run("-q", "-d", "BOGUS")
    assert result.returncode == 2 and "Invalid combination of input arguments" in result.stdout


def _line_prefix(text: str, key: str) -> str:
    for line in text.splitlines():
        if line.strip().startswith(key + " ") and ":" in line:
            return line[: line.index(":") + 2]
    raise AssertionError(f"{key} not in output")


@pytest.mark.parametrize(
    ("driver", "capture", "width"),
    [("560.35.03", "nvidia-smi-q__rtx3090x2__1.txt", 42),
     ("595.58.03", "nvidia-smi-q__rtxpro6000x8__1.txt", 55)],
)
def test_nvidia_smi_q_column_layout_like_captures(sim, driver, capture, width):
    data = copy.deepcopy(load_profile("4x3090"))
    data["driver_version"] = driver
    rig = sim(data)
    ours = rig.ok("-q")
    real = read_capture(capture)
    for key in ("Driver Version", "Product Name", "Bus Id", "Max Power Limit", "Max",
                "Current Power Limit", "Total"):
        assert _line_prefix(ours, key) == _line_prefix(real, key)
    assert _line_prefix(ours, "Driver Version").index(":") == width
    assert ours.startswith("\n==============NVSMI LOG==============\n\nTimestamp ")


def test_older_driver_layouts_still_parse(sim):
    data = copy.deepcopy(load_profile("2x4090"))
    data["driver_version"] = "525.60.13"
    data["cuda_version"] = "12.0"
    rig = sim(data)
    out = rig.ok("-q", "-d", "POWER")
    assert "    Power Readings\n" in out and "Enforced Power Limit" in out
    gpu = smiquery.parse_nvidia_smi_q(out)["gpus"][0]
    assert gpu["power"]["current_limit_w"] == 450.0 and gpu["power"]["max_limit_w"] == 600.0
    topo_text = rig.ok("topo", "-m")
    assert "\x1b[" not in topo_text
    topo = smitopo.parse_topo_matrix(topo_text)
    assert topo["affinity_columns"] == ["CPU Affinity", "NUMA Affinity"]
    assert topo["numa_affinity"] == {"GPU0": "0", "GPU1": "0"}
    assert topo["links"]["GPU0"]["GPU1"] == "PHB"


def test_topo_matrix_matches_profile(sim):
    rig = sim("8x5090")
    text = rig.ok("topo", "-m")
    # header and rows shaped like the R535+ captures (underlined header, blank cell)
    real = read_capture("topo-m__rtxpro6000x8__1.txt")
    assert text.splitlines()[0].startswith("\t\x1b[4mGPU0\tGPU1\t")
    assert real.splitlines()[0].startswith("\t\x1b[4mGPU0\tGPU1\t")
    assert text.splitlines()[1].endswith("\t0-31,64-95\t0\t\tN/A")
    topo = smitopo.parse_topo_matrix(text)
    assert topo["devices"] == [f"GPU{i}" for i in range(8)]
    assert topo["links"]["GPU0"]["GPU0"] == "X"
    assert topo["links"]["GPU0"]["GPU1"] == "NODE"
    assert topo["links"]["GPU0"]["GPU4"] == "SYS"
    assert topo["links"]["GPU5"]["GPU7"] == "NODE"
    assert topo["cpu_affinity"]["GPU0"] == "0-31,64-95"
    assert topo["cpu_affinity"]["GPU7"] == "32-63,96-127"
    assert topo["numa_affinity"]["GPU7"] == "1"
    assert topo["gpu_numa_id"] == {f"GPU{i}": None for i in range(8)}
    phb = smitopo.parse_topo_matrix(sim("2x4090").ok("topo", "-m"))
    assert phb["links"]["GPU0"]["GPU1"] == "PHB"


def _p2p(rig, mode="r"):
    text = rig.ok("topo", "-p2p", mode)
    return smitopo.parse_topo_p2p(text)["status"]


def test_topo_p2p_chipset_gpu_is_cns_and_stock_is_ns(sim):
    rig = sim("6x3090")
    status = _p2p(rig)
    chipset = [f"GPU{g['index']}" for g in rig.profile["gpus"] if g["behind_chipset"]]
    assert chipset == ["GPU1"]
    for a in status:
        for b in status:
            if a == b:
                assert status[a][b] == "X"
            elif "GPU1" in (a, b):
                assert status[a][b] == "CNS"
            else:
                assert status[a][b] == "NS"


def test_topo_p2p_patched_ok_mixed_gns(sim):
    patched = _p2p(sim("4x3090-p2p"))
    assert {patched[a][b] for a in patched for b in patched if a != b} == {"OK"}
    mixed = _p2p(sim("mixed-3090-4090"), "rw")
    assert mixed["GPU0"]["GPU1"] == "NS"  # both 3090, stock driver
    assert mixed["GPU2"]["GPU3"] == "NS"  # both 4090
    assert mixed["GPU0"]["GPU2"] == mixed["GPU3"]["GPU1"] == "GNS"
    nvlink = _p2p(sim("4x3090-p2p"), "n")
    assert {nvlink[a][b] for a in nvlink for b in nvlink if a != b} == {"NS"}


def test_topo_p2p_layout_like_the_real_tool(sim):
    text = sim("4x3090").ok("topo", "-p2p", "w")
    real = read_capture("topo-p2p-rw__rtx5070-5060tix4__1.txt")
    assert text.splitlines()[0] == " \t\x1b[4mGPU0\tGPU1\tGPU2\tGPU3\t\x1b[0m"
    assert real.splitlines()[0].startswith(" \t\x1b[4mGPU0\tGPU1\t")
    assert text.splitlines()[1] == " GPU0\tX\tNS\tNS\tNS\t"
    legend = smitopo.parse_topo_p2p(text)["legend"]
    assert legend == smitopo.parse_topo_p2p(real)["legend"]


def test_lspci_view_parses_like_lspci(sim):
    rig = sim("6x3090")
    everything = pcidev.parse_lspci_vv(rig.ok("lspci", tool="rigctl-simgpu"))
    devices = [d for d in everything if d["class_id"] == "0300"]
    bridges = [d for d in everything if d["class_id"] == "0604"]
    assert len(devices) == 6 and len(bridges) == 6
    # Every GPU has a root port above it (its bus in the bridge's range), ACS redirect off.
    for dev in devices:
        bus = int(dev["bdf"].split(":")[1], 16)
        (above,) = [b for b in bridges if b["bus"]["secondary"] <= bus <= b["bus"]["subordinate"]]
        assert above["acs_ctl"]["ReqRedir"] is False and above["acs_ctl"]["CmpltRedir"] is False
    for dev, gpu in zip(devices, rig.profile["gpus"], strict=True):
        assert dev["bdf"] == simprofile.sysfs_bdf(gpu["bus_id"])
        assert dev["class"] == "VGA compatible controller" and dev["class_id"] == "0300"
        assert (dev["vendor_id"], dev["device_id"]) == ("10de", "2204")
        assert dev["description"] == "NVIDIA Corporation GA102 [GeForce RTX 3090]"
        assert dev["numa_node"] == gpu["numa_node"]
        bar1 = [b for b in dev["rebar"] if b["bar"] == 1][0]
        assert bar1["current_bytes"] == gpu["bar1_mib"] * MIB
        region1 = [r for r in dev["memory_regions"] if r["index"] == 1][0]
        assert region1["size_bytes"] == gpu["bar1_mib"] * MIB
        assert dev["lnkcap"] == {"speed_gts": 16.0, "gen": 4, "width": 16}
        assert dev["lnksta"]["width"] == gpu["link_width_current"]
        assert dev["lnksta"]["width_downgraded"] is gpu["behind_chipset"]
        assert dev["lnksta"]["speed_downgraded"] is False
    riser = [
        d for d in pcidev.parse_lspci_vv(sim("4x3090-x4riser").ok("lspci", tool="rigctl-simgpu"))
        if d["class_id"] == "0300"
    ]
    assert riser[2]["lnksta"] == {
        "speed_gts": 8.0, "gen": 3, "width": 4, "speed_downgraded": True, "width_downgraded": True,
    }
    small = [
        d for d in pcidev.parse_lspci_vv(sim("4x3090-smallbar").ok("lspci", tool="rigctl-simgpu"))
        if d["class_id"] == "0300"
    ]
    assert {[b for b in d["rebar"] if b["bar"] == 1][0]["current_bytes"] for d in small} == {256 * MIB}


def test_list_version_and_summary_table(sim):
    rig = sim("2x4090")
    assert rig.ok("-L").splitlines() == [
        f"GPU {g['index']}: {g['name']} (UUID: {g['uuid']})" for g in rig.profile["gpus"]
    ]
    assert "DRIVER version      : 550.127.05" in rig.ok("--version")
    table = rig.ok().splitlines()
    assert "NVIDIA-SMI 550.127.05" in table[2] and "CUDA Version: 12.4" in table[2]
    real = read_capture("nvidia-smi__rtx3090x2__1.txt").splitlines()
    boxed = [line for line in table if line.startswith(("|", "+"))]
    assert {len(line) for line in boxed} == {len(real[1])} == {91}
    assert table[4] == real[4] and table[7] == real[7]
    assert any("00000000:65:00.0" in line for line in table)


# --- -pl / -pm and the runtime state ---------------------------------------------------


def test_power_limit_in_range_changes_value_and_says_so(sim):
    rig = sim("4x3090")
    out = rig.ok("-pl", "280", "-i", "0")
    assert out.startswith("Power limit for GPU 00000000:01:00.0 was set to 280.00 W from 350.00 W.\n")
    assert "Warning: persistence mode is disabled on device 00000000:01:00.0." in out
    assert out.endswith("All done.\n")
    rows = rig.query(fields=["index", "power.limit", "enforced.power.limit", "power.default_limit"])
    assert [(r["power.limit"], r["enforced.power.limit"]) for r in rows] == [
        (280.0, 280.0), (350.0, 350.0), (350.0, 350.0), (350.0, 350.0)]
    assert {r["power.default_limit"] for r in rows} == {350.0}
    q = smiquery.parse_nvidia_smi_q(rig.ok("-q", "-d", "POWER", "-i", "00000000:01:00.0"))
    assert q["gpus"][0]["power"]["current_limit_w"] == 280.0
    assert q["gpus"][0]["power"]["default_limit_w"] == 350.0
    # all GPUs at once, a fractional value, and the "from" value is the current one
    out = rig.ok("-pl", "270.5")
    assert out.count("was set to 270.50 W") == 4
    assert "was set to 270.50 W from 280.00 W." in out
    state = json.loads(rig.state_file.read_text())
    assert {v["power_limit_w"] for v in state["gpus"].values()} == {270.5}


def test_power_limit_out_of_range_is_refused_and_changes_nothing(sim):
    rig = sim("4x3090")
    rig.ok("-pl", "300", "-i", "1")
    before = rig.state_file.read_bytes()
    for value in ("99", "351", "500"):
        result = rig.run("-pl", value)
        assert result.returncode == 2
        assert result.stdout == (
            f"Provided power limit {float(value):.2f} W is not a valid power limit which should be "
            "between 100.00 W and 350.00 W for GPU 00000000:01:00.0\n"
            "Terminating early due to previous errors.\n"
        )
    result = rig.run("-pl", "400", "-i", "2")
    assert "for GPU 00000000:41:00.0" in result.stdout and result.returncode == 2
    assert rig.state_file.read_bytes() == before
    assert [r["power.limit"] for r in rig.query(fields=["power.limit"])] == [350.0, 300.0, 350.0, 350.0]


def test_power_limit_range_is_per_gpu(sim):
    rig = sim("mixed-3090-4090")
    result = rig.run("-pl", "450")  # fine for the 4090s, too much for the 3090s
    assert result.returncode == 2 and "00000000:01:00.0" in result.stdout
    assert not rig.state_file.exists()
    out = rig.ok("-pl", "450", "-i", "2,3")
    assert "00000000:41:00.0 was set to 450.00 W from 450.00 W." in out


def test_power_limit_needs_root(sim):
    rig = sim("4x3090")
    result = rig.run("-pl", "280", root=False)
    assert result.returncode == 4
    assert result.stdout == (
        "Failed to set power management limit for GPU 00000000:01:00.0: Insufficient Permissions\n"
        "Terminating early due to previous errors.\n"
    )
    assert not rig.state_file.exists()
    # reading needs no root
    assert rig.run("--query-gpu=power.limit", "--format=csv", root=False).returncode == 0


def test_lock_and_reset_clocks(sim):
    rig = sim("4x3090")
    out = rig.ok("-i", "0", "-lgc", "210,1695")
    assert out == ('GPU clocks set to "(gpcClkMin 210, gpcClkMax 1695)" for GPU 00000000:01:00.0\n'
                   "All done.\n")
    status = json.loads(rig.ok("status", "--json", tool="rigctl-simgpu"))
    assert [g["locked_clocks_mhz"] for g in status["gpus"]] == [[210, 1695], None, None, None]
    rig.ok("-rgc", "-i", "0")
    status = json.loads(rig.ok("status", "--json", tool="rigctl-simgpu"))
    assert {str(g["locked_clocks_mhz"]) for g in status["gpus"]} == {"None"}
    rows = rig.query(fields=["clocks.max.sm", "clocks.max.graphics"])
    assert {(r["clocks.max.sm"], r["clocks.max.graphics"]) for r in rows} == {(2100, 2100)}


@pytest.mark.parametrize("profile,top", [("4x3090", 2100), ("2x4090", 3105), ("8x5090", 3090)])
def test_clock_lock_out_of_range_is_refused_and_changes_nothing(sim, profile, top):
    rig = sim(profile)
    assert {r["clocks.max.sm"] for r in rig.query(fields=["clocks.max.sm"])} == {top}
    result = rig.run("-lgc", f"210,{top + 1}")
    assert result.returncode == 2
    assert "00000000:" in result.stdout and f"0-{top} MHz" in result.stdout
    assert not rig.state_file.exists()
    assert rig.run("-lgc", "1695,210").returncode == 2  # min above max
    assert rig.run("-lgc", "1695").returncode == 2  # not a pair
    rig.ok("-lgc", f"210,{top}")


def test_clocks_and_compute_mode_need_root(sim):
    rig = sim("4x3090")
    for args in (("-lgc", "210,1695"), ("-rgc",), ("-c", "3")):
        result = rig.run(*args, root=False)
        assert result.returncode == 4 and "Insufficient Permissions" in result.stdout, args
    assert not rig.state_file.exists()
    # already in the wanted mode: fine without root, like -pm
    assert rig.run("-c", "0", root=False).returncode == 0


def test_compute_mode_numbers_and_names(sim):
    rig = sim("4x3090")
    out = rig.ok("-c", "3", "-i", "1")
    assert out == "Set compute mode to EXCLUSIVE_PROCESS for GPU 00000000:21:00.0.\nAll done.\n"
    assert "already set to EXCLUSIVE_PROCESS" in rig.ok("-c", "EXCLUSIVE_PROCESS", "-i", "1")
    rig.ok("-c", "prohibited", "-i", "2")
    rows = rig.query(fields=["compute_mode"])
    assert [r["compute_mode"] for r in rows] == ["Default", "Exclusive_Process", "Prohibited",
                                                 "Default"]
    q = rig.ok("-q", "-d", "COMPUTE", "-i", "1")
    assert "Exclusive_Process" in q
    assert rig.run("-c", "1").returncode == 2  # EXCLUSIVE_THREAD is gone
    assert rig.run("-c", "bogus").returncode == 2
    rig.ok("reset", tool="rigctl-simgpu")  # a reboot drops it, like the real driver
    assert {r["compute_mode"] for r in rig.query(fields=["compute_mode"])} == {"Default"}


def test_state_survives_calls_and_a_reboot_drops_it(sim):
    rig = sim("2x4090")
    rig.ok("-pl", "300", "-i", "1")
    rig.ok("-pm", "1", "-i", "0")
    for _ in range(2):
        rows = rig.query(fields=["power.limit", "persistence_mode"])
        assert [(r["power.limit"], r["persistence_mode"]) for r in rows] == [
            (450.0, "Enabled"), (300.0, "Disabled")]
    # /run is a tmpfs: a container restart empties it
    for path in rig.state_dir.iterdir():
        path.unlink()
    rig.state_dir.rmdir()
    rows = rig.query(fields=["power.limit", "persistence_mode"])
    assert [(r["power.limit"], r["persistence_mode"]) for r in rows] == [
        (450.0, "Disabled"), (450.0, "Disabled")]
    rig.ok("-pl", "200")
    assert "dropped" in rig.ok("reset", tool="rigctl-simgpu")
    assert {r["power.limit"] for r in rig.query(fields=["power.limit"])} == {450.0}


def test_persistence_mode(sim):
    rig = sim("4x3090")
    # unprivileged, nothing to change: fine, and the state directory is not touched
    assert rig.ok("-pm", "0", root=False).count("is already Disabled") == 4
    assert not rig.state_dir.exists()
    out = rig.ok("-pm", "1", "-i", "0")
    assert out == "Enabled persistence mode for GPU 00000000:01:00.0.\nAll done.\n"
    out = rig.ok("-pm", "ENABLED", "-i", "0")
    assert out == "Persistence mode is already Enabled for GPU 00000000:01:00.0.\nAll done.\n"
    assert "persistence mode is disabled" not in rig.ok("-pl", "300", "-i", "0")
    q = smiquery.parse_nvidia_smi_q(rig.ok("-q"))
    assert [g["persistence_mode"] for g in q["gpus"]] == ["Enabled", "Disabled", "Disabled", "Disabled"]
    # non-root: already-set is fine, changing is refused
    assert rig.run("-pm", "1", "-i", "0", root=False).returncode == 0
    result = rig.run("-pm", "1", root=False)
    assert result.returncode == 4
    assert (
        "Unable to set persistence mode for GPU 00000000:21:00.0: Insufficient Permissions"
        in result.stdout
    )
    out = rig.ok("-pm", "0", "-i", "0")
    assert out == "Disabled persistence mode for GPU 00000000:01:00.0.\nAll done.\n"


def test_persistenced_hook_and_status(sim):
    rig = sim("4x3090")
    assert "started" in rig.ok("persistenced", "start", tool="rigctl-simgpu")
    assert rig.ok("persistenced", "status", tool="rigctl-simgpu") == "running\n"
    assert {r["persistence_mode"] for r in rig.query(fields=["persistence_mode"])} == {"Enabled"}
    status = json.loads(rig.ok("status", "--json", tool="rigctl-simgpu"))
    assert status["simulated"] is True
    assert status["profile"] == "4x3090"
    assert status["persistenced"] is True
    assert all(g["persistence_mode"] for g in status["gpus"])
    text = rig.ok("status", tool="rigctl-simgpu")
    assert "SIMULATED" in text and "4x3090" in text
    rig.ok("persistenced", "stop", tool="rigctl-simgpu")
    assert {r["persistence_mode"] for r in rig.query(fields=["persistence_mode"])} == {"Disabled"}
    assert rig.run("persistenced", "start", tool="rigctl-simgpu", root=False).returncode == 4
    # the tool also answers nvidia-smi arguments (rigctl's fact gathering calls it that way)
    rows = smiquery.parse_query_gpu_csv(
        rig.ok("--query-gpu=index,power.limit", "--format=csv,noheader,nounits", tool="rigctl-simgpu"),
        fields=["index", "power.limit"],
    )
    assert [r["index"] for r in rows] == [0, 1, 2, 3]


def test_concurrent_power_limits_leave_a_consistent_state(sim):
    rig = sim("8x5090")
    wanted = {}
    for round_ in range(3):
        procs = []
        for i in range(8):
            watts = 400 + 10 * i + 5 * round_
            wanted[i] = float(watts)
            procs.append(subprocess.Popen(
                rig.argv("-pl", str(watts), "-i", str(i)), env=rig.env(), stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True))
        procs += [subprocess.Popen(
            rig.argv("-pm", "1", "-i", str(i)), env=rig.env(), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True) for i in range(0, 8, 2)]
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, (out, err)
        state = json.loads(rig.state_file.read_text())  # valid JSON, never half-written
        limits = {g["index"]: state["gpus"][g["bus_id"]]["power_limit_w"] for g in rig.profile["gpus"]}
        assert limits == wanted
    rows = rig.query(fields=["index", "power.limit", "persistence_mode"])
    assert {r["index"]: r["power.limit"] for r in rows} == wanted
    assert [r["persistence_mode"] for r in rows] == ["Enabled", "Disabled"] * 4
    assert not [p for p in rig.state_dir.iterdir() if p.name.endswith(".tmp")]


# --- errors ---------------------------------------------------------------------------


def test_bad_field_is_the_real_error(sim):
    rig = sim()
    result = rig.run("--query-gpu=index,power.limitt", "--format=csv")
    assert result.returncode == 2
    assert result.stdout == 'Field "power.limitt" is not a valid field to query.\n'
    result = rig.run("--query-gpu=inforom.img", "--format=csv")
    assert result.returncode == 2 and "not simulated" in result.stderr
    result = rig.run("--query-gpu=index")
    assert result.returncode == 2 and "'--format' switch is missing" in result.stdout


@pytest.mark.parametrize(
    "args",
    [("-x",), ("-q", "-d", "ECC"), ("topo", "-mp"), ("--query-gpu=index", "--format=xml"),
     ("-lmc", "405,9751"), ("nvlink", "-c")],
)
def test_unsupported_options_say_simulator(sim, args):
    result = sim().run(*args)
    assert result.returncode == 2
    assert "rigctl GPU simulator" in result.stderr and "not simulated" in result.stderr


def test_gpu_ids(sim):
    rig = sim("4x3090")
    by = lambda spec: [r["index"] for r in rig.query(fields=["index"], extra=("-i", spec))]  # noqa: E731
    assert by("2") == [2]
    assert by("00000000:41:00.0") == [2]
    assert by("0000:41:00.0") == [2]
    assert by("41:00.0") == [2]
    assert by(rig.profile["gpus"][3]["uuid"]) == [3]
    assert by("3,0") == [3, 0]
    result = rig.run("--query-gpu=index", "--format=csv", "-i", "7")
    assert result.returncode == 6 and result.stdout == "No devices were found\n"


def test_missing_profile_is_a_clear_error(tmp_path):
    env = dict(os.environ, RIGCTL_SIMGPU_PROFILE=str(tmp_path / "none.json"),
               RIGCTL_SIMGPU_STATE_DIR=str(tmp_path / "state"))
    result = subprocess.run([sys.executable, str(SCRIPT), "-L"], env=env, capture_output=True, text=True)
    assert result.returncode == 9
    assert "rigctl GPU simulator" in result.stderr and "none.json" in result.stderr


def test_script_runs_through_its_shebang(tmp_path):
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no /usr/bin/python3 here")
    rig = Sim(tmp_path, "4x3090")
    copy_ = tmp_path / "bin" / "nvidia-smi"
    copy_.parent.mkdir()
    copy_.write_bytes(SCRIPT.read_bytes())
    copy_.chmod(0o755)
    result = subprocess.run([str(copy_), "-L"], env=rig.env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("GPU 0: NVIDIA GeForce RTX 3090 (UUID: GPU-")


def test_script_is_standalone_stdlib():
    """One file: the shebang, then a zip archive of the package; every module imports only
    the standard library and its siblings (relative imports), in Python 3.9 syntax."""
    data = SCRIPT.read_bytes()
    assert data.startswith(b"#!/usr/bin/python3\n")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        sources = {name: zf.read(name).decode() for name in names}
    assert "__main__.py" in names
    assert {n.split("/", 1)[1] for n in names if "/" in n} == {
        p.name for p in install.SIMULATOR_SOURCE.glob("*.py")}
    modules = set()
    for name, source in sources.items():
        for node in ast.walk(ast.parse(source, filename=name, feature_version=(3, 9))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level:
                modules.add((node.module or "").split(".")[0])
    assert "rigctl" not in modules
    assert modules - {install.ARCHIVE_PACKAGE} <= set(sys.stdlib_module_names)
    assert install.simulator_script() == data  # the same bytes every time


def test_script_paths_match_constants():
    assert simtool.PROFILE_PATH == constants.SIMGPU_PROFILE
    assert simtool.STATE_DIR == constants.SIMGPU_STATE_DIR
    assert simtool.SYSFS_ROOT == constants.SIMGPU_SYSFS_ROOT
    assert simtool.TOOL_PATH == constants.SIMGPU_TOOL


# --- install file list ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REQUIRED_PROFILES))
def test_files_for_profile(name):
    files = install.files_for_profile(name)
    by_path = {path: (content, mode) for path, content, mode in files}
    assert len(by_path) == len(files)
    assert all(path.startswith("/") and isinstance(content, bytes) for path, content, _ in files)
    script = SCRIPT.read_bytes()
    assert by_path["/usr/local/bin/nvidia-smi"] == (script, 0o755)
    assert by_path[constants.SIMGPU_TOOL] == (script, 0o755)
    profile = json.loads(by_path[constants.SIMGPU_PROFILE][0])
    assert profile == load_profile(name)
    assert by_path[constants.SIMGPU_PROFILE][1] == 0o644
    for gpu in profile["gpus"]:
        base = f"{constants.SIMGPU_SYSFS_ROOT}/bus/pci/devices/{simprofile.sysfs_bdf(gpu['bus_id'])}/"
        read = lambda f, base=base: by_path[base + f][0].decode()  # noqa: E731
        assert read("vendor") == "0x10de\n"
        assert read("device") == f"0x{gpu['pci_device_id'][2:].lower()}\n"
        assert read("class") == "0x030000\n"
        assert read("subsystem_vendor") + read("subsystem_device") != ""
        assert int(read("subsystem_device"), 16) << 16 | int(read("subsystem_vendor"), 16) == int(
            gpu["subsystem_id"], 16)
        current = pcidev.parse_sysfs_link_speed(read("current_link_speed"))
        top = pcidev.parse_sysfs_link_speed(read("max_link_speed"))
        assert pcidev.pcie_gen_from_speed(current) == gpu["link_gen_current"]
        assert pcidev.pcie_gen_from_speed(top) == gpu["device_gen_max"]
        assert read("current_link_speed").endswith(" GT/s PCIe\n")
        assert int(read("current_link_width")) == gpu["link_width_current"]
        assert int(read("max_link_width")) == gpu["device_width_max"]
        assert int(read("numa_node")) == gpu["numa_node"]
    assert sorted(install.list_profiles()) == sorted(list_profiles())


def test_files_for_profile_dict_and_sysfs_names():
    data = copy.deepcopy(load_profile("6x3090"))
    files = install.files_for_profile(data)
    paths = [p for p, _, _ in files]
    assert f"{constants.SIMGPU_SYSFS_ROOT}/bus/pci/devices/0000:05:00.0/max_link_width" in paths
    chipset = {p.rsplit("/", 1)[1]: c for p, c, _ in files if "/0000:05:00.0/" in p}
    assert chipset["current_link_width"] == b"4\n" and chipset["max_link_width"] == b"16\n"
    assert chipset["current_link_speed"] == b"16.0 GT/s PCIe\n"
    data["gpus"][0]["power_min_w"] = 1000
    with pytest.raises(ValueError, match="power_min_w"):
        install.files_for_profile(data)
