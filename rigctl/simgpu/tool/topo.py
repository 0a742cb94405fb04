"""``nvidia-smi topo -m``, ``topo -p2p`` and ``nvlink -s``: the GPU-to-GPU paths (PCIe,
NUMA nodes, NVLink bridges from the profile's ``"nvlink"`` list and its NVLink faults)."""

from . import faults
from .common import ANSI_RESET, ANSI_UNDERLINE, invalid_args, not_simulated
from .profile import driver_major, is_geforce, p2p_patched, select_gpus

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


def p2p_status(profile, a, b, mode, nvlinks=0):
    """What `topo -p2p <mode>` shows between two GPUs (``nvlinks``: active NVLink links
    between them).

    OK over an NVLink bridge (also GeForce on the stock driver: P2P over NVLink is
    allowed there) and for NVLink (`n`) only then, NS otherwise; over PCIe: CNS when either
    GPU hangs off the chipset; GNS between different GPU generations; NS between GeForce
    cards on a stock driver (P2P is disabled there); OK otherwise (patched driver, or
    non-GeForce cards). Atomics (`a`) are answered like reads/writes: not modelled separately.
    """
    if a is b:
        return "X"
    if nvlinks:
        return "OK"
    if mode == "n":
        return "NS"
    if a["behind_chipset"] or b["behind_chipset"]:
        return "CNS"
    if a["architecture"] != b["architecture"]:
        return "GNS"
    if not p2p_patched(profile) and (is_geforce(a) or is_geforce(b)):
        return "NS"
    return "OK"


def cmd_topo_matrix(profile, state):
    gpus = profile["gpus"]
    links = nvlink_links(profile, state)
    new = driver_major(profile) >= 535
    names = ["GPU%d" % g["index"] for g in gpus]
    cols = names + ["CPU Affinity", "NUMA Affinity"] + (["GPU NUMA ID"] if new else [])
    header = "\t".join(cols)
    lines = ["\t" + (ANSI_UNDERLINE + header + ANSI_RESET if new else header)]
    cpus = profile["numa_cpus"]
    for a in gpus:
        cells = [" X " if a is b else matrix_cell(links, a, b) for b in gpus]
        node = a["numa_node"]
        cpu = cpus[node] if node < len(cpus) else "N/A"
        if new:
            tail = [cpu, str(node), "", "N/A"]
        else:
            tail = [cpu, "", str(node)]
        lines.append("\t".join(["GPU%d" % a["index"]] + cells + tail))
    return "\n".join(lines) + "\n" + TOPO_LEGEND


def cmd_topo_p2p(profile, state, mode):
    if mode not in ("r", "w", "rw", "n", "a", "p"):
        raise invalid_args()
    gpus = profile["gpus"]
    major = driver_major(profile)
    new = major >= 535
    links = nvlink_links(profile, state)
    names = "".join("GPU%d\t" % g["index"] for g in gpus)
    lines = [" \t" + (ANSI_UNDERLINE + names + ANSI_RESET if new else names)]
    for a in gpus:
        cells = "".join(
            p2p_status(profile, a, b, "n" if mode == "n" else "r", active_links(links, a, b)) + "\t"
            for b in gpus
        )
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


# --- NVLink ------------------------------------------------------------------------------


def nvlink_links(profile, state):
    """GPU index -> list of its NVLink links: {``link``, ``peer`` (index), ``speed_gbs``
    (None when inactive)}, from the profile's bridges and the nvlink_down/nvlink_slow
    faults (a fault on either GPU of a bridge acts on both ends)."""
    out = {}
    for bridge in profile.get("nvlink") or []:
        a, b = bridge["gpus"]
        speeds = [float(bridge["link_speed_gbs"])] * int(bridge["links"])
        for fault in faults.all_faults(profile, state):
            if fault.get("gpu") not in (a, b) or fault.get("kind") not in ("nvlink_down", "nvlink_slow"):
                continue
            chosen = fault.get("links") or list(range(len(speeds)))
            for link in chosen:
                if link < len(speeds) and speeds[link] is not None:
                    speeds[link] = None if fault["kind"] == "nvlink_down" else float(fault["speed_gbs"])
        for me, peer in ((a, b), (b, a)):
            out[me] = [{"link": i, "peer": peer, "speed_gbs": s} for i, s in enumerate(speeds)]
    return out


def active_links(links, a, b):
    return sum(1 for link in links.get(a["index"], []) if link["peer"] == b["index"] and link["speed_gbs"])


def nvlink_gbs(links, a, b):
    """Per-direction NVLink bandwidth between two GPUs (sum of the active links), 0 without."""
    return sum(link["speed_gbs"] or 0 for link in links.get(a["index"], []) if link["peer"] == b["index"])


def matrix_cell(links, a, b):
    count = active_links(links, a, b)
    return "NV%d" % count if count else link_type(a, b)


def cmd_nvlink(profile, state, args):
    gpu_ids = None
    rest = list(args)
    if len(rest) >= 2 and rest[-2] in ("-i", "--id"):
        gpu_ids = rest[-1]
        rest = rest[:-2]
    if rest not in (["-s"], ["--status"]):
        raise not_simulated("nvlink %s" % " ".join(args), profile)
    links = nvlink_links(profile, state)
    out = []
    for gpu in select_gpus(profile, gpu_ids):
        out.append("GPU %d: %s (UUID: %s)" % (gpu["index"], gpu["name"], gpu["uuid"]))
        mine = links.get(gpu["index"], [])
        if not any(link["speed_gbs"] for link in mine):
            out.append("NVML: Unable to retrieve NVLink information as all links are inActive")
            continue
        for link in mine:
            state_text = "%.3f GB/s" % link["speed_gbs"] if link["speed_gbs"] else "<inactive>"
            out.append("\t Link %d: %s" % (link["link"], state_text))
    return "\n".join(out) + "\n"
