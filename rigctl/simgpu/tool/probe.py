"""``rigctl-simgpu probe [--size-mib N] [--iterations N] [--no-p2p] [--pairs I:J,...]``: the
rig probe's JSON Lines output (format 1, see rigctl/core/probe.py) for the simulated GPUs.

Every figure is modelled, nothing is measured, and the output says so: the header and every
device, host_transfer, pair and summary line carry ``"simulated": true`` and stderr says it.
Bandwidth per pair comes from the narrower PCIe link of the two GPUs (generation and width
as trained) and the way the copy goes: peer access where ``topo -p2p r`` says OK (a
fraction of link theory per architecture, less across NUMA nodes), NVLink where a bridge is
(the active links' speed), else staged through host memory (a third of link theory). Faults:
``p2p_broken`` (the GPU's pairs return wrong data, fail to enable peer access, or run slower
than staged copies while topo still says OK) and ``slow_pair``. While it runs the probe
raises the load flag, so nvidia-smi shows the GPUs loaded (draw, temperature, clocks,
throttle reasons).
"""

import json
import os
import sys
import time

from . import faults
from .common import ENV_PROBE_SECONDS, RC_INVALID_ARGUMENT, SimError
from .state import clear_load, load_state, set_load
from .topo import nvlink_gbs, nvlink_links, p2p_status

FORMAT = 1
MIB = 2 ** 20
# PCIe per-lane, per-direction GB/s after line coding (8b/10b to Gen2, 128b/130b after)
LANE_GBS = {1: 0.25, 2: 0.5, 3: 0.9846, 4: 1.9692, 5: 3.9385, 6: 7.877}
# achieved fraction of link theory for peer-to-peer copies, by architecture
P2P_FRACTION = {"Ampere": 0.80, "Ada Lovelace": 0.78, "Blackwell": 0.90}
STAGED_FRACTION = 0.30
NVLINK_FRACTION = 0.93
CROSS_NUMA_P2P = 0.75
CROSS_NUMA_STAGED = 0.85
MULTIPROCESSORS = {"2204": 82, "2203": 84, "2684": 128, "2b85": 170}
PEER_UNSUPPORTED = {
    "call": "cudaDeviceEnablePeerAccess", "cuda_error": "cudaErrorPeerAccessUnsupported",
    "code": 217, "message": "peer access is not supported between these two devices",
}
USAGE = "usage: rigctl-simgpu probe [--size-mib N] [--iterations N] [--no-p2p] [--pairs I:J,...]\n"


def link_theory_gbs(gen, width):
    return LANE_GBS[int(gen)] * int(width)


def _gpu_theory(gpu):
    return link_theory_gbs(gpu["link_gen_current"], gpu["link_width_current"])


def _jitter(a, b):
    """A small, repeatable spread so pairs do not all read the same."""
    return 1.0 - ((a * 7 + b * 13) % 5) / 250.0


def parse_args(argv, count):
    opts = {"size_mib": 64, "iterations": 10, "p2p": True, "pairs": None}
    i = 0
    while i < len(argv):
        arg, sep, value = argv[i].partition("=")
        if arg in ("--size-mib", "--iterations", "--pairs"):
            if not sep:
                i += 1
                if i >= len(argv):
                    raise SimError(RC_INVALID_ARGUMENT,
                                   stderr="rigctl-probe: error: %s needs a value\n" % arg)
                value = argv[i]
            opts.update(_option(arg, value, count))
        elif arg == "--no-p2p" and not sep:
            opts["p2p"] = False
        else:
            raise SimError(RC_INVALID_ARGUMENT,
                           stderr="rigctl-probe: error: unknown option '%s' (see --help)\n" % argv[i])
        i += 1
    return opts


def _option(arg, value, count):
    if arg == "--pairs":
        pairs = []
        for item in [v for v in value.split(",") if v]:
            a, sep, b = item.partition(":")
            if not (sep and a.isdigit() and b.isdigit()) or a == b or max(int(a), int(b)) >= count:
                raise SimError(RC_INVALID_ARGUMENT, stderr="rigctl-probe: error: --pairs wants ordered "
                               "pairs of different device indexes like 0:1,1:0, got '%s'\n" % value)
            pairs.append((int(a), int(b)))
        return {"pairs": pairs}
    top = 65536 if arg == "--size-mib" else 10000
    if not value.isdigit() or not 1 <= int(value) <= top:
        raise SimError(RC_INVALID_ARGUMENT, stderr="rigctl-probe: error: %s wants a whole number 1..%d, "
                       "got '%s'\n" % (arg, top, value))
    return {"size_mib" if arg == "--size-mib" else "iterations": int(value)}


def _device_line(profile, gpu):
    return {
        "type": "device", "index": gpu["index"], "name": gpu["name"],
        "pci_bus_id": gpu["bus_id"][4:].lower(), "uuid": gpu["uuid"],
        "compute_capability": gpu["compute_cap"],
        "total_memory_bytes": (int(gpu["vram_mib"]) - 308) * MIB,
        "multiprocessors": MULTIPROCESSORS.get(gpu["pci_device_id"][2:].lower(), 80),
        "usable": True, "kernel_ok": True, "ok": True, "error": None, "simulated": True,
    }


def _host_line(gpu, opts):
    theory = _gpu_theory(gpu)
    h2d, d2h = round(theory * 0.80, 2), round(theory * 0.835, 2)
    return {
        "type": "host_transfer", "device": gpu["index"], "pci_bus_id": gpu["bus_id"][4:].lower(),
        "bytes": opts["size_mib"] * MIB, "iterations": opts["iterations"], "pinned": True,
        "h2d_gbps": h2d, "h2d_gbps_max": round(h2d * 1.01, 2), "d2h_gbps": d2h,
        "d2h_gbps_max": round(d2h * 1.01, 2), "data_ok": True, "mismatches": 0,
        "first_mismatch_offset": None, "ok": True, "error": None, "simulated": True,
    }


def _broken_mode(profile, state, a, b):
    for fault in faults.of_kind(profile, state, "p2p_broken"):
        if fault["gpu"] in (a["index"], b["index"]):
            return fault.get("mode", "mismatch")
    return None


def _pair_fraction(profile, state, a, b):
    fraction = 1.0
    for fault in faults.of_kind(profile, state, "slow_pair"):
        if sorted(fault["gpus"]) == sorted([a["index"], b["index"]]):
            fraction *= float(fault.get("fraction", 0.25))
    return fraction


def pair_line(profile, state, links, a, b, opts):
    theory = min(_gpu_theory(a), _gpu_theory(b))
    cross = a["numa_node"] != b["numa_node"]
    nv = nvlink_gbs(links, a, b)
    can_access = p2p_status(profile, a, b, "r", 1 if nv else 0) == "OK"
    broken = _broken_mode(profile, state, a, b) if can_access else None
    use_p2p = can_access and opts["p2p"] and broken != "enable_fails"
    staged = theory * STAGED_FRACTION * (CROSS_NUMA_STAGED if cross else 1.0)
    if use_p2p:
        gbps = nv * NVLINK_FRACTION if nv else theory * P2P_FRACTION.get(a["architecture"], 0.8) * (
            CROSS_NUMA_P2P if cross else 1.0)
        latency = 1.6 if nv else (2.6 if cross else 1.9)
        if broken == "slow":
            gbps = staged * 0.4
    else:
        gbps, latency = staged, 18.4 if cross else 10.3
    gbps = round(gbps * _pair_fraction(profile, state, a, b) * _jitter(a["index"], b["index"]), 2)
    bytes_ = opts["size_mib"] * MIB
    wrong = use_p2p and broken == "mismatch"
    return {
        "type": "pair", "src": a["index"], "dst": b["index"],
        "src_pci_bus_id": a["bus_id"][4:].lower(), "dst_pci_bus_id": b["bus_id"][4:].lower(),
        "can_access_peer": can_access, "peer_access": use_p2p, "mode": "p2p" if use_p2p else "staged",
        "peer_access_error": PEER_UNSUPPORTED if broken == "enable_fails" and opts["p2p"] else None,
        "bytes": bytes_, "iterations": opts["iterations"], "gbps": gbps,
        "gbps_max": round(gbps * 1.01, 2), "latency_bytes": 4, "latency_us": latency,
        "data_ok": not wrong, "mismatches": 2 * (bytes_ // 4) if wrong else 0,
        "first_mismatch_offset": 0 if wrong else None, "ok": not wrong, "error": None,
        "simulated": True,
    }


def _cuda_version(profile):
    major, _, minor = str(profile.get("cuda_version", "12.0")).partition(".")
    return int(major) * 1000 + int(minor or 0) * 10


def probe_lines(profile, state, opts):
    """Every output line of a run, in order (the summary last)."""
    gpus = profile["gpus"]
    links = nvlink_links(profile, state)
    header = {
        "type": "probe", "probe": "rigctl-probe", "format": FORMAT,
        "cuda_runtime": _cuda_version(profile), "cuda_driver": _cuda_version(profile),
        "device_count": len(gpus), "device_order": os.environ.get("CUDA_DEVICE_ORDER") or "PCI_BUS_ID",
        "options": {"size_mib": opts["size_mib"], "iterations": opts["iterations"], "p2p": opts["p2p"],
                    "latency_bytes": 4, "latency_copies": 100},
        "simulated": True, "simulation": "rigctl-simgpu: modelled from the lab profile, not measured",
    }
    lines = [header] + [_device_line(profile, g) for g in gpus] + [_host_line(g, opts) for g in gpus]
    pairs = opts["pairs"] or [(a["index"], b["index"]) for a in gpus for b in gpus if a is not b]
    pair_lines = [pair_line(profile, state, links, gpus[a], gpus[b], opts) for a, b in pairs]
    lines += pair_lines
    failed = [p for p in pair_lines if not p["ok"]]
    exit_code = 1 if failed else 0
    lines.append({
        "type": "summary", "ok": not failed, "exit_code": exit_code, "devices": len(gpus),
        "devices_failed": 0, "host_transfers_failed": 0, "pairs": len(pair_lines),
        "pairs_failed": len(failed), "pairs_data_failed": sum(1 for p in failed if not p["data_ok"]),
        "pairs_p2p": sum(1 for p in pair_lines if p["mode"] == "p2p"),
        "pairs_staged": sum(1 for p in pair_lines if p["mode"] == "staged"), "errors": 0,
        "simulated": True,
    })
    return lines


def run_seconds(lines, opts):
    """How long the run takes: every copy of the buffer at its modelled speed, plus setup."""
    env = os.environ.get(ENV_PROBE_SECONDS)
    if env:
        return max(0.0, float(env))
    total = 1.5
    for line in lines:
        copies = opts["size_mib"] * MIB * (opts["iterations"] + 2) / 1e9
        if line["type"] == "pair":
            total += copies / max(line["gbps"], 0.1)
        elif line["type"] == "host_transfer":
            total += copies / line["h2d_gbps"] + copies / line["d2h_gbps"]
    return min(total, 20.0)


def cmd_probe(profile, argv, out=None):
    """Run the simulated probe: lines to ``out`` as it goes; returns the exit code."""
    out = out or sys.stdout
    if argv and argv[0] in ("-h", "--help"):
        out.write(USAGE)
        return 0
    opts = parse_args(argv, len(profile["gpus"]))
    lines = probe_lines(profile, load_state(), opts)
    seconds = run_seconds(lines, opts)
    sys.stderr.write("rigctl-simgpu probe: SIMULATED GPUs (lab rig, profile %s): every figure is "
                     "modelled from the profile, nothing is measured\n" % profile.get("name"))
    loaded = True
    try:
        set_load(seconds + 2.0, "probe")
    except OSError as exc:
        loaded = False
        sys.stderr.write("rigctl-simgpu probe: load flag not set (%s)\n" % (exc.strerror or exc))
    try:
        step = seconds / max(len(lines) - 1, 1)
        for number, line in enumerate(lines):
            if number:
                time.sleep(step)
            out.write(json.dumps(line, separators=(",", ":")) + "\n")
            out.flush()
    finally:
        if loaded:
            clear_load("probe")
    return lines[-1]["exit_code"]
