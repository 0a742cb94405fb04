"""The P2P verdict and nccl.conf's P2P decision on the simulated probe (``rigctl-simgpu
probe``, format 1) of the lab profiles, run in-process with a temp state directory: the
healthy patched rig, the P2P-broken rig (topo -p2p says OK, GPU 0's copies are wrong), a
slow pair added as a fault, the stock driver and an NVLink-bridged pair."""

from __future__ import annotations

import contextlib
import io

import pytest

from rigctl.core import nccl, nvsmi, p2pverdict, probe, smiquery, smitopo
from rigctl.simgpu.tool.cli import main as simgpu_main

PROFILES = __import__("pathlib").Path(__file__).resolve().parents[2] / "rigctl" / "simgpu" / "profiles"
LINK_FIELDS = ["index", "pcie.link.gen.max", "pcie.link.width.current", "name"]


class Sim:
    def __init__(self, profile, state, monkeypatch):
        monkeypatch.setenv("RIGCTL_SIMGPU_PROFILE", str(PROFILES / f"{profile}.json"))
        monkeypatch.setenv("RIGCTL_SIMGPU_STATE_DIR", str(state))
        monkeypatch.setenv("RIGCTL_SIMGPU_ASSUME_ROOT", "1")
        monkeypatch.setenv("RIGCTL_SIMGPU_PROBE_SECONDS", "0")

    def run(self, *args, prog="nvidia-smi"):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = simgpu_main(list(args), prog=prog)
        return rc, out.getvalue(), err.getvalue()

    def probe(self, *args):
        return self.run("probe", "--size-mib", "16", "--iterations", "3", *args, prog="rigctl-simgpu")

    def verdict(self, floors=None):
        """What p2pverdict.collect gathers on a lab rig, judged."""
        rc, out, err = self.probe()
        assert "SIMULATED" in err
        parsed = probe.parse_probe_output(out)
        staged = probe.parse_probe_output(self.probe("--no-p2p")[1])
        rows = smiquery.parse_query_gpu_csv(
            self.run("--query-gpu=" + ",".join(LINK_FIELDS), "--format=csv,noheader,nounits")[1],
            fields=LINK_FIELDS)
        links = {str(int(r["index"])): {"gen": int(r["pcie.link.gen.max"]),
                                         "width": int(r["pcie.link.width.current"])} for r in rows}
        topo = smitopo.parse_topo_matrix(self.run("topo", "-m")[1])
        status = None
        if topo["nvlink_pairs"]:
            status = nvsmi.parse_nvlink_status(self.run("nvlink", "-s")[1])
        bridges = p2pverdict.nvlink_bridges(topo, status, {int(r["index"]): r["name"] for r in rows})
        measured = p2pverdict.from_probe(parsed, staged)
        verdict = p2pverdict.judge(measured, links, bridges, floors, source="rigctl-probe (simulated)",
                                   simulated=bool(parsed["header"].get("simulated")))
        return rc, verdict, topo

    def p2p_matrix(self):
        return smitopo.parse_topo_p2p(self.run("topo", "-p2p", "r")[1])


@pytest.fixture
def sim(tmp_path, monkeypatch):
    return lambda profile: Sim(profile, tmp_path / profile, monkeypatch)


def by_pair(verdict):
    return {(p["src"], p["dst"]): p for p in verdict["pairs"]}


def test_patched_rig_every_pair_p2p_at_link_speed(sim):
    s = sim("4x3090-p2p")
    rc, verdict, topo = s.verdict()
    assert rc == 0 and verdict["simulated"] and verdict["ok"], verdict["problems"]
    assert len(verdict["p2p_pairs"]) == 6 and "(simulated GPUs)" in verdict["text"]
    assert all(p["staged_source"] == "probe --no-p2p" for p in verdict["pairs"])
    got = nccl.p2p_decision(s.p2p_matrix(), topo["links"], verdict=verdict)
    assert (got["key"], got["value"], got["evidence"]) == ("NCCL_P2P_LEVEL", "SYS", "probe")
    assert "simulated GPUs" in got["reason"]


def test_p2p_broken_rig_topo_ok_but_gpu0_pairs_fail_and_nccl_gets_p2p_off(sim):
    s = sim("4x3090-p2p-broken")
    matrix = s.p2p_matrix()
    assert {c for row in matrix["status"].values() for c in row.values()} <= {"OK", "X"}
    rc, verdict, topo = s.verdict()
    assert rc == probe.EXIT_CHECK_FAILED
    pairs = by_pair(verdict)
    for peer in (1, 2, 3):
        assert pairs[(0, peer)]["verdict"] == "wrong-data" and pairs[(peer, 0)]["verdict"] == "wrong-data"
        assert "GPU 0 (0000:01:00.0)" in pairs[(0, peer)]["reason"]
    assert sorted(map(tuple, verdict["not_p2p_pairs"])) == [(0, 1), (0, 2), (0, 3)]
    got = nccl.p2p_decision(matrix, topo["links"], verdict=verdict)
    assert got["evidence"] == "probe" and sorted(got["bad_pairs"]) == [["GPU0", "GPU1"], ["GPU0", "GPU2"],
                                                                       ["GPU0", "GPU3"]]
    conf = nccl.parse_conf(nccl.render(nccl.settings(got)))
    allowed = nccl.allowed_pairs(conf, topo["links"], matrix["devices"])
    assert not any("GPU0" in pair for pair in allowed)
    assert "topo -p2p r disagrees on 3 pair(s) and is overruled" in got["reason"]


def test_slow_pair_fault_is_slow_but_still_p2p(sim):
    s = sim("4x3090-p2p")
    rc, _out, err = s.run("fault", "add", "slow_pair", "--gpus", "1,2", "--fraction", "0.25",
                          prog="rigctl-simgpu")
    assert rc == 0, err
    _rc, verdict, _topo = s.verdict()
    pairs = by_pair(verdict)
    assert pairs[(1, 2)]["verdict"] == "slow" and pairs[(1, 2)]["p2p"] is True
    assert "below the floor 60% of PCIe Gen4 x16" in pairs[(1, 2)]["reason"]
    assert pairs[(0, 1)]["verdict"] == "ok"
    # a per-pair floor for that pair accepts it
    _rc, relaxed, _ = s.verdict({"pairs": {"1-2": {"min_link_fraction": 0.1}}})
    assert by_pair(relaxed)[(1, 2)]["verdict"] == "ok"


def test_stock_driver_rig_has_no_p2p_pair(sim):
    _rc, verdict, _topo = sim("4x3090").verdict()
    assert {p["verdict"] for p in verdict["pairs"]} == {"no-peer"} and verdict["p2p_pairs"] == []


def test_nvlink_pair_is_judged_against_the_bridge(sim):
    _rc, verdict, topo = sim("2x3090-nvlink").verdict()
    assert topo["nvlink_pairs"]
    pair = by_pair(verdict)[(0, 1)]
    assert pair["link"]["kind"] == "nvlink" and pair["theory_gbps"] > 40
    assert pair["verdict"] == "ok"
