"""The simulated GPU layer of lab rigs.

Lab rigs are Debian systemd containers with no GPU. Each carries a *rig profile*
(``profiles/<name>.json``: driver version, CPU/NUMA layout, P2P flavour and one entry per
GPU) and the simulator (the package :mod:`rigctl.simgpu.tool`, installed as one zipapp file
under ``/usr/local/bin/nvidia-smi`` and ``/usr/local/bin/rigctl-simgpu``) that answers in the
real tools' formats from that profile. :mod:`rigctl.simgpu.install` lists the files to put into
a container. Readers tell simulated from real by the marker file
(``rigctl.core.constants.SIMGPU_PROFILE``), never by output text.

Profile format (see the shipped profiles)::

    {"name": "4x3090", "description": "...", "driver_version": "535.261.03",
     "cuda_version": "12.2", "cpu_vendor": "AMD" | "Intel", "numa_nodes": 1,
     "numa_cpus": ["0-63"],                  # CPU list per NUMA node (topo -m affinity)
     "p2p": "stock" | "patched",             # stock GeForce driver: P2P NS; patched: OK
     "iommu": "off" | "passthrough" | "translated",  # optional (off): simulated IOMMU
                                             # groups under the sysfs tree (kernel/iommu_groups)
     "gpus": [{"name": "NVIDIA GeForce RTX 3090", "bus_id": "00000000:01:00.0",
               "pci_device_id": "0x2204", "subsystem_id": "0x403B1458",
               "vram_mib": 24576, "bar1_mib": 32768,
               "link_gen_max": 4, "link_gen_current": 4,      # as nvidia-smi reports them
               "link_width_max": 16, "link_width_current": 16,
               "power_min_w": 100, "power_default_w": 350, "power_max_w": 350,
               "numa_node": 0, "behind_chipset": false, "architecture": "Ampere",
               "uuid": "GPU-...", "vbios": "94.02.42.40.34",
               # optional: acs_redirect (the root port above has ACS ReqRedir+ CmpltRedir+),
               # host_bridge, pcie_switch (int: GPUs behind one PCIe switch, e.g. a riser
               # board: upstream + downstream ports in lspci and sysfs), device_gen_max,
               # device_width_max
               # (what the card itself supports: lspci LnkCap, sysfs max_link_*),
               # serial, clocks_max_sm_mhz, idle_power_w, memory_reserved_mib,
               # load_sm_mhz, load_temperature_c, slowdown_temperature_c (under load) ...
              }, ...],
     "nvlink": [{"gpus": [0, 1], "links": 4, "link_speed_gbs": 14.062}],  # optional bridges
     "faults": [{"kind": "xid", "gpu": 2, "code": 79}, ...]}  # optional, see
                                             # rigctl.simgpu.tool.faults for the kinds

GPUs are listed in bus id order (the order nvidia-smi numbers them).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from rigctl.core import driver as driverlib
from rigctl.simgpu.tool.faults import check_fault
from rigctl.simgpu.tool.profile import ARCH_DEFAULTS, apply_defaults

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"

__all__ = [
    "PROFILES_DIR",
    "list_profiles",
    "load_profile",
    "validate_profile",
    "profile_path",
]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_BUS_RE = re.compile(r"^[0-9A-F]{8}:[0-9A-F]{2}:[0-9A-F]{2}\.[0-7]$")
_UUID_RE = re.compile(r"^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_DRIVER_RE = re.compile(driverlib.VERSION_PATTERN)  # the one driver version format
_CUDA_RE = re.compile(r"^\d{1,2}\.\d{1,2}$")
_CPULIST_RE = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def list_profiles() -> list[str]:
    """Names of the shipped rig profiles."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.json"))


def profile_path(name: str) -> Path:
    return PROFILES_DIR / f"{name}.json"


def load_profile(name_or_path: str | Path) -> dict[str, Any]:
    """A validated rig profile, by shipped name (``4x3090``) or by path to a JSON file;
    optional fields filled in, GPUs in bus id order. ValueError naming the profile and the
    field when it is not valid."""
    text = str(name_or_path)
    candidate = Path(text)
    if text.endswith(".json") or "/" in text or candidate.is_file():
        path = candidate
        label = text
        expected_name = None
    else:
        if not _NAME_RE.match(text):
            raise ValueError(f"profile {text!r}: not a valid profile name")
        path = profile_path(text)
        label = text
        expected_name = text
        if not path.is_file():
            raise ValueError(
                f"profile {text!r}: no such rig profile (known: {', '.join(list_profiles())})"
            )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"profile {label!r}: cannot read {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"profile {label!r}: {path} is not valid JSON: {exc}") from None
    validate_profile(data, label)
    if expected_name is not None and data["name"] != expected_name:
        raise ValueError(
            f"profile {label!r}: field 'name' is {data['name']!r}, but the file is "
            f"{path.name} (they must match)"
        )
    return apply_defaults(data)


def _fail(label: str, field: str, problem: str) -> None:
    raise ValueError(f"profile {label!r}: field {field!r} {problem}")


def _check_type(label, data, field, kinds, where=None):
    key = field if where is None else f"{where}.{field}"
    if field not in data:
        _fail(label, key, "is missing")
    value = data[field]
    if isinstance(value, bool) and bool not in kinds:
        _fail(label, key, f"must be {'/'.join(k.__name__ for k in kinds)}, not {value!r}")
    if not isinstance(value, kinds):
        _fail(label, key, f"must be {'/'.join(k.__name__ for k in kinds)}, not {value!r}")
    return value


def validate_profile(data: Any, label: str = "?") -> None:
    """Raise ValueError (naming the profile and the field) unless ``data`` is a valid rig
    profile."""
    if not isinstance(data, dict):
        raise ValueError(f"profile {label!r}: must be a JSON object")
    nodes = _validate_rig(label, data)
    gpus = _check_type(label, data, "gpus", (list,))
    if not 1 <= len(gpus) <= 16:
        _fail(label, "gpus", f"must list 1 to 16 GPUs, not {len(gpus)}")
    seen_bus: dict[str, int] = {}
    seen_uuid: dict[str, int] = {}
    previous_bus = ""
    for i, gpu in enumerate(gpus):
        previous_bus = _validate_gpu(label, i, gpu, nodes, seen_bus, seen_uuid, previous_bus)
    _validate_switches(label, gpus)
    _validate_nvlink(label, data)
    for i, fault in enumerate(data.get("faults") or []):
        problem = check_fault(fault, len(gpus))
        if problem:
            _fail(label, f"faults[{i}]", problem)


def _validate_rig(label, data) -> int:
    """The rig-level fields; returns the number of NUMA nodes."""
    name = _check_type(label, data, "name", (str,))
    if not _NAME_RE.match(name):
        _fail(label, "name", f"is not a valid profile name: {name!r}")
    _check_type(label, data, "description", (str,))
    driver = _check_type(label, data, "driver_version", (str,))
    if not _DRIVER_RE.match(driver):
        _fail(label, "driver_version", f"must look like '535.261.03', not {driver!r}")
    cuda = _check_type(label, data, "cuda_version", (str,))
    if not _CUDA_RE.match(cuda):
        _fail(label, "cuda_version", f"must look like '12.2', not {cuda!r}")
    vendor = _check_type(label, data, "cpu_vendor", (str,))
    if vendor not in ("AMD", "Intel"):
        _fail(label, "cpu_vendor", f"must be 'AMD' or 'Intel', not {vendor!r}")
    nodes = _check_type(label, data, "numa_nodes", (int,))
    if not 1 <= nodes <= 8:
        _fail(label, "numa_nodes", f"must be 1..8, not {nodes}")
    if "numa_cpus" in data:
        cpus = _check_type(label, data, "numa_cpus", (list,))
        if len(cpus) != nodes:
            _fail(label, "numa_cpus", f"must list one CPU range per NUMA node ({nodes})")
        for i, item in enumerate(cpus):
            if not isinstance(item, str) or not _CPULIST_RE.match(item):
                _fail(label, f"numa_cpus[{i}]", f"must be a CPU list like '0-63', not {item!r}")
    p2p = _check_type(label, data, "p2p", (str,))
    if p2p not in ("stock", "patched"):
        _fail(label, "p2p", f"must be 'stock' or 'patched', not {p2p!r}")
    if "iommu" in data:
        iommu = _check_type(label, data, "iommu", (str,))
        if iommu not in ("off", "passthrough", "translated"):
            _fail(label, "iommu", f"must be 'off', 'passthrough' or 'translated', not {iommu!r}")
    return nodes


def _validate_gpu(label, i, gpu, nodes, seen_bus, seen_uuid, previous_bus) -> str:
    """One entry of ``gpus``; returns its bus id (the list must be in bus id order)."""
    where = f"gpus[{i}]"
    if not isinstance(gpu, dict):
        _fail(label, where, "must be an object")
    gname = _check_type(label, gpu, "name", (str,), where)
    if not gname.startswith("NVIDIA "):
        _fail(label, f"{where}.name", f"must be the name nvidia-smi prints, not {gname!r}")
    bus = _check_type(label, gpu, "bus_id", (str,), where)
    if not _BUS_RE.match(bus):
        _fail(label, f"{where}.bus_id", f"must look like '00000000:01:00.0', not {bus!r}")
    if bus in seen_bus:
        _fail(label, f"{where}.bus_id", f"{bus} is also used by gpus[{seen_bus[bus]}]")
    seen_bus[bus] = i
    if bus < previous_bus:
        _fail(label, f"{where}.bus_id", f"{bus} is out of order (list GPUs by bus id)")
    device = _check_type(label, gpu, "pci_device_id", (str,), where)
    if not re.match(r"^0x[0-9A-Fa-f]{4}$", device):
        _fail(label, f"{where}.pci_device_id", f"must look like '0x2204', not {device!r}")
    sub = _check_type(label, gpu, "subsystem_id", (str,), where)
    if not re.match(r"^0x[0-9A-Fa-f]{8}$", sub):
        _fail(label, f"{where}.subsystem_id", f"must look like '0x403B1458', not {sub!r}")
    vram = _check_type(label, gpu, "vram_mib", (int,), where)
    if not 1024 <= vram <= 262144:
        _fail(label, f"{where}.vram_mib", f"must be 1024..262144, not {vram}")
    bar1 = _check_type(label, gpu, "bar1_mib", (int,), where)
    if bar1 < 64 or bar1 & (bar1 - 1):
        _fail(label, f"{where}.bar1_mib", f"must be a power of two >= 64, not {bar1}")
    _validate_gpu_hardware(label, where, i, gpu, nodes, seen_uuid)
    return bus


def _validate_gpu_hardware(label, where, i, gpu, nodes, seen_uuid) -> None:
    """Link, power, NUMA node, architecture, identity and the optional fields of one GPU."""
    gen_max = _check_type(label, gpu, "link_gen_max", (int,), where)
    gen_cur = _check_type(label, gpu, "link_gen_current", (int,), where)
    if not 1 <= gen_max <= 6:
        _fail(label, f"{where}.link_gen_max", f"must be 1..6, not {gen_max}")
    if not 1 <= gen_cur <= gen_max:
        _fail(label, f"{where}.link_gen_current", f"must be 1..link_gen_max ({gen_max}), not {gen_cur}")
    width_max = _check_type(label, gpu, "link_width_max", (int,), where)
    width_cur = _check_type(label, gpu, "link_width_current", (int,), where)
    if width_max not in (1, 2, 4, 8, 16):
        _fail(label, f"{where}.link_width_max", f"must be 1, 2, 4, 8 or 16, not {width_max}")
    if width_cur not in (1, 2, 4, 8, 16) or width_cur > width_max:
        _fail(
            label,
            f"{where}.link_width_current",
            f"must be a link width <= link_width_max ({width_max}), not {width_cur}",
        )
    pmin = _check_type(label, gpu, "power_min_w", (int, float), where)
    pdef = _check_type(label, gpu, "power_default_w", (int, float), where)
    pmax = _check_type(label, gpu, "power_max_w", (int, float), where)
    if not 0 < pmin <= pdef:
        _fail(label, f"{where}.power_min_w", f"must be > 0 and <= power_default_w ({pdef}), not {pmin}")
    if pdef > pmax:
        _fail(label, f"{where}.power_default_w", f"({pdef}) must be <= power_max_w ({pmax})")
    numa = _check_type(label, gpu, "numa_node", (int,), where)
    if not 0 <= numa < nodes:
        _fail(label, f"{where}.numa_node", f"must be 0..{nodes - 1} (numa_nodes is {nodes}), not {numa}")
    _check_type(label, gpu, "behind_chipset", (bool,), where)
    arch = _check_type(label, gpu, "architecture", (str,), where)
    if arch not in ARCH_DEFAULTS:
        _fail(label, f"{where}.architecture", f"must be one of {', '.join(ARCH_DEFAULTS)}, not {arch!r}")
    uuid = _check_type(label, gpu, "uuid", (str,), where)
    if not _UUID_RE.match(uuid):
        _fail(label, f"{where}.uuid", f"must look like 'GPU-<8-4-4-4-12 hex digits>', not {uuid!r}")
    if uuid in seen_uuid:
        _fail(label, f"{where}.uuid", f"is also used by gpus[{seen_uuid[uuid]}]")
    seen_uuid[uuid] = i
    _check_type(label, gpu, "vbios", (str,), where)
    for opt in ("device_gen_max", "device_width_max"):
        if opt in gpu:
            value = _check_type(label, gpu, opt, (int,), where)
            floor = gen_max if opt == "device_gen_max" else width_max
            if value < floor:
                _fail(label, f"{where}.{opt}", f"({value}) must be >= the link maximum ({floor})")
    if "acs_redirect" in gpu:
        _check_type(label, gpu, "acs_redirect", (bool,), where)
    for opt in ("host_bridge", "clocks_max_sm_mhz", "memory_reserved_mib", "load_sm_mhz",
                "load_temperature_c", "slowdown_temperature_c"):
        if opt in gpu:
            _check_type(label, gpu, opt, (int,), where)
    if gpu.get("pcie_switch") is not None:
        _check_type(label, gpu, "pcie_switch", (int,), where)

def _validate_switches(label, gpus):
    """GPUs on one ``pcie_switch`` leave room for the switch's two buses below their first
    bus (see rigctl.simgpu.tool.pcitree)."""
    groups: dict[int, list[int]] = {}
    for i, gpu in enumerate(gpus):
        if gpu.get("pcie_switch") is not None:
            groups.setdefault(gpu["pcie_switch"], []).append(i)
    for switch, members in groups.items():
        first = int(gpus[members[0]]["bus_id"].split(":")[1], 16)
        if (first - 2) & 0x1F == 0 or first < 3:
            _fail(label, f"gpus[{members[0]}].bus_id", f"is bus {first:02x}: GPUs on pcie_switch "
                  f"{switch} need a first bus whose bus - 2 is not a multiple of 0x20 (e.g. 43)")


def _validate_nvlink(label, data):
    if "nvlink" not in data:
        return
    bridges = _check_type(label, data, "nvlink", (list,))
    used: set[int] = set()
    for i, bridge in enumerate(bridges):
        where = f"nvlink[{i}]"
        if not isinstance(bridge, dict):
            _fail(label, where, "must be an object like {\"gpus\": [0, 1], \"links\": 4}")
        pair = _check_type(label, bridge, "gpus", (list,), where)
        if (len(pair) != 2 or not all(isinstance(g, int) and 0 <= g < len(data["gpus"]) for g in pair)
                or pair[0] == pair[1]):
            _fail(label, f"{where}.gpus", f"must be two different GPU indexes, not {pair!r}")
        if used & set(pair):
            _fail(label, f"{where}.gpus", "names a GPU that is already in another NVLink bridge")
        used |= set(pair)
        if "links" in bridge and not (isinstance(bridge["links"], int) and 1 <= bridge["links"] <= 18):
            _fail(label, f"{where}.links", f"must be 1..18, not {bridge['links']!r}")
        if "link_speed_gbs" in bridge:
            _check_type(label, bridge, "link_speed_gbs", (int, float), where)
