"""nvidia-smi query parsers: ``--query-gpu=... --format=csv`` and ``-q [-d ...]``.

Standard library only, Python 3.9 syntax (shipped to managed hosts as module_utils).
Pure functions: text in, JSON-serializable dicts/lists out; input that is clearly not the
expected format raises ``ValueError``. Shared text helpers are in :mod:`.parsers`.
"""

from __future__ import annotations

import re

from .parsers import _lines, _na, _number, _value_with_unit

__all__ = [
    "parse_query_gpu_csv",
    "parse_nvidia_smi_q_tree",
    "parse_nvidia_smi_q",
]

# --- nvidia-smi --query-gpu CSV -------------------------------------------------------

_CSV_UNITS = (" MiB", " W", " MHz", " %", " us", " ms", " KB/s", " C")
_CSV_NONE = ("N/A", "[N/A]", "[Not Supported]", "")
# Fields whose values look numeric but are identifiers or versions ("565.77", "2.1", "8.9").
_CSV_STRING_FIELDS = frozenset(
    (
        "timestamp",
        "driver_version",
        "kmd_version",
        "vbios_version",
        "name",
        "gpu_name",
        "serial",
        "gpu_serial",
        "uuid",
        "gpu_uuid",
        "pci.bus_id",
        "gpu_bus_id",
        "compute_cap",
        "hostname",
        "fabric.cliqueId",
        "fabric.clusterUuid",
    )
)
_HEADER_UNIT_RE = re.compile(r"\s*\[[^\]]*\]\s*$")
_FIELD_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def _csv_value(field: str, raw: str):
    value = raw.strip()
    if value in _CSV_NONE or (value.startswith("[") and value.endswith("]")):
        # [N/A], [Not Supported], [Requested functionality has been deprecated],
        # [Insufficient Permissions], [Unknown Error]: no value
        return None
    if field in _CSV_STRING_FIELDS or field.startswith("inforom."):
        return value
    number = _number(value)
    if number is not None:
        return number
    for unit in _CSV_UNITS:
        if value.endswith(unit):
            number = _number(value[: -len(unit)])
            if number is not None:
                return number
    return value


def _split_csv_row(line: str, width: int) -> list[str]:
    cells = [c.strip() for c in line.split(",")]
    if len(cells) != width:
        alt = [c.strip() for c in line.split(", ")]
        if len(alt) == width:
            return alt
    return cells


def parse_query_gpu_csv(text: str, fields=None) -> list[dict]:
    """``nvidia-smi --query-gpu=FIELDS --format=csv[,noheader][,nounits]``.

    With ``fields`` None the first line is the header (unit suffixes such as `` [MiB]`` are
    dropped: keys are the field names as nvidia-smi prints them, e.g. ``memory.total``).
    With ``fields`` (a list, or a comma-separated string) the text has no header; a header
    line that is there anyway is skipped. One dict per GPU line. Values: int/float where
    numeric (units `` MiB``/`` W``/`` MHz``/`` %`` stripped), None for ``[N/A]``,
    ``[Not Supported]``, ``N/A`` and other bracketed no-value markers, strings otherwise
    (``Enabled``, bus ids, versions, hex ids as printed).
    """
    lines = [line.rstrip() for line in _lines(text) if line.strip()]
    if fields is not None:
        if isinstance(fields, str):
            fields = [f.strip() for f in fields.split(",") if f.strip()]
        names = list(fields)
        if not names:
            raise ValueError("parse_query_gpu_csv: empty field list")
        if lines:
            first = [_HEADER_UNIT_RE.sub("", c.strip()) for c in lines[0].split(",")]
            if first == names:
                lines = lines[1:]
    else:
        if not lines:
            return []
        names = [_HEADER_UNIT_RE.sub("", c.strip()) for c in lines[0].split(",")]
        bad = [n for n in names if not _FIELD_NAME_RE.match(n)]
        if bad:
            raise ValueError(
                "not nvidia-smi --query-gpu CSV: header has %r, which is not a field name "
                "(first line: %r)" % (bad[0], lines[0][:120])
            )
        lines = lines[1:]
    rows = []
    for number, line in enumerate(lines, 1):
        cells = _split_csv_row(line, len(names))
        if len(cells) != len(names):
            raise ValueError(
                "not nvidia-smi --query-gpu CSV: row %d has %d values for %d fields: %r"
                % (number, len(cells), len(names), line[:200])
            )
        rows.append({name: _csv_value(name, cells[i]) for i, name in enumerate(names)})
    return rows


# --- nvidia-smi -q --------------------------------------------------------------------

_GPU_HEADER_RE = re.compile(r"^GPU\s+([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7])\s*$")


def _tree_put(node: dict, key: str, value):
    if key not in node:
        node[key] = value
        return
    n = 2
    while "%s#%d" % (key, n) in node:
        n += 1
    node["%s#%d" % (key, n)] = value


def parse_nvidia_smi_q_tree(text: str) -> dict:
    """The generic indentation tree of ``nvidia-smi -q`` output.

    Returns ``{"header": {key: value}, "gpus": [{"bus_id": ..., "tree": {...}}]}`` where
    each tree maps key -> string value, or section name -> nested dict. A key repeated in
    one section (process lists) is kept as ``key#2``, ``key#3``...
    """
    header: dict = {}
    gpus: list = []
    stack: list = [(-1, header)]
    seen_log = False
    for raw in _lines(text):
        line = raw.expandtabs(4).rstrip()
        if not line.strip():
            continue
        stripped = line.strip()
        if stripped.startswith("=") and "NVSMI LOG" in stripped:
            seen_log = True
            continue
        indent = len(line) - len(line.lstrip(" "))
        if indent == 0:
            gpu_match = _GPU_HEADER_RE.match(stripped)
            if gpu_match:
                tree: dict = {}
                gpus.append({"bus_id": gpu_match.group(1), "tree": tree})
                stack = [(0, tree)]
                continue
            if gpus:
                # a top-level line after the GPU blocks (unit data, summaries): ignore
                stack = [(-1, {})]
        while len(stack) > 1 and stack[-1][0] >= indent:
            stack.pop()
        node = stack[-1][1]
        if ":" in stripped:
            key, _, value = stripped.partition(":")
            _tree_put(node, key.strip(), value.strip())
        else:
            child: dict = {}
            _tree_put(node, stripped, child)
            stack.append((indent, child))
    if not seen_log and not gpus and "Driver Version" not in header:
        raise ValueError(
            "not nvidia-smi -q output: no '==============NVSMI LOG==============' banner, "
            "no 'Driver Version' and no 'GPU <bus id>' block"
        )
    return {"header": header, "gpus": gpus}


def _get(tree, *path):
    node = tree
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _first(tree, *paths):
    for path in paths:
        value = _get(tree, *path)
        if value is not None:
            return value
    return None


def _leaf_str(value):
    if not isinstance(value, str) or _na(value):
        return None
    return value


def parse_nvidia_smi_q(text: str) -> dict:
    """``nvidia-smi -q`` (full, or with ``-d MEMORY,POWER,PCI``; any driver layout).

    Returns ``{"driver_version", "cuda_version", "attached_gpus", "timestamp", "gpus": [...]}``
    with per GPU ``bus_id``, ``product_name``, ``product_brand``, ``architecture``,
    ``uuid``, ``vbios_version``, ``persistence_mode`` ("Enabled"/"Disabled" as printed),
    ``persistence_mode_enabled`` (bool), ``fb_total_mib``, ``fb_used_mib``,
    ``bar1_total_mib``, ``power`` {``current_limit_w``, ``requested_limit_w``,
    ``default_limit_w``, ``min_limit_w``, ``max_limit_w``, ``draw_w``}, ``pci``
    {``link_gen_max``, ``link_gen_current``, ``link_gen_device_max``, ``link_gen_host_max``,
    ``link_width_max``, ``link_width_current``, ``device_id``, ``sub_system_id``,
    ``bus_id``}, ``performance_state``, ``clocks_event_reasons`` (reason -> ``"Active"``/``"Not
    Active"``, nested reasons flattened; the ``Clocks Event Reasons`` block, ``Clocks Throttle
    Reasons`` before R535), ``clocks_event_reasons_active`` (list), ``clocks_event_counters_us``
    (``Clocks Event Reasons Counters``). What the text does not show is None (``-d`` limits it).

    Older drivers print ``Power Readings`` with ``Power Limit`` and ``Enforced Power Limit``;
    newer ones ``GPU Power Readings`` with ``Current``/``Requested Power Limit`` and, from
    R570, ``Average``/``Instantaneous Power Draw``: all map to the same keys.
    """
    parsed = parse_nvidia_smi_q_tree(text)
    header = parsed["header"]
    attached = _value_with_unit(header.get("Attached GPUs"))
    gpus = []
    for entry in parsed["gpus"]:
        tree = entry["tree"]
        power_section = None
        for name in ("GPU Power Readings", "Power Readings"):
            if isinstance(tree.get(name), dict):
                power_section = tree[name]
                break
        power_section = power_section or {}

        def watts(*keys, _section=power_section):
            for key in keys:
                if key in _section:
                    return _value_with_unit(_section[key], (" W",))
            return None

        pci = tree.get("PCI") if isinstance(tree.get("PCI"), dict) else {}
        link = pci.get("GPU Link Info") if isinstance(pci.get("GPU Link Info"), dict) else {}
        gen = link.get("PCIe Generation") if isinstance(link.get("PCIe Generation"), dict) else {}
        width = link.get("Link Width") if isinstance(link.get("Link Width"), dict) else {}
        persistence = _leaf_str(tree.get("Persistence Mode"))
        reasons = _first(tree, ("Clocks Event Reasons",), ("Clocks Throttle Reasons",))
        if isinstance(reasons, dict):
            reasons = {k: v for k, v in reasons.items() if isinstance(v, str)}
            active = [k for k, v in reasons.items() if v == "Active"]
        else:
            reasons = active = None
        counters = _first(tree, ("Clocks Event Reasons Counters",), ("Clocks Throttle Reasons Counters",))
        gpus.append(
            {
                "bus_id": entry["bus_id"],
                "product_name": _leaf_str(tree.get("Product Name")),
                "product_brand": _leaf_str(tree.get("Product Brand")),
                "architecture": _leaf_str(tree.get("Product Architecture")),
                "uuid": _leaf_str(tree.get("GPU UUID")),
                "serial": _leaf_str(tree.get("Serial Number")),
                "vbios_version": _leaf_str(tree.get("VBIOS Version")),
                "persistence_mode": persistence,
                "persistence_mode_enabled": (persistence == "Enabled") if persistence else None,
                "performance_state": _leaf_str(tree.get("Performance State")),
                "clocks_event_reasons": reasons,
                "clocks_event_reasons_active": active,
                "clocks_event_counters_us": {
                    k: _value_with_unit(v, (" us",)) for k, v in counters.items() if isinstance(v, str)
                } if isinstance(counters, dict) else None,
                "fb_total_mib": _value_with_unit(_get(tree, "FB Memory Usage", "Total"), (" MiB",)),
                "fb_used_mib": _value_with_unit(_get(tree, "FB Memory Usage", "Used"), (" MiB",)),
                "bar1_total_mib": _value_with_unit(
                    _get(tree, "BAR1 Memory Usage", "Total"), (" MiB",)
                ),
                "power": {
                    "current_limit_w": watts("Current Power Limit", "Enforced Power Limit"),
                    "requested_limit_w": watts("Requested Power Limit", "Power Limit"),
                    "default_limit_w": watts("Default Power Limit"),
                    "min_limit_w": watts("Min Power Limit"),
                    "max_limit_w": watts("Max Power Limit"),
                    "draw_w": watts(
                        "Power Draw", "Instantaneous Power Draw", "Average Power Draw"
                    ),
                },
                "pci": {
                    "link_gen_max": _value_with_unit(gen.get("Max")),
                    "link_gen_current": _value_with_unit(gen.get("Current")),
                    "link_gen_device_max": _value_with_unit(gen.get("Device Max")),
                    "link_gen_host_max": _value_with_unit(gen.get("Host Max")),
                    "link_width_max": _value_with_unit(width.get("Max"), ("x",)),
                    "link_width_current": _value_with_unit(width.get("Current"), ("x",)),
                    "device_id": _leaf_str(pci.get("Device Id")),
                    "sub_system_id": _leaf_str(pci.get("Sub System Id")),
                    "bus_id": _leaf_str(pci.get("Bus Id")),
                },
            }
        )
    return {
        "timestamp": _leaf_str(header.get("Timestamp")),
        "driver_version": _leaf_str(header.get("Driver Version")),
        "cuda_version": _leaf_str(header.get("CUDA Version")),
        "attached_gpus": attached,
        "gpus": gpus,
    }
