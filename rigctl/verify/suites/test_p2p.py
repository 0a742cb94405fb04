"""P2P, judged per GPU pair: the rig probe copies data between every ordered pair of GPUs
with peer access and again staged through host memory (``--no-p2p``), and
rigctl.core.p2pverdict judges each pair: data intact both ways, peer access really used
(faster than staged), bandwidth at least the floor of the pair's narrowest link
(rig_p2p_min_link_fraction, rig_p2p_min_gbps, rig_p2p_pair_floors; NVLink-bridged pairs
against their NVLink). On a lab rig the simulated probe answers and every result says
simulated. The verdict is attached for the report (key ``p2p``)."""

from __future__ import annotations

import pytest

from rigctl.core import smitopo
from rigctl.verify.checks import attach, expect, reads_gpu


@pytest.fixture
def verdict(p2p_evidence) -> dict:
    evidence = p2p_evidence.get("evidence") or {}
    expect(
        not evidence.get("timed_out"),
        "the rig probe finishes its copies between every GPU pair",
        expected="the probe's summary line",
        found=evidence.get("reason"),
        fix="a copy that hangs is a broken P2P path: check IOMMU (iommu=pt) and ACS with rigctl "
        "verify's hardware checks; nccl.conf keeps P2P off meanwhile",
    )
    result = p2p_evidence.get("verdict")
    if not result or not result.get("pairs"):
        pytest.skip(f"no GPU pair measured: {p2p_evidence.get('evidence_from') or 'no probe'}")
    attach("p2p", result)
    return result


def _expected_p2p_pairs(host, rig_vars, verdict) -> tuple[set, str]:
    """The ordered pairs that must do P2P: every pair on a rig with the patched module
    (rig_driver_flavor p2p); elsewhere the pairs `nvidia-smi topo -p2p r` calls OK (what
    NCCL would try)."""
    pairs = {(p["src"], p["dst"]) for p in verdict["pairs"]}
    if rig_vars.get("rig_driver_version") and rig_vars.get("rig_driver_flavor") == "p2p":
        return pairs, "rig_driver_flavor p2p: every pair"
    res = host.run("nvidia-smi topo -p2p r")  # the simulator's on a lab rig
    try:
        matrix = smitopo.parse_topo_p2p(res.stdout)
    except ValueError:
        return set(), "topo -p2p r unreadable: no pair expected to do P2P"
    ok = {(a, b) for a, b in pairs
          if matrix["status"].get(f"GPU{a}", {}).get(f"GPU{b}") == "OK"}
    return ok, "the pairs nvidia-smi topo -p2p r calls OK"


@reads_gpu
def test_p2p_copies_arrive_intact_between_every_gpu_pair(verdict):
    bad = [p for p in verdict["pairs"] if p["verdict"] in ("wrong-data", "error")]
    expect(
        not bad,
        "data copied between every ordered GPU pair arrives intact (P2P or staged)",
        expected="every pair's copies read back equal, no CUDA error",
        found="; ".join(p["reason"] for p in bad),
        fix=bad[0]["fix"] if bad else "",
    )


@reads_gpu
def test_p2p_pairs_that_should_do_p2p_really_do_at_link_speed(host, rig_vars, verdict):
    want, why = _expected_p2p_pairs(host, rig_vars, verdict)
    if not want:
        pytest.skip("no GPU pair is expected to do P2P here (stock driver, topo -p2p r: no OK pair)")
    bad = [p for p in verdict["pairs"] if (p["src"], p["dst"]) in want and not p["ok"]]
    floor = rig_vars.get("rig_p2p_min_gbps")
    floor_text = (f"{floor} GB/s" if floor is not None
                  else f"{round(100 * rig_vars.get('rig_p2p_min_link_fraction', 0.6))}% of the link")
    expect(
        not bad,
        f"every GPU pair that should do P2P ({why}) does: peer access used, faster than "
        f"staged through host memory, at least {floor_text}"
        + (" (simulated GPUs)" if verdict.get("simulated") else ""),
        expected=f"{len(want)} ordered pair(s) with verdict ok",
        found="; ".join(p["reason"] for p in bad),
        fix=bad[0]["fix"] if bad else "",
    )
