"""Parsers of more nvidia-smi outputs (the rest are in :mod:`rigctl.core.parsers`).

Standard library only, Python 3.9 syntax (shipped to managed hosts as module_utils).

- ``nvidia-smi nvlink -s`` (``--status``)   -> :func:`parse_nvlink_status`
- ``nvidia-smi --query-compute-apps=FIELDS --format=csv[,noheader][,nounits]``
                                            -> :func:`parse_query_compute_apps_csv`

(The clocks event / throttle reasons of ``nvidia-smi -q -d PERFORMANCE`` are read by
:func:`rigctl.core.smiquery.parse_nvidia_smi_q`.)
"""

from __future__ import annotations

import re

from . import gpudb, parsers, smiquery

__all__ = ["parse_nvlink_status", "parse_query_compute_apps_csv"]

_NVLINK_GPU_RE = re.compile(r"^GPU (?P<index>\d+): (?P<name>.*?)\s*\(UUID: (?P<uuid>[^)]*)\)\s*$")
_NVLINK_LINK_RE = re.compile(r"^Link (?P<link>\d+): (?:Speed )?(?P<value>.*?)\s*$")
_SPEED_RE = re.compile(r"^(?P<speed>\d+(?:\.\d+)?) ?GB/s$")


def parse_nvlink_status(text: str) -> dict:
    """``nvidia-smi nvlink -s``: per GPU the state of each NVLink link.

    Lines: ``GPU 0: NVIDIA RTX A6000 (UUID: GPU-...)``, then one ``\\t Link N: 14.062
    GB/s`` (or ``Link N: <inactive>``) per link, or the line ``NVML: Unable to retrieve
    NVLink information as all links are inActive`` (tabs or spaces before ``Link``).

    Returns ``{"gpus": [...]}`` with per GPU ``index``, ``name``, ``uuid``, ``links``
    (list of {``link``, ``active``, ``speed_gbs`` (float or None)}), ``all_inactive``
    (the NVML message was printed, or every listed link is inactive), ``active_links``
    (count) and ``total_gbs`` (sum of the active links' speeds, per direction as printed).
    ValueError when there is no ``GPU N: ... (UUID: ...)`` line (e.g. ``Failed to
    initialize NVML``) or a ``Link`` line comes before any GPU.
    """
    gpus = []
    current = None
    for number, raw in enumerate(parsers._lines(text), 1):
        line = raw.strip()
        if not line:
            continue
        match = _NVLINK_GPU_RE.match(line)
        if match:
            current = {
                "index": int(match.group("index")),
                "name": match.group("name"),
                "uuid": match.group("uuid").strip(),
                "links": [],
                "all_inactive": False,
                "active_links": 0,
                "total_gbs": 0.0,
            }
            gpus.append(current)
            continue
        match = _NVLINK_LINK_RE.match(line)
        if match:
            if current is None:
                raise ValueError(
                    "nvidia-smi nvlink -s line %d: a Link line before any 'GPU N: ...' line: %r"
                    % (number, line)
                )
            speed = _SPEED_RE.match(match.group("value"))
            link = {
                "link": int(match.group("link")),
                "active": speed is not None,
                "speed_gbs": float(speed.group("speed")) if speed else None,
            }
            current["links"].append(link)
            if speed:
                current["active_links"] += 1
                current["total_gbs"] = round(current["total_gbs"] + link["speed_gbs"], 3)
            continue
        if current is not None and "all links are inactive" in line.lower():
            current["all_inactive"] = True
    if not gpus:
        first = next((raw.strip() for raw in parsers._lines(text) if raw.strip()), "")
        raise ValueError(
            "not nvidia-smi nvlink -s output: no 'GPU N: <name> (UUID: GPU-...)' line "
            "(first line: %r)" % first[:120]
        )
    for gpu in gpus:
        if gpu["links"] and not gpu["active_links"]:
            gpu["all_inactive"] = True
    return {"gpus": gpus}


def parse_query_compute_apps_csv(text: str, fields=None) -> list:
    """``nvidia-smi --query-compute-apps=FIELDS --format=csv`` (the same CSV rules as
    :func:`rigctl.core.smiquery.parse_query_gpu_csv`, which reads it: header units dropped,
    ``[N/A]`` -> None, `` MiB`` stripped).

    One dict per process with the fields as printed (``pid``, ``process_name``,
    ``gpu_bus_id``, ``gpu_uuid``, ``used_gpu_memory``, ...) plus ``bus_id`` (``gpu_bus_id``
    normalized to ``dddd:bb:dd.f``, None without that field) and ``used_memory_mib`` (int or
    None). ``process_name`` stays a string. No processes: only the header, an empty list.
    """
    rows = smiquery.parse_query_gpu_csv(text, fields=fields)
    for row in rows:
        if "process_name" in row and row["process_name"] is not None:
            row["process_name"] = str(row["process_name"])
        bus = row.get("gpu_bus_id")
        row["bus_id"] = gpudb.normalize_bus_id(bus) if isinstance(bus, str) else None
        used = row.get("used_gpu_memory", row.get("used_memory"))
        row["used_memory_mib"] = used if isinstance(used, int) else None
        if "pid" in row and not isinstance(row["pid"], int):
            raise ValueError(
                "not --query-compute-apps CSV: pid %r is not a number" % (row["pid"],)
            )
    return rows
