"""Parsers of GPU tool output: one place for the Ansible modules, the testinfra suites and
the CLI.

Standard library only, Python 3.9 syntax: Ansible ships this file to managed hosts as
module_utils. Every function is pure: text in, plain JSON-serializable dicts/lists out
(numbers as int/float). Unknown extra lines are ignored; input that is clearly not the
expected format raises ``ValueError`` with a message that says what was expected.

Formats are checked against real captured outputs (tests/unit/test_parsers.py reads them
from the shared captures folder), across driver generations:

- ``/proc/driver/nvidia/version``          -> :func:`parse_proc_driver_version`
- ``modinfo nvidia``                       -> :func:`parse_modinfo`
- ``nvidia-smi --query-gpu=... --format=csv`` -> :func:`parse_query_gpu_csv`
- ``nvidia-smi -q [-d ...]``               -> :func:`parse_nvidia_smi_q` (and the generic
  :func:`parse_nvidia_smi_q_tree`)
- ``nvidia-smi topo -m``                   -> :func:`parse_topo_matrix`
- ``nvidia-smi topo -p2p r|w|n|a|rw``      -> :func:`parse_topo_p2p`
- ``lspci -v/-vv/-vvv[-nn][-D]``           -> :func:`parse_lspci_vv`
- sysfs ``current_link_speed``             -> :func:`parse_sysfs_link_speed`,
  :func:`pcie_gen_from_speed`
- cuda-samples ``p2pBandwidthLatencyTest`` -> :func:`parse_p2p_bandwidth_latency_test`

More formats: :mod:`.kernlog` (Xid, AER), :mod:`.nvsmi` (nvlink -s, compute apps),
:mod:`.benchout` (nvbandwidth, nccl-tests, dcgmi diag), :mod:`.pcitopo` (bridge tree).
"""

from __future__ import annotations

import re

__all__ = [
    "strip_ansi",
    "parse_proc_driver_version",
    "parse_modinfo",
    "parse_query_gpu_csv",
    "parse_nvidia_smi_q_tree",
    "parse_nvidia_smi_q",
    "parse_topo_matrix",
    "parse_topo_p2p",
    "parse_lspci_vv",
    "parse_size",
    "pcie_gen_from_speed",
    "parse_sysfs_link_speed",
    "parse_p2p_bandwidth_latency_test",
    "TOPO_P2P_CODES",
    "TOPO_LINK_CODES",
]

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


# --- /proc/driver/nvidia/version ------------------------------------------------------

_NVRM_RE = re.compile(
    r"^NVRM version:\s*(?P<head>.*?Kernel Module(?:\s+for\s+(?P<arch1>\S+))?)\s+"
    r"(?P<version>\d+\.\d+(?:\.\d+)?)\s*(?P<rest>.*)$"
)


def parse_proc_driver_version(text: str) -> dict:
    """``/proc/driver/nvidia/version``.

    Open module:  ``NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05
    Release Build  (builder@host)  <date>``; proprietary: ``NVRM version: NVIDIA UNIX x86_64
    Kernel Module  550.54.14  <date>``. Returns ``version``, ``flavor`` ("open" or
    "proprietary"), ``arch``, ``build`` (the rest of the line), ``gcc`` (the GCC line's
    value, or None) and ``raw`` (the NVRM line). A missing final newline is fine.
    """
    nvrm = None
    gcc = None
    for line in _lines(text):
        line = line.strip()
        if line.startswith("NVRM version:") and nvrm is None:
            nvrm = line
        elif line.startswith("GCC version:") and gcc is None:
            gcc = line.split(":", 1)[1].strip() or None
    if nvrm is None:
        raise ValueError(
            "not /proc/driver/nvidia/version output: no 'NVRM version:' line "
            "(is the nvidia kernel module loaded?)"
        )
    match = _NVRM_RE.match(nvrm)
    if not match:
        raise ValueError("cannot find a driver version in the NVRM line: %r" % nvrm)
    head = match.group("head")
    arch = match.group("arch1")
    if not arch:
        arch_match = re.search(r"\b(x86_64|aarch64|ppc64le|arm64)\b", head)
        arch = arch_match.group(1) if arch_match else None
    return {
        "version": match.group("version"),
        "flavor": "open" if "Open Kernel Module" in head else "proprietary",
        "arch": arch,
        "build": re.sub(r"\s{2,}", "  ", match.group("rest").strip()) or None,
        "gcc": gcc,
        "raw": nvrm,
    }


# --- modinfo --------------------------------------------------------------------------

_MODINFO_LIST_KEYS = ("alias", "firmware", "parm", "softdep", "import_ns")


def parse_modinfo(text: str) -> dict:
    """``modinfo nvidia`` (or ``modinfo -k KERNEL nvidia``).

    Returns ``filename``, ``version``, ``license``, ``flavor`` ("open" for ``Dual MIT/GPL``,
    "proprietary" for ``NVIDIA``, else None), ``vermagic``, ``srcversion``, ``depends``
    (list), ``location`` ("dkms" under ``/updates/dkms/``, "updates" elsewhere under
    ``/updates/``, "kernel" under ``/kernel/``, else "other"), ``params`` (name ->
    description), ``firmware`` (list), ``name``, ``signer`` and ``fields`` (every other
    single-valued key, as printed).
    """
    fields: dict = {}
    lists: dict = {key: [] for key in _MODINFO_LIST_KEYS}
    params: dict = {}
    last_param = None
    seen = False
    for line in _lines(text):
        if not line.strip():
            continue
        if line[:1] in (" ", "\t"):
            # continuation of a multi-line parm description (or of a signature)
            if last_param is not None:
                params[last_param] = (params[last_param] + " " + line.strip()).strip()
            continue
        match = re.match(r"^([A-Za-z0-9_.-]+):\s*(.*)$", line)
        if not match:
            continue
        key, value = match.group(1), match.group(2).strip()
        seen = True
        last_param = None
        if key == "parm":
            name, _, desc = value.partition(":")
            name = name.strip()
            if name:
                params[name] = desc.strip()
                last_param = name
            lists["parm"].append(value)
        elif key in lists:
            lists[key].append(value)
        elif key not in fields:
            fields[key] = value
    if not seen or not any(k in fields for k in ("filename", "version", "license", "vermagic")):
        raise ValueError(
            "not modinfo output: no 'filename:', 'version:' or 'license:' line "
            "(modinfo prints 'ERROR: Module nvidia not found' when the module is missing)"
        )
    license_ = fields.get("license")
    if license_ == "Dual MIT/GPL":
        flavor = "open"
    elif license_ == "NVIDIA":
        flavor = "proprietary"
    else:
        flavor = None
    filename = fields.get("filename")
    if not filename:
        location = None
    elif "/updates/dkms/" in filename:
        location = "dkms"
    elif "/updates/" in filename:
        location = "updates"
    elif "/kernel/" in filename:
        location = "kernel"
    else:
        location = "other"
    depends_raw = fields.get("depends", "")
    depends = [d.strip() for d in depends_raw.split(",") if d.strip()]
    vermagic = fields.get("vermagic")
    return {
        "filename": filename,
        "version": fields.get("version"),
        "license": license_,
        "flavor": flavor,
        "vermagic": vermagic.strip() if vermagic else None,
        "srcversion": fields.get("srcversion"),
        "depends": depends,
        "location": location,
        "name": fields.get("name"),
        "signer": fields.get("signer"),
        "firmware": lists["firmware"],
        "params": params,
        "fields": fields,
    }


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


# --- lspci ----------------------------------------------------------------------------

_SIZE_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50, "E": 2**60}
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGTPE]?)(?:i?B)?$", re.I)


def parse_size(text: str):
    """lspci sizes ('16M', '32G', '256MB', '128GB', '512K', '1PB') -> bytes (binary
    units, as lspci means them). None when not a size."""
    match = _SIZE_RE.match((text or "").strip())
    if not match:
        return None
    number = float(match.group(1))
    return int(number * _SIZE_UNITS[match.group(2).upper()])


_BDF_HEADER_RE = re.compile(
    r"^(?P<bdf>(?:[0-9a-fA-F]{4,8}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])\s+"
    r"(?P<class>[^:\[]+?)(?:\s+\[(?P<class_id>[0-9a-fA-F]{4})\])?:\s+(?P<rest>.*)$"
)
_REGION_RE = re.compile(
    r"^(?:Region\s+(?P<index>\d+):\s+)?Memory at (?P<addr>\S+)\s+"
    r"\((?P<bits>\d+)-bit,\s+(?P<pref>non-prefetchable|prefetchable)\)(?P<rest>.*)$"
)
_REBAR_RE = re.compile(
    r"^BAR\s+(?P<bar>\d+):\s+current size:\s+(?P<cur>\S+),\s+supported:\s*(?P<sup>.*)$"
)
_SPEED_RE = re.compile(r"Speed\s+([\d.]+)GT/s(\s*\((?:downgraded|ok)\))?", re.I)
_WIDTH_RE = re.compile(r"Width\s+x(\d+)(\s*\((?:downgraded|ok)\))?", re.I)


def _indent_level(line: str) -> int:
    tabs = len(line) - len(line.lstrip("\t"))
    if tabs:
        return tabs
    spaces = len(line) - len(line.lstrip(" "))
    return (spaces + 7) // 8 if spaces else 0


def _link_fields(value: str, status: bool) -> dict:
    speed = _SPEED_RE.search(value)
    width = _WIDTH_RE.search(value)
    gts = float(speed.group(1)) if speed else None
    result = {
        "speed_gts": gts,
        "gen": _gen_or_none(gts),
        "width": int(width.group(1)) if width else None,
    }
    if status:
        result["speed_downgraded"] = bool(speed and speed.group(2) and "downgraded" in speed.group(2))
        result["width_downgraded"] = bool(width and width.group(2) and "downgraded" in width.group(2))
    return result


def _new_device(match) -> dict:
    rest = match.group("rest").strip()
    revision = None
    prog_if = None
    rev_match = re.search(r"\s*\(rev ([0-9a-fA-F]+)\)", rest)
    if rev_match:
        revision = rev_match.group(1)
    prog_match = re.search(r"\s*\(prog-if ([0-9a-fA-F]+)(?: \[[^\]]*\])?\)", rest)
    if prog_match:
        prog_if = prog_match.group(1)
    description = re.sub(r"\s*\(rev [0-9a-fA-F]+\)", "", rest)
    description = re.sub(r"\s*\(prog-if [^)]*\)", "", description).strip()
    vendor_id = device_id = None
    ids = re.search(r"\s*\[([0-9a-fA-F]{4}):([0-9a-fA-F]{4})\]$", description)
    if ids:
        vendor_id, device_id = ids.group(1).lower(), ids.group(2).lower()
        description = description[: ids.start()].strip()
    return {
        "bdf": match.group("bdf"),
        "class": match.group("class").strip(),
        "class_id": match.group("class_id"),
        "description": description,
        "vendor_id": vendor_id,
        "device_id": device_id,
        "revision": revision,
        "prog_if": prog_if,
        "subsystem": None,
        "physical_slot": None,
        "numa_node": None,
        "kernel_driver": None,
        "kernel_modules": [],
        "memory_regions": [],
        "rebar": None,
        "virtual_rebar": None,
        "lnkcap": None,
        "lnksta": None,
        "capabilities_access_denied": False,
        "bus": None,
        "acs_cap": None,
        "acs_ctl": None,
        "aer": None,
    }


_AER_KEYS = ("UESta", "UEMsk", "UESvrt", "CESta", "CEMsk", "AERCap", "RootCmd", "RootSta")


def _pm_flags(value: str) -> dict:
    """'RxErr- BadTLP+ ...' -> {'RxErr': False, 'BadTLP': True} (other tokens ignored)."""
    tokens = value.replace(",", " ").split()
    return {t[:-1]: t[-1] == "+" for t in tokens if len(t) > 1 and t[-1] in "+-"}


def parse_lspci_vv(text: str) -> list[dict]:
    """``lspci -v``/``-vv``/``-vvv`` blocks (with or without ``-nn``, ``-D``; tabs or the
    8-space indentation of copied output).

    Per device: ``bdf`` as printed, ``class``, ``class_id`` (with -nn), ``description``
    (vendor and device name), ``vendor_id``/``device_id`` (lowercase hex, with -nn, else
    None), ``revision``, ``subsystem``, ``physical_slot``, ``numa_node``, ``kernel_driver``,
    ``kernel_modules``, ``memory_regions`` (list of {``index`` (None in -v output),
    ``address``, ``bits``, ``prefetchable``, ``size_bytes``, ``size``, ``virtual``,
    ``disabled``}), ``rebar`` (from the Physical Resizable BAR capability: list of
    {``bar``, ``current_bytes``, ``supported_bytes``}, None when not shown),
    ``virtual_rebar`` (same, for the Virtual Resizable BAR capability), ``lnkcap``
    {``speed_gts``, ``gen``, ``width``}, ``lnksta`` (plus ``speed_downgraded``,
    ``width_downgraded``), ``capabilities_access_denied`` (non-root lspci), for bridges
    ``bus`` {``primary``, ``secondary``, ``subordinate``} (bus numbers as int, from the
    ``Bus:`` line) and ``acs_cap``/``acs_ctl`` (Access Control Services flags, e.g.
    ``{"ReqRedir": True, "CmpltRedir": True, ...}``; None when the capability is not shown),
    ``aer`` (Advanced Error Reporting, None when not shown: the ``UESta``, ``UEMsk``,
    ``UESvrt``, ``CESta``, ``CEMsk``, ``AERCap`` (root ports: ``RootCmd``, ``RootSta``) lines
    as flag dicts, plus ``uncorrectable``/``correctable``: names set in UESta/CESta, masked or
    not). The bridge above a device: :func:`rigctl.core.pcitopo.bridge_parents`.
    """
    devices: list = []
    current = None
    capability = None
    aer_key = None
    for raw in _lines(text):
        if not raw.strip():
            continue
        level = _indent_level(raw)
        line = raw.strip()
        if level == 0:
            match = _BDF_HEADER_RE.match(line)
            if match:
                current = _new_device(match)
                devices.append(current)
                capability = None
            else:
                current = None
            continue
        if current is None:
            continue
        if level == 1:
            capability = None
            if line.startswith("Capabilities:"):
                value = line.split(":", 1)[1].strip()
                if "<access denied>" in value:
                    current["capabilities_access_denied"] = True
                elif "Physical Resizable BAR" in value:
                    capability = "rebar"
                    if current["rebar"] is None:
                        current["rebar"] = []
                elif "Virtual Resizable BAR" in value:
                    capability = "virtual_rebar"
                    if current["virtual_rebar"] is None:
                        current["virtual_rebar"] = []
                elif "Express" in value:
                    capability = "express"
                elif "Access Control Services" in value:
                    capability = "acs"
                elif "Advanced Error Reporting" in value:
                    capability = "aer"
                    current["aer"] = {}
                    aer_key = None
                else:
                    capability = "other"
                continue
            region = _REGION_RE.match(line)
            if region:
                rest = region.group("rest")
                size_match = re.search(r"\[size=([^\]]+)\]", rest)
                size = size_match.group(1) if size_match else None
                index = region.group("index")
                current["memory_regions"].append(
                    {
                        "index": int(index) if index is not None else None,
                        "address": region.group("addr"),
                        "bits": int(region.group("bits")),
                        "prefetchable": region.group("pref") == "prefetchable",
                        "size": size,
                        "size_bytes": parse_size(size) if size else None,
                        "virtual": "[virtual]" in rest,
                        "disabled": "[disabled]" in rest,
                    }
                )
                continue
            key, sep, value = line.partition(":")
            if not sep:
                continue
            value = value.strip()
            if key == "Subsystem":
                current["subsystem"] = value
            elif key == "Physical Slot":
                current["physical_slot"] = value
            elif key == "NUMA node":
                current["numa_node"] = _number(value)
            elif key == "Kernel driver in use":
                current["kernel_driver"] = value
            elif key == "Kernel modules":
                current["kernel_modules"] = [m.strip() for m in value.split(",") if m.strip()]
            elif key == "Bus":
                bus = dict(re.findall(r"(primary|secondary|subordinate)=([0-9a-fA-F]+)", value))
                if len(bus) == 3:
                    current["bus"] = {k: int(v, 16) for k, v in bus.items()}
            continue
        # level >= 2: inside a capability
        if capability in ("rebar", "virtual_rebar") and level == 2:
            match = _REBAR_RE.match(line)
            if match:
                supported = []
                for token in match.group("sup").split():
                    size = parse_size(token)
                    if size is not None:
                        supported.append(size)
                current[capability].append(
                    {
                        "bar": int(match.group("bar")),
                        "current_bytes": parse_size(match.group("cur")),
                        "supported_bytes": supported,
                    }
                )
            continue
        if capability == "acs" and level == 2:
            key, sep, value = line.partition(":")
            if key in ("ACSCap", "ACSCtl") and sep:
                flags = dict(re.findall(r"([A-Za-z]+)([+-])", value))
                current["acs_cap" if key == "ACSCap" else "acs_ctl"] = {
                    k: v == "+" for k, v in flags.items()
                }
            continue
        if capability == "aer":
            key, sep, value = line.partition(":")
            if level == 2:
                aer_key = key if sep and key in _AER_KEYS else None
                if aer_key:
                    current["aer"][key] = _pm_flags(value)
            elif aer_key is not None:
                current["aer"][aer_key].update(_pm_flags(line))
            continue
        if capability == "express" and level == 2:
            key, sep, value = line.partition(":")
            if key == "LnkCap" and sep:
                current["lnkcap"] = _link_fields(value, status=False)
            elif key == "LnkSta" and sep:
                current["lnksta"] = _link_fields(value, status=True)
    for dev in devices:
        aer = dev["aer"]
        if aer is not None:
            aer["uncorrectable"] = [k for k, v in (aer.get("UESta") or {}).items() if v]
            aer["correctable"] = [k for k, v in (aer.get("CESta") or {}).items() if v]
    if not devices and any(line.strip() for line in _lines(text)):
        raise ValueError(
            "not lspci output: no device line like '01:00.0 VGA compatible controller: ...'"
        )
    return devices


# --- PCIe link speeds -----------------------------------------------------------------

_GEN_BY_SPEED = ((2.5, 1), (5.0, 2), (8.0, 3), (16.0, 4), (32.0, 5), (64.0, 6), (128.0, 7))


def pcie_gen_from_speed(gts: float) -> int:
    """PCIe generation of a link speed in GT/s: 2.5->1, 5->2, 8->3, 16->4, 32->5, 64->6.
    ValueError for a speed that is not a PCIe rate."""
    try:
        value = float(gts)
    except (TypeError, ValueError):
        raise ValueError("not a PCIe link speed: %r" % (gts,)) from None
    for speed, gen in _GEN_BY_SPEED:
        if abs(value - speed) < 0.05:
            return gen
    raise ValueError("not a PCIe link speed: %r GT/s (expected 2.5, 5, 8, 16, 32 or 64)" % gts)


def _gen_or_none(gts):
    if gts is None:
        return None
    try:
        return pcie_gen_from_speed(gts)
    except ValueError:
        return None


def parse_sysfs_link_speed(text: str):
    """sysfs ``current_link_speed``/``max_link_speed``: '16.0 GT/s PCIe', '8.0 GT/s',
    '2.5 GT/s PCIe', '5 GT/s' -> float GT/s; 'Unknown' or empty -> None."""
    value = (text or "").strip()
    if not value or value.lower().startswith("unknown"):
        return None
    match = re.match(r"^(\d+(?:\.\d+)?)\s*GT/s\b", value)
    if not match:
        raise ValueError("not a sysfs PCIe link speed: %r (expected like '16.0 GT/s PCIe')" % value)
    return float(match.group(1))


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
