#!/usr/bin/python3
"""rigctl GPU simulator: ``nvidia-smi`` for lab rigs that have no GPU.

One standalone script (standard library only, no rigctl import: it is copied into lab
containers) installed twice:

- ``/usr/local/bin/nvidia-smi``: answers like the real tool, in the real output formats
  (``--query-gpu`` CSV, ``-q [-d MEMORY,POWER,...]``, ``-L``, ``topo -m``, ``topo -p2p``, ``-pl``,
  ``-pm``, ``-lgc``/``-rgc``, ``-c``, the summary table), so that roles, modules and suites run unchanged;
- ``/usr/local/bin/rigctl-simgpu``: the same, plus its own commands::

      rigctl-simgpu status [--json]        what is simulated, profile, runtime state
      rigctl-simgpu persistenced start|stop|status
                                           what nvidia-persistenced does to the driver
                                           (persistence on for every GPU while running)
      rigctl-simgpu lspci                  `lspci -vv -D -nn` blocks of the simulated GPUs
                                           and of the root ports above them (ACS)
      rigctl-simgpu reset                  drop the runtime state (= a reboot)
      rigctl-simgpu <nvidia-smi arguments> same as nvidia-smi

The simulated GPUs never pass for real hardware: readers decide "simulated" from the marker
file (the profile, ``/etc/rigctl-simgpu/profile.json``), not from this output; the output
keeps the real tool's layout and real model names so that the parsers are exercised.

Runtime state (power limits, persistence mode, locked clocks, compute mode) lives in
``/run/rigctl-simgpu/state.json``: /run is a tmpfs, so like with the real driver everything
set with ``-pl``/``-pm``/``-lgc``/``-c`` is gone after a container restart unless something
re-applies it. As a second guard the state
records the start time of PID 1 and is ignored when PID 1 changed (a restart with a
non-tmpfs /run). Writes are atomic (temp file + rename) under an fcntl lock, because
Ansible may run several calls at once.

Environment (tests and debugging):

- ``RIGCTL_SIMGPU_PROFILE``    profile JSON to use instead of /etc/rigctl-simgpu/profile.json
- ``RIGCTL_SIMGPU_STATE_DIR``  state directory instead of /run/rigctl-simgpu
- ``RIGCTL_SIMGPU_ASSUME_ROOT=1`` act as root for ``-pl``/``-pm``/``-lgc``/``-rgc``/``-c``/``persistenced``;
  ``=0`` act as an unprivileged user even when run as root (the real tool refuses those
  changes to non-root users with "Insufficient Permissions", exit 4; so does this one)

Real-tool wording used here (seen in public outputs of the real nvidia-smi): ``Power limit
for GPU <bus> was set to X W from Y W.``, ``Provided power limit X W is not a valid power
limit which should be between MIN W and MAX W for GPU <bus>``, ``Failed to set power
management limit for GPU <bus>: Insufficient Permissions``, ``Terminating early due to
previous errors.``, ``Enabled persistence mode for GPU <bus>.``, ``Persistence mode is
already Enabled for GPU <bus>.``, ``Unable to set persistence mode for GPU <bus>:
Insufficient Permissions``, ``Field "x" is not a valid field to query.``, ``All done.``.
``Compute mode is already set to DEFAULT for GPU <bus>.``, ``Set compute mode to
EXCLUSIVE_PROCESS for GPU <bus>.``, ``GPU clocks set to "(gpcClkMin 210, gpcClkMax 1695)"
for GPU <bus>``, ``All done.``. Approximated (wording not confirmed against a real driver):
the refusal of a clock lock outside the card's range, the ``-rgc`` confirmation and the
permission errors of ``-lgc``/``-rgc``/``-c``.
Exit codes follow nvidia-smi(1): 2 invalid argument, 4 no permission, 6 not found.

Deliberate simplifications: the current PCIe link is the profile's ``link_gen_current``
(what the link trains at under load; real idle GPUs drop to Gen1); power draw, clocks and
temperatures are fixed idle values; ``-d PCI`` is refused because the real tool has no
such display type (the full ``-q`` has the PCI section); ``topo -p2p a`` answers like
``r``/``w``. Anything else not listed above is refused on stderr, exit 2.
"""

import fcntl
import json
import os
import sys
import tempfile
import time

# Keep in sync with rigctl/core/constants.py (this script cannot import rigctl; a unit test
# checks that the values agree).
PROFILE_PATH = "/etc/rigctl-simgpu/profile.json"
STATE_DIR = "/run/rigctl-simgpu"
SYSFS_ROOT = "/var/lib/rigctl-simgpu/sys"
TOOL_PATH = "/usr/local/bin/rigctl-simgpu"

ENV_PROFILE = "RIGCTL_SIMGPU_PROFILE"
ENV_STATE_DIR = "RIGCTL_SIMGPU_STATE_DIR"
ENV_ASSUME_ROOT = "RIGCTL_SIMGPU_ASSUME_ROOT"

STATE_FILE = "state.json"
LOCK_FILE = ".lock"

# nvidia-smi(1) return codes
RC_OK = 0
RC_INVALID_ARGUMENT = 2
RC_NOT_SUPPORTED = 3
RC_NO_PERMISSION = 4
RC_NOT_FOUND = 6
RC_DRIVER = 9

ANSI_UNDERLINE = "\x1b[4m"
ANSI_RESET = "\x1b[0m"

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


class SimError(Exception):
    """An answer that ends the command: text for stdout/stderr and an exit code."""

    def __init__(self, rc, stdout="", stderr=""):
        super().__init__(stderr or stdout)
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr


def not_simulated(what, profile=None):
    name = (profile or {}).get("name") or "?"
    return SimError(
        RC_INVALID_ARGUMENT,
        stderr=(
            "rigctl GPU simulator: %s is not simulated. This host has simulated GPUs "
            "(profile %s; see `rigctl-simgpu status`); the simulator answers --query-gpu, "
            "-q [-d MEMORY,POWER,...], -L, -pl, -pm, topo -m, topo -p2p and the "
            "summary table.\n" % (what, name)
        ),
    )


def invalid_args():
    return SimError(
        RC_INVALID_ARGUMENT,
        stdout="Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n",
    )


# --- profile --------------------------------------------------------------------------


def _driver_major(profile):
    try:
        return int(str(profile.get("driver_version", "0")).split(".")[0])
    except ValueError:
        return 0


def _is_geforce(gpu):
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
        gpu.setdefault("brand", "GeForce" if _is_geforce(gpu) else "NVIDIA RTX")
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
    out["gpus"] = gpus
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


# --- runtime state --------------------------------------------------------------------


def state_dir():
    return os.environ.get(ENV_STATE_DIR) or STATE_DIR


def _boot_marker():
    """Start time of PID 1 (changes when the container restarts), or None."""
    try:
        with open("/proc/1/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return fields[19]
    except (OSError, IndexError):
        return None


def load_state():
    path = os.path.join(state_dir(), STATE_FILE)
    try:
        with open(path) as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        return {}
    if not isinstance(state, dict):
        return {}
    marker = _boot_marker()
    if marker is not None and state.get("boot_marker") not in (None, marker):
        return {}
    return state


class StateLock:
    """Exclusive lock around a read-modify-write of the state file."""

    def __enter__(self):
        directory = state_dir()
        os.makedirs(directory, mode=0o755, exist_ok=True)
        self.handle = open(os.path.join(directory, LOCK_FILE), "a+")
        fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
        self.handle.close()
        return False


def save_state(state):
    directory = state_dir()
    state = dict(state)
    state["version"] = 1
    state["boot_marker"] = _boot_marker()
    state["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".state.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(state, handle, indent=1, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, os.path.join(directory, STATE_FILE))
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def gpu_state(state, gpu):
    entry = (state.get("gpus") or {}).get(gpu["bus_id"]) or {}
    limit = entry.get("power_limit_w")
    if not isinstance(limit, (int, float)):
        limit = float(gpu["power_default_w"])
    clocks = entry.get("locked_clocks_mhz")
    mode = entry.get("compute_mode")
    return {
        "power_limit_w": float(limit),
        "persistence_mode": bool(entry.get("persistence_mode", False)),
        "locked_clocks_mhz": list(clocks) if isinstance(clocks, list) and len(clocks) == 2 else None,
        "compute_mode": mode if mode in COMPUTE_MODE_NAMES.values() else "Default",
    }


def _set_gpu_state(state, gpu, **values):
    gpus = state.setdefault("gpus", {})
    entry = gpus.setdefault(gpu["bus_id"], {})
    entry.update(values)


# nvidia-smi -c: number -> the name it prints in --query-gpu=compute_mode (1,
# EXCLUSIVE_THREAD, was removed from the drivers long ago and is refused here).
COMPUTE_MODE_NAMES = {0: "Default", 2: "Prohibited", 3: "Exclusive_Process"}


def is_root():
    forced = os.environ.get(ENV_ASSUME_ROOT)
    if forced in ("0", "1"):
        return forced == "1"
    return os.geteuid() == 0


# --- GPU selection --------------------------------------------------------------------


def _normalize_bus(text):
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
            bus = _normalize_bus(token)
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


# --- --query-gpu ----------------------------------------------------------------------


def _w(value):
    return "%.2f" % float(value)


def _pci_device_id(gpu):
    return "0x%s10DE" % gpu["pci_device_id"][2:].upper()


def _fb(gpu):
    total = int(gpu["vram_mib"])
    reserved = int(gpu["memory_reserved_mib"])
    used = int(gpu["memory_used_mib"])
    return total, reserved, used, max(total - reserved - used, 0)


def _query_fields():
    """field -> (unit or None, function(profile, gpu, gpu_state) -> printed value)."""
    fb = _fb
    fields = {
        "timestamp": (None, lambda p, g, s: time.strftime("%Y/%m/%d %H:%M:%S.000")),
        "driver_version": (None, lambda p, g, s: p["driver_version"]),
        "count": (None, lambda p, g, s: str(len(p["gpus"]))),
        "index": (None, lambda p, g, s: str(g["index"])),
        "name": (None, lambda p, g, s: g["name"]),
        "serial": (None, lambda p, g, s: g["serial"] or "[N/A]"),
        "uuid": (None, lambda p, g, s: g["uuid"]),
        "pci.bus_id": (None, lambda p, g, s: g["bus_id"]),
        "pci.domain": (None, lambda p, g, s: "0x%04X" % int(g["bus_id"].split(":")[0], 16)),
        "pci.bus": (None, lambda p, g, s: "0x" + g["bus_id"].split(":")[1]),
        "pci.device": (None, lambda p, g, s: "0x" + g["bus_id"].split(":")[2].split(".")[0]),
        "pci.device_id": (None, lambda p, g, s: _pci_device_id(g)),
        "pci.sub_device_id": (None, lambda p, g, s: g["subsystem_id"].upper().replace("0X", "0x")),
        "pci.baseClass": (None, lambda p, g, s: "0x3"),
        "pci.subClass": (None, lambda p, g, s: "0x0"),
        "vbios_version": (None, lambda p, g, s: g["vbios"]),
        "persistence_mode": (
            None,
            lambda p, g, s: "Enabled" if s["persistence_mode"] else "Disabled",
        ),
        "display_mode": (None, lambda p, g, s: "Disabled"),
        "display_active": (None, lambda p, g, s: "Disabled"),
        "compute_mode": (None, lambda p, g, s: s["compute_mode"]),
        "compute_cap": (None, lambda p, g, s: g["compute_cap"]),
        "pstate": (None, lambda p, g, s: "P8"),
        "memory.total": ("MiB", lambda p, g, s: str(fb(g)[0])),
        "memory.reserved": ("MiB", lambda p, g, s: str(fb(g)[1])),
        "memory.used": ("MiB", lambda p, g, s: str(fb(g)[2])),
        "memory.free": ("MiB", lambda p, g, s: str(fb(g)[3])),
        "power.management": (None, lambda p, g, s: "Enabled"),
        "power.draw": ("W", lambda p, g, s: _w(g["idle_power_w"])),
        "power.draw.average": ("W", lambda p, g, s: _w(g["idle_power_w"])),
        "power.draw.instant": ("W", lambda p, g, s: _w(g["idle_power_w"])),
        "power.limit": ("W", lambda p, g, s: _w(s["power_limit_w"])),
        "enforced.power.limit": ("W", lambda p, g, s: _w(s["power_limit_w"])),
        "power.default_limit": ("W", lambda p, g, s: _w(g["power_default_w"])),
        "power.min_limit": ("W", lambda p, g, s: _w(g["power_min_w"])),
        "power.max_limit": ("W", lambda p, g, s: _w(g["power_max_w"])),
        "pcie.link.gen.max": (None, lambda p, g, s: str(g["link_gen_max"])),
        "pcie.link.gen.current": (None, lambda p, g, s: str(g["link_gen_current"])),
        "pcie.link.gen.gpucurrent": (None, lambda p, g, s: str(g["link_gen_current"])),
        "pcie.link.gen.gpumax": (None, lambda p, g, s: str(g["device_gen_max"])),
        "pcie.link.gen.hostmax": (None, lambda p, g, s: str(g["link_gen_max"])),
        "pcie.link.width.max": (None, lambda p, g, s: str(g["link_width_max"])),
        "pcie.link.width.current": (None, lambda p, g, s: str(g["link_width_current"])),
        "clocks.max.sm": ("MHz", lambda p, g, s: str(g["clocks_max_sm_mhz"])),
        "clocks.max.graphics": ("MHz", lambda p, g, s: str(g["clocks_max_graphics_mhz"])),
        "clocks.max.memory": ("MHz", lambda p, g, s: str(g["clocks_max_memory_mhz"])),
        "clocks.sm": ("MHz", lambda p, g, s: "210"),
        "clocks.current.sm": ("MHz", lambda p, g, s: "210"),
        "clocks.gr": ("MHz", lambda p, g, s: "210"),
        "clocks.current.graphics": ("MHz", lambda p, g, s: "210"),
        "clocks.mem": ("MHz", lambda p, g, s: "405"),
        "clocks.current.memory": ("MHz", lambda p, g, s: "405"),
        "temperature.gpu": (None, lambda p, g, s: str(g["temperature_c"])),
        "fan.speed": ("%", lambda p, g, s: str(g["fan_percent"])),
        "utilization.gpu": ("%", lambda p, g, s: "0"),
        "utilization.memory": ("%", lambda p, g, s: "0"),
        "ecc.mode.current": (None, lambda p, g, s: "[N/A]"),
        "mig.mode.current": (None, lambda p, g, s: "[N/A]"),
    }
    aliases = {
        "gpu_name": "name",
        "gpu_serial": "serial",
        "gpu_uuid": "uuid",
        "gpu_bus_id": "pci.bus_id",
    }
    for alias, target in aliases.items():
        fields[alias] = fields[target]
    return fields


# Real nvidia-smi fields this simulator does not answer (asking for them is an explicit
# "not simulated" error, not the invalid-field error).
KNOWN_UNSIMULATED_FIELDS = frozenset(
    """
    vgpu_driver_capability.heterogenous_multivGPU kmd_version addressing_mode accounting.mode
    accounting.buffer_size driver_model.current driver_model.pending inforom.img inforom.oem
    inforom.ecc inforom.pwr inforom.checksum_validation gpu_recovery_action gom.current
    gom.pending clocks_event_reasons.supported clocks_event_reasons.active
    clocks_event_reasons.gpu_idle clocks_throttle_reasons.active utilization.encoder
    utilization.decoder utilization.jpeg utilization.ofa encoder.stats.sessionCount
    encoder.stats.averageFps encoder.stats.averageLatency ecc.mode.pending
    retired_pages.single_bit_ecc.count retired_pages.double_bit.count retired_pages.pending
    remapped_rows.correctable remapped_rows.uncorrectable remapped_rows.pending
    remapped_rows.failure temperature.gpu.tlimit temperature.memory
    module.power.draw.average module.power.limit clocks.current.video
    clocks.applications.graphics clocks.applications.memory
    clocks.default_applications.graphics clocks.default_applications.memory
    mig.mode.pending gsp.mode.current gsp.mode.default c2c.mode protected_memory.total
    fabric.state fabric.status platform.slot_number display_attached
    """.split()
)


def cmd_query_gpu(profile, state, spec, fmt, gpu_ids):
    if fmt is None:
        raise SimError(
            RC_INVALID_ARGUMENT,
            stdout="'--format' switch is missing. Please run 'nvidia-smi -h' for help.\n",
        )
    options = [o.strip().lower() for o in fmt.split(",") if o.strip()]
    if "csv" not in options:
        raise not_simulated("--format=%s (only csv)" % fmt, profile)
    unknown = [o for o in options if o not in ("csv", "noheader", "nounits")]
    if unknown:
        raise invalid_args()
    names = [f.strip() for f in spec.split(",") if f.strip()]
    if not names:
        raise invalid_args()
    table = _query_fields()
    for name in names:
        if name in table:
            continue
        if name in KNOWN_UNSIMULATED_FIELDS:
            raise not_simulated('query field "%s"' % name, profile)
        raise SimError(RC_INVALID_ARGUMENT, stdout='Field "%s" is not a valid field to query.\n' % name)
    gpus = select_gpus(profile, gpu_ids)
    lines = []
    if "noheader" not in options:
        header = []
        for name in names:
            unit = table[name][0]
            header.append("%s [%s]" % (name, unit) if unit else name)
        lines.append(", ".join(header))
    for gpu in gpus:
        st = gpu_state(state, gpu)
        cells = []
        for name in names:
            unit, getter = table[name]
            value = getter(profile, gpu, st)
            if unit and "nounits" not in options and not value.startswith("["):
                value = "%s %s" % (value, unit)
            cells.append(value)
        lines.append(", ".join(cells))
    return "\n".join(lines) + "\n"


# --- -q -------------------------------------------------------------------------------

DISPLAY_SECTIONS = {
    "MEMORY": ("FB Memory Usage", "BAR1 Memory Usage", "Conf Compute Protected Memory Usage"),
    "POWER": ("GPU Power Readings", "Power Readings", "GPU Memory Power Readings ",
              "Module Power Readings"),
    "TEMPERATURE": ("Temperature",),
    "CLOCK": ("Clocks", "Applications Clocks", "Default Applications Clocks", "Max Clocks"),
    "UTILIZATION": ("Utilization",),
    "COMPUTE": ("Compute Mode",),
    "PERFORMANCE": ("Performance State", "Clocks Event Reasons"),
}
REAL_DISPLAY_TYPES = frozenset(
    """MEMORY UTILIZATION ECC TEMPERATURE POWER CLOCK COMPUTE PIDS PERFORMANCE SUPPORTED_CLOCKS
    PAGE_RETIREMENT ACCOUNTING ENCODER_STATS SUPPORTED_GPU_TARGET_TEMP VOLTAGE FBC_STATS
    ROW_REMAPPER RESET_STATUS GSP_FIRMWARE_VERSION POWER_SMOOTHING POWER_PROFILES""".split()
)


def _gpu_sections(profile, gpu, st):
    """The -q tree of one GPU: list of (key, value-string) and (section, [children])."""
    major = _driver_major(profile)
    total, reserved, used, free = _fb(gpu)
    bar1 = int(gpu["bar1_mib"])
    bus = gpu["bus_id"]
    domain, bus_no, devfn = bus.split(":")
    limit = st["power_limit_w"]
    persistence = "Enabled" if st["persistence_mode"] else "Disabled"
    if major >= 570:
        draw = [
            ("Average Power Draw", _w(gpu["idle_power_w"]) + " W"),
            ("Instantaneous Power Draw", _w(gpu["idle_power_w"]) + " W"),
        ]
    else:
        draw = [("Power Draw", _w(gpu["idle_power_w"]) + " W")]
    if major >= 530:
        power = (
            "GPU Power Readings",
            draw
            + [
                ("Current Power Limit", _w(limit) + " W"),
                ("Requested Power Limit", _w(limit) + " W"),
                ("Default Power Limit", _w(gpu["power_default_w"]) + " W"),
                ("Min Power Limit", _w(gpu["power_min_w"]) + " W"),
                ("Max Power Limit", _w(gpu["power_max_w"]) + " W"),
            ],
        )
        power_extra = [
            ("GPU Memory Power Readings ", [(k, "N/A") for k, _ in draw]),
            (
                "Module Power Readings",
                [(k, "N/A") for k, _ in draw]
                + [
                    ("Current Power Limit", "N/A"),
                    ("Requested Power Limit", "N/A"),
                    ("Default Power Limit", "N/A"),
                    ("Min Power Limit", "N/A"),
                    ("Max Power Limit", "N/A"),
                ],
            ),
        ]
    else:
        power = (
            "Power Readings",
            [
                ("Power Management", "Supported"),
                ("Power Draw", _w(gpu["idle_power_w"]) + " W"),
                ("Power Limit", _w(limit) + " W"),
                ("Default Power Limit", _w(gpu["power_default_w"]) + " W"),
                ("Enforced Power Limit", _w(limit) + " W"),
                ("Min Power Limit", _w(gpu["power_min_w"]) + " W"),
                ("Max Power Limit", _w(gpu["power_max_w"]) + " W"),
            ],
        )
        power_extra = []
    device_id = gpu["pci_device_id"][2:].upper()
    sections = [
        ("Product Name", gpu["name"]),
        ("Product Brand", gpu["brand"]),
        ("Product Architecture", gpu["architecture"]),
        ("Display Mode", "Disabled"),
        ("Display Active", "Disabled"),
        ("Persistence Mode", persistence),
        ("Addressing Mode", "None"),
        ("MIG Mode", [("Current", "N/A"), ("Pending", "N/A")]),
        ("Accounting Mode", "Disabled"),
        ("Accounting Mode Buffer Size", "4000"),
        ("Driver Model", [("Current", "N/A"), ("Pending", "N/A")]),
        ("Serial Number", gpu["serial"] or "N/A"),
        ("GPU UUID", gpu["uuid"]),
        ("Minor Number", str(gpu["index"])),
        ("VBIOS Version", gpu["vbios"]),
        ("MultiGPU Board", "No"),
        ("Board ID", "0x%x00" % int(bus_no, 16)),
        ("Board Part Number", "N/A"),
        ("GPU Part Number", "%s-300-A1" % device_id),
        ("FRU Part Number", "N/A"),
        ("Module ID", "1"),
        (
            "Inforom Version",
            [
                ("Image Version", gpu["inforom"]),
                ("OEM Object", "2.0"),
                ("ECC Object", "N/A"),
                ("Power Management Object", "N/A"),
            ],
        ),
        ("GPU Operation Mode", [("Current", "N/A"), ("Pending", "N/A")]),
        ("GPU C2C Mode", "N/A"),
        (
            "GPU Virtualization Mode",
            [
                ("Virtualization Mode", "None"),
                ("Host VGPU Mode", "N/A"),
                ("vGPU Heterogeneous Mode", "N/A"),
            ],
        ),
        ("GPU Reset Status", [("Reset Required", "No"), ("Drain and Reset Recommended", "No")]),
        ("GSP Firmware Version", profile["driver_version"]),
        ("IBMNPU", [("Relaxed Ordering Mode", "N/A")]),
        (
            "PCI",
            [
                ("Bus", "0x" + bus_no),
                ("Device", "0x" + devfn.split(".")[0]),
                ("Domain", "0x%04X" % int(domain, 16)),
                ("Base Classcode", "0x3"),
                ("Sub Classcode", "0x0"),
                ("Device Id", _pci_device_id(gpu)),
                ("Bus Id", bus),
                ("Sub System Id", "0x" + gpu["subsystem_id"][2:].upper()),
                (
                    "GPU Link Info",
                    [
                        (
                            "PCIe Generation",
                            [
                                ("Max", str(gpu["link_gen_max"])),
                                ("Current", str(gpu["link_gen_current"])),
                                ("Device Current", str(gpu["link_gen_current"])),
                                ("Device Max", str(gpu["device_gen_max"])),
                                ("Host Max", str(gpu["link_gen_max"])),
                            ],
                        ),
                        (
                            "Link Width",
                            [
                                ("Max", "%dx" % gpu["link_width_max"]),
                                ("Current", "%dx" % gpu["link_width_current"]),
                            ],
                        ),
                    ],
                ),
                ("Bridge Chip", [("Type", "N/A"), ("Firmware", "N/A")]),
                ("Replays Since Reset", "0"),
                ("Replay Number Rollovers", "0"),
                ("Tx Throughput", "0 KB/s"),
                ("Rx Throughput", "0 KB/s"),
                ("Atomic Caps Outbound", "N/A"),
                ("Atomic Caps Inbound", "N/A"),
            ],
        ),
        ("Fan Speed", "%d %%" % gpu["fan_percent"]),
        ("Performance State", "P8"),
        (
            "Clocks Event Reasons",
            [
                ("Idle", "Active"),
                ("Applications Clocks Setting", "Not Active"),
                ("SW Power Cap", "Not Active"),
                ("HW Slowdown", "Not Active"),
                ("Sync Boost", "Not Active"),
                ("SW Thermal Slowdown", "Not Active"),
                ("Display Clock Setting", "Not Active"),
            ],
        ),
        ("Sparse Operation Mode", "N/A"),
        (
            "FB Memory Usage",
            [
                ("Total", "%d MiB" % total),
                ("Reserved", "%d MiB" % reserved),
                ("Used", "%d MiB" % used),
                ("Free", "%d MiB" % free),
            ],
        ),
        (
            "BAR1 Memory Usage",
            [("Total", "%d MiB" % bar1), ("Used", "2 MiB"), ("Free", "%d MiB" % (bar1 - 2))],
        ),
        (
            "Conf Compute Protected Memory Usage",
            [("Total", "0 MiB"), ("Used", "0 MiB"), ("Free", "0 MiB")],
        ),
        ("Compute Mode", st["compute_mode"]),
        (
            "Utilization",
            [("Gpu", "0 %"), ("Memory", "0 %"), ("Encoder", "0 %"), ("Decoder", "0 %")],
        ),
        ("ECC Mode", [("Current", "N/A"), ("Pending", "N/A")]),
        (
            "Temperature",
            [
                ("GPU Current Temp", "%d C" % gpu["temperature_c"]),
                ("GPU T.Limit Temp", "N/A"),
                ("GPU Shutdown Temp", "98 C"),
                ("GPU Slowdown Temp", "95 C"),
                ("GPU Max Operating Temp", "93 C"),
                ("GPU Target Temperature", "83 C"),
                ("Memory Current Temp", "N/A"),
                ("Memory Max Operating Temp", "N/A"),
            ],
        ),
        power,
    ] + power_extra + [
        (
            "Clocks",
            [("Graphics", "210 MHz"), ("SM", "210 MHz"), ("Memory", "405 MHz"),
             ("Video", "555 MHz")],
        ),
        ("Applications Clocks", [("Graphics", "N/A"), ("Memory", "N/A")]),
        ("Default Applications Clocks", [("Graphics", "N/A"), ("Memory", "N/A")]),
        (
            "Max Clocks",
            [
                ("Graphics", "%d MHz" % gpu["clocks_max_graphics_mhz"]),
                ("SM", "%d MHz" % gpu["clocks_max_sm_mhz"]),
                ("Memory", "%d MHz" % gpu["clocks_max_memory_mhz"]),
                ("Video", "1950 MHz"),
            ],
        ),
        ("Processes", "None"),
    ]
    return sections


def _render_tree(entries, indent, width, out):
    for key, value in entries:
        label = " " * indent + key
        if isinstance(value, list):
            out.append(label)
            _render_tree(value, indent + 4, width, out)
        else:
            out.append(label.ljust(width) + ": " + value)


def cmd_q(profile, state, gpu_ids, display):
    width = 55 if _driver_major(profile) >= 590 else 42
    wanted = None
    if display is not None:
        wanted = set()
        for item in [d.strip().upper() for d in display.split(",") if d.strip()]:
            if item == "PCI":
                # Not a display type of the real tool (its -d list has no PCI): refusing it
                # keeps roles from depending on something that fails on real rigs.
                raise SimError(
                    RC_INVALID_ARGUMENT,
                    stderr="rigctl GPU simulator: -d PCI is not a display type of the real "
                    "nvidia-smi either (valid: MEMORY, UTILIZATION, ECC, TEMPERATURE, POWER, "
                    "CLOCK, COMPUTE, PIDS, PERFORMANCE, ...); the PCI section is in the full "
                    "`nvidia-smi -q` output, link facts in --query-gpu=pcie.link.*.\n",
                )
            if item not in DISPLAY_SECTIONS:
                if item in REAL_DISPLAY_TYPES:
                    raise not_simulated("-d %s" % item, profile)
                raise invalid_args()
            wanted.update(DISPLAY_SECTIONS[item])
    gpus = select_gpus(profile, gpu_ids)

    def kv(key, value):
        return key.ljust(width) + ": " + value

    out = [
        "",
        "==============NVSMI LOG==============",
        "",
        kv("Timestamp", time.ctime()),
        kv("Driver Version", profile["driver_version"]),
        kv("CUDA Version", profile["cuda_version"]),
        "",
        kv("Attached GPUs", str(len(profile["gpus"]))),
    ]
    for gpu in gpus:
        sections = _gpu_sections(profile, gpu, gpu_state(state, gpu))
        if wanted is not None:
            sections = [entry for entry in sections if entry[0] in wanted]
        out.append("GPU " + gpu["bus_id"])
        _render_tree(sections, 4, width, out)
        out.append("")
    return "\n".join(out) + "\n"


# --- -L, --version, summary table ------------------------------------------------------


def cmd_list(profile, gpu_ids):
    return "".join(
        "GPU %d: %s (UUID: %s)\n" % (g["index"], g["name"], g["uuid"])
        for g in select_gpus(profile, gpu_ids)
    )


def cmd_version(profile):
    driver = profile["driver_version"]
    nvml = ".".join(driver.split(".")[:2])
    return (
        "NVIDIA-SMI version  : %s\nNVML version        : %s\nDRIVER version      : %s\n"
        "CUDA Version        : %s\n" % (driver, nvml, driver, profile["cuda_version"])
    )


def cmd_summary(profile, state, gpu_ids):
    """The plain `nvidia-smi` table (R545+ layout)."""
    rule = "+" + "-" * 89 + "+"
    mid = "|" + "-" * 41 + "+" + "-" * 24 + "+" + "-" * 22 + "+"
    eq = "|" + "=" * 41 + "+" + "=" * 24 + "+" + "=" * 22 + "|"
    sep = "+" + "-" * 41 + "+" + "-" * 24 + "+" + "-" * 22 + "+"
    out = [
        time.ctime() + "       ",
        rule,
        "| NVIDIA-SMI %-23sDriver Version: %-15sCUDA Version: %-9s|"
        % (profile["driver_version"], profile["driver_version"], profile["cuda_version"]),
        mid,
        "| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |",
        "| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |",
        "|                                         |                        |               MIG M. |",
        eq,
    ]
    for gpu in select_gpus(profile, gpu_ids):
        st = gpu_state(state, gpu)
        total, _, used, _ = _fb(gpu)
        name = gpu["name"] if len(gpu["name"]) <= 29 else gpu["name"][:26] + "..."
        out.append(
            "|%4d  %-30s%3s  |   %s %3s |%21s |"
            % (gpu["index"], name, "On" if st["persistence_mode"] else "Off", gpu["bus_id"],
               "Off", "N/A")
        )
        out.append(
            "| %3s   %3s    %-2s%16s / %5s |%11s / %9s |%8s%13s |"
            % ("%d%%" % gpu["fan_percent"], "%dC" % gpu["temperature_c"], "P8",
               "%dW" % round(gpu["idle_power_w"]), "%dW" % round(st["power_limit_w"]),
               "%dMiB" % used, "%dMiB" % total, "0%", "Default")
        )
        out.append("|" + " " * 41 + "|" + " " * 24 + "|%21s |" % "N/A")
        out.append(sep)
    out += [
        " " * 89,
        rule,
        "| Processes:" + " " * 78 + "|",
        "|  GPU   GI   CI        PID   Type   Process name                              GPU Memory |",
        "|        ID   ID                                                               Usage      |",
        "|" + "=" * 89 + "|",
        "|  No running processes found" + " " * 61 + "|",
        rule,
    ]
    return "\n".join(out) + "\n"


# --- -pl / -pm ------------------------------------------------------------------------

PERSISTENCE_WARNING = (
    "\nWarning: persistence mode is disabled on device %s. See the Known Issues section of "
    "the nvidia-smi(1) man page for more information. Run with [--help | -h] switch to get "
    "more information on how to enable persistence mode.\n"
)


def cmd_power_limit(profile, value, gpu_ids):
    try:
        watts = float(value)
    except ValueError:
        raise invalid_args() from None
    if watts != watts or watts <= 0:  # NaN or not positive
        raise invalid_args()
    gpus = select_gpus(profile, gpu_ids)
    # The range is checked for every selected GPU before anything changes.
    for gpu in gpus:
        if watts < float(gpu["power_min_w"]) or watts > float(gpu["power_max_w"]):
            raise SimError(
                RC_INVALID_ARGUMENT,
                stdout="Provided power limit %s W is not a valid power limit which should be "
                "between %s W and %s W for GPU %s\nTerminating early due to previous errors.\n"
                % (_w(watts), _w(gpu["power_min_w"]), _w(gpu["power_max_w"]), gpu["bus_id"]),
            )
    if not is_root():
        raise SimError(
            RC_NO_PERMISSION,
            stdout="Failed to set power management limit for GPU %s: Insufficient Permissions\n"
            "Terminating early due to previous errors.\n" % gpus[0]["bus_id"],
        )
    out = []
    with StateLock():
        state = load_state()
        for gpu in gpus:
            before = gpu_state(state, gpu)
            _set_gpu_state(state, gpu, power_limit_w=round(watts, 2))
            out.append(
                "Power limit for GPU %s was set to %s W from %s W.\n"
                % (gpu["bus_id"], _w(watts), _w(before["power_limit_w"]))
            )
            if not before["persistence_mode"]:
                out.append(PERSISTENCE_WARNING % gpu["bus_id"])
        save_state(state)
    out.append("All done.\n")
    return "".join(out)


def _bus8(gpu):
    return gpu["bus_id"]


def cmd_lock_clocks(profile, value, gpu_ids):
    """``-lgc MIN,MAX``: lock the core clocks. Both values within 0..clocks.max.sm of every
    selected GPU, checked before anything changes (the refusal's wording is approximated)."""
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise invalid_args()
    low, high = int(parts[0]), int(parts[1])
    if low > high:
        raise invalid_args()
    gpus = select_gpus(profile, gpu_ids)
    for gpu in gpus:
        top = int(gpu["clocks_max_sm_mhz"])
        if high > top:
            raise SimError(
                RC_INVALID_ARGUMENT,
                stdout="Requested clocks (gpcClkMin %d, gpcClkMax %d) are outside the supported "
                "range 0-%d MHz for GPU %s\nTerminating early due to previous errors.\n"
                % (low, high, top, _bus8(gpu)),
            )
    if not is_root():
        raise SimError(
            RC_NO_PERMISSION,
            stdout="Setting locked GPU clocks for GPU %s failed: Insufficient Permissions\n"
            "Terminating early due to previous errors.\n" % _bus8(gpus[0]),
        )
    out = []
    with StateLock():
        state = load_state()
        for gpu in gpus:
            _set_gpu_state(state, gpu, locked_clocks_mhz=[low, high])
            out.append('GPU clocks set to "(gpcClkMin %d, gpcClkMax %d)" for GPU %s\n'
                       % (low, high, _bus8(gpu)))
        save_state(state)
    out.append("All done.\n")
    return "".join(out)


def cmd_reset_clocks(profile, gpu_ids):
    """``-rgc``: unlock the core clocks (confirmation wording approximated)."""
    gpus = select_gpus(profile, gpu_ids)
    if not is_root():
        raise SimError(
            RC_NO_PERMISSION,
            stdout="Resetting locked GPU clocks for GPU %s failed: Insufficient Permissions\n"
            "Terminating early due to previous errors.\n" % _bus8(gpus[0]),
        )
    out = []
    with StateLock():
        state = load_state()
        for gpu in gpus:
            _set_gpu_state(state, gpu, locked_clocks_mhz=None)
            out.append("All done.\n")
        save_state(state)
    return "".join(out)


def cmd_compute_mode(profile, value, gpu_ids):
    """``-c 0|2|3`` or ``-c DEFAULT|PROHIBITED|EXCLUSIVE_PROCESS``."""
    text = value.strip().upper()
    by_name = {name.upper(): num for num, name in COMPUTE_MODE_NAMES.items()}
    if text.isdigit() and int(text) in COMPUTE_MODE_NAMES:
        num = int(text)
    elif text in by_name:
        num = by_name[text]
    else:
        raise invalid_args()
    name = COMPUTE_MODE_NAMES[num]
    gpus = select_gpus(profile, gpu_ids)
    state = load_state()
    if not is_root() and any(gpu_state(state, g)["compute_mode"] != name for g in gpus):
        raise SimError(
            RC_NO_PERMISSION,
            stdout="Unable to set the compute mode for GPU %s: Insufficient Permissions\n"
            "Terminating early due to previous errors.\n" % _bus8(gpus[0]),
        )
    out = []
    with StateLock():
        state = load_state()
        changed = False
        for gpu in gpus:
            if gpu_state(state, gpu)["compute_mode"] == name:
                out.append("Compute mode is already set to %s for GPU %s.\n"
                           % (name.upper(), _bus8(gpu)))
                continue
            _set_gpu_state(state, gpu, compute_mode=name)
            changed = True
            out.append("Set compute mode to %s for GPU %s.\n" % (name.upper(), _bus8(gpu)))
        if changed:
            save_state(state)
    out.append("All done.\n")
    return "".join(out)


def cmd_persistence(profile, value, gpu_ids):
    # Persistence should come from the nvidia-persistenced service (on lab rigs its unit
    # calls `rigctl-simgpu persistenced start`); `nvidia-smi -pm 1` is the deprecated way
    # and, like here, does not survive a reboot.
    mode = value.strip().upper()
    if mode in ("1", "ENABLED"):
        enable = True
    elif mode in ("0", "DISABLED"):
        enable = False
    else:
        raise invalid_args()
    gpus = select_gpus(profile, gpu_ids)
    word = "Enabled" if enable else "Disabled"
    out = []
    if not is_root():
        # Like the real tool: GPUs already in the wanted mode are fine, changing one is not
        # (and an unprivileged caller never touches the root-owned state directory).
        state = load_state()
        for gpu in gpus:
            if gpu_state(state, gpu)["persistence_mode"] == enable:
                out.append("Persistence mode is already %s for GPU %s.\n" % (word, gpu["bus_id"]))
                continue
            raise SimError(
                RC_NO_PERMISSION,
                stdout="".join(out)
                + "Unable to set persistence mode for GPU %s: Insufficient Permissions\n"
                "Terminating early due to previous errors.\n" % gpu["bus_id"],
            )
        out.append("All done.\n")
        return "".join(out)
    with StateLock():
        state = load_state()
        changed = False
        for gpu in gpus:
            if gpu_state(state, gpu)["persistence_mode"] == enable:
                out.append("Persistence mode is already %s for GPU %s.\n" % (word, gpu["bus_id"]))
                continue
            _set_gpu_state(state, gpu, persistence_mode=enable)
            changed = True
            out.append("%s persistence mode for GPU %s.\n" % (word, gpu["bus_id"]))
        if changed:
            save_state(state)
    out.append("All done.\n")
    return "".join(out)


# --- topo -----------------------------------------------------------------------------

TOPO_LEGEND = """
Legend:

  X    = Self
  SYS  = Connection traversing PCIe as well as the SMP interconnect between NUMA nodes (e.g., QPI/UPI)
  NODE = Connection traversing PCIe as well as the interconnect between PCIe Host Bridges within a NUMA node
  PHB  = Connection traversing PCIe as well as a PCIe Host Bridge (typically the CPU)
  PXB  = Connection traversing multiple PCIe bridges (without traversing the PCIe Host Bridge)
  PIX  = Connection traversing at most a single PCIe bridge
  NV#  = Connection traversing a bonded set of # NVLinks
"""


def link_type(a, b):
    """What `topo -m` shows between two GPUs of a PCIe-only rig."""
    if a is b:
        return "X"
    if a["numa_node"] != b["numa_node"]:
        return "SYS"
    if a.get("pcie_switch") is not None and a.get("pcie_switch") == b.get("pcie_switch"):
        return "PIX"
    if a["host_bridge"] == b["host_bridge"]:
        return "PHB"
    return "NODE"


def p2p_status(profile, a, b, mode):
    """What `topo -p2p <mode>` shows between two GPUs.

    CNS when either GPU hangs off the chipset; GNS between different GPU generations; NS
    between GeForce cards on a stock driver (P2P is disabled there) and for NVLink (`n`)
    on these PCIe-only rigs; OK otherwise (patched driver, or non-GeForce cards). Atomics
    (`a`) are answered like reads/writes: not modelled separately.
    """
    if a is b:
        return "X"
    if mode == "n":
        return "NS"
    if a["behind_chipset"] or b["behind_chipset"]:
        return "CNS"
    if a["architecture"] != b["architecture"]:
        return "GNS"
    if profile.get("p2p") != "patched" and (_is_geforce(a) or _is_geforce(b)):
        return "NS"
    return "OK"


def cmd_topo_matrix(profile):
    gpus = profile["gpus"]
    new = _driver_major(profile) >= 535
    names = ["GPU%d" % g["index"] for g in gpus]
    cols = names + ["CPU Affinity", "NUMA Affinity"] + (["GPU NUMA ID"] if new else [])
    header = "\t".join(cols)
    lines = ["\t" + (ANSI_UNDERLINE + header + ANSI_RESET if new else header)]
    cpus = profile["numa_cpus"]
    for a in gpus:
        cells = [" X " if a is b else link_type(a, b) for b in gpus]
        node = a["numa_node"]
        cpu = cpus[node] if node < len(cpus) else "N/A"
        if new:
            tail = [cpu, str(node), "", "N/A"]
        else:
            tail = [cpu, "", str(node)]
        lines.append("\t".join(["GPU%d" % a["index"]] + cells + tail))
    return "\n".join(lines) + "\n" + TOPO_LEGEND


def cmd_topo_p2p(profile, mode):
    if mode not in ("r", "w", "rw", "n", "a", "p"):
        raise invalid_args()
    gpus = profile["gpus"]
    major = _driver_major(profile)
    new = major >= 535
    names = "".join("GPU%d\t" % g["index"] for g in gpus)
    lines = [" \t" + (ANSI_UNDERLINE + names + ANSI_RESET if new else names)]
    for a in gpus:
        cells = "".join(p2p_status(profile, a, b, "n" if mode == "n" else "r") + "\t" for b in gpus)
        lines.append(" GPU%d\t%s" % (a["index"], cells))
    legend = [
        "",
        "Legend:",
        "",
        "  X    = Self",
        "  OK   = Status Ok",
        "  CNS  = Chipset not supported",
        "  GNS  = GPU not supported",
        "  TNS  = Topology not supported",
        "  NS   = Not supported",
    ]
    if major >= 600:
        legend.append("  DR   = Disabled by regkey")
    legend.append("  U    = Unknown")
    return "\n".join(lines + legend) + "\n"


# --- lspci view -----------------------------------------------------------------------


def _lspci_size(mib, suffix=""):
    if mib >= 1024 and mib % 1024 == 0:
        return "%dG%s" % (mib // 1024, suffix)
    return "%dM%s" % (mib, suffix)


def _speed(gen):
    return {1: "2.5", 2: "5", 3: "8", 4: "16", 5: "32", 6: "64"}.get(int(gen), "2.5")


def sysfs_bdf(bus_id):
    """'00000000:01:00.0' (nvidia-smi) -> '0000:01:00.0' (sysfs, lspci -D)."""
    domain, bus, devfn = bus_id.split(":")
    return ("%04x:%s:%s" % (int(domain, 16), bus, devfn)).lower()


def cmd_lspci(profile):
    blocks = []
    for gpu in profile["gpus"]:
        i = gpu["index"]
        dev = gpu["pci_device_id"][2:].lower()
        sub = gpu["subsystem_id"][2:].lower()
        sub_dev, sub_ven = sub[:4], sub[4:]
        marketing = PCI_NAMES.get(dev)
        device_name = "%s [%s]" % (gpu["chip"], marketing) if marketing else "Device %s" % dev
        vendor_name = SUBSYSTEM_VENDORS.get(sub_ven, "Device %s" % sub_ven)
        bar1 = int(gpu["bar1_mib"])
        top = 32768
        while top < int(gpu["vram_mib"]):
            top *= 2
        supported = []
        size = 64
        while size <= top:
            supported.append("%dMB" % size if size < 1024 else "%dGB" % (size // 1024))
            size *= 2
        bar1_text = "%dMB" % bar1 if bar1 < 1024 else "%dGB" % (bar1 // 1024)
        base = 0x30000000000 + i * 0x1000000000
        cap_speed, cap_width = _speed(gpu["device_gen_max"]), gpu["device_width_max"]
        sta_speed, sta_width = _speed(gpu["link_gen_current"]), gpu["link_width_current"]
        speed_mark = " (downgraded)" if gpu["link_gen_current"] < gpu["device_gen_max"] else " (ok)"
        width_mark = " (downgraded)" if sta_width < cap_width else " (ok)"
        lines = [
            "%s VGA compatible controller [0300]: NVIDIA Corporation %s [10de:%s] (rev a1) "
            "(prog-if 00 [VGA controller])" % (sysfs_bdf(gpu["bus_id"]), device_name, dev),
            "\tSubsystem: %s Device %s [%s:%s]" % (vendor_name, sub_dev, sub_ven, sub_dev),
            "\tControl: I/O+ Mem+ BusMaster+ SpecCycle- MemWINV- VGASnoop- ParErr- Stepping- "
            "SERR- FastB2B- DisINTx+",
            "\tStatus: Cap+ 66MHz- UDF- FastB2B- ParErr- DEVSEL=fast >TAbort- <TAbort- <MAbort- "
            ">SERR- <PERR- INTx-",
            "\tLatency: 0",
            "\tInterrupt: pin A routed to IRQ %d" % (120 + i),
            "\tNUMA node: %d" % gpu["numa_node"],
            "\tRegion 0: Memory at %x (32-bit, non-prefetchable) [size=16M]"
            % (0xF0000000 - i * 0x2000000),
            "\tRegion 1: Memory at %x (64-bit, prefetchable) [size=%s]" % (base, _lspci_size(bar1)),
            "\tRegion 3: Memory at %x (64-bit, prefetchable) [size=32M]"
            % (base + bar1 * 2**20),
            "\tRegion 5: I/O ports at %x [size=128]" % (0xF000 - i * 0x1000),
            "\tExpansion ROM at %x [virtual] [disabled] [size=512K]"
            % (0xF1000000 - i * 0x2000000),
            "\tCapabilities: [60] Power Management version 3",
            "\t\tFlags: PMEClk- DSI- D1- D2- AuxCurrent=0mA PME(D0+,D1-,D2-,D3hot+,D3cold-)",
            "\t\tStatus: D0 NoSoftRst+ PME-Enable- DSel=0 DScale=0 PME-",
            "\tCapabilities: [68] MSI: Enable+ Count=1/1 Maskable- 64bit+",
            "\t\tAddress: 00000000fee00000  Data: 0000",
            "\tCapabilities: [78] Express (v2) Legacy Endpoint, MSI 00",
            "\t\tDevCap:\tMaxPayload 256 bytes, PhantFunc 0, Latency L0s unlimited, L1 <64us",
            "\t\t\tExtTag+ AttnBtn- AttnInd- PwrInd- RBE+ FLReset+",
            "\t\tDevCtl:\tCorrErr- NonFatalErr- FatalErr- UnsupReq-",
            "\t\t\tRlxdOrd+ ExtTag+ PhantFunc- AuxPwr- NoSnoop+ FLReset-",
            "\t\t\tMaxPayload 256 bytes, MaxReadReq 512 bytes",
            "\t\tDevSta:\tCorrErr- NonFatalErr- FatalErr- UnsupReq- AuxPwr- TransPend-",
            "\t\tLnkCap:\tPort #0, Speed %sGT/s, Width x%d, ASPM L0s L1, Exit Latency L0s <512ns, "
            "L1 <4us" % (cap_speed, cap_width),
            "\t\t\tClockPM+ Surprise- LLActRep- BwNot- ASPMOptComp+",
            "\t\tLnkCtl:\tASPM Disabled; RCB 64 bytes, Disabled- CommClk+",
            "\t\t\tExtSynch- ClockPM- AutWidDis- BWInt- AutBWInt-",
            "\t\tLnkSta:\tSpeed %sGT/s%s, Width x%d%s" % (sta_speed, speed_mark, sta_width, width_mark),
            "\t\t\tTrErr- Train- SlotClk+ DLActive- BWMgmt- ABWMgmt-",
            "\t\tLnkCap2: Supported Link Speeds: 2.5-%sGT/s, Crosslink- Retimer+ 2Retimers+ DRS-"
            % cap_speed,
            "\t\tLnkCtl2: Target Link Speed: %sGT/s, EnterCompliance- SpeedDis-" % cap_speed,
            "\tCapabilities: [bb0 v1] Physical Resizable BAR",
            "\t\tBAR 0: current size: 16MB, supported: 16MB",
            "\t\tBAR 1: current size: %s, supported: %s" % (bar1_text, " ".join(supported)),
            "\t\tBAR 3: current size: 32MB, supported: 32MB",
            "\tKernel driver in use: nvidia",
            "\tKernel modules: nvidia",
        ]
        blocks.append((sysfs_bdf(gpu["bus_id"]), "\n".join(lines) + "\n"))
        blocks.append(_lspci_root_port(profile, gpu))
    return "\n".join(text for _, text in sorted(blocks))


ROOT_PORT_NAMES = {
    "AMD": ("Advanced Micro Devices, Inc. [AMD] Starship/Matisse GPP Bridge", "1022", "1483"),
    "Intel": ("Intel Corporation Device", "8086", "347a"),
}


def root_port_bdf(gpu):
    """The simulated root port (or chipset downstream port) above a GPU."""
    domain, bus, _ = sysfs_bdf(gpu["bus_id"]).split(":")
    return "%s:%02x:%02x.1" % (domain, int(bus, 16) & 0xE0, gpu["index"] % 7 + 1)


def _lspci_root_port(profile, gpu):
    """`lspci -vv` block of the bridge above a GPU: its bus range (the GPU's bus) and its
    ACS control (redirect on when the profile says `acs_redirect`)."""
    name, vendor, device = ROOT_PORT_NAMES.get(profile.get("cpu_vendor"), ROOT_PORT_NAMES["AMD"])
    bdf = root_port_bdf(gpu)
    bus = int(sysfs_bdf(gpu["bus_id"]).split(":")[1], 16)
    redirect = "+" if gpu.get("acs_redirect") else "-"
    speed, width = _speed(gpu["link_gen_max"]), gpu["link_width_max"]
    lines = [
        "%s PCI bridge [0604]: %s [%s:%s] (prog-if 00 [Normal decode])" % (bdf, name, vendor, device),
        "\tControl: I/O+ Mem+ BusMaster+ SpecCycle- MemWINV- VGASnoop- ParErr- Stepping- "
        "SERR- FastB2B- DisINTx+",
        "\tLatency: 0, Cache Line Size: 64 bytes",
        "\tBus: primary=%02x, secondary=%02x, subordinate=%02x, sec-latency=0"
        % (int(bdf.split(":")[1], 16), bus, bus),
        "\tCapabilities: [58] Express (v2) Root Port (Slot+), MSI 00",
        "\t\tLnkCap:\tPort #0, Speed %sGT/s, Width x%d, ASPM L1, Exit Latency L1 <64us" % (speed, width),
        "\t\tLnkSta:\tSpeed %sGT/s, Width x%d" % (_speed(gpu["link_gen_current"]), gpu["link_width_current"]),
        "\tCapabilities: [2a0 v1] Access Control Services",
        "\t\tACSCap:\tSrcValid+ TransBlk+ ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl- DirectTrans+",
        "\t\tACSCtl:\tSrcValid+ TransBlk- ReqRedir%s CmpltRedir%s UpstreamFwd%s EgressCtrl- "
        "DirectTrans-" % (redirect, redirect, redirect),
        "\tKernel driver in use: pcieport",
    ]
    return (bdf, "\n".join(lines) + "\n")


# --- rigctl-simgpu commands -----------------------------------------------------------


def status_data(profile, state):
    directory = state_dir()
    return {
        "simulated": True,
        "profile": profile.get("name"),
        "description": profile.get("description"),
        "profile_path": profile_file(),
        "state_path": os.path.join(directory, STATE_FILE),
        "state_present": os.path.exists(os.path.join(directory, STATE_FILE)),
        "persistenced": bool(state.get("persistenced")),
        "driver_version": profile.get("driver_version"),
        "p2p": profile.get("p2p"),
        "gpus": [
            dict(
                index=g["index"],
                name=g["name"],
                bus_id=g["bus_id"],
                uuid=g["uuid"],
                power_default_w=float(g["power_default_w"]),
                power_min_w=float(g["power_min_w"]),
                power_max_w=float(g["power_max_w"]),
                **gpu_state(state, g)
            )
            for g in profile["gpus"]
        ],
    }


def cmd_status(profile, state, as_json):
    data = status_data(profile, state)
    if as_json:
        return json.dumps(data, indent=2, sort_keys=True) + "\n"
    out = [
        "rigctl GPU simulator: the GPUs of this host are SIMULATED (no real hardware).",
        "profile:       %s (%s)" % (data["profile"], data["profile_path"]),
        "description:   %s" % (data["description"] or ""),
        "driver:        %s, P2P %s" % (data["driver_version"], data["p2p"]),
        "runtime state: %s (%s)"
        % (
            data["state_path"],
            "present" if data["state_present"] else "absent: defaults, as after a reboot",
        ),
        "persistenced:  %s" % ("running" if data["persistenced"] else "stopped"),
    ]
    for g in data["gpus"]:
        out.append(
            "GPU %d: %s %s power limit %s W (default %s W, range %s-%s W), persistence %s, "
            "clocks %s, compute mode %s"
            % (
                g["index"], g["name"], g["bus_id"], _w(g["power_limit_w"]),
                _w(g["power_default_w"]), _w(g["power_min_w"]), _w(g["power_max_w"]),
                "Enabled" if g["persistence_mode"] else "Disabled",
                "locked %d-%d MHz" % tuple(g["locked_clocks_mhz"]) if g["locked_clocks_mhz"]
                else "unlocked", g["compute_mode"],
            )
        )
    return "\n".join(out) + "\n"


def cmd_persistenced(profile, action):
    """What nvidia-persistenced does to the driver: persistence on for every GPU while it
    runs, off again when it stops. The lab's nvidia-persistenced unit calls this."""
    if action == "status":
        return "running\n" if load_state().get("persistenced") else "stopped\n"
    if action not in ("start", "stop"):
        raise SimError(RC_INVALID_ARGUMENT, stderr="usage: rigctl-simgpu persistenced start|stop|status\n")
    if not is_root():
        raise SimError(RC_NO_PERMISSION, stderr="rigctl-simgpu persistenced: must run as root\n")
    enable = action == "start"
    with StateLock():
        state = load_state()
        state["persistenced"] = enable
        for gpu in profile["gpus"]:
            _set_gpu_state(state, gpu, persistence_mode=enable)
        save_state(state)
    return "nvidia-persistenced (simulated) %s: persistence mode %s on %d GPU(s)\n" % (
        "started" if enable else "stopped",
        "Enabled" if enable else "Disabled",
        len(profile["gpus"]),
    )


def cmd_reset():
    if not is_root():
        raise SimError(RC_NO_PERMISSION, stderr="rigctl-simgpu reset: must run as root\n")
    with StateLock():
        path = os.path.join(state_dir(), STATE_FILE)
        if os.path.exists(path):
            os.unlink(path)
    return "runtime state dropped (as after a reboot)\n"


TOOL_USAGE = """usage: rigctl-simgpu status [--json]
       rigctl-simgpu persistenced start|stop|status
       rigctl-simgpu lspci
       rigctl-simgpu reset
       rigctl-simgpu <nvidia-smi arguments>

The rigctl GPU simulator: the GPUs of this host are simulated (lab rig).
"""

NVIDIA_SMI_HELP = """NVIDIA System Management Interface -- rigctl GPU simulator (lab rig, simulated GPUs)

Simulated:
    nvidia-smi                                   summary table
    nvidia-smi -L                                list GPUs
    nvidia-smi --query-gpu=FIELDS --format=csv[,noheader][,nounits] [-i ID]
    nvidia-smi -q [-d MEMORY,POWER,TEMPERATURE,CLOCK,UTILIZATION,COMPUTE,PERFORMANCE] [-i ID]
    nvidia-smi -pl WATTS [-i ID]                 (root)
    nvidia-smi -pm 0|1 [-i ID]                   (root)
    nvidia-smi -lgc MIN,MAX [-i ID]              (root) lock the core clocks (MHz)
    nvidia-smi -rgc [-i ID]                      (root) unlock them
    nvidia-smi -c 0|2|3|DEFAULT|PROHIBITED|EXCLUSIVE_PROCESS [-i ID]   (root)
    nvidia-smi topo -m
    nvidia-smi topo -p2p r|w|rw|n|a
    nvidia-smi --version
ID: index, PCI bus id or UUID, comma-separated.
"""


# --- argument handling ----------------------------------------------------------------


def run_nvidia_smi(argv):
    if argv and argv[0] == "topo":
        profile = read_profile()
        rest = argv[1:]
        if rest in (["-m"], ["--matrix"]):
            return cmd_topo_matrix(profile)
        if len(rest) == 2 and rest[0] in ("-p2p", "--p2pstatus"):
            return cmd_topo_p2p(profile, rest[1])
        if len(rest) == 1 and rest[0].startswith("--p2pstatus="):
            return cmd_topo_p2p(profile, rest[0].split("=", 1)[1])
        raise not_simulated("topo %s" % " ".join(rest), profile)
    opts = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--") and "=" in arg:
            name, value = arg.split("=", 1)
            has_value = True
        else:
            name, value, has_value = arg, None, False

        def take(name=name, value=value, has_value=has_value):
            nonlocal i
            if has_value:
                return value
            i += 1
            if i >= len(argv):
                raise invalid_args()
            return argv[i]

        if name in ("--query-gpu",):
            opts["query_gpu"] = take()
        elif name == "--format":
            opts["format"] = take()
        elif name in ("-i", "--id"):
            opts["id"] = take()
        elif name in ("-q", "--query"):
            opts["q"] = True
        elif name in ("-a",):
            opts["q"] = True
        elif name in ("-d", "--display"):
            opts["display"] = take()
        elif name in ("-pl", "--power-limit"):
            opts["pl"] = take()
        elif name in ("-pm", "--persistence-mode"):
            opts["pm"] = take()
        elif name in ("-lgc", "--lock-gpu-clocks"):
            opts["lgc"] = take()
        elif name in ("-rgc", "--reset-gpu-clocks"):
            opts["rgc"] = True
        elif name in ("-c", "--compute-mode"):
            opts["c"] = take()
        elif name in ("-L", "--list-gpus"):
            opts["L"] = True
        elif name in ("-h", "--help"):
            return NVIDIA_SMI_HELP
        elif name == "--version":
            opts["version"] = True
        else:
            profile = None
            try:
                profile = read_profile()
            except SimError:
                pass
            raise not_simulated("option %r" % arg, profile)
        i += 1
    profile = read_profile()
    actions = [k for k in ("query_gpu", "q", "pl", "pm", "lgc", "rgc", "c", "L", "version")
               if k in opts]
    if len(actions) > 1:
        raise invalid_args()
    if "display" in opts and "q" not in opts:
        raise invalid_args()
    if "format" in opts and "query_gpu" not in opts:
        raise invalid_args()
    state = load_state()
    gpu_ids = opts.get("id")
    if "query_gpu" in opts:
        return cmd_query_gpu(profile, state, opts["query_gpu"], opts.get("format"), gpu_ids)
    if "q" in opts:
        return cmd_q(profile, state, gpu_ids, opts.get("display"))
    if "pl" in opts:
        return cmd_power_limit(profile, opts["pl"], gpu_ids)
    if "pm" in opts:
        return cmd_persistence(profile, opts["pm"], gpu_ids)
    if "lgc" in opts:
        return cmd_lock_clocks(profile, opts["lgc"], gpu_ids)
    if "rgc" in opts:
        return cmd_reset_clocks(profile, gpu_ids)
    if "c" in opts:
        return cmd_compute_mode(profile, opts["c"], gpu_ids)
    if "L" in opts:
        return cmd_list(profile, gpu_ids)
    if "version" in opts:
        return cmd_version(profile)
    return cmd_summary(profile, state, gpu_ids)


def run_tool(argv):
    if not argv or argv[0] in ("-h", "--help", "help"):
        return TOOL_USAGE
    command = argv[0]
    if command == "status":
        if argv[1:] not in ([], ["--json"]):
            raise SimError(RC_INVALID_ARGUMENT, stderr=TOOL_USAGE)
        return cmd_status(read_profile(), load_state(), argv[1:] == ["--json"])
    if command == "persistenced":
        if len(argv) != 2:
            raise SimError(RC_INVALID_ARGUMENT, stderr=TOOL_USAGE)
        return cmd_persistenced(read_profile(), argv[1])
    if command == "lspci":
        return cmd_lspci(read_profile())
    if command == "reset":
        return cmd_reset()
    if command == "nvidia-smi":
        return run_nvidia_smi(argv[1:])
    return run_nvidia_smi(argv)


def main(argv=None, prog=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = os.path.basename(prog or sys.argv[0])
    try:
        if prog.startswith("rigctl-simgpu"):
            output = run_tool(argv)
        else:
            output = run_nvidia_smi(argv)
    except SimError as exc:
        if exc.stdout:
            sys.stdout.write(exc.stdout)
        if exc.stderr:
            sys.stderr.write(exc.stderr)
        sys.stdout.flush()
        return exc.rc
    sys.stdout.write(output)
    sys.stdout.flush()
    return RC_OK


if __name__ == "__main__":
    sys.exit(main())
