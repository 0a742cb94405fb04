"""cuda-samples ``p2pBandwidthLatencyTest`` output parser.

Standard library only, Python 3.9 syntax (shipped to managed hosts as module_utils).
Pure functions: text in, JSON-serializable dicts/lists out; input that is clearly not the
expected format raises ``ValueError``. Shared text helpers are in :mod:`.parsers`.
"""

from __future__ import annotations

import re

from .parsers import _INT_RE, _lines, _number

__all__ = [
    "parse_p2p_bandwidth_latency_test",
]

# --- cuda-samples p2pBandwidthLatencyTest ---------------------------------------------

_P2P_DEVICE_RE = re.compile(
    r"^Device:\s*(\d+),\s*(.+?),\s*pciBusID:\s*([0-9a-fA-F]+),\s*pciDeviceID:\s*([0-9a-fA-F]+),"
    r"\s*pciDomainID:\s*([0-9a-fA-F]+)"
)
_P2P_ACCESS_RE = re.compile(r"^Device=(\d+)\s+(CAN|CANNOT)\s+Access Peer Device=(\d+)")
_P2P_TITLE_RE = re.compile(r"^(.*Matrix)\s*\((GB/s|us)\)\s*$")


def _numeric_row(line: str):
    """'     0 829.35  11.17 ' -> (0, [829.35, 11.17]); None for non-table lines."""
    tokens = line.split()
    if len(tokens) < 2 or not _INT_RE.match(tokens[0]):
        return None
    values = []
    for token in tokens[1:]:
        number = _number(token)
        if number is None:
            return None
        values.append(float(number))
    return int(tokens[0]), values


def parse_p2p_bandwidth_latency_test(text: str) -> dict:
    """cuda-samples ``p2pBandwidthLatencyTest`` output.

    Returns ``devices`` (list of {``index``, ``name``, ``pci_bus_id`` (hex as printed),
    ``pci_device_id``, ``pci_domain_id``}), ``peer_access`` (list of {``device``, ``peer``,
    ``can_access``} from the ``Device=0 CAN Access Peer Device=1`` lines), ``can_access``
    (the ``P2P Connectivity Matrix`` as list of lists of bool; None when absent),
    ``matrices`` (title -> list of rows of floats, e.g.
    ``"Unidirectional P2P=Disabled Bandwidth Matrix (GB/s)"``; for latency matrices the
    GPU table) and ``cpu_matrices`` (latency title -> the CPU table that follows it).
    Partial output (one matrix only) is fine.
    """
    devices = []
    peer_access = []
    can_access = None
    matrices: dict = {}
    cpu_matrices: dict = {}
    target = None  # the list being filled with rows
    for raw in _lines(text):
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped:
            continue
        match = _P2P_DEVICE_RE.match(stripped)
        if match:
            devices.append(
                {
                    "index": int(match.group(1)),
                    "name": match.group(2).strip(),
                    "pci_bus_id": match.group(3),
                    "pci_device_id": match.group(4),
                    "pci_domain_id": match.group(5),
                }
            )
            target = None
            continue
        match = _P2P_ACCESS_RE.match(stripped)
        if match:
            peer_access.append(
                {
                    "device": int(match.group(1)),
                    "peer": int(match.group(3)),
                    "can_access": match.group(2) == "CAN",
                }
            )
            target = None
            continue
        if stripped == "P2P Connectivity Matrix":
            can_access = []
            target = ("connectivity", can_access)
            continue
        match = _P2P_TITLE_RE.match(stripped)
        if match:
            title = "%s (%s)" % (match.group(1).strip(), match.group(2))
            matrices[title] = []
            target = ("matrix", matrices[title], title)
            continue
        tokens = stripped.split()
        if tokens and tokens[0] in ("D\\D", "GPU"):
            continue
        if tokens and tokens[0] == "CPU" and target and target[0] in ("matrix", "cpu"):
            title = target[2]
            cpu_matrices[title] = []
            target = ("cpu", cpu_matrices[title], title)
            continue
        row = _numeric_row(stripped)
        if row is not None and target is not None:
            if target[0] == "connectivity":
                target[1].append([v != 0 for v in row[1]])
            else:
                target[1].append(row[1])
            continue
        target = None
    if not devices and not matrices and can_access is None:
        raise ValueError(
            "not p2pBandwidthLatencyTest output: no 'Device: N, ...' lines and no "
            "'... Matrix (GB/s)' / '... Matrix (us)' tables"
        )
    return {
        "devices": devices,
        "peer_access": peer_access,
        "can_access": can_access,
        "matrices": matrices,
        "cpu_matrices": cpu_matrices,
    }
