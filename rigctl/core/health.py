"""Rig health: the judgement of what the rig's kernel log, PCIe error counters, links under
load, clocks, NVLink bridges, NUMA layout, power budget and DCGM say.

Standard library only, Python 3.9 syntax (shipped to managed hosts as module_utils inside
the ``rig_health`` module, imported by the verification suite and the inventory check).
Pure functions: parsed inputs (from :mod:`rigctl.core.kernlog`, :mod:`~rigctl.core.nvsmi`,
:mod:`~rigctl.core.pcitopo`, :mod:`~rigctl.core.parsers`, :mod:`~rigctl.core.benchout`)
in, findings out. Gathering them on a rig is ``plugins/modules/rig_health.py``.

A finding is ``{"check", "gpu", "severity", "evidence", "fix"}``: ``check`` one of
:data:`CHECKS`, ``gpu`` ``{"index", "bus_id"}`` (None for a finding about the rig, or about a
bridge shared by several GPUs: its evidence names them), ``severity`` ``fail`` (hardware,
link, firmware or power is suspect), ``warn`` (worth a look; fails a run only with
``--strict``) or ``info`` (what was seen, e.g. "single socket"), ``evidence`` one line naming
the GPU and what was read, ``fix`` what to do. Every check also gets a status
(:func:`check_status`): ``checked``, ``unknown`` (the input could not be read: the reason
says why, ``unknown (container)`` where a container hides it) or ``not_applicable``.

Which Xid codes fail, warn or inform is :data:`rigctl.core.kernlog.XID_CODES`; which clock
event reasons do is :data:`THROTTLE_REASONS`; the other thresholds are the constants below.
"""

from __future__ import annotations

from . import gpudb, kernlog

__all__ = [
    "CHECKS",
    "FAIL",
    "WARN",
    "INFO",
    "THROTTLE_REASONS",
    "THROTTLE_FIELDS",
    "finding",
    "check_status",
    "gpu_label",
    "xid_findings",
    "aer_findings",
    "link_load_findings",
    "throttle_findings",
    "samples_from_q",
    "is_loaded",
    "nvlink_pairs",
    "nvlink_findings",
    "numa_findings",
    "psu_total_w",
    "power_budget",
    "power_budget_findings",
    "dcgm_findings",
    "evaluate",
    "worst",
]

FAIL, WARN, INFO = "fail", "warn", "info"
SEVERITIES = (FAIL, WARN, INFO)
_RANK = {None: 0, INFO: 1, WARN: 2, FAIL: 3}

CHECKED, UNKNOWN, NOT_APPLICABLE = "checked", "unknown", "not_applicable"

# check name -> what it is about (the report's row title)
CHECKS = {
    "xid": "Xid errors in the kernel log since boot",
    "pcie_aer": "PCIe errors (AER) on each GPU and the bridges above it",
    "pcie_link_load": "PCIe link generation and width while the probe loads the GPUs",
    "throttle": "clock throttling, power draw and temperature while the probe loads the GPUs",
    "nvlink": "NVLink bridges: every link up at full speed",
    "numa": "GPUs and CPU sockets (NUMA nodes)",
    "power_budget": "GPU power limits within the PSU budget",
    "dcgm": "DCGM diagnostics (level 1)",
}

# --- thresholds (data) ---------------------------------------------------------------------

#: A GPU at or above this temperature (C) under the probe's load is a warning: GeForce
#: cards start reducing clocks around 83-90 C.
TEMP_WARN_C = 85
#: Corrected PCIe errors since boot on one device from which the link counts as failing
#: (a healthy link counts none, or a few at link training; a failing riser thousands).
AER_CORRECTED_FAIL = 100
#: Power draw above the limit by more than this (fraction, plus 5 W for rounding) means the
#: limit is not enforced.
DRAW_OVER_LIMIT = 0.05
#: Default of ``rig_psu_max_load_percent``: the sum of the GPUs' power limits plus the
#: platform draw may reach this percentage of the PSUs' combined rated output.
PSU_MAX_LOAD_PERCENT = 90
#: Per-link NVLink speed (GB/s per direction, as ``nvidia-smi nvlink -s`` prints it) of the
#: bridged consumer/workstation GA102 cards (3090, 3090 Ti, A6000, A5000, A40).
NVLINK_LINK_GBS = (("RTX 3090", 14.062), ("RTX A6000", 14.062), ("RTX A5000", 14.062),
                   ("A40", 14.062))

# query field suffix -> (name as -q prints it, severity, why and what to do)
THROTTLE_REASONS = {
    "hw_slowdown": (
        "HW Slowdown", FAIL,
        "the hardware slowdown engaged (clocks cut by half or more): the board signalled "
        "overtemperature or a power problem; check the PSU, one cable per 8-pin/12V-2x6 "
        "connector, the card's temperatures and fans",
    ),
    "hw_thermal_slowdown": (
        "HW Thermal Slowdown", FAIL,
        "the GPU overheated: clean the cooler, give the cards space and airflow (risers, "
        "case fans), lower the power limit",
    ),
    "hw_power_brake_slowdown": (
        "HW Power Brake Slowdown", FAIL,
        "the external power brake asserted: the PSU or the board's power delivery signals "
        "overload; check PSU capacity and cabling, lower the power limits",
    ),
    "sw_thermal_slowdown": (
        "SW Thermal Slowdown", WARN,
        "the GPU is above its thermal target and the driver lowers clocks: improve cooling "
        "or lower the power limit",
    ),
    "sw_power_cap": (
        "SW Power Cap", INFO,
        "the GPU is held at its power limit: expected with limits below stock; raise "
        "rig_power_limit_w if the PSU budget allows more speed",
    ),
}
#: The --query-gpu fields of the throttle reasons (R535 and newer); older drivers spell
#: them ``clocks_throttle_reasons.*`` (:data:`THROTTLE_FIELDS_OLD`).
THROTTLE_FIELDS = tuple("clocks_event_reasons." + k for k in THROTTLE_REASONS)
THROTTLE_FIELDS_OLD = tuple("clocks_throttle_reasons." + k for k in THROTTLE_REASONS)
#: Everything a load sample reads (``nvidia-smi --query-gpu``).
SAMPLE_FIELDS = (
    "index", "pci.bus_id", "pstate", "utilization.gpu", "temperature.gpu", "power.draw",
    "power.limit", "pcie.link.gen.current", "pcie.link.width.current",
) + THROTTLE_FIELDS

_RISER_FIX = (
    "reseat the GPU and every riser/splitter on this slot path, replace a long or unshielded "
    "riser, or set the slot to a lower PCIe generation in the BIOS if the riser cannot hold it"
)


# --- findings --------------------------------------------------------------------------------


def _gpu_ref(gpu):
    if gpu is None:
        return None
    return {"index": gpu.get("index"), "bus_id": gpu.get("bus_id")}


def finding(check, gpu, severity, evidence, fix):
    """One finding (see the module docstring). ``gpu`` is a GPU dict (``index``,
    ``bus_id``) or None."""
    if check not in CHECKS:
        raise ValueError("unknown health check %r" % (check,))
    if severity not in SEVERITIES:
        raise ValueError("severity must be one of %s, not %r" % (SEVERITIES, severity))
    return {"check": check, "gpu": _gpu_ref(gpu), "severity": severity,
            "evidence": evidence, "fix": fix}


def check_status(status, reason=None):
    """A check's status: ``checked``, ``unknown`` or ``not_applicable``, with a reason."""
    if status not in (CHECKED, UNKNOWN, NOT_APPLICABLE):
        raise ValueError("unknown check status %r" % (status,))
    return {"status": status, "reason": reason}


def worst(findings):
    """The worst severity among ``findings`` (None when there are none)."""
    top = None
    for item in findings:
        if _RANK[item["severity"]] > _RANK[top]:
            top = item["severity"]
    return top


def gpu_label(gpu):
    """``GPU 1 (0000:21:00.0)``; ``GPU at 0000:21:00.0`` when the index is unknown (a GPU
    that fell off the bus is not listed by the driver any more)."""
    if gpu is None:
        return "the rig"
    if gpu.get("index") is None:
        return "GPU at %s" % gpu.get("bus_id")
    return "GPU %s (%s)" % (gpu["index"], gpu.get("bus_id"))


def _by_bus(gpus):
    out = {}
    for gpu in gpus or []:
        try:
            out[gpudb.normalize_bus_id(str(gpu["bus_id"]))] = gpu
        except (KeyError, ValueError):
            continue
    return out


def _norm(bus_id):
    return gpudb.normalize_bus_id(str(bus_id))


# --- Xid -------------------------------------------------------------------------------------


def _when(entry):
    first = entry.get("first_wallclock") or entry.get("first_time")
    last = entry.get("last_wallclock") or entry.get("last_time")
    if first is None:
        return ""
    unit = "" if entry.get("first_wallclock") else " s after boot"
    if entry["count"] == 1 or last == first:
        return " at %s%s" % (first, unit)
    return " from %s to %s%s" % (first, last, unit)


def xid_findings(xid, gpus):
    """Findings from :func:`kernlog.parse_xid` of the kernel log since boot: one per GPU
    and Xid code (severity from :data:`kernlog.XID_CODES`), and a ``fail`` for a GPU the
    driver says fell off the bus without an Xid 79 line."""
    by_bus = _by_bus(gpus)
    out = []
    for bus in sorted(xid["gpus"]):
        entry = xid["gpus"][bus]
        gpu = by_bus.get(bus) or {"index": None, "bus_id": bus}
        label = gpu_label(gpu)
        for code in entry["xids"]:
            message = code["messages"][0] if code["messages"] else ""
            text = "%s: Xid %d (%s) x%d%s" % (label, code["code"], code["name"], code["count"],
                                              _when(code))
            if code["caused_by"]:
                text += ", after Xid %s" % ", ".join(str(c) for c in code["caused_by"])
            if code["processes"]:
                text += ", process %s" % ", ".join(code["processes"][:3])
            if message:
                text += ": %s" % message[:160]
            if not code["known"]:
                text += " (code not in rigctl's table)"
            out.append(finding("xid", gpu, code["severity"], text, code["fix"]))
        if entry["fallen_off_bus"] and 79 not in entry["codes"]:
            info = kernlog.xid_info(79)
            out.append(finding("xid", gpu, FAIL,
                               "%s: the driver logged 'GPU has fallen off the bus'" % label,
                               info["fix"]))
    return out


# --- PCIe AER --------------------------------------------------------------------------------


def _slot_path(gpu_bus, bridges):
    return " > ".join(list(reversed(bridges)) + [gpu_bus])


def _count_text(errors):
    return ", ".join("%s %d" % (name, n) for name, n in sorted(errors.items()) if n)


def aer_findings(gpus, paths, counters=None, kernel_aer=None):
    """Findings from the AER counters (``counters``: bus id -> {``correctable``,
    ``nonfatal``, ``fatal``: :func:`kernlog.parse_aer_counters` result or None}) of each GPU
    and of every bridge above it (``paths``: GPU bus id -> bridge bus ids, nearest first:
    :func:`pcitopo.upstream_bridges` or the sysfs device path), and from the AER records of
    the kernel log (:func:`kernlog.parse_aer`). Uncorrectable (non-fatal, fatal) errors
    fail; corrected ones (the link retried) warn, and fail from :data:`AER_CORRECTED_FAIL`
    on one device. A device above several GPUs is reported once, naming them."""
    counters = counters or {}
    by_bus = _by_bus(gpus)
    below = {}  # device -> GPU bus ids below it (or the GPU itself)
    chains = {}
    for gpu_bus, bridges in sorted((paths or {}).items()):
        gpu_bus = _norm(gpu_bus)
        chain = [gpu_bus] + [_norm(b) for b in bridges or []]
        chains[gpu_bus] = chain
        for dev in chain:
            below.setdefault(dev, []).append(gpu_bus)
    out = []

    def subject(dev):
        gpus_below = below[dev]
        if len(gpus_below) == 1:
            gpu = by_bus.get(gpus_below[0]) or {"index": None, "bus_id": gpus_below[0]}
            where = "the GPU itself" if dev == gpus_below[0] else "bridge %s above it" % dev
            return gpu, "%s: %s, slot path %s" % (
                gpu_label(gpu), where, _slot_path(gpus_below[0], chains[gpus_below[0]][1:]))
        names = ", ".join(gpu_label(by_bus.get(b) or {"index": None, "bus_id": b})
                          for b in gpus_below)
        return None, "bridge %s above %s" % (dev, names)

    for dev in sorted(below):
        entry = counters.get(dev) or {}
        for kind, severity, what in (("fatal", FAIL, "fatal uncorrectable"),
                                     ("nonfatal", FAIL, "non-fatal uncorrectable"),
                                     ("correctable", WARN, "corrected")):
            parsed = entry.get(kind)
            if not parsed:
                continue
            total = parsed["total"]
            if total is None:
                total = sum(parsed["errors"].values())
            if not total:
                continue
            if kind == "correctable" and total >= AER_CORRECTED_FAIL:
                severity = FAIL
            gpu, where = subject(dev)
            text = "%s: aer_dev_%s counts %d %s error%s since boot (%s)" % (
                where, kind, total, what, "" if total == 1 else "s",
                _count_text(parsed["errors"]) or "no per-error counts")
            fix = _RISER_FIX if kind == "correctable" else (
                "uncorrectable PCIe errors: the link dropped or corrupted data; " + _RISER_FIX
                + "; check the PSU cables to the card and its riser")
            out.append(finding("pcie_aer", gpu, severity, text, fix))
    if kernel_aer:
        for dev in sorted(below):
            record = kernel_aer["devices"].get(dev)
            if not record or not record["count"]:
                continue
            sev = record["severities"]
            uncorrected = sum(n for k, n in sev.items() if k in ("fatal", "nonfatal"))
            gpu, where = subject(dev)
            when = record.get("first_wallclock") or record.get("first_time")
            text = "%s: %d AER record%s in the kernel log (%s; %s)%s" % (
                where, record["count"], "" if record["count"] == 1 else "s",
                ", ".join("%s %d" % (k, n) for k, n in sorted(sev.items())),
                _count_text(record["errors"]) or "errors not named",
                " from %s" % when if when is not None else "")
            out.append(finding("pcie_aer", gpu, FAIL if uncorrected else WARN, text,
                               _RISER_FIX))
    return out


# --- load samples: link and throttling ----------------------------------------------------------


def _active(value):
    if isinstance(value, str):
        return value.strip().lower() == "active"
    return bool(value) if isinstance(value, bool) else False


def is_loaded(sample):
    """Whether a load sample shows its GPU at work (utilization above 0, or P0-P2)."""
    util = sample.get("utilization.gpu")
    pstate = sample.get("pstate")
    return (isinstance(util, (int, float)) and util > 0) or pstate in ("P0", "P1", "P2")


def _samples_by_gpu(samples):
    out = {}
    for sample in samples or []:
        try:
            bus = _norm(sample.get("pci.bus_id"))
        except ValueError:
            continue
        out.setdefault(bus, []).append(sample)
    return out


def link_load_findings(gpus, samples):
    """Findings on the PCIe links from the ``--query-gpu`` samples taken while the probe
    loaded the GPUs (:data:`SAMPLE_FIELDS`): the best generation and width seen on a loaded
    sample must be the link's maximum (``gpus``' ``link.gen_max``/``width_max``: what host
    and card can both do). Returns ``(findings, unmeasured)``: GPUs never seen loaded."""
    per_gpu = _samples_by_gpu(samples)
    out, unmeasured = [], []
    for gpu in gpus:
        loaded = [s for s in per_gpu.get(_norm(gpu["bus_id"]), []) if is_loaded(s)]
        link = gpu.get("link") or {}
        if not loaded:
            unmeasured.append(gpu)
            continue
        gens = [s["pcie.link.gen.current"] for s in loaded
                if isinstance(s.get("pcie.link.gen.current"), int)]
        widths = [s["pcie.link.width.current"] for s in loaded
                  if isinstance(s.get("pcie.link.width.current"), int)]
        gen, width = (max(gens) if gens else None), (max(widths) if widths else None)
        gen_max, width_max = link.get("gen_max"), link.get("width_max")
        problems = []
        if gen is not None and gen_max and gen < gen_max:
            problems.append("Gen%d of Gen%d" % (gen, gen_max))
        if width is not None and width_max and width < width_max:
            problems.append("x%d of x%d" % (width, width_max))
        if not problems:
            out.append(finding(
                "pcie_link_load", gpu, INFO, "%s: Gen%s x%s under load, its maximum" % (
                    gpu_label(gpu), gen, width), "none needed"))
        else:
            out.append(finding(
                "pcie_link_load", gpu, FAIL,
                "%s: under load the link ran at %s (best of %d loaded sample%s)" % (
                    gpu_label(gpu), " and ".join(problems), len(loaded),
                    "" if len(loaded) == 1 else "s"),
                "a link below its maximum under load is a riser, splitter or slot problem: "
                + _RISER_FIX + "; a narrower width also comes from a slot shared by "
                "bifurcation (check the BIOS lane split)"))
    return out, unmeasured


def samples_from_q(parsed_q):
    """Load samples (as :data:`SAMPLE_FIELDS` rows) from a parsed ``nvidia-smi -q`` /
    ``-q -d PERFORMANCE`` (:func:`smiquery.parse_nvidia_smi_q`): one per GPU, with the clock
    event reasons it shows (``Active``/``Not Active``)."""
    names = {value[0]: key for key, value in THROTTLE_REASONS.items()}
    out = []
    for index, gpu in enumerate(parsed_q["gpus"]):
        reasons = gpu.get("clocks_event_reasons") or {}
        row = {"index": index, "pci.bus_id": gpu["bus_id"],
               "pstate": gpu.get("performance_state"),
               "power.draw": (gpu.get("power") or {}).get("draw_w"),
               "power.limit": (gpu.get("power") or {}).get("current_limit_w"),
               "pcie.link.gen.current": (gpu.get("pci") or {}).get("link_gen_current"),
               "pcie.link.width.current": (gpu.get("pci") or {}).get("link_width_current")}
        for printed, state in reasons.items():
            key = names.get(printed)
            if key:
                row["clocks_event_reasons." + key] = state
        out.append(row)
    return out


def _reason(sample, key):
    for prefix in ("clocks_event_reasons.", "clocks_throttle_reasons."):
        if prefix + key in sample:
            return _active(sample[prefix + key])
    return False


def throttle_findings(gpus, samples):
    """Findings on clocks, power and temperature from the load samples (see
    :func:`link_load_findings`): one per GPU and active clock event reason of severity
    fail/warn (:data:`THROTTLE_REASONS`), a warning at :data:`TEMP_WARN_C` or hotter, a
    warning for a draw above the limit, and per GPU one ``info`` with its samples, peak
    temperature and draw against the limit and the info-level reasons (SW power cap).
    Returns ``(findings, measurements)``: per GPU bus id the samples
    seen, reasons with counts, peak temperature, peak draw and the limit."""
    per_gpu = _samples_by_gpu(samples)
    out, measured = [], {}
    for gpu in gpus:
        rows = per_gpu.get(_norm(gpu["bus_id"]), [])
        if not rows:
            continue
        label = gpu_label(gpu)
        seen = {}
        for row in rows:
            for key in THROTTLE_REASONS:
                if _reason(row, key):
                    seen[key] = seen.get(key, 0) + 1
        temps = [r["temperature.gpu"] for r in rows if isinstance(r.get("temperature.gpu"), (int, float))]
        draws = [r["power.draw"] for r in rows if isinstance(r.get("power.draw"), (int, float))]
        limits = [r["power.limit"] for r in rows if isinstance(r.get("power.limit"), (int, float))]
        peak_t = max(temps) if temps else None
        peak_w = max(draws) if draws else None
        limit = min(limits) if limits else None
        measured[_norm(gpu["bus_id"])] = {
            "samples": len(rows), "loaded_samples": sum(1 for r in rows if is_loaded(r)),
            "reasons": seen, "peak_temperature_c": peak_t, "peak_draw_w": peak_w,
            "limit_w": limit,
        }
        context = []
        if peak_t is not None:
            context.append("peak %s C" % peak_t)
        if peak_w is not None:
            context.append("peak draw %s W" % peak_w + (" of %s W limit" % limit if limit else ""))
        tail = " (%s)" % ", ".join(context) if context else ""
        noted = []
        for key in THROTTLE_REASONS:
            if key not in seen:
                continue
            printed, severity, fix = THROTTLE_REASONS[key]
            if severity == INFO:
                noted.append("%s in %d" % (printed, seen[key]))
                continue
            out.append(finding("throttle", gpu, severity, "%s: %s active in %d of %d samples "
                               "under load%s" % (label, printed, seen[key], len(rows), tail), fix))
        if peak_t is not None and peak_t >= TEMP_WARN_C:
            out.append(finding("throttle", gpu, WARN, "%s: %s C under load (warning at %d C)%s"
                               % (label, peak_t, TEMP_WARN_C, tail),
                               "improve cooling (space between cards, airflow, fans) or lower "
                               "the power limit"))
        if peak_w is not None and limit and peak_w > limit * (1 + DRAW_OVER_LIMIT) + 5:
            out.append(finding("throttle", gpu, WARN, "%s: drew %s W, above its %s W power "
                               "limit" % (label, peak_w, limit),
                               "the limit is not enforced: check the driver and "
                               "`nvidia-smi -q -d POWER`; reapply the limits (rigctl provision)"))
        # what the report shows for every GPU: what it did under load, and why it was held
        # back where that is expected (its power limit)
        out.append(finding("throttle", gpu, INFO, "%s: %d sample%s while the probe ran%s; %s" % (
            label, len(rows), "" if len(rows) == 1 else "s", tail,
            ", ".join(noted) + " of them" if noted else "no clock event reason"),
            THROTTLE_REASONS["sw_power_cap"][2] if noted else "none needed"))
    return out, measured


# --- NVLink ----------------------------------------------------------------------------------


def _expected_link_gbs(name):
    for fragment, speed in NVLINK_LINK_GBS:
        if name and fragment in name:
            return speed
    return None


def _topo_index(name):
    return int(name[3:]) if name.startswith("GPU") and name[3:].isdigit() else None


def nvlink_pairs(topo, status, gpus):
    """The NVLink-bridged GPU pairs: ``topo -m``'s ``NV#`` cells
    (:func:`smitopo.parse_topo_matrix` ``nvlink_pairs``) with each GPU's link state from
    ``nvidia-smi nvlink -s`` (:func:`nvsmi.parse_nvlink_status`, or None when it could not
    be read). One dict per pair: ``gpus`` [index, index], ``bus_ids``, ``links`` (the NV#
    number: active links), ``expected_links`` (the links ``nvlink -s`` lists, inactive ones
    too), ``active_links`` (the fewer of the two GPUs), ``link_gbs`` (the slowest active
    link, per direction), ``gbs_per_direction`` (the smaller of the two GPUs' sums: what the
    bridge carries one way), ``state`` ``up``/``degraded``/``down``/``unknown``. This is
    what the P2P verdict judges NVLink pairs against."""
    by_index = {g["index"]: g for g in gpus or []}
    links_of = {}
    if status:
        for entry in status["gpus"]:
            links_of[entry["index"]] = entry
    out = []
    for pair in (topo or {}).get("nvlink_pairs") or []:
        a, b = (_topo_index(n) for n in pair["gpus"])
        if a is None or b is None:
            continue
        item = {"gpus": [a, b],
                "bus_ids": [(by_index.get(a) or {}).get("bus_id"),
                            (by_index.get(b) or {}).get("bus_id")],
                "links": pair["links"], "expected_links": pair["links"], "active_links": None,
                "link_gbs": None, "gbs_per_direction": None, "state": "unknown"}
        if a in links_of and b in links_of:
            ends = [links_of[a], links_of[b]]
            # topo -m counts the active links; nvlink -s lists every link, inactive too
            item["expected_links"] = max([pair["links"]] + [len(e["links"]) for e in ends])
            item["active_links"] = min(e["active_links"] for e in ends)
            speeds = [lk["speed_gbs"] for e in ends for lk in e["links"] if lk["active"]]
            item["link_gbs"] = min(speeds) if speeds else None
            item["gbs_per_direction"] = min(e["total_gbs"] for e in ends)
            if item["active_links"] == 0:
                item["state"] = "down"
            elif item["active_links"] < item["expected_links"]:
                item["state"] = "degraded"
            else:
                expected = _expected_link_gbs((by_index.get(a) or {}).get("name"))
                slow = expected is not None and item["link_gbs"] is not None and (
                    item["link_gbs"] < expected * 0.99)
                item["state"] = "degraded" if slow else "up"
        out.append(item)
    return out


def nvlink_findings(pairs, status, gpus):
    """Findings on the NVLink bridges (:func:`nvlink_pairs`): a pair with links down fails,
    one slower than its model's link speed (:data:`NVLINK_LINK_GBS`) warns, a pair whose
    state could not be read warns. ``status`` is the parsed ``nvlink -s`` (for the inactive
    link numbers)."""
    by_index = {g["index"]: g for g in gpus or []}
    links_of = {e["index"]: e for e in (status or {}).get("gpus", [])}
    out = []
    for pair in pairs:
        a, b = pair["gpus"]
        gpu = by_index.get(a) or {"index": a, "bus_id": pair["bus_ids"][0]}
        other = by_index.get(b) or {"index": b, "bus_id": pair["bus_ids"][1]}
        label = "NVLink bridge between %s and %s" % (gpu_label(gpu), gpu_label(other))
        if pair["state"] == "unknown":
            out.append(finding("nvlink", gpu, WARN, "%s: topo -m shows NV%d but nvidia-smi "
                               "nvlink -s could not be read" % (label, pair["links"]),
                               "run nvidia-smi nvlink -s on the rig and check the driver"))
            continue
        if pair["state"] == "up":
            continue
        expected = _expected_link_gbs(gpu.get("name"))
        inactive, slow = [], []
        for index in (a, b):
            for lk in (links_of.get(index) or {}).get("links", []):
                if not lk["active"]:
                    inactive.append("GPU %d link %d" % (index, lk["link"]))
                elif expected and lk["speed_gbs"] < expected * 0.99:
                    slow.append("GPU %d link %d at %s GB/s" % (index, lk["link"], lk["speed_gbs"]))
        if pair["active_links"] < pair["expected_links"]:
            text = "%s: topo -m shows NV%d, nvidia-smi nvlink -s %d of %d links active" % (
                label, pair["links"], pair["active_links"], pair["expected_links"])
            if inactive:
                text += " (inactive: %s)" % ", ".join(inactive)
            if slow:
                text += "; slow: %s of %s" % (", ".join(slow), expected)
            out.append(finding("nvlink", gpu, FAIL, text,
                               "power the rig off and reseat the NVLink bridge on both cards "
                               "(it must match their slot spacing); then nvidia-smi nvlink -s "
                               "lists every link at full speed"))
        else:
            out.append(finding("nvlink", gpu, WARN, "%s: %s GB/s per link expected for this "
                               "model; slow: %s" % (label, expected, ", ".join(slow)),
                               "reseat the bridge; check nvidia-smi nvlink -e for link errors"))
    return out


# --- NUMA ------------------------------------------------------------------------------------


def numa_findings(gpus, topo=None, host_nodes=None):
    """What the NUMA layout costs. GPUs on one node of a single-socket host: one ``info``
    saying so. GPUs split across nodes: a ``warn`` naming the GPUs per node and the pairs
    that cross sockets (``topo -m`` ``SYS`` where it was read): P2P between them crosses
    the inter-socket link and NCCL sees them as ``SYS``. A GPU without a NUMA node on a
    multi-node host warns (the BIOS does not report its socket). ``host_nodes``: the
    host's NUMA node count (None: unknown)."""
    nodes = {}
    for gpu in gpus:
        node = gpu.get("numa_node")
        nodes[gpu["index"]] = node if isinstance(node, int) and node >= 0 else None
    known = sorted({n for n in nodes.values() if n is not None})
    multi = len(known) > 1 or (host_nodes or 0) > 1
    by_index = {g["index"]: g for g in gpus}
    out = []
    if not multi:
        where = "NUMA node %d" % known[0] if known else "one NUMA node"
        out.append(finding("numa", None, INFO, "single socket: every GPU (%d) on %s" % (
            len(gpus), where), "none needed"))
        return out
    for index, node in sorted(nodes.items()):
        if node is None:
            out.append(finding("numa", by_index[index], WARN, "%s: no NUMA node (numa_node -1) "
                               "on a host with %s NUMA nodes" % (
                                   gpu_label(by_index[index]), host_nodes or len(known)),
                               "enable the ACPI NUMA/SRAT reporting in the BIOS so that the "
                               "kernel knows the GPU's socket"))
    if len(known) > 1:
        groups = []
        for node in known:
            members = [i for i, n in sorted(nodes.items()) if n == node]
            groups.append("node %d: GPU %s" % (node, ", ".join(str(i) for i in members)))
        links = (topo or {}).get("links") or {}
        crossing = []
        indexes = sorted(i for i, n in nodes.items() if n is not None)
        for pos, a in enumerate(indexes):
            for b in indexes[pos + 1:]:
                if nodes[a] != nodes[b]:
                    cell = (links.get("GPU%d" % a) or {}).get("GPU%d" % b)
                    crossing.append("%d-%d%s" % (a, b, " (%s)" % cell if cell else ""))
        out.append(finding(
            "numa", None, WARN,
            "GPUs on %d NUMA nodes (%s); pairs crossing sockets: %s" % (
                len(known), "; ".join(groups), ", ".join(crossing)),
            "P2P between these pairs crosses the inter-socket link (xGMI/UPI: 5090s measured "
            "~39-51 GB/s one way across nodes against 56-58 on one socket) and NCCL sees "
            "them as SYS (P2P only with NCCL_P2P_LEVEL=SYS); put GPUs that exchange data on "
            "one socket, and bind each process to its GPU's node (numactl --cpunodebind)"))
    return out


# --- power budget ------------------------------------------------------------------------------


def psu_total_w(psu_watts):
    """Total rated output of ``rig_psu_watts``: one number or a list (one per PSU). None
    when unset; ValueError for anything else."""
    if psu_watts is None:
        return None
    values = psu_watts if isinstance(psu_watts, list) else [psu_watts]
    if not values:
        raise ValueError("rig_psu_watts is an empty list")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError("rig_psu_watts: %r is not a PSU rating in watts" % (value,))
    return sum(values)


def power_budget(limits_w, psu_watts, platform_w=None, max_load_percent=PSU_MAX_LOAD_PERCENT):
    """The budget arithmetic, the one definition (inventory check and verify): ``limits_w``
    the GPUs' power limits (watts), ``psu_watts`` ``rig_psu_watts``, ``platform_w`` the rest
    of the machine (CPU, board, drives, fans; None: not counted), ``max_load_percent``
    ``rig_psu_max_load_percent``. Returns ``psu_w``, ``budget_w`` (psu_w x percent),
    ``gpus_w``, ``platform_w``, ``total_w``, ``ok``, ``over_w`` (how far above the budget,
    0 when within) and ``text`` (one line with the sum)."""
    psu = psu_total_w(psu_watts)
    gpus_w = sum(limits_w)
    platform = platform_w or 0
    budget = psu * max_load_percent / 100.0
    total = gpus_w + platform
    parts = "%d GPU limit%s %g W" % (len(limits_w), "" if len(limits_w) == 1 else "s", gpus_w)
    if platform_w:
        parts += " + platform %g W" % platform_w
    else:
        parts += " (platform draw not counted: rig_platform_watts unset)"
    text = "%s = %g W against %g W (%d%% of %g W PSU)" % (parts, total, budget,
                                                        max_load_percent, psu)
    return {"psu_w": psu, "budget_w": budget, "gpus_w": gpus_w, "platform_w": platform_w,
            "total_w": total, "ok": total <= budget, "over_w": max(0.0, total - budget),
            "text": text}


def power_budget_findings(gpus, psu_watts, platform_w=None,
                          max_load_percent=PSU_MAX_LOAD_PERCENT):
    """Findings on the live power limits against the budget (:func:`power_budget`): the
    current limits above it fail (the inventory check refuses such limits, so someone set
    them by hand); the GPUs' default limits above it warn: if rigctl's limits were lost
    (no boot unit, a driver reload) the rig could draw more than its PSUs carry."""
    if psu_watts is None:
        return []
    current = [(g.get("power") or {}).get("current_w") for g in gpus]
    default = [(g.get("power") or {}).get("default_w") for g in gpus]
    out = []
    if current and all(isinstance(w, (int, float)) for w in current):
        now = power_budget(current, psu_watts, platform_w, max_load_percent)
        if not now["ok"]:
            out.append(finding("power_budget", None, FAIL, "current limits: %s, %g W over" % (
                now["text"], now["over_w"]),
                "lower rig_power_limit_w / rig_power_limit_overrides and run rigctl provision "
                "(or nvidia-smi -pl set by hand was higher than the inventory)"))
    if default and all(isinstance(w, (int, float)) for w in default):
        stock = power_budget(default, psu_watts, platform_w, max_load_percent)
        if not stock["ok"]:
            out.append(finding("power_budget", None, WARN, "default limits, if rigctl's were "
                               "lost: %s, %g W over" % (stock["text"], stock["over_w"]),
                               "keep rigctl-gpu-settings.service enabled (it reapplies the "
                               "limits at boot); a bigger or second PSU removes the risk"))
    return out


# --- DCGM ------------------------------------------------------------------------------------


def dcgm_findings(diag, gpus):
    """Findings from ``dcgmi diag -r 1`` (:func:`benchout.parse_dcgmi_diag`): a failed test
    fails, a warned one warns; an ``info`` says why deeper levels were not run (GeForce:
    DCGM supports only level 1 there)."""
    out = []
    for test in diag["tests"]:
        result = test["result"]
        if result in ("Fail", "Warn"):
            parts = [test.get("detail") or ""] + list(test.get("details") or [])
            detail = "; ".join(p for p in parts if p)
            text = "dcgmi diag: %s (%s) %s" % (test["name"], test["section"], result)
            out.append(finding("dcgm", None, FAIL if result == "Fail" else WARN,
                               text + (": " + detail if detail else ""),
                               "see dcgmi diag -r 1 -v on the rig for the test's message"))
    geforce = bool(gpus) and all("GeForce" in (g.get("name") or "") for g in gpus)
    if geforce:
        out.append(finding("dcgm", None, INFO, "dcgmi diag levels 2-4: not supported on "
                           "GeForce (DCGM runs only the level 1 deployment checks there)",
                           "none: the probe and the health checks cover PCIe and load"))
    else:
        out.append(finding("dcgm", None, INFO, "dcgmi diag levels 2-4 not run by verify "
                           "(they load the GPUs for minutes)",
                           "run dcgmi diag -r 3 on the rig when it is idle"))
    return out


# --- all of it ---------------------------------------------------------------------------------


def evaluate(data, psu_watts=None, platform_w=None, max_load_percent=PSU_MAX_LOAD_PERCENT):
    """Every check over what ``rig_health`` gathered (``data``: ``gpus``, ``container``,
    ``kernel_log`` {``xid``, ``aer``, ``error``}, ``aer_counters``, ``paths``, ``topo``,
    ``nvlink`` {``status``, ``error``}, ``host_numa_nodes``, ``load`` {``samples``,
    ``error``}, ``dcgm`` {``diag``, ``error``, ``installed``}). Returns ``findings``,
    ``checks`` (name -> :func:`check_status`), ``nvlink_pairs`` and ``measurements``."""
    gpus = data.get("gpus") or []
    container = data.get("container")
    findings, checks = [], {}

    def unknown(reason):
        if container:
            return check_status(UNKNOWN, "unknown (container): %s" % reason)
        return check_status(UNKNOWN, reason)

    if not gpus:
        for name in CHECKS:
            checks[name] = check_status(NOT_APPLICABLE, "no NVIDIA GPU on PCI")
        return {"findings": [], "checks": checks, "nvlink_pairs": [], "measurements": {}}

    log = data.get("kernel_log") or {}
    if log.get("xid") is not None:
        findings += xid_findings(log["xid"], gpus)
        checks["xid"] = check_status(CHECKED, "kernel log from %s" % log.get("source"))
    else:
        checks["xid"] = unknown("kernel log not readable: %s" % log.get("error"))

    paths = data.get("paths") or {}
    read = sum(1 for c in (data.get("aer_counters") or {}).values() if any((c or {}).values()))
    if read or log.get("aer") is not None:
        findings += aer_findings(gpus, paths, data.get("aer_counters"), log.get("aer"))
        checks["pcie_aer"] = check_status(CHECKED, "AER counters of %d device%s%s" % (
            read, "" if read == 1 else "s",
            ", kernel log" if log.get("aer") is not None else ""))
    else:
        checks["pcie_aer"] = unknown("no AER counters in sysfs and no kernel log")

    load = data.get("load") or {}
    samples = load.get("samples") or []
    measurements = {}
    if samples:
        link, unmeasured = link_load_findings(gpus, samples)
        findings += link
        if unmeasured and len(unmeasured) == len(gpus):
            checks["pcie_link_load"] = check_status(
                UNKNOWN, "no GPU was seen loaded in %d samples" % len(samples))
        else:
            reason = "%d samples under the probe's load" % len(samples)
            if unmeasured:
                reason += "; not seen loaded: %s" % ", ".join(gpu_label(g) for g in unmeasured)
            checks["pcie_link_load"] = check_status(CHECKED, reason)
        throttle, measurements = throttle_findings(gpus, samples)
        findings += throttle
        checks["throttle"] = check_status(CHECKED, "%d samples under the probe's load"
                                          % len(samples))
    else:
        reason = load.get("error") or "the probe did not run"
        checks["pcie_link_load"] = check_status(UNKNOWN, reason)
        checks["throttle"] = check_status(UNKNOWN, reason)

    nvlink = data.get("nvlink") or {}
    pairs = nvlink_pairs(data.get("topo"), nvlink.get("status"), gpus)
    if pairs:
        findings += nvlink_findings(pairs, nvlink.get("status"), gpus)
        checks["nvlink"] = check_status(CHECKED, "%d bridged pair%s" % (
            len(pairs), "" if len(pairs) == 1 else "s"))
    elif data.get("topo") is None and len(gpus) > 1:
        checks["nvlink"] = unknown("nvidia-smi topo -m not read: %s" % data.get("topo_error"))
    else:
        checks["nvlink"] = check_status(NOT_APPLICABLE, "no NVLink bridge (topo -m shows no "
                                        "NV# pair)")

    findings += numa_findings(gpus, data.get("topo"), data.get("host_numa_nodes"))
    checks["numa"] = check_status(CHECKED, None)

    if psu_watts is None:
        checks["power_budget"] = check_status(NOT_APPLICABLE, "rig_psu_watts is not set")
    else:
        findings += power_budget_findings(gpus, psu_watts, platform_w, max_load_percent)
        checks["power_budget"] = check_status(CHECKED, None)

    dcgm = data.get("dcgm") or {}
    if not dcgm.get("installed"):
        checks["dcgm"] = check_status(NOT_APPLICABLE, dcgm.get("error") or "dcgmi is not "
                                      "installed: DCGM diagnostics skipped")
    elif dcgm.get("diag") is None:
        findings.append(finding("dcgm", None, WARN, "dcgmi diag -r 1 did not run: %s"
                                % dcgm.get("error"),
                                "start the DCGM host engine (systemctl start nvidia-dcgm, or "
                                "nv-hostengine) and run dcgmi diag -r 1"))
        checks["dcgm"] = check_status(CHECKED, None)
    else:
        findings += dcgm_findings(dcgm["diag"], gpus)
        checks["dcgm"] = check_status(CHECKED, "dcgmi diag -r 1")
    return {"findings": findings, "checks": checks, "nvlink_pairs": pairs,
            "measurements": measurements}
