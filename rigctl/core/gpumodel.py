"""The one model of a GPU on a rig, and the one function that builds the list of them.

:func:`build` merges what sysfs says (``hostfacts.pci_gpus``) with what the driver says
(``nvidia-smi --query-gpu`` rows with :data:`QUERY_FIELDS`) and, where the caller read
them, BAR1 sizes, chipset flags and locked clocks. The rig facts (``rig_host.gpus``, module
``rig_facts``) and the GPU facts (``rig_gpus.gpus``, modules ``gpu_facts``,
``gpu_settings``, ``hw_checks``) are both built by it: one shape; what a gatherer did
not read is None (``bar1_mib``, ``behind_chipset``, ``clocks.locked_source``).

Pure (parsed data in, plain dicts out). Runs on the managed host: standard library only,
Python 3.9 syntax.
"""

from __future__ import annotations

from . import gpudb

# The --query-gpu fields rigctl reads, in one place (every GPU reader asks for these).
QUERY_FIELDS = (
    "index",
    "pci.bus_id",
    "name",
    "uuid",
    "memory.total",
    "power.limit",
    "power.default_limit",
    "power.min_limit",
    "power.max_limit",
    "persistence_mode",
    "pcie.link.gen.max",
    "pcie.link.gen.current",
    "pcie.link.width.max",
    "pcie.link.width.current",
    "driver_version",
    "compute_mode",
    "clocks.max.sm",
    "clocks.max.graphics",
)


def _num(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def compute_mode_name(text):
    """rig_compute_mode spelling of what ``--query-gpu=compute_mode`` prints, or None."""
    if not isinstance(text, str):
        return None
    wanted = text.strip().lower()
    for name, (_num, printed) in gpudb.COMPUTE_MODES.items():
        if printed.lower() == wanted:
            return name
    return "exclusive_thread" if wanted == "exclusive_thread" else None


def build(pci, smi_rows, bar1_q=None, bar1_lspci=None, chipset=None, clock_record=None,
          clock_live=None):
    """One dict per GPU from sysfs (``hostfacts.pci_gpus``), ``--query-gpu`` rows (with
    :data:`QUERY_FIELDS`), BAR1 sizes and chipset flags. Sorted by bus id; ``index`` is
    nvidia-smi's when a driver answers, else the bus order (the same order);
    ``driver_visible``: nvidia-smi lists it. Locked clocks come from ``clock_live`` (read
    from the GPUs: {bus id: pair or None}) for the GPUs it covers, else from
    ``clock_record`` (what rigctl applied since boot); with neither (None) they were not
    read (``locked_source`` None)."""
    bar1_q = bar1_q or {}
    bar1_lspci = bar1_lspci or {}
    chipset = chipset or {}
    clocks_read = clock_record is not None or clock_live is not None
    clock_record = clock_record or {}
    clock_live = clock_live or {}
    by_bus = {}
    for row in smi_rows or []:
        try:
            by_bus[gpudb.normalize_bus_id(str(row.get("pci.bus_id", "")))] = row
        except ValueError:
            continue
    buses = sorted({g["bus_id"] for g in pci} | set(by_bus))
    pci_by_bus = {g["bus_id"]: g for g in pci}
    gpus = []
    for position, bus in enumerate(buses):
        dev = pci_by_bus.get(bus) or {}
        row = by_bus.get(bus) or {}
        link = dev.get("link") or {}
        name = row.get("name") or dev.get("name")
        if not name:
            name = ("NVIDIA " + dev["model"]) if dev.get("model") else "NVIDIA device %s" % (
                dev.get("device_id") or "?"
            )
        generation = dev.get("generation") or gpudb.generation_for_name(name)
        vram = _num(row.get("memory.total"))
        if vram is None and dev.get("device_id"):
            model = gpudb.model_for_device(dev["device_id"])
            vram = model[2] * 1024 if model else None
        index = _num(row.get("index"))
        index = int(index) if index is not None else position
        if bus in bar1_q:
            bar1, bar1_source = bar1_q[bus], "nvidia-smi -q -d MEMORY"
        elif bus in bar1_lspci:
            bar1, bar1_source = bar1_lspci[bus], "lspci -vv"
        else:
            bar1, bar1_source = None, None
        persistence = row.get("persistence_mode")
        gpus.append(
            {
                "index": index,
                "bus_id": bus,
                "uuid": row.get("uuid"),
                "name": name,
                "generation": generation,
                "vram_mib": int(vram) if vram is not None else None,
                "vram_source": "nvidia-smi" if row.get("memory.total") is not None else "model",
                "bar1_mib": bar1,
                "bar1_source": bar1_source,
                "power": {
                    "current_w": _num(row.get("power.limit")),
                    "default_w": _num(row.get("power.default_limit")),
                    "min_w": _num(row.get("power.min_limit")),
                    "max_w": _num(row.get("power.max_limit")),
                },
                "persistence": (persistence == "Enabled") if persistence else None,
                "compute_mode": compute_mode_name(row.get("compute_mode")),
                "clocks": {
                    "max_sm_mhz": _num(row.get("clocks.max.sm")),
                    "max_graphics_mhz": _num(row.get("clocks.max.graphics")),
                    # read from the GPU where it can say, else what rigctl locked since
                    # boot (CLOCKS_RECORD)
                    "locked_mhz": clock_live[bus] if bus in clock_live else clock_record.get(bus),
                    "locked_source": "gpu" if bus in clock_live
                    else ("record" if clocks_read else None),
                },
                "link": {
                    # nvidia-smi: the link (what host and card can both do); sysfs: the card
                    "gen_current": _num(row.get("pcie.link.gen.current")) or link.get("gen_current"),
                    "gen_max": _num(row.get("pcie.link.gen.max")) or link.get("gen_max"),
                    "width_current": _num(row.get("pcie.link.width.current"))
                    or link.get("width_current"),
                    "width_max": _num(row.get("pcie.link.width.max")) or link.get("width_max"),
                    "device_gen_max": link.get("gen_max"),
                    "device_width_max": link.get("width_max"),
                    # sysfs, the card's side (GT/s)
                    "speed_current_gts": link.get("speed_current_gts"),
                    "speed_max_gts": link.get("speed_max_gts"),
                },
                "behind_chipset": chipset.get(index),
                "numa_node": dev.get("numa_node"),
                "simulated": bool(dev.get("simulated")),
                "driver_visible": bool(row),
                # sysfs
                "device_id": dev.get("device_id"),
                "kernel_driver": dev.get("kernel_driver"),
                "iommu_group": dev.get("iommu_group"),
            }
        )
    return gpus
