"""PCI device parsers: ``lspci -v/-vv/-vvv[-nn][-D]``, BAR sizes, sysfs PCIe link speeds.

Standard library only, Python 3.9 syntax (shipped to managed hosts as module_utils).
Pure functions: text in, JSON-serializable dicts/lists out; input that is clearly not the
expected format raises ``ValueError``. Shared text helpers are in :mod:`.parsers`.
"""

from __future__ import annotations

import re

from .parsers import _lines, _number

__all__ = [
    "parse_lspci_vv",
    "parse_size",
    "pcie_gen_from_speed",
    "parse_sysfs_link_speed",
]

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
