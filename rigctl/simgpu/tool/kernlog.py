"""``rigctl-simgpu kernel-log``: the kernel messages of the simulated GPUs since boot, as
``journalctl -k -b --no-pager -o short-iso`` prints them on a real rig
(``2026-01-02T03:04:05+00:00 HOST kernel: MESSAGE``): the driver's load line, then per
``xid`` fault the ``NVRM: GPU at PCI:...`` / ``GPU Board Serial Number`` lines before a GPU's
first Xid and ``NVRM: Xid (PCI:dddd:bb:dd): CODE, pid=..., name=..., message`` lines, and per
``aer`` fault the AER driver's records in the newer kernel form (``pcieport <root port>:
AER: Correctable error message received from <bdf>``, ``PCIe Bus Error: severity=...``,
``device [vvvv:dddd] error status/mask=...``, ``   [bit] Name``).

Profile faults happen ``at_s`` seconds after boot; run-time faults when they were added.
"""

import os
import socket
import time

from . import faults, pcitree
from .profile import sysfs_bdf

# Xid code -> (has pid/name part, message): the driver's wording for the common codes.
XID_MESSAGES = {
    13: (True, "Graphics SM Warp Exception on (GPC 0, TPC 1, SM 0): Out Of Range Address"),
    31: (True, "channel 0x0000000c, intr 00000000. MMU Fault: ENGINE GRAPHICS GPC0 "
               "GPCCLIENT_T1_0 faulted @ 0x7f3a_1c000000. Fault is of type FAULT_PDE "
               "ACCESS_TYPE_VIRT_READ"),
    43: (True, "channel 0x0000000c"),
    45: (True, "Ch 0000000c"),
    48: (True, "An uncorrectable double bit error (DBE) has been detected on GPU in the "
               "framebuffer at partition 6, subpartition 0."),
    61: (True, "0cec(2eb4) 00000000 00000000"),
    62: (True, "0000(0000) 00000000 00000000"),
    63: (True, "Row Remapper: New row marked for remapping, reset gpu to activate."),
    64: (True, "Row Remapper: Failed to mark a row for remapping."),
    74: (True, "NVLink: fatal error detected on link 2(0x0, 0x0, 0x10000, 0x0, 0x0, 0x0, 0x0)"),
    79: (False, "GPU has fallen off the bus."),
    94: (True, "Contained: SM (0x1). RST: No, D-RST: No"),
    95: (True, "Uncontained: FBHUB. RST: Yes, D-RST: No"),
    119: (True, "Timeout after 45s of waiting for RPC response from GPU0 GSP! Expected function "
                "76 (GSP_RM_CONTROL) (0x2080a0bf 0xc)."),
    120: (True, "GSP task exception on GPU0"),
    154: (False, "GPU recovery action changed from 0x0 (None) to 0x1 (PF FLR)"),
}

_CORRECTABLE_MASK = 0x00006000


def boot_time():
    """When this container (or host) booted: PID 1's start time."""
    try:
        with open("/proc/stat") as handle:
            btime = next(int(line.split()[1]) for line in handle if line.startswith("btime "))
        with open("/proc/1/stat") as handle:
            start_ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
        return btime + start_ticks / float(os.sysconf("SC_CLK_TCK"))
    except (OSError, StopIteration, ValueError, IndexError):
        return time.time() - 3600


def _stamp(moment):
    text = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(moment))
    return text[:-2] + ":" + text[-2:]


def _xid_bus(gpu):
    """'00000000:41:00.0' -> '0000:41:00' (how NVRM names a GPU in Xid lines)."""
    return sysfs_bdf(gpu["bus_id"]).rsplit(".", 1)[0]


def _event_time(fault, boot, now, default_at, k, step):
    if "added" in fault:
        base = float(fault["added"])
    else:
        base = boot + float(fault.get("at_s", default_at))
    return min(base + k * step, now)


def xid_events(profile, state, boot, now):
    """(time, [lines]) of every Xid and of the GPU lines before a GPU's first one."""
    events = []
    for i, fault in enumerate(faults.of_kind(profile, state, "xid")):
        gpu = profile["gpus"][fault["gpu"]]
        with_pid, default = XID_MESSAGES.get(fault["code"], (True, "An error with this Xid occurred"))
        message = fault.get("message", default)
        if with_pid:
            message = "pid=%d, name=%s, %s" % (
                fault.get("pid", 4100 + 17 * i), fault.get("process", "python3"), message)
        for k in range(int(fault.get("count", 1))):
            moment = _event_time(fault, boot, now, 600 + 60 * i, k, float(fault.get("interval_s", 60)))
            lines = ["NVRM: Xid (PCI:%s): %d, %s" % (_xid_bus(gpu), fault["code"], message)]
            if fault["code"] == 79:
                lines += ["NVRM: GPU %s: GPU has fallen off the bus." % sysfs_bdf(gpu["bus_id"]),
                          "NVRM: krcRcAndNotifyAllChannels_IMPL: RC all channels for critical error 79."]
            events.append((moment, gpu["index"], lines))
    events.sort(key=lambda e: e[0])
    seen = set()
    out = []
    for moment, index, lines in events:
        if index not in seen:
            seen.add(index)
            gpu = profile["gpus"][index]
            lines = ["NVRM: GPU at PCI:%s: %s" % (_xid_bus(gpu), gpu["uuid"]),
                     "NVRM: GPU Board Serial Number: %s" % (gpu["serial"] or "0")] + lines
        out.append((moment, lines))
    return out


def _aer_layer(severity, name):
    if severity == "correctable":
        if name == "RxErr":
            return "Physical Layer"
        if name in ("BadTLP", "BadDLLP", "Rollover", "Timeout"):
            return "Data Link Layer"
        return "Transaction Layer"
    return "Data Link Layer" if name in ("DLP", "SDES") else "Transaction Layer"


def _aer_agent(severity, name):
    if severity == "correctable":
        return "Transmitter ID" if name in ("Rollover", "Timeout") else "Receiver ID"
    if name == "CmpltTO":
        return "Requester ID"
    return "Completer ID" if name in ("UnsupReq", "CmpltAbrt") else "Receiver ID"


def _aer_device(profile, gpu, device):
    """(bdf, driver name, vendor:device) of the device an AER fault is about."""
    if device == "gpu":
        return sysfs_bdf(gpu["bus_id"]), "nvidia", "10de:%s" % gpu["pci_device_id"][2:].lower()
    for bridge in pcitree.chain(profile, gpu):
        if bridge["role"] == device:
            return bridge["bdf"], "pcieport", "%s:%s" % (bridge["vendor"], bridge["device"])
    return None


_SEVERITY_TEXT = {"correctable": "Correctable", "nonfatal": "Uncorrectable (Non-Fatal)",
                  "fatal": "Uncorrectable (Fatal)"}


def _aer_record(root, bdf, driver, ids, severity, name):
    table = faults.AER_CORRECTABLE if severity == "correctable" else faults.AER_UNCORRECTABLE
    bit = dict((n, b) for b, n in table)[name]
    mask = _CORRECTABLE_MASK if severity == "correctable" else 0
    lines = [
        "pcieport %s: AER: %s error message received from %s" % (root, _SEVERITY_TEXT[severity], bdf),
        "%s %s: PCIe Bus Error: severity=%s, type=%s, (%s)"
        % (driver, bdf, _SEVERITY_TEXT[severity], _aer_layer(severity, name), _aer_agent(severity, name)),
        "%s %s:   device [%s] error status/mask=%08x/%08x" % (driver, bdf, ids, 1 << bit, mask),
        "%s %s:    [%2d] %-22s (First)" % (driver, bdf, bit, name),
    ]
    if severity != "correctable" and driver == "nvidia":
        lines.append("nvidia %s: device has no AER-aware driver" % bdf)
    return lines


def aer_events(profile, state, boot, now):
    out = []
    for i, fault in enumerate(faults.of_kind(profile, state, "aer")):
        gpu = profile["gpus"][fault["gpu"]]
        found = _aer_device(profile, gpu, fault.get("device", "gpu"))
        if found is None:
            continue
        bdf, driver, ids = found
        root = pcitree.chain(profile, gpu)[-1]["bdf"]
        severity = fault.get("severity", "correctable")
        names = []
        for name, count in sorted(fault["errors"].items()):
            names += [name] * int(count)
        logged = min(len(names), int(fault.get("log_records", 8)))
        # spread the logged records over the error names in proportion
        chosen = [names[(k * len(names)) // logged] for k in range(logged)] if logged else []
        step = 0.5 if "added" in fault else 2.5
        for k, name in enumerate(chosen):
            offset = k - (logged if "added" in fault else 0)
            moment = _event_time(fault, boot, now, 900 + 30 * i, offset, step)
            out.append((moment, _aer_record(root, bdf, driver, ids, severity, name)))
    return out


def cmd_kernel_log(profile, state, now=None):
    now = time.time() if now is None else now
    boot = boot_time()
    host = socket.gethostname().split(".")[0] or "localhost"
    events = [
        (boot + 2.104, ["nvidia-nvlink: Nvlink Core is being initialized, major device number 234"]),
        (boot + 2.311, ["NVRM: loading NVIDIA UNIX x86_64 Kernel Module  %s  Release Build  "
                        "(rigctl-simgpu@lab)" % profile["driver_version"]]),
    ]
    events += xid_events(profile, state, boot, now) + aer_events(profile, state, boot, now)
    events.sort(key=lambda e: e[0])
    out = []
    for moment, lines in events:
        stamp = _stamp(moment)
        out += ["%s %s kernel: %s" % (stamp, host, line) for line in lines]
    return "\n".join(out) + "\n"
