"""The P2P verdict, per GPU pair: does a pair really do peer-to-peer, and fast enough?

The one place that decides it. Standard library only, Python 3.9 syntax: shipped to managed
hosts as module_utils (the nccl role's module and the rig probe's module judge there), and
imported by the verification suites and the report.

A pair's evidence is what a copy between the two GPUs did: the rig probe
(:mod:`rigctl.core.probe`, run once with peer access and once with ``--no-p2p`` for the same
copy staged through host memory), or a recorded cuda-samples ``p2pBandwidthLatencyTest``
(P2P=Enabled and P2P=Disabled matrices) or ``nvbandwidth`` run. Every adapter turns its tool's
output into the same per-pair measurements (:func:`from_probe`,
:func:`from_p2p_bandwidth_test`, :func:`from_nvbandwidth`); :func:`judge` decides.

Per ordered pair (src -> dst), in this order:

- ``error``: a CUDA error stopped the copy;
- ``wrong-data``: the data read back differs (any mismatch);
- ``no-peer``: the copy ran staged (peer access impossible or not enabled);
- ``no-gain``: peer access was on, but the copy was not faster than the same copy staged
  through host memory (median bandwidth below 95% of the staged one; within +-5% the link,
  not the path, limits both, and the latency decides: the P2P copy must take less than half
  the staged copy's latency);
- ``slow``: P2P works, but the bandwidth is below the floor: a fraction (default
  :data:`DEFAULT_MIN_LINK_FRACTION`) of what the pair's narrowest link can carry per
  direction (PCIe: the GPU links' generation and width, :func:`pcie_gbps`; NVLink-bridged
  pairs: the bonded links, :func:`nvlink_gbps`), or an absolute GB/s;
- ``ok``.

``p2p`` (the pair is a P2P pair, for NCCL) is true for ``ok`` and ``slow``: a slow P2P pair is
still faster than staged copies. An unordered pair {a, b} is a P2P pair only when both
directions are. ``ok`` (the verification verdict) is true for ``ok`` only; data that was not
checked (recorded tools that do not compare data) is reported, not failed.
"""

from __future__ import annotations

import json
import os
import re
import threading

from . import gpudb, gpulayer, gpumodel, hostfacts, nvsmi, probe, reboot, smitopo

__all__ = [
    "DEFAULT_MIN_LINK_FRACTION",
    "EVIDENCE_PATH",
    "VERDICTS",
    "pcie_gbps",
    "nvlink_gbps",
    "pair_link",
    "nvlink_bridges",
    "from_probe",
    "from_p2p_bandwidth_test",
    "from_nvbandwidth",
    "judge",
    "probe_argv",
    "collect",
    "judge_evidence",
    "read_evidence",
    "write_evidence",
    "evidence_matches",
]

DEFAULT_MIN_LINK_FRACTION = 0.6

# Where the last probe evidence of this boot is kept on the rig (tmpfs: a reboot clears it,
# like the P2P state it describes).
EVIDENCE_PATH = "/run/rigctl/p2p-evidence.json"
EVIDENCE_SCHEMA = 1

VERDICTS = ("ok", "slow", "no-gain", "no-peer", "wrong-data", "error", "not-measured")
P2P_VERDICTS = ("ok", "slow")

# Bandwidth ratio P2P/staged inside which the link limits both copies (the latency decides).
_SAME_BAND = 0.05
_LATENCY_GAIN = 0.5

# PCIe per-direction theory, GB/s per lane (line rate after encoding: 8b/10b for Gen1/2,
# 128b/130b for Gen3-5, FLIT for Gen6). Gen3 x16 15.75, Gen4 x16 31.5, Gen5 x16 63.0.
_PCIE_LANE_GBPS = {1: 0.25, 2: 0.5, 3: 0.984375, 4: 1.96875, 5: 3.9375, 6: 7.5625}

# NVLink per link and direction when `nvidia-smi nvlink -s` does not say: GA102 bridges
# (RTX 3090, RTX A6000/A5000/A40) 14.0625 GB/s (4 links: 56.25 GB/s); NVLink 3/4 of the
# datacenter parts 25 GB/s.
_NVLINK_GA102_GBPS = 14.0625
_NVLINK_DEFAULT_GBPS = 25.0
_GA102_RE = re.compile(r"RTX 3090|RTX A[456]000|\bA40\b|GA102", re.IGNORECASE)

_FIX = {
    "error": "see the probe's error for this pair; a copy that errors over P2P hangs or breaks "
    "NCCL: until it is fixed nccl.conf must not allow P2P for this pair (rigctl provision "
    "writes it from this verdict)",
    "wrong-data": "copies arrive corrupted: the IOMMU in translating mode (use iommu=pt) or ACS "
    "redirecting peer traffic (see rigctl verify's hardware checks); NCCL must not use P2P "
    "here until it is fixed",
    "no-peer": "the driver gives no peer access here: the stock GeForce driver (rig_driver_flavor: "
    "p2p installs the patched module), a chipset-attached GPU, GPUs of different generations, "
    "or a patch that does not support this GPU",
    "no-gain": "peer access is on but copies are no faster than through host memory: small BAR1 "
    "(enable Resizable BAR and Above 4G decoding), ACS on the switch or root ports, or a "
    "degraded link; check rigctl verify's hardware checks",
    "slow": "the link runs below what it should carry: a riser or slot at lower width or "
    "generation, ACS, or the IOMMU; compare `lspci -vv` LnkSta under load. If this is the "
    "link's real capability, set rig_p2p_min_link_fraction or rig_p2p_pair_floors",
    "not-measured": "run the probe (rigctl provision builds it with the cuda role)",
}


# --- link theory -------------------------------------------------------------------------


def pcie_gbps(gen, width):
    """PCIe per-direction theory in GB/s for a link generation and width (Gen4 x16 -> 31.5);
    None when either is unknown."""
    values = []
    for value in (gen, width):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            return None
        values.append(int(value))
    gen, width = values
    lane = _PCIE_LANE_GBPS.get(gen)
    if lane is None or width <= 0:
        return None
    return round(lane * width, 3)


def nvlink_gbps(links, per_link=None, name=None):
    """NVLink per-direction theory of ``links`` bonded links: ``per_link`` GB/s each (as
    ``nvidia-smi nvlink -s`` prints it), else the GPU model's (``name``) known rate."""
    if not isinstance(links, int) or links <= 0:
        return None
    if not isinstance(per_link, (int, float)) or per_link <= 0:
        per_link = _NVLINK_GA102_GBPS if name and _GA102_RE.search(name) else _NVLINK_DEFAULT_GBPS
    return round(links * float(per_link), 3)


def _link_of(links, index, bus):
    links = links or {}
    for key in (bus, index, str(index) if index is not None else None):
        if key is not None and key in links:
            return links[key]
    return None


def _pcie_link_text(link):
    return "PCIe Gen%s x%s" % (link.get("gen"), link.get("width"))


def pair_link(src, dst, links=None, nvlink=None, src_bus=None, dst_bus=None):
    """The narrowest link between GPUs ``src`` and ``dst`` and what it carries per
    direction: ``{"kind": "pcie"|"nvlink", "text", "gbps"}`` (``gbps`` None when unknown).

    ``links``: per GPU (index or bus id) ``{"gen", "width"}`` of its PCIe link. ``nvlink``:
    per unordered pair key ``"A-B"`` (indexes, A < B) ``{"links", "gbps_per_link", "name"}``;
    an NVLink-bridged pair is judged against its NVLink, never PCIe.
    """
    key = "%s-%s" % (min(src, dst), max(src, dst)) if isinstance(src, int) and isinstance(dst, int) else None
    bridge = (nvlink or {}).get(key) if key else None
    if bridge:
        gbps = nvlink_gbps(bridge.get("links"), bridge.get("gbps_per_link"), bridge.get("name"))
        return {"kind": "nvlink", "gbps": gbps,
                "text": "NVLink x%s (%s GB/s per direction)" % (bridge.get("links"), _fmt(gbps))}
    a, b = _link_of(links, src, src_bus), _link_of(links, dst, dst_bus)
    found = []
    for link in (a, b):
        if link:
            gbps = pcie_gbps(link.get("gen"), link.get("width"))
            if gbps is not None:
                found.append((gbps, link))
    if not found:
        return {"kind": "pcie", "gbps": None, "text": "PCIe link unknown"}
    gbps, link = min(found, key=lambda item: item[0])
    return {"kind": "pcie", "gbps": gbps,
            "text": "%s (%s GB/s per direction)" % (_pcie_link_text(link), _fmt(gbps))}


def _fmt(value):
    if value is None:
        return "?"
    return ("%.2f" % value).rstrip("0").rstrip(".")


# --- adapters: one measurement shape ----------------------------------------------------


def _measurement(src, dst, **values):
    base = {
        "src": src, "dst": dst, "src_bus": None, "dst_bus": None, "mode": None,
        "can_access_peer": None, "gbps": None, "latency_us": None, "data_ok": None,
        "mismatches": None, "error": None, "staged_gbps": None, "staged_latency_us": None,
        "staged_source": None,
    }
    base.update(values)
    return base


def _probe_error(pair):
    error = pair.get("error")
    if not error:
        return None
    if isinstance(error, dict):
        parts = [error.get(k) for k in ("call", "cuda_error", "message") if error.get(k)]
        return ": ".join(parts) or json.dumps(error, sort_keys=True)
    return str(error)


def from_probe(parsed, staged=None):
    """Measurements from :func:`rigctl.core.probe.parse_probe_output` of a normal run and,
    optionally, of a ``--no-p2p`` run (``staged``: the same copies through host memory).
    Without a staged run the staged bandwidth is estimated from the host transfers (the
    slower of src's device-to-host and dst's host-to-device) and says so."""
    staged_by_pair = {}
    for pair in (staged or {}).get("pairs") or []:
        if pair.get("mode") == "staged" and not pair.get("error"):
            staged_by_pair[(pair.get("src"), pair.get("dst"))] = pair
    hosts = {h.get("device"): h for h in parsed.get("host_transfers") or [] if not h.get("error")}
    out = []
    for pair in parsed.get("pairs") or []:
        src, dst = pair.get("src"), pair.get("dst")
        m = _measurement(
            src, dst,
            src_bus=pair.get("src_pci_bus_id"), dst_bus=pair.get("dst_pci_bus_id"),
            mode=pair.get("mode"), can_access_peer=pair.get("can_access_peer"),
            gbps=pair.get("gbps"), latency_us=pair.get("latency_us"),
            data_ok=pair.get("data_ok") if not pair.get("mismatches") else False,
            mismatches=pair.get("mismatches"), error=_probe_error(pair),
        )
        base = staged_by_pair.get((src, dst))
        if base is not None:
            m["staged_gbps"] = base.get("gbps")
            m["staged_latency_us"] = base.get("latency_us")
            m["staged_source"] = "probe --no-p2p"
        elif src in hosts and dst in hosts:
            d2h, h2d = hosts[src].get("d2h_gbps"), hosts[dst].get("h2d_gbps")
            if isinstance(d2h, (int, float)) and isinstance(h2d, (int, float)):
                m["staged_gbps"] = min(d2h, h2d)
                m["staged_source"] = "estimated from host transfers"
        out.append(m)
    return out


def _matrix(parsed, *titles):
    for title in titles:
        rows = parsed["matrices"].get(title)
        if rows:
            return rows
    return None


def from_p2p_bandwidth_test(parsed):
    """Measurements from :func:`rigctl.core.p2pbench.parse_p2p_bandwidth_latency_test`:
    unidirectional P2P=Enabled bandwidth and latency per ordered pair, the P2P=Disabled
    matrices as the staged copy, peer access from its ``CAN``/``CANNOT Access`` lines. The
    sample does not compare data (``data_ok`` None)."""
    enabled = _matrix(parsed, "Unidirectional P2P=Enabled Bandwidth (P2P Writes) Matrix (GB/s)",
                      "Unidirectional P2P=Enabled Bandwidth Matrix (GB/s)")
    disabled = _matrix(parsed, "Unidirectional P2P=Disabled Bandwidth Matrix (GB/s)")
    lat_on = _matrix(parsed, "P2P=Enabled Latency (P2P Writes) Matrix (us)",
                     "P2P=Enabled Latency Matrix (us)")
    lat_off = _matrix(parsed, "P2P=Disabled Latency Matrix (us)")
    access = {(p["device"], p["peer"]): p["can_access"] for p in parsed.get("peer_access") or []}
    connectivity = parsed.get("can_access")
    buses = {}
    for dev in parsed.get("devices") or []:
        try:
            buses[dev["index"]] = gpudb.normalize_bus_id(
                "%04x:%02x:%02x.0" % (int(dev["pci_domain_id"], 16), int(dev["pci_bus_id"], 16),
                                      int(dev["pci_device_id"], 16)))
        except (ValueError, KeyError):
            buses[dev["index"]] = None
    count = len(parsed.get("devices") or []) or len(enabled or disabled or [])

    def cell(rows, i, j):
        try:
            return rows[i][j]
        except (TypeError, IndexError):
            return None

    out = []
    for i in range(count):
        for j in range(count):
            if i == j:
                continue
            can = access.get((i, j))
            if can is None and connectivity:
                try:
                    can = bool(connectivity[i][j])
                except IndexError:
                    can = None
            if enabled is None and disabled is None:
                continue
            out.append(_measurement(
                i, j, src_bus=buses.get(i), dst_bus=buses.get(j),
                mode="p2p" if can else "staged", can_access_peer=can,
                gbps=cell(enabled, i, j) if enabled else None,
                latency_us=cell(lat_on, i, j),
                staged_gbps=cell(disabled, i, j), staged_latency_us=cell(lat_off, i, j),
                staged_source="p2pBandwidthLatencyTest P2P=Disabled" if disabled else None,
            ))
    return out


def from_nvbandwidth(parsed, testcase=None):
    """Measurements from :func:`rigctl.core.benchout.parse_nvbandwidth`: the device-to-device
    copy engine test (``device_to_device_memcpy_read_ce``, else ``..._write_ce``, or
    ``testcase``). nvbandwidth copies with peer access enabled and waives device-to-device
    tests without it; it has no staged baseline and does not report data checks."""
    cases = parsed.get("testcases") or {}
    names = [testcase] if testcase else ["device_to_device_memcpy_read_ce",
                                         "device_to_device_memcpy_write_ce"]
    case = None
    for name in names:
        if name in cases:
            case = cases[name]
            break
    if case is None:
        for candidate in cases.values():  # a -t run whose name line was elided
            if candidate.get("title") and "GPU(row) -> GPU(column)" in candidate["title"]:
                case = candidate
                break
    if case is None:
        return []
    out = []
    if case.get("status") == "waived":
        count = len(parsed.get("devices") or [])
        for i in range(count):
            for j in range(count):
                if i != j:
                    out.append(_measurement(i, j, mode="staged", can_access_peer=False))
        return out
    columns = case.get("columns") or []
    rows, matrix = case.get("rows") or [], case.get("matrix") or []
    for r in range(min(len(rows), len(matrix))):
        row_label, row = rows[r], matrix[r]
        for c in range(min(len(columns), len(row))):
            col_label, value = columns[c], row[c]
            if row_label == col_label:
                continue
            out.append(_measurement(row_label, col_label, mode="p2p" if value is not None else "staged",
                                    gbps=value, can_access_peer=value is not None or None))
    return out


# --- the verdict ---------------------------------------------------------------------------


def _pair_floor(floors, src, dst, src_bus, dst_bus):
    """(fraction, absolute GB/s, where it came from) for this pair."""
    floors = floors or {}
    fraction = floors.get("min_link_fraction")
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool):
        fraction = DEFAULT_MIN_LINK_FRACTION
    absolute = floors.get("min_gbps")
    source = "rig_p2p_min_gbps" if isinstance(absolute, (int, float)) else (
        "rig_p2p_min_link_fraction" if "min_link_fraction" in floors else "default")
    ends = ({("index", src), ("bus_id", src_bus)}, {("index", dst), ("bus_id", dst_bus)})
    for key, value in (floors.get("pairs") or {}).items():
        sides = _pair_key(key)
        if sides is None or not isinstance(value, dict):
            continue
        a, b = sides
        if (a in ends[0] and b in ends[1]) or (a in ends[1] and b in ends[0]):
            if isinstance(value.get("min_gbps"), (int, float)):
                return fraction, float(value["min_gbps"]), "rig_p2p_pair_floors[%s]" % key
            if isinstance(value.get("min_link_fraction"), (int, float)):
                return float(value["min_link_fraction"]), None, "rig_p2p_pair_floors[%s]" % key
    return float(fraction), (float(absolute) if isinstance(absolute, (int, float)) else None), source


def _pair_key(key):
    """``"0-1"`` / ``"0000:01:00.0-0000:21:00.0"`` -> two GPU selectors (index or bus id),
    or None."""
    if not isinstance(key, str) or key.count("-") != 1:
        return None
    sides = tuple(gpudb.parse_gpu_selector(p.strip()) for p in key.split("-"))
    if None in sides or any(kind == "uuid" for kind, _ in sides):
        return None
    return sides


def pair_key_problem(key):
    """A problem text when ``key`` is not two GPUs (index or bus id) joined by ``-``."""
    return None if _pair_key(key) is not None else (
        "%r is not a GPU pair (two GPU indexes or PCI bus ids joined by '-')" % (key,))


def _gain(m):
    """('faster'|'not-faster'|'unknown', text) for a P2P copy against the staged one."""
    gbps, base = m.get("gbps"), m.get("staged_gbps")
    if not isinstance(gbps, (int, float)):
        return "unknown", "no P2P bandwidth measured"
    if not isinstance(base, (int, float)) or base <= 0:
        return "unknown", "no staged baseline to compare with"
    ratio = gbps / base
    text = "%s GB/s P2P vs %s GB/s staged (%s)" % (_fmt(gbps), _fmt(base), m.get("staged_source"))
    if ratio >= 1 + _SAME_BAND:
        return "faster", text
    if ratio < 1 - _SAME_BAND:
        return "not-faster", text
    lat, base_lat = m.get("latency_us"), m.get("staged_latency_us")
    if isinstance(lat, (int, float)) and isinstance(base_lat, (int, float)) and base_lat > 0:
        text += "; latency %s us vs %s us staged" % (_fmt(lat), _fmt(base_lat))
        return ("faster" if lat < base_lat * _LATENCY_GAIN else "not-faster"), text
    return ("faster" if ratio > 1 else "not-faster"), text


def _label(m):
    def one(index, bus):
        return "GPU %s (%s)" % (index, bus) if bus else "GPU %s" % index
    return "%s -> %s" % (one(m["src"], m.get("src_bus")), one(m["dst"], m.get("dst_bus")))


def judge_pair(m, links=None, nvlink=None, floors=None):
    """The verdict of one ordered pair (see the module text): the measurement plus
    ``verdict``, ``p2p``, ``ok``, ``link`` (:func:`pair_link`), ``theory_gbps``,
    ``fraction`` (of the link theory), ``floor_gbps``, ``floor_source``, ``gain``, ``reason``
    (one line naming the GPUs and the evidence) and ``fix``."""
    link = pair_link(m["src"], m["dst"], links, nvlink, m.get("src_bus"), m.get("dst_bus"))
    fraction_floor, absolute, floor_source = _pair_floor(floors, m["src"], m["dst"], m.get("src_bus"),
                                                         m.get("dst_bus"))
    theory = link["gbps"]
    floor = absolute if absolute is not None else (
        round(theory * fraction_floor, 3) if theory is not None else None)
    gbps = m.get("gbps")
    fraction = round(gbps / theory, 3) if isinstance(gbps, (int, float)) and theory else None
    gain, gain_text = _gain(m)
    label = _label(m)
    if m.get("error"):
        verdict, reason = "error", "%s: the copy failed: %s" % (label, m["error"])
    elif m.get("data_ok") is False:
        verdict = "wrong-data"
        reason = "%s: data read back wrong (%s wrong words, %s)" % (label, m.get("mismatches"), m.get("mode"))
    elif m.get("mode") != "p2p":
        verdict = "no-peer"
        why = ("the driver reports no peer access possible" if m.get("can_access_peer") is False
               else "peer access not enabled")
        reason = "%s: no P2P, copies staged through host memory (%s)" % (label, why)
    elif gain == "not-faster":
        verdict, reason = "no-gain", "%s: P2P no faster than staged copies: %s" % (label, gain_text)
    elif not isinstance(gbps, (int, float)):
        verdict, reason = "not-measured", "%s: no bandwidth measured" % label
    elif floor is not None and gbps < floor:
        verdict = "slow"
        how = ("%s GB/s (%s)" % (_fmt(absolute), floor_source) if absolute is not None else
               "%d%% of %s = %s GB/s (%s)" % (round(fraction_floor * 100), link["text"], _fmt(floor),
                                               floor_source))
        reason = "%s: P2P at %s GB/s%s, below the floor %s" % (
            label, _fmt(gbps), " (%d%% of the link)" % round(fraction * 100) if fraction else "", how)
    else:
        verdict = "ok"
        reason = "%s: P2P at %s GB/s%s" % (label, _fmt(gbps),
                                           " (%d%% of %s)" % (round(fraction * 100), link["text"])
                                           if fraction else " (%s)" % link["text"])
    out = dict(m)
    out.update({
        "verdict": verdict, "p2p": verdict in P2P_VERDICTS, "ok": verdict == "ok",
        "link": link, "theory_gbps": theory, "fraction": fraction, "floor_gbps": floor,
        "floor_source": floor_source, "gain": gain, "gain_text": gain_text, "reason": reason,
        "fix": None if verdict == "ok" else _FIX[verdict],
    })
    return out


def judge(measurements, links=None, nvlink=None, floors=None, source=None, simulated=False):
    """The verdict of every pair.

    ``measurements``: from one of the adapters. ``links``/``nvlink``: see :func:`pair_link`.
    ``floors``: ``{"min_link_fraction", "min_gbps", "pairs": {"A-B": {"min_link_fraction"
    | "min_gbps"}}}`` (the rig variables ``rig_p2p_min_link_fraction``, ``rig_p2p_min_gbps``,
    ``rig_p2p_pair_floors``). ``source``: what measured (for the texts); ``simulated``: the
    evidence came from a simulated GPU layer (every text says so).

    Returns ``pairs`` (per ordered pair, :func:`judge_pair`), ``gpus`` (indexes seen),
    ``unordered`` (per {a, b}: ``a``, ``b``, ``p2p`` (both directions P2P), ``ok``,
    ``verdicts`` {"a->b", "b->a"}), ``p2p_pairs`` / ``not_p2p_pairs`` (``[a, b]`` lists),
    ``ok``, ``problems`` (one line per ordered pair that is not ``ok``), ``source``,
    ``simulated``, ``text`` (one line).
    """
    judged = [judge_pair(m, links, nvlink, floors) for m in measurements]
    by_pair = {(p["src"], p["dst"]): p for p in judged}
    gpus = sorted({p["src"] for p in judged} | {p["dst"] for p in judged},
                  key=lambda x: (not isinstance(x, int), x))
    unordered = []
    for i, a in enumerate(gpus):
        for b in gpus[i + 1:]:
            ab, ba = by_pair.get((a, b)), by_pair.get((b, a))
            present = [p for p in (ab, ba) if p is not None]
            if not present:
                continue
            unordered.append({
                "a": a, "b": b,
                "p2p": all(p["p2p"] for p in present) and len(present) == 2,
                "ok": all(p["ok"] for p in present) and len(present) == 2,
                "verdicts": {"%s->%s" % (a, b): ab["verdict"] if ab else "not-measured",
                             "%s->%s" % (b, a): ba["verdict"] if ba else "not-measured"},
            })
    problems = [p["reason"] for p in judged if not p["ok"]]
    p2p_pairs = [[u["a"], u["b"]] for u in unordered if u["p2p"]]
    not_p2p = [[u["a"], u["b"]] for u in unordered if not u["p2p"]]
    tag = " (simulated GPUs)" if simulated else ""
    if not judged:
        text = "no GPU pair measured%s" % tag
    elif not problems:
        text = "%d GPU pair(s), every direction P2P at or above its floor%s" % (len(unordered), tag)
    else:
        text = "%d of %d GPU pair(s) do P2P%s; %d direction(s) not P2P at the floor, first: %s" % (
            len(p2p_pairs), len(unordered), tag, len(problems), problems[0])
    return {
        "pairs": judged, "gpus": gpus, "unordered": unordered, "p2p_pairs": p2p_pairs,
        "not_p2p_pairs": not_p2p, "ok": bool(judged) and not problems, "problems": problems,
        "source": source, "simulated": bool(simulated), "text": text,
    }


# --- on the rig: run the probe, gather the links, keep the evidence -------------------------


def probe_argv(gpu_layer):
    """The argv that runs the probe on this host (the simulated one on a lab rig:
    ``gpulayer.layer()["probe"]``), or None when there is none to run."""
    argv = gpu_layer.get("probe")
    if not argv and not gpu_layer.get("simulated"):
        argv = [probe.PROBE_BINARY_PATH]
    if not argv:
        return None
    argv = list(argv)
    if os.path.isabs(argv[0]) and not os.access(argv[0], os.X_OK):
        return None
    return argv


def _gpu_links(gpu_layer):
    """Per GPU index and bus id: ``{"gen", "width", "name"}`` of its PCIe link (the link's
    maximum generation, the current width: idle links drop their generation, not width)."""
    pci, smi = hostfacts.read_gpus(gpu_layer)
    out = {}
    names = {}
    for gpu in gpumodel.build(pci, smi.get("gpus") or []):
        link = gpu.get("link") or {}
        gen = link.get("gen_max") or link.get("gen_current")
        width = link.get("width_current") or link.get("width_max")
        entry = {"gen": gen, "width": width, "name": gpu.get("name")}
        out[gpu["bus_id"]] = entry
        if isinstance(gpu.get("index"), int):
            out[str(gpu["index"])] = entry
        names[gpu.get("index")] = gpu.get("name")
    return out, names


def nvlink_bridges(topo, nvlink_status=None, names=None):
    """Per NVLink-bridged pair ``"A-B"`` (GPU indexes, A < B): ``{"links", "gbps_per_link",
    "name"}`` from parsed ``topo -m`` (its ``NV#`` cells) and, when given, parsed
    ``nvidia-smi nvlink -s`` (the slower GPU's slowest active link speed)."""
    speeds = {}
    for gpu in (nvlink_status or {}).get("gpus") or []:
        active = [lk["speed_gbs"] for lk in gpu.get("links") or [] if lk.get("speed_gbs")]
        if active:
            speeds[gpu["index"]] = min(active)
    bridges = {}
    for bridge in (topo or {}).get("nvlink_pairs") or []:
        a, b = (int(g[3:]) for g in bridge["gpus"])
        per = [speeds[i] for i in (a, b) if i in speeds]
        bridges["%d-%d" % (min(a, b), max(a, b))] = {
            "links": bridge["links"], "gbps_per_link": min(per) if per else None,
            "name": (names or {}).get(a)}
    return bridges


def _nvlink(gpu_layer, names):
    """(:func:`nvlink_bridges`, ``topo -m`` links) read from this host's nvidia-smi."""
    rc, out, _ = hostfacts.run([gpu_layer["nvidia_smi"], "topo", "-m"])
    if rc != 0:
        return {}, None
    try:
        topo = smitopo.parse_topo_matrix(out)
    except ValueError:
        return {}, None
    status = None
    if topo.get("nvlink_pairs"):
        rc, out, _ = hostfacts.run([gpu_layer["nvidia_smi"], "nvlink", "-s"])
        if rc == 0:
            try:
                status = nvsmi.parse_nvlink_status(out)
            except ValueError:
                status = None
    return nvlink_bridges(topo, status, names), topo.get("links")


def collect(root="/", size_mib=32, iterations=5, timeout=300):
    """Run the probe on this host twice (peer access, then ``--no-p2p``) and gather what the
    verdict needs. Returns the evidence: ``available`` (False with ``reason`` when there is
    no probe or no GPU; ``timed_out`` True when the probe hung), ``simulated``, ``boot``,
    ``gpus`` (bus ids), ``probe`` and ``staged`` (parsed outputs; ``staged`` None when that
    run failed), ``links``, ``nvlink``, ``topo_links``, ``probe_rc``, ``stderr``."""
    gpu_layer = gpulayer.layer(root)
    evidence = {"schema": EVIDENCE_SCHEMA, "available": False, "reason": None,
                "simulated": bool(gpu_layer["simulated"]), "boot": reboot.boot_token(root),
                "gpus": [], "probe": None, "staged": None, "links": {}, "nvlink": {},
                "topo_links": None, "probe_rc": None, "stderr": None}
    argv = probe_argv(gpu_layer)
    if argv is None:
        evidence["reason"] = ("no rig probe at %s (the cuda role builds it; rig_cuda_version is "
                              "null or the role has not run)" % probe.PROBE_BINARY_PATH)
        return evidence
    args = ["--size-mib", str(int(size_mib)), "--iterations", str(int(iterations))]
    staged_run = {}
    worker = None
    if gpu_layer["simulated"]:
        # modelled figures do not contend: the staged run goes alongside (on real GPUs the
        # two runs would disturb each other's bandwidth, so they run one after the other)
        worker = threading.Thread(target=lambda: staged_run.update(
            result=hostfacts.run(argv + args + ["--no-p2p"], timeout=timeout)))
        worker.start()
    rc, out, err = hostfacts.run(argv + args, timeout=timeout)
    if worker is not None:
        worker.join()
    evidence["probe_rc"] = rc
    evidence["stderr"] = (err or "")[-2000:] or None
    if rc == 126 and "timed out" in (err or ""):
        # a copy that never finishes is what a broken P2P path does: evidence, not a gap
        evidence["timed_out"] = True
        evidence["reason"] = ("the rig probe did not finish within %d s: a GPU copy hangs (a broken "
                              "P2P path does that)" % timeout)
        return evidence
    try:
        parsed = probe.parse_probe_output(out)
    except ValueError as exc:
        evidence["reason"] = "the probe's output is unreadable (rc %s): %s" % (rc, exc)
        return evidence
    evidence["probe"] = parsed
    evidence["gpus"] = [d.get("pci_bus_id") for d in parsed.get("devices") or []]
    if not parsed.get("pairs"):
        evidence["reason"] = ("the probe found %d GPU(s): no pair to judge"
                              % len(parsed.get("devices") or []))
    rc, out, _ = staged_run.get("result") or hostfacts.run(argv + args + ["--no-p2p"], timeout=timeout)
    try:
        evidence["staged"] = probe.parse_probe_output(out)
    except ValueError:
        evidence["staged"] = None
    links, names = _gpu_links(gpu_layer)
    evidence["links"] = links
    evidence["nvlink"], evidence["topo_links"] = _nvlink(gpu_layer, names)
    evidence["available"] = bool(parsed.get("pairs"))
    return evidence


def judge_evidence(evidence, floors=None):
    """:func:`judge` of :func:`collect`'s evidence; None when it holds no pair."""
    if not evidence or not evidence.get("available") or not evidence.get("probe"):
        return None
    source = "rigctl-probe%s" % (" and rigctl-probe --no-p2p" if evidence.get("staged") else "")
    return judge(from_probe(evidence["probe"], evidence.get("staged")), evidence.get("links"),
                 evidence.get("nvlink"), floors, source=source, simulated=evidence.get("simulated"))


def read_evidence(path=EVIDENCE_PATH):
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("schema") == EVIDENCE_SCHEMA else None


def write_evidence(evidence, path=EVIDENCE_PATH):
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(evidence, handle, sort_keys=True)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def evidence_matches(evidence, root="/", gpus=None):
    """Whether recorded evidence still describes this host: same boot, and (when ``gpus``
    is given) the same GPU bus ids."""
    if not evidence or evidence.get("boot") != reboot.boot_token(root):
        return False
    if gpus is not None and sorted(evidence.get("gpus") or []) != sorted(gpus):
        return False
    return True
