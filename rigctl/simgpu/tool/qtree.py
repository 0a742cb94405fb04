"""``nvidia-smi -q [-d TYPES] [-i ID]``: the tree of sections per GPU, in the layout of the
profile's driver (power section names, draw fields and column width change with it)."""

import time

from .common import RC_INVALID_ARGUMENT, SimError, invalid_args, not_simulated, w
from .profile import driver_major, pci_device_id, select_gpus
from .state import gpu_state
from .telemetry import COUNTER_LABELS, REASONS, readings

DISPLAY_SECTIONS = {
    "MEMORY": ("FB Memory Usage", "BAR1 Memory Usage", "Conf Compute Protected Memory Usage"),
    "POWER": ("GPU Power Readings", "Power Readings", "GPU Memory Power Readings ",
              "Module Power Readings"),
    "TEMPERATURE": ("Temperature",),
    "CLOCK": ("Clocks", "Applications Clocks", "Default Applications Clocks", "Max Clocks"),
    "UTILIZATION": ("Utilization",),
    "COMPUTE": ("Compute Mode",),
    "PERFORMANCE": ("Performance State", "Clocks Event Reasons", "Clocks Throttle Reasons",
                    "Clocks Event Reasons Counters"),
}
REAL_DISPLAY_TYPES = frozenset(
    """MEMORY UTILIZATION ECC TEMPERATURE POWER CLOCK COMPUTE PIDS PERFORMANCE SUPPORTED_CLOCKS
    PAGE_RETIREMENT ACCOUNTING ENCODER_STATS SUPPORTED_GPU_TARGET_TEMP VOLTAGE FBC_STATS
    ROW_REMAPPER RESET_STATUS GSP_FIRMWARE_VERSION POWER_SMOOTHING POWER_PROFILES""".split()
)
_LIMIT_KEYS = ("Current Power Limit", "Requested Power Limit", "Default Power Limit",
               "Min Power Limit", "Max Power Limit")


def _power_sections(profile, gpu, st, reading):
    """The power readings (and the R530+ memory/module sections) of one GPU."""
    major = driver_major(profile)
    limit = st["power_limit_w"]
    draw_w = w(reading["power_draw_w"]) + " W"
    if major >= 570:
        draw = [("Average Power Draw", draw_w), ("Instantaneous Power Draw", draw_w)]
    else:
        draw = [("Power Draw", draw_w)]
    if major < 530:
        return [(
            "Power Readings",
            [
                ("Power Management", "Supported"),
                ("Power Draw", draw_w),
                ("Power Limit", w(limit) + " W"),
                ("Default Power Limit", w(gpu["power_default_w"]) + " W"),
                ("Enforced Power Limit", w(limit) + " W"),
                ("Min Power Limit", w(gpu["power_min_w"]) + " W"),
                ("Max Power Limit", w(gpu["power_max_w"]) + " W"),
            ],
        )]
    limits = [limit, limit, gpu["power_default_w"], gpu["power_min_w"], gpu["power_max_w"]]
    return [
        ("GPU Power Readings", draw + [(_LIMIT_KEYS[i], w(v) + " W") for i, v in enumerate(limits)]),
        ("GPU Memory Power Readings ", [(k, "N/A") for k, _ in draw]),
        ("Module Power Readings", [(k, "N/A") for k, _ in draw] + [(k, "N/A") for k in _LIMIT_KEYS]),
    ]


def _identity_entries(profile, gpu, st):
    bus_no = gpu["bus_id"].split(":")[1]
    return [
        ("Product Name", gpu["name"]),
        ("Product Brand", gpu["brand"]),
        ("Product Architecture", gpu["architecture"]),
        ("Display Mode", "Disabled"),
        ("Display Active", "Disabled"),
        ("Persistence Mode", "Enabled" if st["persistence_mode"] else "Disabled"),
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
        ("GPU Part Number", "%s-300-A1" % gpu["pci_device_id"][2:].upper()),
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
    ]


def _pci_section(gpu):
    domain, bus_no, devfn = gpu["bus_id"].split(":")
    link = [
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
            [("Max", "%dx" % gpu["link_width_max"]), ("Current", "%dx" % gpu["link_width_current"])],
        ),
    ]
    return (
        "PCI",
        [
            ("Bus", "0x" + bus_no),
            ("Device", "0x" + devfn.split(".")[0]),
            ("Domain", "0x%04X" % int(domain, 16)),
            ("Base Classcode", "0x3"),
            ("Sub Classcode", "0x0"),
            ("Device Id", pci_device_id(gpu)),
            ("Bus Id", gpu["bus_id"]),
            ("Sub System Id", "0x" + gpu["subsystem_id"][2:].upper()),
            ("GPU Link Info", link),
            ("Bridge Chip", [("Type", "N/A"), ("Firmware", "N/A")]),
            ("Replays Since Reset", "0"),
            ("Replay Number Rollovers", "0"),
            ("Tx Throughput", "0 KB/s"),
            ("Rx Throughput", "0 KB/s"),
            ("Atomic Caps Outbound", "N/A"),
            ("Atomic Caps Inbound", "N/A"),
        ],
    )


def _performance_entries(profile, reading):
    """P-state and the clocks event reasons: ``Clocks Throttle Reasons`` before R535, the
    counters section from R590."""
    major = driver_major(profile)
    active = reading["reasons"]
    reasons = []
    for name, _bit, label in REASONS:
        if name in ("hw_thermal_slowdown", "hw_power_brake_slowdown"):
            continue
        reasons.append((label, "Active" if name in active else "Not Active"))
        if name == "hw_slowdown":
            for sub, sub_label in (("hw_thermal_slowdown", "HW Thermal Slowdown"),
                                   ("hw_power_brake_slowdown", "HW Power Brake Slowdown")):
                reasons.append(("    " + sub_label, "Active" if sub in active else "Not Active"))
    entries = [
        ("Performance State", reading["pstate"]),
        ("Clocks Event Reasons" if major >= 535 else "Clocks Throttle Reasons", reasons),
    ]
    if major >= 590:
        entries.append((
            "Clocks Event Reasons Counters",
            [(label, "%d us" % reading["counters_us"][name]) for label, name in COUNTER_LABELS],
        ))
    return entries


def _memory_entries(gpu, st, reading):
    total, reserved = int(gpu["vram_mib"]), int(gpu["memory_reserved_mib"])
    used = reading["memory_used_mib"]
    bar1 = int(gpu["bar1_mib"])
    return [
        ("Sparse Operation Mode", "N/A"),
        (
            "FB Memory Usage",
            [
                ("Total", "%d MiB" % total),
                ("Reserved", "%d MiB" % reserved),
                ("Used", "%d MiB" % used),
                ("Free", "%d MiB" % max(total - reserved - used, 0)),
            ],
        ),
        ("BAR1 Memory Usage",
         [("Total", "%d MiB" % bar1), ("Used", "2 MiB"), ("Free", "%d MiB" % (bar1 - 2))]),
        ("Conf Compute Protected Memory Usage", [("Total", "0 MiB"), ("Used", "0 MiB"), ("Free", "0 MiB")]),
        ("Compute Mode", st["compute_mode"]),
        (
            "Utilization",
            [("Gpu", "%d %%" % reading["utilization_gpu"]),
             ("Memory", "%d %%" % reading["utilization_memory"]), ("Encoder", "0 %"), ("Decoder", "0 %")],
        ),
        ("ECC Mode", [("Current", "N/A"), ("Pending", "N/A")]),
    ]


def _temperature_section(gpu, reading):
    slowdown = int(gpu["slowdown_temperature_c"])
    return (
        "Temperature",
        [
            ("GPU Current Temp", "%d C" % reading["temperature_c"]),
            ("GPU T.Limit Temp", "N/A"),
            ("GPU Shutdown Temp", "%d C" % (slowdown + 3)),
            ("GPU Slowdown Temp", "%d C" % slowdown),
            ("GPU Max Operating Temp", "%d C" % (slowdown - 2)),
            ("GPU Target Temperature", "83 C"),
            ("Memory Current Temp", "N/A"),
            ("Memory Max Operating Temp", "N/A"),
        ],
    )


def _clock_entries(gpu, reading):
    return [
        (
            "Clocks",
            [("Graphics", "%d MHz" % reading["sm_mhz"]), ("SM", "%d MHz" % reading["sm_mhz"]),
             ("Memory", "%d MHz" % reading["memory_mhz"]), ("Video", "555 MHz")],
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


def gpu_sections(profile, gpu, st, reading):
    """The -q tree of one GPU: list of (key, value-string) and (section, [children])."""
    return (
        _identity_entries(profile, gpu, st)
        + [_pci_section(gpu), ("Fan Speed", "%d %%" % reading["fan_percent"])]
        + _performance_entries(profile, reading)
        + _memory_entries(gpu, st, reading)
        + [_temperature_section(gpu, reading)]
        + _power_sections(profile, gpu, st, reading)
        + _clock_entries(gpu, reading)
    )


def _render_tree(entries, indent, width, out):
    for key, value in entries:
        # "    HW Thermal Slowdown": a reason nested under HW Slowdown, one level deeper
        extra = len(key) - len(key.lstrip(" "))
        label = " " * (indent + extra) + key.lstrip(" ")
        if isinstance(value, list):
            out.append(label)
            _render_tree(value, indent + 4, width, out)
        else:
            out.append(label.ljust(width) + ": " + value)


def _wanted_sections(profile, display):
    if display is None:
        return None
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
    return wanted


def cmd_q(profile, state, gpu_ids, display):
    width = 55 if driver_major(profile) >= 590 else 42
    wanted = _wanted_sections(profile, display)
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
    now = time.time()
    for gpu in gpus:
        sections = gpu_sections(profile, gpu, gpu_state(state, gpu), readings(profile, state, gpu, now))
        if wanted is not None:
            sections = [entry for entry in sections if entry[0] in wanted]
        out.append("GPU " + gpu["bus_id"])
        _render_tree(sections, 4, width, out)
        out.append("")
    return "\n".join(out) + "\n"
