"""The power budget rule of ``rigctl inventory check``: the GPUs' power limits a rig would
get (``rig_power_limit_w`` for every GPU, ``rig_power_limit_overrides`` for the GPUs they
name) plus ``rig_platform_watts`` must fit ``rig_psu_max_load_percent`` of the PSUs' rated
output (``rig_psu_watts``). The arithmetic is :func:`rigctl.core.health.power_budget`, the
same that ``rigctl verify`` applies to the live limits and to the GPUs' default limits.

The rule applies when ``rig_psu_watts``, ``rig_power_limit_w`` and ``rig_gpu_count`` are
set (without ``rig_power_limit_w`` the cards keep their default limits, which only the rig
knows: verify warns about those). Values that are missing, templated or invalid (reported
on their own) skip it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rigctl.core import health

PSU_MIN_W = 100
PSU_MAX_W = 5000


def psu_watts_problem(value: Any) -> tuple[str, str] | None:
    """(message, fix) when ``rig_psu_watts`` is not a PSU rating in whole watts or a
    non-empty list of them (the schema's check of the variable)."""
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    example = "write one rating like 1600, or one per PSU like [1600, 1000]"
    if not values:
        return ("an empty list of PSUs", example)
    for item in values:
        if isinstance(item, bool) or not isinstance(item, int):
            return (f"{item!r} is not a PSU rating in whole watts", example)
        if not PSU_MIN_W <= item <= PSU_MAX_W:
            return (f"{item} W is not a PSU rating ({PSU_MIN_W} to {PSU_MAX_W} W)", example)
    return None


def _watts(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def planned_limits(count: Any, power_limit_w: Any, overrides: Any) -> list | None:
    """The power limit of each of ``count`` GPUs, or None when the inventory does not say
    them all (no rig_power_limit_w, no count, a templated or invalid value)."""
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        return None
    if not _watts(power_limit_w):
        return None
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, dict):
        return None
    values = list(overrides.values())
    if not all(_watts(v) for v in values):
        return None
    values = values[:count]
    return values + [power_limit_w] * (count - len(values))


def problems(val: Callable[[str], Any]) -> list[tuple[str, str, str]]:
    """``(variable, message, fix)`` for a host whose planned limits exceed its budget;
    ``val(name)`` is the host's value of a rig variable (anything that is not a plain value
    of the right type skips the rule)."""
    psu = val("rig_psu_watts")
    if psu is None:
        return []
    try:
        health.psu_total_w(psu)
    except (ValueError, TypeError):
        return []
    platform = val("rig_platform_watts")
    if platform is not None and not _watts(platform):
        return []
    percent = val("rig_psu_max_load_percent")
    if not _watts(percent):
        return []
    count = val("rig_gpu_count")
    limit = val("rig_power_limit_w")
    overrides = val("rig_power_limit_overrides")
    limits = planned_limits(count, limit, overrides)
    if limits is None:
        return []
    budget = health.power_budget(limits, psu, platform, percent)
    if budget["ok"]:
        return []
    n_override = min(len(overrides or {}), count)
    room = budget["budget_w"] - (platform or 0) - sum(limits[:n_override])
    rest = count - n_override
    hints = []
    if rest > 0 and room > 0:
        hints.append(f"lower rig_power_limit_w to at most {int(room // rest)} W")
    hints.append("add a PSU to rig_psu_watts")
    hints.append("raise rig_psu_max_load_percent if the PSUs are rated for it")
    return [("rig_power_limit_w",
             f"the GPUs' power limits exceed the PSU budget: {budget['text']}, "
             f"{budget['over_w']:g} W over",
             ", ".join(hints[:-1]) + " or " + hints[-1])]
