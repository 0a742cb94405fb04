"""Shared text helpers of the GPU tool output parsers (ANSI stripping, line splitting,
number and unit parsing).

Standard library only, Python 3.9 syntax: Ansible ships this file to managed hosts as
module_utils. The parsers themselves are by tool:

- :mod:`.drvinfo`: ``/proc/driver/nvidia/version``, ``modinfo nvidia``
- :mod:`.smiquery`: ``nvidia-smi --query-gpu=... --format=csv``, ``nvidia-smi -q [-d ...]``
- :mod:`.smitopo`: ``nvidia-smi topo -m``, ``nvidia-smi topo -p2p r|w|n|a|rw``
- :mod:`.pcidev`: ``lspci -v/-vv/-vvv[-nn][-D]``, sysfs ``current_link_speed``
- :mod:`.p2pbench`: cuda-samples ``p2pBandwidthLatencyTest``

More formats: :mod:`.kernlog` (Xid, AER), :mod:`.nvsmi` (nvlink -s, compute apps),
:mod:`.benchout` (nvbandwidth, nccl-tests, dcgmi diag), :mod:`.pcitopo` (bridge tree).
"""

from __future__ import annotations

import re

__all__ = ["strip_ansi"]

# --- shared helpers --------------------------------------------------------------------

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")


def strip_ansi(text: str) -> str:
    """Remove ANSI escape sequences (nvidia-smi underlines topo headers: ESC[4m ... ESC[0m)."""
    return _ANSI_RE.sub("", text or "")


def _lines(text: str) -> list[str]:
    if text is None:
        raise ValueError("expected text, got None")
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return strip_ansi(text).replace("\r\n", "\n").replace("\r", "\n").split("\n")


_INT_RE = re.compile(r"^[-+]?\d+$")
_FLOAT_RE = re.compile(r"^[-+]?(\d+\.\d*|\.\d+)([eE][-+]?\d+)?$")


def _number(value: str):
    """'350' -> 350, '350.00' -> 350.0, anything else -> None."""
    value = value.strip()
    if _INT_RE.match(value):
        return int(value)
    if _FLOAT_RE.match(value):
        return float(value)
    return None


def _na(value) -> bool:
    return value is None or value.strip() in ("", "N/A", "n/a", "Unknown", "Not Found")


def _value_with_unit(value, units=()):
    """'24576 MiB' -> 24576, '350.00 W' -> 350.0, '16x' -> 16, 'N/A' -> None."""
    if value is None:
        return None
    value = value.strip()
    if _na(value) or value.startswith("["):
        return None
    for unit in units:
        if value.endswith(unit):
            value = value[: -len(unit)].strip()
            break
    return _number(value)
