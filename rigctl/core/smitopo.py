"""nvidia-smi topology parsers: ``topo -m`` (link matrix) and ``topo -p2p`` (P2P status).

Standard library only, Python 3.9 syntax (shipped to managed hosts as module_utils).
Pure functions: text in, JSON-serializable dicts/lists out; input that is clearly not the
expected format raises ``ValueError``. Shared text helpers are in :mod:`.parsers`.
"""

from __future__ import annotations

import re

from .parsers import _INT_RE, _lines, _na, _number

__all__ = [
    "parse_topo_matrix",
    "parse_topo_p2p",
    "TOPO_P2P_CODES",
    "TOPO_LINK_CODES",
]

# --- nvidia-smi topo -m ---------------------------------------------------------------

TOPO_LINK_CODES = ("X", "SYS", "NODE", "PHB", "PXB", "PIX", "NV#")
_TOPO_DEVICE_RE = re.compile(r"^(GPU|NIC)\d+$")


def _topo_cells(line: str, tabbed: bool) -> list[str]:
    if tabbed:
        return [c.strip() for c in line.split("\t")]
    return [c.strip() for c in re.split(r"\s{2,}", line.strip())]


def parse_topo_matrix(text: str) -> dict:
    """``nvidia-smi topo -m``.

    Returns ``devices`` (``GPU0``.., ``NIC0``.. in column order), ``links``
    (``links["GPU0"]["GPU1"] == "PHB"``; ``X`` on the diagonal; ``NV#`` kept as printed,
    e.g. ``NV18``), ``cpu_affinity``, ``numa_affinity`` (strings as printed, None for N/A),
    ``gpu_numa_id`` (int or None; None for every GPU on drivers without that column),
    ``affinity_columns`` (the affinity column names the header has), ``numa_node`` (per GPU:
    ``GPU NUMA ID``, else ``NUMA Affinity`` when it is one number, else None),
    ``nvlink_pairs`` (``[{"gpus": ["GPU0", "GPU1"], "links": 4}]`` for each ``NV#`` cell
    above the diagonal) and ``nic_legend`` (``{"NIC0": "mlx5_0"}``). ANSI escapes (header
    underline) are ignored; tabs or runs of spaces separate the cells.
    """
    lines = _lines(text)
    header_index = None
    for i, line in enumerate(lines):
        tokens = [c.strip() for c in re.split(r"\t|\s{2,}", line) if c.strip()]
        if "GPU0" not in tokens:
            continue
        if line[:1] in (" ", "\t") or tokens[0] != "GPU0":
            header_index = i
            break
        if len(tokens) > 1 and tokens[1] not in TOPO_LINK_CODES and not tokens[1].startswith("NV"):
            header_index = i
            break
    if header_index is None:
        raise ValueError("not nvidia-smi topo -m output: no header line with a GPU0 column")
    header_line = lines[header_index]
    tabbed = "\t" in header_line
    header = [c for c in _topo_cells(header_line, tabbed) if c]
    devices = [c for c in header if _TOPO_DEVICE_RE.match(c)]
    extra_cols = [c for c in header if not _TOPO_DEVICE_RE.match(c)]
    if not devices:
        raise ValueError("not nvidia-smi topo -m output: header has no GPU columns")
    links: dict = {}
    affinity: dict = {}
    for line in lines[header_index + 1 :]:
        if not line.strip():
            if links:
                break
            continue
        if line.strip().startswith("Legend"):
            break
        cells = _topo_cells(line, tabbed)
        name = cells[0] if cells else ""
        if not _TOPO_DEVICE_RE.match(name):
            continue
        values = cells[1:]
        if len(values) < len(devices):
            raise ValueError(
                "nvidia-smi topo -m: row %s has %d cells for %d devices"
                % (name, len(values), len(devices))
            )
        links[name] = {dev: values[i].strip() for i, dev in enumerate(devices)}
        rest = [v for v in values[len(devices) :] if v.strip()]
        affinity[name] = {col: rest[i] for i, col in enumerate(extra_cols) if i < len(rest)}
    gpus = [d for d in devices if d.startswith("GPU")]
    cpu_affinity = {}
    numa_affinity = {}
    gpu_numa_id = {}
    for gpu in gpus:
        row = affinity.get(gpu, {})
        cpu = row.get("CPU Affinity")
        numa = row.get("NUMA Affinity")
        cpu_affinity[gpu] = None if _na(cpu) else cpu
        numa_affinity[gpu] = None if _na(numa) else numa
        numa_id = row.get("GPU NUMA ID")
        gpu_numa_id[gpu] = None if _na(numa_id) else _number(numa_id)
    nvlink_pairs = []
    numa_node = {}
    for i, gpu in enumerate(gpus):
        numa = gpu_numa_id[gpu] if gpu_numa_id[gpu] is not None else numa_affinity[gpu]
        numa_node[gpu] = int(numa) if numa is not None and _INT_RE.match(str(numa)) else None
        for other in gpus[i + 1 :]:
            nv_match = re.match(r"^NV(\d+)$", links.get(gpu, {}).get(other, ""))
            if nv_match:
                nvlink_pairs.append({"gpus": [gpu, other], "links": int(nv_match.group(1))})
    nic_legend = {}
    in_nic_legend = False
    for line in lines[header_index + 1 :]:
        stripped = line.strip()
        if stripped.startswith("NIC Legend"):
            in_nic_legend = True
            continue
        if in_nic_legend:
            match = re.match(r"^(NIC\d+):\s*(\S+)$", stripped)
            if match:
                nic_legend[match.group(1)] = match.group(2)
    return {
        "devices": devices,
        "gpus": gpus,
        "links": links,
        "affinity_columns": extra_cols,
        "cpu_affinity": cpu_affinity,
        "numa_affinity": numa_affinity,
        "gpu_numa_id": gpu_numa_id,
        "numa_node": numa_node,
        "nvlink_pairs": nvlink_pairs,
        "nic_legend": nic_legend,
    }


# --- nvidia-smi topo -p2p -------------------------------------------------------------

TOPO_P2P_CODES = ("X", "OK", "CNS", "GNS", "TNS", "NS", "U", "DR")


def parse_topo_p2p(text: str) -> dict:
    """``nvidia-smi topo -p2p r|w|n|a|rw``.

    Returns ``devices`` (``GPU0``...), ``status`` (``status["GPU0"]["GPU1"] == "OK"``;
    cells X/OK/CNS/GNS/TNS/NS/U/DR, any other cell kept as printed) and ``legend``
    (code -> meaning; empty when the text has no legend). Tabs or spaces, ANSI stripped.
    """
    lines = _lines(text)
    devices = None
    status: dict = {}
    legend: dict = {}
    in_legend = False
    for line in lines:
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("Legend"):
            in_legend = True
            continue
        if in_legend:
            match = re.match(r"^(\S+)\s*=\s*(.+)$", stripped)
            if match:
                legend[match.group(1)] = match.group(2).strip()
            continue
        tokens = stripped.split()
        if devices is None:
            if tokens and all(re.match(r"^GPU\d+$", t) for t in tokens):
                devices = tokens
            continue
        if tokens and re.match(r"^GPU\d+$", tokens[0]):
            cells = tokens[1:]
            if len(cells) < len(devices):
                raise ValueError(
                    "nvidia-smi topo -p2p: row %s has %d cells for %d GPUs"
                    % (tokens[0], len(cells), len(devices))
                )
            status[tokens[0]] = {dev: cells[i] for i, dev in enumerate(devices)}
    if devices is None:
        raise ValueError("not nvidia-smi topo -p2p output: no header line of GPU columns")
    if not status:
        raise ValueError("nvidia-smi topo -p2p: header found but no GPU rows")
    return {"devices": devices, "status": status, "legend": legend}
