"""The PCI bridges above each simulated GPU: a CPU root port, and for GPUs that share a
``pcie_switch`` (a switch on a riser or splitter board) the switch's upstream port and one
downstream port per GPU. lspci, the sysfs tree (``secondary_bus_number``/
``subordinate_bus_number``, AER counters) and the kernel log all name these devices.

Bus numbers: a GPU on bus B without a switch sits below root port
``dddd:(B & 0xe0):(index % 7 + 1).1`` whose secondary bus is B. GPUs on switch S, first
one on bus F: the upstream port is ``dddd:(F-2):00.0`` below root port
``dddd:((F-2) & 0xe0):(i % 7 + 1).1``; its downstream ports are ``dddd:(F-1):0k.0``, one per
GPU (k = its place on the switch), each with the GPU's bus as secondary bus.
"""

from .profile import sysfs_bdf

ROOT_PORT_NAMES = {
    "AMD": ("Advanced Micro Devices, Inc. [AMD] Starship/Matisse GPP Bridge", "1022", "1483"),
    "Intel": ("Intel Corporation Device", "8086", "347a"),
}
# PCIe switches (pci.ids names): Gen4 and Gen5 Broadcom/PLX parts used on GPU risers/boards.
SWITCH_NAMES = {
    4: ("Broadcom / LSI PEX880xx PCIe Gen 4 Switch", "1000", "c010"),
    5: ("Broadcom / LSI PEX890xx PCIe Gen 5 Switch", "1000", "c030"),
}


def _bus(gpu):
    domain, bus, _ = sysfs_bdf(gpu["bus_id"]).split(":")
    return domain, int(bus, 16)


def root_port_bdf(gpu):
    """The simulated root port (or chipset downstream port) above a GPU without a switch."""
    domain, bus = _bus(gpu)
    return "%s:%02x:%02x.1" % (domain, bus & 0xE0, gpu["index"] % 7 + 1)


def switch_groups(profile):
    """switch id -> its GPUs (index order)."""
    groups = {}
    for gpu in profile["gpus"]:
        if gpu.get("pcie_switch") is not None:
            groups.setdefault(gpu["pcie_switch"], []).append(gpu)
    return groups


def switch_upstream_bus(group):
    return _bus(group[0])[1] - 2


def _bridge(bdf, role, names, primary, secondary, subordinate, gen_max, width_max, gen_cur,
            width_cur, gpu):
    name, vendor, device = names
    return {
        "bdf": bdf, "role": role, "name": name, "vendor": vendor, "device": device,
        "primary": primary, "secondary": secondary, "subordinate": subordinate,
        "gen_max": gen_max, "width_max": width_max, "gen_current": gen_cur,
        "width_current": width_cur, "acs_redirect": bool(gpu.get("acs_redirect")),
        "numa_node": gpu["numa_node"],
    }


def chain(profile, gpu):
    """The bridges above a GPU, nearest first (dicts: ``bdf``, ``role`` root_port |
    switch_upstream | switch_downstream, ``name``, ``vendor``, ``device``, bus numbers,
    link gen/width max and current)."""
    root_names = ROOT_PORT_NAMES.get(profile.get("cpu_vendor"), ROOT_PORT_NAMES["AMD"])
    domain, bus = _bus(gpu)
    if gpu.get("pcie_switch") is None:
        port = root_port_bdf(gpu)
        return [_bridge(port, "root_port", root_names, int(port.split(":")[1], 16), bus, bus,
                        gpu["link_gen_max"], gpu["link_width_max"], gpu["link_gen_current"],
                        gpu["link_width_current"], gpu)]
    group = switch_groups(profile)[gpu["pcie_switch"]]
    upstream = switch_upstream_bus(group)
    last = max(_bus(g)[1] for g in group)
    switch_gen = min(max(g["device_gen_max"] for g in group), 5)
    names = SWITCH_NAMES[max(switch_gen, 4)]
    first = group[0]
    root = "%s:%02x:%02x.1" % (domain, upstream & 0xE0, first["index"] % 7 + 1)
    up = "%s:%02x:00.0" % (domain, upstream)
    down = "%s:%02x:%02x.0" % (domain, upstream + 1, group.index(gpu))
    return [
        _bridge(down, "switch_downstream", names, upstream + 1, bus, bus, gpu["link_gen_max"],
                gpu["link_width_max"], gpu["link_gen_current"], gpu["link_width_current"], gpu),
        _bridge(up, "switch_upstream", names, upstream, upstream + 1, last, switch_gen, 16,
                switch_gen, 16, first),
        _bridge(root, "root_port", root_names, upstream & 0xE0, upstream, last, switch_gen, 16,
                switch_gen, 16, first),
    ]


def all_bridges(profile):
    """Every bridge of the rig once, by bdf."""
    seen = {}
    for gpu in profile["gpus"]:
        for bridge in chain(profile, gpu):
            seen.setdefault(bridge["bdf"], bridge)
    return [seen[k] for k in sorted(seen)]


def aer_device_bdf(profile, gpu, device):
    """The bdf of ``device`` (gpu, root_port, switch_downstream, switch_upstream) for a GPU,
    or None when the GPU has no such device above it."""
    if device == "gpu":
        return sysfs_bdf(gpu["bus_id"])
    for bridge in chain(profile, gpu):
        if bridge["role"] == device:
            return bridge["bdf"]
    return None
