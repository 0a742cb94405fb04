"""PCI bridge topology from ``lspci -vv`` devices (the output of
:func:`rigctl.core.pcidev.parse_lspci_vv`).

Standard library only, Python 3.9 syntax (shipped to managed hosts as module_utils).
A bridge's ``Bus: primary=00, secondary=01, subordinate=08`` line says which bus it opens
(``secondary``) and the range below it (up to ``subordinate``); a device on bus ``B`` sits
directly below the bridge whose secondary bus is ``B`` (same PCI domain). Devices can come
from several lspci runs (e.g. one of the GPUs, one of the bridges): pass them all.
"""

from __future__ import annotations

from . import gpudb

__all__ = ["bridge_parents", "upstream_bridges"]


def _bdf(device) -> str:
    return gpudb.normalize_bus_id(device["bdf"])


def _bus_of(bus_id: str):
    domain, bus, _ = bus_id.split(":")
    return domain, int(bus, 16)


def bridge_parents(devices) -> dict:
    """Bus id (``dddd:bb:dd.f``) of every device -> bus id of the bridge directly above
    it, or None (a root port, or a bridge the text does not show)."""
    by_secondary = {}
    for dev in devices:
        bus = dev.get("bus")
        if bus and bus.get("secondary") is not None:
            domain = _bus_of(_bdf(dev))[0]
            by_secondary[(domain, bus["secondary"])] = _bdf(dev)
    return {_bdf(dev): by_secondary.get(_bus_of(_bdf(dev))) for dev in devices}


def upstream_bridges(devices, bus_id: str) -> list:
    """The bridges above ``bus_id`` (any spelling; it need not be among ``devices``),
    nearest first, up to the first one whose parent is not shown. ValueError for a bus id
    that is not one."""
    target = gpudb.normalize_bus_id(bus_id)
    by_secondary = {}
    for dev in devices:
        bus = dev.get("bus")
        if bus and bus.get("secondary") is not None:
            by_secondary[(_bus_of(_bdf(dev))[0], bus["secondary"])] = _bdf(dev)
    path = []
    current = target
    while True:
        parent = by_secondary.get(_bus_of(current))
        if parent is None or parent in path or parent == current:
            return path
        path.append(parent)
        current = parent
