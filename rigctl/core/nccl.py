"""``/etc/nccl.conf`` from what a rig really is, shared by the nccl role's module and the
verification suite.

Stdlib only, Python 3.9 syntax: shipped to managed hosts as module_utils.

NCCL reads ``/etc/nccl.conf`` (``KEY=VALUE`` lines, ``#`` comments) in every process, after
the environment (a variable set in a job's environment still wins). What rigctl writes:

- P2P, from the evidence: where the rig probe has measured the GPU pairs (this boot's record
  in :data:`rigctl.core.p2pverdict.EVIDENCE_PATH`, else a fresh run; the simulated probe on
  a lab rig, which says so), its per-pair verdict decides: a pair is a P2P pair only when
  copies both ways arrived intact and faster than staged through host memory, whatever
  ``nvidia-smi topo -p2p r`` says (``OK`` is necessary, not sufficient). Without the probe
  ``topo -p2p r`` alone decides (the patched open module says ``OK``; stock driver ``NS``;
  chipset-attached ``CNS``). Every pair P2P: ``NCCL_P2P_LEVEL=SYS`` (NCCL's default stops at
  the PCIe host bridge and would leave CPU-crossing pairs staged). No pair:
  ``NCCL_P2P_DISABLE=1`` (NCCL's own detection can still try P2P and hang). Some pairs: the
  widest level that covers only P2P pairs, else disabled. The comment says which evidence
  decided. :func:`allowed_pairs` reads a written file back the way NCCL does (the suite
  compares that with the probe, not with this rule).
- ``NCCL_IB_DISABLE=1`` when the rig has no InfiniBand/RoCE device (no waiting on IB).
- ``NCCL_SOCKET_IFNAME`` from the inventory.
- The inventory's ``rig_nccl_env`` is merged on top, key by key (the P2P keys as one
  group: an inventory P2P setting replaces rigctl's P2P choice).

Every setting carries a comment saying why it is there.
"""

from __future__ import annotations

import os
import re

from . import gpulayer, hostfacts, p2pverdict, smitopo

CONF_PATH = "/etc/nccl.conf"
HEADER = "# Managed by rigctl (nccl role): every setting says why it is here. Local edits are " \
    "replaced;\n# set NCCL variables in the inventory (rig_nccl_env, rig_nccl_socket_ifname).\n"

# NCCL_P2P_LEVEL values, closest first (NCCL docs): a level lets P2P run over paths up to
# and including that type. nvidia-smi's NODE (PCIe host bridges of one CPU/NUMA node) is
# NCCL's PHB: NCCL has no NODE path type, and "PHB" there means "same NUMA node".
_PATH_ORDER = ("PIX", "PXB", "PHB", "SYS")
_PATH_ALIASES = {"NODE": "PHB"}
_LEVELS = ("PIX", "PXB", "PHB")
P2P_KEYS = ("NCCL_P2P_LEVEL", "NCCL_P2P_DISABLE")


def _pairs(devices):
    for i, a in enumerate(devices):
        for b in devices[i + 1:]:
            yield a, b


def _path_rank(path):
    if path is None:
        return len(_PATH_ORDER) - 1
    if path.startswith("NV"):
        return -1  # NVLink: closer than any PCIe path
    path = _PATH_ALIASES.get(path, path)
    return _PATH_ORDER.index(path) if path in _PATH_ORDER else len(_PATH_ORDER) - 1


def _topo_pairs_ok(p2p_matrix):
    devices = list(p2p_matrix["devices"])
    status = p2p_matrix["status"]
    pairs = list(_pairs(devices))
    ok = [(a, b) for a, b in pairs
          if status.get(a, {}).get(b) == "OK" and status.get(b, {}).get(a) == "OK"]
    cells = {(a, b): status.get(a, {}).get(b, "?") for a, b in pairs if (a, b) not in ok}
    return devices, pairs, ok, cells


def _verdict_pairs_ok(verdict):
    devices = ["GPU%d" % g for g in verdict["gpus"] if isinstance(g, int)]
    pairs = list(_pairs(devices))
    good = {frozenset(("GPU%d" % a, "GPU%d" % b)) for a, b in verdict["p2p_pairs"]}
    ok = [(a, b) for a, b in pairs if frozenset((a, b)) in good]
    cells = {}
    for u in verdict["unordered"]:
        key = ("GPU%d" % u["a"], "GPU%d" % u["b"])
        if frozenset(key) not in good:
            cells[key] = "/".join(sorted({v for v in u["verdicts"].values() if v not in ("ok", "slow")}))
    return devices, pairs, ok, cells


def _bad_text(cells, evidence, limit=6):
    """Why the pairs that are not P2P are not: topo's cells, or the probe's verdict per pair."""
    if evidence == "topo":
        return "nvidia-smi topo -p2p r: %s" % "/".join(sorted(set(cells.values())))
    items = ["%s-%s %s" % (a[3:], b[3:], why) for (a, b), why in sorted(cells.items())]
    more = " and %d more" % (len(items) - limit) if len(items) > limit else ""
    return "rig probe: " + ", ".join(items[:limit]) + more


def p2p_decision(p2p_matrix, topo_links=None, flavor=None, error=None, verdict=None,
                 no_probe_reason=None):
    """What NCCL should do about P2P on this rig, and which evidence decided it.

    ``verdict``: :func:`rigctl.core.p2pverdict.judge` of the rig probe's per-pair copies
    (None when the probe has not run: then ``no_probe_reason`` says why). Where it is given
    it decides: a pair is a P2P pair only when copies both ways arrived intact and faster
    than staged through host memory, whatever ``nvidia-smi topo -p2p r`` says. Without it
    ``p2p_matrix`` decides: ``smitopo.parse_topo_p2p(...)`` of ``topo -p2p r`` (None when the
    driver does not answer; then ``error`` says why). ``topo_links``: ``parse_topo_matrix(...)
    ["links"]`` (path type per GPU pair) or None. ``flavor``: the driver flavor rigctl
    installed (for the comment only).

    Returns ``{"key", "value", "reason", "pairs_ok", "pairs_total", "state", "evidence",
    "bad_pairs"}``; ``key`` None for a single-GPU rig. ``state``: all, none, partial, single,
    unknown. ``evidence``: ``probe`` (the verdict decided), ``topo`` (``topo -p2p r``
    alone), ``none``. ``bad_pairs``: ``[["GPU0", "GPU1"], ...]`` pairs that are not P2P.
    """
    module = " (driver flavor %s)" % flavor if flavor else ""
    if verdict and verdict.get("unordered"):
        evidence = "probe"
        devices, pairs, ok, cells = _verdict_pairs_ok(verdict)
        sim = ", simulated GPUs" if verdict.get("simulated") else ""
        source = "the rig probe's copies between every GPU pair (%s%s)" % (
            verdict.get("source") or "rigctl-probe", sim)
        if p2p_matrix is not None:
            _, _, topo_ok, _ = _topo_pairs_ok(p2p_matrix)
            disagree = [p for p in pairs if (p in topo_ok) != (p in ok)]
            if disagree:
                source += "; nvidia-smi topo -p2p r disagrees on %d pair(s) and is overruled" % len(disagree)
    elif p2p_matrix is None:
        return {
            "key": "NCCL_P2P_DISABLE", "value": "1", "state": "unknown", "pairs_ok": 0, "pairs_total": 0,
            "evidence": "none", "bad_pairs": [],
            "reason": "P2P state unknown (%s): disabled so NCCL cannot hang on a broken P2P path; "
            "run rigctl provision again once the driver answers" % (error or "nvidia-smi did not answer"),
        }
    else:
        evidence = "topo"
        devices, pairs, ok, cells = _topo_pairs_ok(p2p_matrix)
        source = "nvidia-smi topo -p2p r alone: the rig probe has not measured the pairs (%s)" % (
            no_probe_reason or "no probe result")
    bad_pairs = [[a, b] for a, b in pairs if (a, b) not in ok]
    base = {"pairs_total": len(pairs), "pairs_ok": len(ok), "evidence": evidence, "bad_pairs": bad_pairs}
    if not pairs:
        return dict(base, key=None, value=None, state="single", evidence="none",
                    reason="one GPU: no peer-to-peer traffic")
    if not bad_pairs:
        return dict(base, key="NCCL_P2P_LEVEL", value="SYS", state="all",
                    reason="P2P works between all %d GPU pairs%s: let NCCL use it across the whole "
                    "PCIe topology, CPU crossings included. Evidence: %s" % (len(pairs), module, source))
    if not ok:
        return dict(base, key="NCCL_P2P_DISABLE", value="1", state="none",
                    reason="P2P works between no GPU pair (%s)%s: disabled so NCCL stages copies "
                    "through host memory instead of hanging. Evidence: %s"
                    % (_bad_text(cells, evidence), module, source))
    # Some pairs work: the widest level that covers only working pairs, if any.
    links = topo_links or {}
    best = None
    for level in _LEVELS:
        rank = _PATH_ORDER.index(level)
        covered = [(a, b) for a, b in pairs if _path_rank(links.get(a, {}).get(b)) <= rank]
        if covered and all(pair in ok for pair in covered):
            best = (level, len(covered))
    if best is None or not links:
        return dict(base, key="NCCL_P2P_DISABLE", value="1", state="partial",
                    reason="P2P works between only %d of %d GPU pairs (others: %s)%s and no PCIe path "
                    "level covers only working pairs: disabled so NCCL cannot use a broken pair. "
                    "Evidence: %s" % (len(ok), len(pairs), _bad_text(cells, evidence), module, source))
    return dict(base, key="NCCL_P2P_LEVEL", value=best[0], state="partial",
                reason="P2P works between only %d of %d GPU pairs (others: %s)%s; the %d pairs within "
                "%s paths all work: P2P limited to those. Evidence: %s"
                % (len(ok), len(pairs), _bad_text(cells, evidence), module, best[1], best[0], source))


def allowed_pairs(conf, topo_links, devices):
    """The GPU pairs an nccl.conf lets NCCL use P2P on (``conf``: :func:`parse_conf`), read
    the way NCCL reads it: ``NCCL_P2P_DISABLE=1`` none; ``NCCL_P2P_LEVEL=L`` the pairs whose
    ``topo -m`` path is L or closer (NVLink always; NCCL's names LOC/NVL/PIX/PXB/PHB/SYS and
    the legacy integers 0-4 accepted); neither: None (NCCL's own default decides). Unknown paths count as the
    farthest (SYS)."""
    if str(conf.get("NCCL_P2P_DISABLE", "0")).strip() not in ("", "0"):
        return []
    level = conf.get("NCCL_P2P_LEVEL")
    if level is None:
        return None
    level = str(level).strip().upper()
    # the legacy integers: 0 LOC, 1 PIX, 2 PXB, 3 PHB, 4 (and above) SYS
    named = {"LOC": -2, "NVL": -1, "PIX": 0, "PXB": 1, "PHB": 2, "SYS": 3}
    rank = (min(int(level), 4) - 1 if int(level) > 0 else -2) if level.isdigit() else named.get(level)
    if rank is None:
        return None
    links = topo_links or {}
    return [[a, b] for a, b in _pairs(list(devices)) if _path_rank(links.get(a, {}).get(b)) <= rank]


def read_evidence(root="/", run=True, record=False, size_mib=32, iterations=5):
    """The rig probe's evidence for the P2P decision: this boot's record
    (:data:`p2pverdict.EVIDENCE_PATH`) when it still matches the rig, else (``run``) a fresh
    probe run, kept as the record when ``record``. Returns ``(evidence or None, reason)``:
    the reason says why there is none, or where it came from. A probe that hung returns its
    evidence with ``timed_out`` (no verdict: the caller must not allow P2P)."""
    path = os.path.join(root, p2pverdict.EVIDENCE_PATH.lstrip("/"))
    kept = p2pverdict.read_evidence(path)
    if kept and kept.get("available") and p2pverdict.evidence_matches(kept, root):
        return kept, "recorded this boot"
    if not run:
        return None, "no probe result recorded this boot"
    evidence = p2pverdict.collect(root, size_mib=size_mib, iterations=iterations)
    if evidence.get("timed_out"):
        return evidence, evidence["reason"]  # no verdict, but P2P must not be trusted
    if not evidence.get("available"):
        return None, evidence.get("reason") or "the probe found no GPU pair"
    if record:
        try:
            p2pverdict.write_evidence(evidence, path)
        except OSError:
            pass
    return evidence, "measured now"


def read_p2p(root="/"):
    """Run ``topo -p2p r`` and ``topo -m`` on this rig (the simulated tool on a lab rig) and
    return :func:`p2p_decision`'s inputs: ``(p2p_matrix or None, topo_links or None, error)``."""
    smi = gpulayer.layer(root)["nvidia_smi"]
    rc, out, err = hostfacts.run([smi, "topo", "-p2p", "r"])
    if rc != 0:
        text = (err or out).strip().splitlines()
        return None, None, "nvidia-smi topo -p2p r: %s" % (text[0] if text else "rc=%d" % rc)
    try:
        matrix = smitopo.parse_topo_p2p(out)
    except ValueError as exc:
        return None, None, "nvidia-smi topo -p2p r: %s" % exc
    links = None
    rc, out, _ = hostfacts.run([smi, "topo", "-m"])
    if rc == 0:
        try:
            links = smitopo.parse_topo_matrix(out)["links"]
        except ValueError:
            links = None
    return matrix, links, None


def ib_devices(root="/"):
    """InfiniBand/RoCE devices the kernel has (names under /sys/class/infiniband)."""
    path = os.path.join(root, "sys/class/infiniband")
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def net_interfaces(root="/"):
    try:
        return sorted(os.listdir(os.path.join(root, "sys/class/net")))
    except OSError:
        return []


def ifname_matches(spec, interfaces):
    """Interfaces NCCL_SOCKET_IFNAME ``spec`` selects, read as NCCL reads it: an optional
    ``^`` (exclude) then an optional ``=`` (exact names) apply to the whole list; without
    ``=`` each item is a name prefix."""
    spec = spec or ""
    exclude = spec.startswith("^")
    if exclude:
        spec = spec[1:]
    exact = spec.startswith("=")
    if exact:
        spec = spec[1:]
    items = [s for s in spec.split(",") if s]
    if not items:
        return [] if exclude is False and exact else list(interfaces)

    def hit(name):
        return any(name == i if exact else name.startswith(i) for i in items)

    if exclude:
        return [n for n in interfaces if not hit(n)]
    return [n for n in interfaces if hit(n)]


def _value(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    return str(v)


def settings(p2p, ib=(), socket_ifname=None, overrides=None):
    """The ordered list of ``{"key", "value", "reason", "source"}`` to write.

    ``p2p``: :func:`p2p_decision`'s answer; ``ib``: :func:`ib_devices`; ``overrides``: the
    inventory's ``rig_nccl_env``."""
    overrides = dict(overrides or {})
    out = []
    inventory_p2p = [k for k in P2P_KEYS if k in overrides]
    if p2p.get("key"):
        if inventory_p2p:
            for key in inventory_p2p:
                out.append({"key": key, "value": _value(overrides.pop(key)), "source": "inventory",
                            "reason": "set in the inventory (rig_nccl_env); rigctl would write %s=%s: %s"
                            % (p2p["key"], p2p["value"], p2p["reason"])})
        else:
            out.append({"key": p2p["key"], "value": p2p["value"], "reason": p2p["reason"],
                        "source": "rig"})
    else:
        for key in inventory_p2p:
            out.append({"key": key, "value": _value(overrides.pop(key)), "source": "inventory",
                        "reason": "set in the inventory (rig_nccl_env); %s" % p2p["reason"]})
    if "NCCL_IB_DISABLE" in overrides:
        out.append({"key": "NCCL_IB_DISABLE", "value": _value(overrides.pop("NCCL_IB_DISABLE")),
                    "source": "inventory",
                    "reason": "set in the inventory (rig_nccl_env); InfiniBand devices here: %s"
                    % (", ".join(ib) or "none")})
    elif not ib:
        out.append({"key": "NCCL_IB_DISABLE", "value": "1", "source": "rig",
                    "reason": "no InfiniBand/RoCE device on this rig (/sys/class/infiniband is empty): "
                    "NCCL skips the IB transport instead of probing for it"})
    if socket_ifname:
        out.append({"key": "NCCL_SOCKET_IFNAME", "value": socket_ifname, "source": "inventory",
                    "reason": "rig_nccl_socket_ifname: the interfaces NCCL uses for bootstrap and "
                    "socket traffic"})
    for key in sorted(overrides):
        out.append({"key": key, "value": _value(overrides[key]), "source": "inventory",
                    "reason": "set in the inventory (rig_nccl_env)"})
    return out


def render(entries):
    """The file text: header, then per setting its reason as a comment and the line."""
    lines = [HEADER.rstrip("\n")]
    for entry in entries:
        reason = re.sub(r"\s+", " ", entry["reason"]).strip()
        lines.append("")
        lines.append("# " + reason)
        lines.append("%s=%s" % (entry["key"], entry["value"]))
    return "\n".join(lines) + "\n"


def parse_conf(text):
    """``KEY=VALUE`` lines of an nccl.conf -> dict (comments and blank lines skipped; the
    first assignment of a key wins, as in NCCL, which sets a variable only when unset)."""
    values = {}
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ValueError("nccl.conf line without '=': %r" % raw)
        key, value = line.split("=", 1)
        values.setdefault(key.strip(), value.strip())
    return values


def undocumented_lines(text):
    """Setting lines that have no comment line right above them."""
    missing = []
    previous = ""
    for raw in (text or "").splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line and not previous.startswith("#"):
            missing.append(line)
        previous = line
    return missing


def comments(text):
    """``{key: the comment line right above its setting}`` of an nccl.conf (why it is there)."""
    out = {}
    previous = ""
    for raw in (text or "").splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key = line.split("=", 1)[0].strip()
            if previous.startswith("#") and key not in out:
                out[key] = previous.lstrip("#").strip()
        previous = line
    return out
