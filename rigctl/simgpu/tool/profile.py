"""The rig profile: defaults for what a profile leaves out, reading it, choosing GPUs."""

import json
import os

from .common import ENV_PROFILE, PROFILE_PATH, RC_DRIVER, RC_NOT_FOUND, SimError, invalid_args

# Per-architecture defaults for what a profile does not state.
ARCH_DEFAULTS = {
    "Ampere": {
        "device_gen_max": 4,
        "clocks_max_sm_mhz": 2100,
        "clocks_max_memory_mhz": 9751,
        "memory_reserved_mib": 422,
        "idle_power_w": 30.1,
        "compute_cap": "8.6",
        "chip": "GA102",
        "inforom": "G001.0000.03.03",
        "load_sm_mhz": 1860,
        "load_memory_mhz": 9751,
        "load_temperature_c": 74,
        "slowdown_temperature_c": 95,
    },
    "Ada Lovelace": {
        "device_gen_max": 4,
        "clocks_max_sm_mhz": 3105,
        "clocks_max_memory_mhz": 10501,
        "memory_reserved_mib": 354,
        "idle_power_w": 20.0,
        "compute_cap": "8.9",
        "chip": "AD102",
        "inforom": "G002.0000.00.03",
        "load_sm_mhz": 2640,
        "load_memory_mhz": 10501,
        "load_temperature_c": 66,
        "slowdown_temperature_c": 95,
    },
    "Blackwell": {
        "device_gen_max": 5,
        "clocks_max_sm_mhz": 3090,
        "clocks_max_memory_mhz": 14001,
        "memory_reserved_mib": 487,
        "idle_power_w": 24.05,
        "compute_cap": "12.0",
        "chip": "GB202",
        "inforom": "G002.0000.00.03",
        "load_sm_mhz": 2700,
        "load_memory_mhz": 14001,
        "load_temperature_c": 64,
        "slowdown_temperature_c": 95,
    },
}

# PCI device id -> marketing name as pci.ids spells it (for the lspci view).
PCI_NAMES = {
    "2204": "GeForce RTX 3090",
    "2203": "GeForce RTX 3090 Ti",
    "2684": "GeForce RTX 4090",
    "2b85": "GeForce RTX 5090",
}
SUBSYSTEM_VENDORS = {
    "10de": "NVIDIA Corporation",
    "1458": "Gigabyte Technology Co., Ltd",
    "1462": "Micro-Star International Co., Ltd. [MSI]",
    "1043": "ASUSTeK Computer Inc.",
    "1569": "Palit Microsystems Inc.",
    "10b0": "Gainward GmbH",
    "3842": "eVga.com. Corp.",
    "19da": "ZOTAC International (MCO) Ltd.",
}

# One NVLink 3.0 link of a GeForce RTX 3090 bridge as `nvidia-smi nvlink -s` prints it (GB/s,
# per direction); a 3090 has 4 links: 56.25 GB/s per direction.
NVLINK_LINK_GBS = 14.062


# --- profile --------------------------------------------------------------------------


#: The record rigctl's driver role keeps of the module it installed
#: (rigctl.core.driver.PROVENANCE_PATH; the simulator stays stdlib-only and standalone).
DRIVER_RECORD = "/var/lib/rigctl/nvidia-driver.json"


def p2p_patched(profile, record_path=DRIVER_RECORD):
    """Whether GeForce P2P works on this simulated rig: the profile says the patched module
    is loaded (``"p2p": "patched"``), or rigctl installed the patched module here (its
    record says flavor ``p2p``: the simulated kernel loads what the driver role installed,
    as a real one would after the role's checks)."""
    if profile.get("p2p") == "patched":
        return True
    try:
        with open(record_path) as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record.get("flavor") == "p2p"


def driver_major(profile):
    try:
        return int(str(profile.get("driver_version", "0")).split(".")[0])
    except ValueError:
        return 0


def is_geforce(gpu):
    return "GeForce" in gpu.get("name", "")


def apply_defaults(profile):
    """A copy of a rig profile with every optional field filled in and the GPUs in bus id
    order (the order nvidia-smi numbers them). rigctl.simgpu.load_profile uses this too,
    so the simulator and rigctl agree on what a profile means."""
    out = dict(profile)
    numa_nodes = int(out.get("numa_nodes") or 1)
    out["numa_nodes"] = numa_nodes
    if not out.get("numa_cpus"):
        out["numa_cpus"] = ["%d-%d" % (n * 32, n * 32 + 31) for n in range(numa_nodes)]
    out.setdefault("p2p", "stock")
    out.setdefault("cpu_vendor", "AMD")
    out.setdefault("iommu", "off")
    gpus = sorted((dict(g) for g in out.get("gpus") or []), key=lambda g: g.get("bus_id", ""))
    for index, gpu in enumerate(gpus):
        arch = ARCH_DEFAULTS.get(gpu.get("architecture"), ARCH_DEFAULTS["Ampere"])
        gpu["index"] = index
        gpu.setdefault("brand", "GeForce" if is_geforce(gpu) else "NVIDIA RTX")
        gpu.setdefault("device_gen_max", max(arch["device_gen_max"], gpu.get("link_gen_max", 1)))
        gpu.setdefault("device_width_max", max(16, gpu.get("link_width_max", 16)))
        gpu.setdefault("host_bridge", index)
        gpu.setdefault("pcie_switch", None)
        gpu.setdefault("behind_chipset", False)
        gpu.setdefault("acs_redirect", False)
        gpu.setdefault("numa_node", 0)
        gpu.setdefault("clocks_max_sm_mhz", arch["clocks_max_sm_mhz"])
        gpu.setdefault("clocks_max_graphics_mhz", gpu["clocks_max_sm_mhz"])
        gpu.setdefault("clocks_max_memory_mhz", arch["clocks_max_memory_mhz"])
        gpu.setdefault("memory_reserved_mib", arch["memory_reserved_mib"])
        gpu.setdefault("memory_used_mib", 2)
        gpu.setdefault("idle_power_w", round(arch["idle_power_w"] + 0.37 * index, 2))
        gpu.setdefault("temperature_c", 28 + index % 5)
        gpu.setdefault("fan_percent", 30)
        gpu.setdefault("compute_cap", arch["compute_cap"])
        gpu.setdefault("chip", arch["chip"])
        gpu.setdefault("inforom", arch["inforom"])
        gpu.setdefault("serial", None)
        gpu.setdefault("vbios", "00.00.00.00.00")
        gpu.setdefault("subsystem_id", "0x0000" + "10DE")
        gpu.setdefault("power_max_w", gpu.get("power_default_w"))
        gpu.setdefault("power_min_w", gpu.get("power_default_w"))
        gpu.setdefault("load_sm_mhz", min(arch["load_sm_mhz"], gpu["clocks_max_sm_mhz"]))
        gpu.setdefault("load_memory_mhz", min(arch["load_memory_mhz"], gpu["clocks_max_memory_mhz"]))
        gpu.setdefault("load_temperature_c", arch["load_temperature_c"] + index % 3)
        gpu.setdefault("slowdown_temperature_c", arch["slowdown_temperature_c"])
    out["gpus"] = gpus
    out["nvlink"] = [dict(link) for link in out.get("nvlink") or []]
    for link in out["nvlink"]:
        link.setdefault("links", 4)
        link.setdefault("link_speed_gbs", NVLINK_LINK_GBS)
    out["faults"] = [dict(fault) for fault in out.get("faults") or []]
    return out


def profile_file():
    return os.environ.get(ENV_PROFILE) or PROFILE_PATH


def read_profile():
    path = profile_file()
    try:
        with open(path) as handle:
            data = json.load(handle)
    except OSError as exc:
        raise SimError(
            RC_DRIVER,
            stderr="rigctl GPU simulator: no rig profile at %s (%s). This command simulates "
            "nvidia-smi on lab rigs only.\n" % (path, exc.strerror or exc),
        ) from None
    except ValueError as exc:
        raise SimError(
            RC_DRIVER, stderr="rigctl GPU simulator: profile %s is not valid JSON: %s\n" % (path, exc)
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("gpus"), list) or not data["gpus"]:
        raise SimError(RC_DRIVER, stderr="rigctl GPU simulator: profile %s has no GPUs\n" % path)
    return apply_defaults(data)


# --- GPU selection --------------------------------------------------------------------


def normalize_bus(text):
    text = text.strip().upper()
    parts = text.split(":")
    if len(parts) == 2:
        parts = ["0"] + parts
    if len(parts) != 3:
        return None
    domain, bus, devfn = parts
    try:
        return "%08X:%02X:%s" % (int(domain, 16), int(bus, 16), devfn)
    except ValueError:
        return None


def select_gpus(profile, spec):
    gpus = profile["gpus"]
    if spec is None:
        return list(gpus)
    chosen = []
    for token in [t.strip() for t in spec.split(",") if t.strip()]:
        found = None
        if token.isdigit():
            index = int(token)
            found = gpus[index] if index < len(gpus) else None
        elif token.upper().startswith("GPU-"):
            for gpu in gpus:
                if gpu.get("uuid", "").lower() == token.lower():
                    found = gpu
        else:
            bus = normalize_bus(token)
            for gpu in gpus:
                if bus and gpu["bus_id"].upper() == bus:
                    found = gpu
        if found is None:
            raise SimError(RC_NOT_FOUND, stdout="No devices were found\n")
        if found not in chosen:
            chosen.append(found)
    if not chosen:
        raise invalid_args()
    return chosen


# --- values several renderers print ---------------------------------------------------


def pci_device_id(gpu):
    return "0x%s10DE" % gpu["pci_device_id"][2:].upper()


def fb(gpu):
    total = int(gpu["vram_mib"])
    reserved = int(gpu["memory_reserved_mib"])
    used = int(gpu["memory_used_mib"])
    return total, reserved, used, max(total - reserved - used, 0)


def lspci_size(mib, suffix=""):
    if mib >= 1024 and mib % 1024 == 0:
        return "%dG%s" % (mib // 1024, suffix)
    return "%dM%s" % (mib, suffix)


def lspci_speed(gen):
    return {1: "2.5", 2: "5", 3: "8", 4: "16", 5: "32", 6: "64"}.get(int(gen), "2.5")


def sysfs_bdf(bus_id):
    """'00000000:01:00.0' (nvidia-smi) -> '0000:01:00.0' (sysfs, lspci -D)."""
    domain, bus, devfn = bus_id.split(":")
    return ("%04x:%s:%s" % (int(domain, 16), bus, devfn)).lower()
