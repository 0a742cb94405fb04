"""``nvidia-smi --query-gpu=FIELDS --format=csv[,noheader][,nounits]``."""

import time

from .common import RC_INVALID_ARGUMENT, SimError, invalid_args, not_simulated, w
from .profile import pci_device_id, select_gpus
from .state import gpu_state
from .telemetry import REASONS, REASONS_SUPPORTED, readings


def free_mib(gpu, reading):
    return max(int(gpu["vram_mib"]) - int(gpu["memory_reserved_mib"]) - reading["memory_used_mib"], 0)


def _reason_fields():
    """clocks_event_reasons.* (and the older clocks_throttle_reasons.* spelling the real tool
    still accepts): ``active``/``supported`` as NVML bit masks, one field per reason."""
    fields = {
        "clocks_event_reasons.supported": (None, lambda p, g, s: "0x%016X" % REASONS_SUPPORTED),
        "clocks_event_reasons.active": (None, lambda p, g, s: "0x%016X" % s["r"]["reasons_mask"]),
    }
    for name, _bit, _label in REASONS:
        fields["clocks_event_reasons." + name] = (
            None, lambda p, g, s, name=name: "Active" if name in s["r"]["reasons"] else "Not Active")
    for name in ("sw_power_cap", "sync_boost", "sw_thermal_slowdown", "hw_thermal_slowdown",
                 "hw_power_brake_slowdown"):
        fields["clocks_event_reasons_counters." + name] = (
            "us", lambda p, g, s, name=name: str(s["r"]["counters_us"][name]))
    for key in list(fields):
        if key.startswith("clocks_event_reasons."):
            fields[key.replace("clocks_event_reasons.", "clocks_throttle_reasons.")] = fields[key]
    return fields


def query_fields():
    """field -> (unit or None, function(profile, gpu, view) -> printed value); ``view`` is the
    GPU's runtime state (:func:`state.gpu_state`) plus ``r``, its :func:`telemetry.readings`."""
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
        "pci.device_id": (None, lambda p, g, s: pci_device_id(g)),
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
        "pstate": (None, lambda p, g, s: s["r"]["pstate"]),
        "memory.total": ("MiB", lambda p, g, s: str(g["vram_mib"])),
        "memory.reserved": ("MiB", lambda p, g, s: str(g["memory_reserved_mib"])),
        "memory.used": ("MiB", lambda p, g, s: str(s["r"]["memory_used_mib"])),
        "memory.free": ("MiB", lambda p, g, s: str(free_mib(g, s["r"]))),
        "power.management": (None, lambda p, g, s: "Enabled"),
        "power.draw": ("W", lambda p, g, s: w(s["r"]["power_draw_w"])),
        "power.draw.average": ("W", lambda p, g, s: w(s["r"]["power_draw_w"])),
        "power.draw.instant": ("W", lambda p, g, s: w(s["r"]["power_draw_w"])),
        "power.limit": ("W", lambda p, g, s: w(s["power_limit_w"])),
        "enforced.power.limit": ("W", lambda p, g, s: w(s["power_limit_w"])),
        "power.default_limit": ("W", lambda p, g, s: w(g["power_default_w"])),
        "power.min_limit": ("W", lambda p, g, s: w(g["power_min_w"])),
        "power.max_limit": ("W", lambda p, g, s: w(g["power_max_w"])),
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
        "clocks.sm": ("MHz", lambda p, g, s: str(s["r"]["sm_mhz"])),
        "clocks.current.sm": ("MHz", lambda p, g, s: str(s["r"]["sm_mhz"])),
        "clocks.gr": ("MHz", lambda p, g, s: str(s["r"]["sm_mhz"])),
        "clocks.current.graphics": ("MHz", lambda p, g, s: str(s["r"]["sm_mhz"])),
        "clocks.mem": ("MHz", lambda p, g, s: str(s["r"]["memory_mhz"])),
        "clocks.current.memory": ("MHz", lambda p, g, s: str(s["r"]["memory_mhz"])),
        "temperature.gpu": (None, lambda p, g, s: str(s["r"]["temperature_c"])),
        "fan.speed": ("%", lambda p, g, s: str(s["r"]["fan_percent"])),
        "utilization.gpu": ("%", lambda p, g, s: str(s["r"]["utilization_gpu"])),
        "utilization.memory": ("%", lambda p, g, s: str(s["r"]["utilization_memory"])),
        "ecc.mode.current": (None, lambda p, g, s: "[N/A]"),
        "mig.mode.current": (None, lambda p, g, s: "[N/A]"),
    }
    fields.update(_reason_fields())
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
    gom.pending utilization.encoder
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
    table = query_fields()
    for name in names:
        if name in table:
            continue
        if name in KNOWN_UNSIMULATED_FIELDS:
            raise not_simulated('query field "%s"' % name, profile)
        raise SimError(RC_INVALID_ARGUMENT, stdout='Field "%s" is not a valid field to query.\n' % name)
    gpus = select_gpus(profile, gpu_ids)
    now = time.time()
    lines = []
    if "noheader" not in options:
        header = []
        for name in names:
            unit = table[name][0]
            header.append("%s [%s]" % (name, unit) if unit else name)
        lines.append(", ".join(header))
    for gpu in gpus:
        st = dict(gpu_state(state, gpu), r=readings(profile, state, gpu, now))
        cells = []
        for name in names:
            unit, getter = table[name]
            value = getter(profile, gpu, st)
            if unit and "nounits" not in options and not value.startswith("["):
                value = "%s %s" % (value, unit)
            cells.append(value)
        lines.append(", ".join(cells))
    return "\n".join(lines) + "\n"

