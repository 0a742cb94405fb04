"""The sysfs-shaped tree of the simulated PCI devices, like ``/sys/bus/pci/devices/<bdf>/``:
the GPUs and the bridges above them (``secondary_bus_number``/``subordinate_bus_number``
say which buses a bridge opens, as on a real kernel), link speed/width, NUMA node and the
AER counters (``aer_dev_correctable``/``aer_dev_nonfatal``/``aer_dev_fatal`` in the kernel's
``Name count`` + ``TOTAL_ERR_*`` format; root ports also ``aer_rootport_total_err_*``).

rigctl installs the tree with the lab rig (from the profile); ``rigctl-simgpu fault
add|clear`` rewrites the AER files when a run-time fault changes the counts.
"""

import os
import tempfile

from . import faults, pcitree
from .common import ENV_SYSFS_ROOT, SYSFS_ROOT
from .profile import sysfs_bdf

_SYSFS_SPEED = {1: "2.5", 2: "5.0", 3: "8.0", 4: "16.0", 5: "32.0", 6: "64.0"}
_TOTALS = {"correctable": "TOTAL_ERR_COR", "nonfatal": "TOTAL_ERR_NONFATAL", "fatal": "TOTAL_ERR_FATAL"}
_FILES = {"correctable": "aer_dev_correctable", "nonfatal": "aer_dev_nonfatal", "fatal": "aer_dev_fatal"}
_ROOTPORT_FILES = {"correctable": "aer_rootport_total_err_cor", "nonfatal": "aer_rootport_total_err_nonfatal",
                   "fatal": "aer_rootport_total_err_fatal"}


def sysfs_root():
    return os.environ.get(ENV_SYSFS_ROOT) or SYSFS_ROOT


def link_speed(gen):
    return "%s GT/s PCIe\n" % _SYSFS_SPEED[int(gen)]


def aer_counts(profile, state):
    """bdf -> severity -> {error name: count}, from the profile's and run-time aer faults."""
    counts = {}
    for fault in faults.all_faults(profile, state):
        if fault.get("kind") != "aer":
            continue
        gpu = profile["gpus"][fault["gpu"]]
        bdf = pcitree.aer_device_bdf(profile, gpu, fault.get("device", "gpu"))
        if bdf is None:
            continue
        table = counts.setdefault(bdf, {}).setdefault(fault.get("severity", "correctable"), {})
        for name, count in fault["errors"].items():
            table[name] = table.get(name, 0) + int(count)
    return counts


def aer_text(severity, table):
    """One counter file as the kernel prints it."""
    lines = ["%s %d" % (name, table.get(name, 0)) for name in faults.aer_names(severity)]
    lines.append("%s %d" % (_TOTALS[severity], sum(table.values())))
    return "\n".join(lines) + "\n"


def _aer_entries(bdf, counts, rootport_totals=None):
    entries = {}
    mine = counts.get(bdf, {})
    for severity, name in _FILES.items():
        entries[name] = aer_text(severity, mine.get(severity, {}))
    if rootport_totals is not None:
        for severity, name in _ROOTPORT_FILES.items():
            entries[name] = "%d\n" % rootport_totals.get(severity, 0)
    return entries


def _gpu_entries(gpu):
    subsystem = gpu["subsystem_id"][2:].lower()
    return {
        "vendor": "0x10de\n",
        "device": "0x%s\n" % gpu["pci_device_id"][2:].lower(),
        "class": "0x030000\n",
        "subsystem_vendor": "0x%s\n" % subsystem[4:],
        "subsystem_device": "0x%s\n" % subsystem[:4],
        "current_link_speed": link_speed(gpu["link_gen_current"]),
        "current_link_width": "%d\n" % gpu["link_width_current"],
        "max_link_speed": link_speed(gpu["device_gen_max"]),
        "max_link_width": "%d\n" % gpu["device_width_max"],
        "numa_node": "%d\n" % gpu["numa_node"],
    }


def _bridge_entries(bridge):
    return {
        "vendor": "0x%s\n" % bridge["vendor"],
        "device": "0x%s\n" % bridge["device"],
        "class": "0x060400\n",
        "current_link_speed": link_speed(bridge["gen_current"]),
        "current_link_width": "%d\n" % bridge["width_current"],
        "max_link_speed": link_speed(bridge["gen_max"]),
        "max_link_width": "%d\n" % bridge["width_max"],
        "numa_node": "%d\n" % bridge["numa_node"],
        "secondary_bus_number": "%d\n" % bridge["secondary"],
        "subordinate_bus_number": "%d\n" % bridge["subordinate"],
    }


def _rootport_totals(profile, counts):
    """root port bdf -> severity -> errors reported in its hierarchy."""
    totals = {}
    for gpu in profile["gpus"]:
        chain = pcitree.chain(profile, gpu)
        root = chain[-1]["bdf"]
        for bdf in [sysfs_bdf(gpu["bus_id"])] + [b["bdf"] for b in chain]:
            for severity, table in counts.get(bdf, {}).items():
                totals.setdefault(root, {}).setdefault(severity, {})[bdf] = sum(table.values())
    return {root: {sev: sum(per.values()) for sev, per in table.items()} for root, table in totals.items()}


def device_files(profile, state=None):
    """{bdf: {file name: text}} of every simulated device."""
    state = state or {}
    counts = aer_counts(profile, state)
    roots = _rootport_totals(profile, counts)
    devices = {}
    for gpu in profile["gpus"]:
        bdf = sysfs_bdf(gpu["bus_id"])
        devices[bdf] = dict(_gpu_entries(gpu), **_aer_entries(bdf, counts))
    for bridge in pcitree.all_bridges(profile):
        rootport = roots.get(bridge["bdf"], {}) if bridge["role"] == "root_port" else None
        aer = _aer_entries(bridge["bdf"], counts, rootport)
        devices[bridge["bdf"]] = dict(_bridge_entries(bridge), **aer)
    return devices


def sysfs_files(profile, root, state=None):
    """``(path, content bytes, mode)`` of every file of the tree under ``root``."""
    files = []
    for bdf, entries in sorted(device_files(profile, state).items()):
        base = "%s/bus/pci/devices/%s" % (root, bdf)
        for name, content in entries.items():
            files.append(("%s/%s" % (base, name), content.encode(), 0o444))
    return files


def rewrite_aer(profile, state):
    """Write the AER counter files of the installed tree again (after a run-time fault
    changed them). Devices whose directory is missing are left alone."""
    root = sysfs_root()
    for bdf, entries in device_files(profile, state).items():
        directory = os.path.join(root, "bus/pci/devices", bdf)
        if not os.path.isdir(directory):
            continue
        for name, content in entries.items():
            if not name.startswith("aer_"):
                continue
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".aer.")
            with os.fdopen(fd, "w") as handle:
                handle.write(content)
            os.chmod(tmp, 0o444)
            os.replace(tmp, os.path.join(directory, name))
