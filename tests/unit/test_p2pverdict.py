"""The P2P verdict per GPU pair (rigctl.core.p2pverdict): link theory, the adapters over the
real captures (p2pBandwidthLatencyTest, nvbandwidth, topo -m / nvlink -s) and constructed
rig-probe outputs (format 1), floors from the rig variables, and NVLink pairs."""

from __future__ import annotations

import json

import pytest

from rigctl.core import benchout, nvsmi, p2pbench, p2pverdict, probe, smitopo
from tests.captures import read_capture


def gen(g, w):
    return {"gen": g, "width": w}


def links_all(n, g, w):
    return {str(i): gen(g, w) for i in range(n)}


# --- link theory ---------------------------------------------------------------------------


@pytest.mark.parametrize("g,w,gbps", [(3, 16, 15.75), (4, 16, 31.5), (5, 16, 63.0), (3, 4, 3.938),
                                      (4, 4, 7.875), (3, 1, 0.984), (5, 8, 31.5)])
def test_pcie_theory_per_direction(g, w, gbps):
    assert p2pverdict.pcie_gbps(g, w) == pytest.approx(gbps, abs=0.01)


@pytest.mark.parametrize("g,w", [(None, 16), (4, None), (9, 16), (4, 0), (True, 16), (4.5, 16)])
def test_pcie_theory_unknown(g, w):
    assert p2pverdict.pcie_gbps(g, w) is None


def test_pcie_theory_takes_whole_floats():
    assert p2pverdict.pcie_gbps(4.0, 16.0) == 31.5


def test_narrowest_link_decides():
    link = p2pverdict.pair_link(0, 1, {"0": gen(4, 16), "1": gen(4, 4)})
    assert link["gbps"] == pytest.approx(7.875) and "Gen4 x4" in link["text"]
    assert p2pverdict.pair_link(0, 1, {})["gbps"] is None


# --- real captures: p2pBandwidthLatencyTest ------------------------------------------------


def bwtest(name):
    return p2pverdict.from_p2p_bandwidth_test(p2pbench.parse_p2p_bandwidth_latency_test(read_capture(name)))


def test_rtx5070_5060ti_gpu0_reaches_no_peer_while_the_5060tis_do_p2p():
    # topo -p2p rw on this host says OK everywhere; the bandwidth test says otherwise.
    m = bwtest("p2pBandwidthLatencyTest__rtx5070-5060tix4__1.txt")
    assert len(m) == 20
    verdict = p2pverdict.judge(m, links_all(5, 3, 4), source="p2pBandwidthLatencyTest")
    by = {(p["src"], p["dst"]): p for p in verdict["pairs"]}
    for peer in range(1, 5):
        for pair in (by[(0, peer)], by[(peer, 0)]):
            assert pair["verdict"] == "no-peer" and pair["p2p"] is False
            assert "GPU 0" in pair["reason"] and "driver reports no peer access" in pair["reason"]
            assert "stock GeForce driver" in pair["fix"]
    # Among the 5060 Tis both copies hit the Gen3 x4 link (3.58 vs 3.51 GB/s): the latency
    # (0.48 us vs 17.6 us staged) shows peer access is really used; 91% of the link.
    assert by[(1, 2)]["verdict"] == "ok" and by[(1, 2)]["gain"] == "faster"
    assert by[(1, 2)]["fraction"] == pytest.approx(3.58 / 3.938, abs=0.01)
    assert "latency" in by[(1, 2)]["gain_text"]
    assert sorted(map(tuple, verdict["p2p_pairs"])) == [(1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4)]
    assert sorted(map(tuple, verdict["not_p2p_pairs"])) == [(0, 1), (0, 2), (0, 3), (0, 4)]
    assert verdict["ok"] is False and len(verdict["problems"]) == 8


def test_rtx4090x2_early_driver_one_direction_slower_than_staged():
    # 525.60.13 said CAN Access: 0->1 27.07 GB/s (staged 22.47), but 1->0 11.46 (staged 22.67).
    verdict = p2pverdict.judge(bwtest("p2pBandwidthLatencyTest__rtx4090x2__1.txt"),
                               links_all(2, 4, 16))
    by = {(p["src"], p["dst"]): p for p in verdict["pairs"]}
    assert by[(0, 1)]["verdict"] == "ok" and by[(0, 1)]["fraction"] == pytest.approx(0.86, abs=0.01)
    assert by[(1, 0)]["verdict"] == "no-gain"
    assert "11.46 GB/s P2P vs 22.67 GB/s staged" in by[(1, 0)]["reason"]
    assert verdict["unordered"] == [{"a": 0, "b": 1, "p2p": False, "ok": False,
                                     "verdicts": {"0->1": "ok", "1->0": "no-gain"}}]
    assert verdict["p2p_pairs"] == [] and verdict["not_p2p_pairs"] == [[0, 1]]


@pytest.mark.parametrize("name,n", [("p2pBandwidthLatencyTest__rtx4090x2__2.txt", 2),
                                    ("p2pBandwidthLatencyTest__rtx3090x2__1.txt", 2),
                                    ("p2pBandwidthLatencyTest__rtx3090x4__1.txt", 4)])
def test_stock_geforce_captures_have_no_p2p_pair(name, n):
    verdict = p2pverdict.judge(bwtest(name), links_all(n, 4, 16))
    assert len(verdict["pairs"]) == n * (n - 1)
    assert {p["verdict"] for p in verdict["pairs"]} == {"no-peer"}
    assert verdict["p2p_pairs"] == [] and len(verdict["not_p2p_pairs"]) == n * (n - 1) // 2


def test_bidirectional_only_capture_gives_no_unidirectional_measurement():
    assert bwtest("p2pBandwidthLatencyTest__rtx4090x6__1.txt") == []


# --- real captures: nvbandwidth -------------------------------------------------------------


def nvb(name):
    return p2pverdict.from_nvbandwidth(benchout.parse_nvbandwidth(read_capture(name)))


def test_rtxa6000x6_nvbandwidth_pairs_against_gen4_x16():
    m = nvb("nvbandwidth__rtxa6000x6__1.txt")
    assert len(m) == 30 and all(x["mode"] == "p2p" for x in m)
    links = links_all(6, 4, 16)
    default = p2pverdict.judge(m, links, source="nvbandwidth")
    assert default["ok"] and len(default["p2p_pairs"]) == 15  # 21.8 GB/s is 69% of 31.5
    strict = p2pverdict.judge(m, links, floors={"min_link_fraction": 0.75})
    slow = {(p["src"], p["dst"]) for p in strict["pairs"] if p["verdict"] == "slow"}
    assert (0, 3) in slow and (0, 1) not in slow
    assert all(p["p2p"] for p in strict["pairs"])  # slow P2P is still P2P for NCCL
    pair = next(p for p in strict["pairs"] if (p["src"], p["dst"]) == (0, 3))
    assert "below the floor 75% of PCIe Gen4 x16" in pair["reason"]
    assert "rig_p2p_min_link_fraction" in pair["reason"]
    # per pair: the cross-switch pairs may go down to 20 GB/s
    floors = {"min_link_fraction": 0.75, "pairs": {"0-3": {"min_gbps": 20}}}
    judged_pairs = p2pverdict.judge(m, links, floors=floors)["pairs"]
    pair = next(p for p in judged_pairs if (p["src"], p["dst"]) == (3, 0))
    assert pair["verdict"] == "ok" and pair["floor_gbps"] == 20
    assert pair["floor_source"] == "rig_p2p_pair_floors[0-3]"


def test_rtx4090x8_nvbandwidth_excerpt_has_no_device_to_device_test():
    assert nvb("nvbandwidth__rtx4090x8__1.txt") == []


def test_h800x8_nvbandwidth_judged_against_nvlink():
    m = nvb("nvbandwidth__h800x8__1.txt")
    assert len(m) == 56
    bridges = {f"{a}-{b}": {"links": 8, "gbps_per_link": None, "name": "NVIDIA H800"}
               for a in range(8) for b in range(a + 1, 8)}
    verdict = p2pverdict.judge(m, links_all(8, 5, 16), bridges)
    assert all(p["link"]["kind"] == "nvlink" for p in verdict["pairs"])
    assert all(p["theory_gbps"] == 200.0 for p in verdict["pairs"])


# --- NVLink ----------------------------------------------------------------------------------


def test_rtx3090_nvlink_bridge_from_topo_and_nvlink_status_captures():
    topo = smitopo.parse_topo_matrix(read_capture("topo-m__rtx3090x2-nv4__1.txt"))
    status = nvsmi.parse_nvlink_status(read_capture("nvlink-s__rtx3090x2__1.txt"))
    bridges = p2pverdict.nvlink_bridges(topo, status, {0: "NVIDIA GeForce RTX 3090"})
    assert bridges == {"0-1": {"links": 4, "gbps_per_link": 14.062, "name": "NVIDIA GeForce RTX 3090"}}
    link = p2pverdict.pair_link(1, 0, links_all(2, 4, 16), bridges)
    assert link["kind"] == "nvlink" and link["gbps"] == pytest.approx(56.248)


def test_nvlink_pair_judged_against_nvlink_not_pcie():
    bridges = {"0-1": {"links": 4, "gbps_per_link": None, "name": "NVIDIA GeForce RTX 3090"}}
    m = [p2pverdict._measurement(0, 1, mode="p2p", gbps=25.0, staged_gbps=11.0, data_ok=True),
         p2pverdict._measurement(1, 0, mode="p2p", gbps=50.0, staged_gbps=11.0, data_ok=True)]
    by = {(p["src"], p["dst"]): p for p in p2pverdict.judge(m, links_all(2, 4, 16), bridges)["pairs"]}
    # 25 GB/s is 79% of Gen4 x16 but 44% of the bridge: over NVLink that is slow.
    assert by[(0, 1)]["verdict"] == "slow" and by[(0, 1)]["theory_gbps"] == pytest.approx(56.25)
    assert "NVLink x4" in by[(0, 1)]["reason"]
    assert by[(1, 0)]["verdict"] == "ok"
    without = p2pverdict.judge(m, links_all(2, 4, 16))["pairs"]
    assert without[0]["verdict"] == "ok" and without[0]["link"]["kind"] == "pcie"


# --- the rig probe (format 1), constructed outputs -------------------------------------------


def probe_text(pairs, *, p2p=True, hosts=None, n=2):
    lines = [{"type": "probe", "probe": "rigctl-probe", "format": 1, "cuda_runtime": 12080,
              "cuda_driver": 12080, "device_count": n, "device_order": "PCI_BUS_ID",
              "options": {"size_mib": 32, "iterations": 5, "p2p": p2p, "latency_bytes": 4,
                          "latency_copies": 100}}]
    bus = [f"0000:{0x01 + 0x20 * i:02x}:00.0" for i in range(n)]
    for i in range(n):
        lines.append({"type": "device", "index": i, "name": "NVIDIA GeForce RTX 4090",
                      "pci_bus_id": bus[i], "usable": True, "kernel_ok": True, "ok": True, "error": None})
    for i in range(n):
        h2d, d2h = (hosts or {}).get(i, (24.6, 26.1))
        lines.append({"type": "host_transfer", "device": i, "pci_bus_id": bus[i], "h2d_gbps": h2d,
                      "d2h_gbps": d2h, "data_ok": True, "mismatches": 0, "ok": True, "error": None})
    for (src, dst), values in pairs.items():
        pair = {"type": "pair", "src": src, "dst": dst, "src_pci_bus_id": bus[src],
                "dst_pci_bus_id": bus[dst], "can_access_peer": True, "peer_access": p2p,
                "mode": "p2p" if p2p else "staged", "peer_access_error": None, "gbps": 25.0,
                "latency_us": 1.9, "data_ok": True, "mismatches": 0, "ok": True, "error": None}
        pair.update(values)
        lines.append(pair)
    lines.append({"type": "summary", "ok": True, "exit_code": 0})
    return "\n".join(json.dumps(x) for x in lines) + "\n"


def judged(pairs, staged=None, **kw):
    parsed = probe.parse_probe_output(probe_text(pairs))
    staged_parsed = probe.parse_probe_output(probe_text(staged, p2p=False)) if staged else None
    verdict = p2pverdict.judge(p2pverdict.from_probe(parsed, staged_parsed), links_all(2, 4, 16), **kw)
    return verdict, {(p["src"], p["dst"]): p for p in verdict["pairs"]}


STAGED = {(0, 1): {"gbps": 11.2, "latency_us": 14.0}, (1, 0): {"gbps": 11.0, "latency_us": 15.0}}


def test_probe_healthy_pair_both_ways():
    verdict, by = judged({(0, 1): {"gbps": 24.4}, (1, 0): {"gbps": 24.6}}, STAGED)
    assert verdict["ok"] and verdict["p2p_pairs"] == [[0, 1]]
    assert by[(0, 1)]["staged_source"] == "probe --no-p2p"
    assert by[(0, 1)]["fraction"] == pytest.approx(0.775, abs=0.001)
    assert by[(0, 1)]["src_bus"] == "0000:01:00.0" and by[(0, 1)]["fix"] is None
    assert verdict["source"] is None and "every direction P2P" in verdict["text"]


def test_probe_wrong_data_one_way_is_no_p2p_pair():
    verdict, by = judged({(0, 1): {"gbps": 24.4, "data_ok": False, "mismatches": 4096, "ok": False},
                          (1, 0): {"gbps": 24.6}}, STAGED)
    assert by[(0, 1)]["verdict"] == "wrong-data" and "4096 wrong words" in by[(0, 1)]["reason"]
    assert "iommu=pt" in by[(0, 1)]["fix"]
    assert verdict["not_p2p_pairs"] == [[0, 1]] and not verdict["ok"]


def test_probe_error_pair():
    _, by = judged({(0, 1): {"gbps": None, "ok": False, "error": {
        "call": "cudaMemcpyPeer", "cuda_error": "cudaErrorMapBufferObjectFailed", "code": 205,
        "message": "mapping of buffer object failed"}}, (1, 0): {"gbps": 24.6}}, STAGED)
    assert by[(0, 1)]["verdict"] == "error"
    assert "cudaMemcpyPeer: cudaErrorMapBufferObjectFailed" in by[(0, 1)]["reason"]


def test_probe_p2p_on_but_slower_than_staged_is_no_gain():
    # ReBAR off on 5090s: "P2P enabled" measured 2-12 GB/s, worse than staged copies.
    _, by = judged({(0, 1): {"gbps": 4.1, "latency_us": 9.0}, (1, 0): {"gbps": 24.6}}, STAGED)
    assert by[(0, 1)]["verdict"] == "no-gain" and by[(0, 1)]["p2p"] is False
    assert "Resizable BAR" in by[(0, 1)]["fix"]


def test_probe_slow_pair_absolute_floor():
    _, by = judged({(0, 1): {"gbps": 19.0}, (1, 0): {"gbps": 24.6}}, STAGED, floors={"min_gbps": 20})
    assert by[(0, 1)]["verdict"] == "slow" and by[(0, 1)]["p2p"] is True
    assert "below the floor 20 GB/s (rig_p2p_min_gbps)" in by[(0, 1)]["reason"]
    assert by[(1, 0)]["verdict"] == "ok"


def test_probe_staged_mode_is_no_peer():
    _, by = judged({(0, 1): {"mode": "staged", "can_access_peer": False, "gbps": 11.0},
                    (1, 0): {"gbps": 24.6}}, STAGED)
    assert by[(0, 1)]["verdict"] == "no-peer"


def test_probe_without_staged_run_estimates_from_host_transfers():
    verdict, by = judged({(0, 1): {"gbps": 24.4}, (1, 0): {"gbps": 24.6}})
    assert by[(0, 1)]["staged_source"] == "estimated from host transfers"
    # staged estimate = min(d2h of GPU 0, h2d of GPU 1) = 24.6: within 5%, latency unknown
    assert by[(0, 1)]["staged_gbps"] == 24.6 and by[(0, 1)]["gain"] == "not-faster"


def test_judge_of_nothing():
    verdict = p2pverdict.judge([], simulated=True)
    assert verdict["ok"] is False and verdict["text"] == "no GPU pair measured (simulated GPUs)"


# --- floors from the rig variables -------------------------------------------------------------


@pytest.mark.parametrize("key,ok", [("0-1", True), ("0000:01:00.0-0000:21:00.0", True), ("3-12", True),
                                    ("0", False), ("0-1-2", False), ("a-b", False), (3, False)])
def test_pair_keys(key, ok):
    assert (p2pverdict.pair_key_problem(key) is None) is ok


def test_pair_floor_by_bus_id_applies_both_ways():
    m = [p2pverdict._measurement(0, 1, src_bus="0000:01:00.0", dst_bus="0000:21:00.0", mode="p2p",
                                 gbps=10.0, staged_gbps=5.0, data_ok=True),
         p2pverdict._measurement(1, 0, src_bus="0000:21:00.0", dst_bus="0000:01:00.0", mode="p2p",
                                 gbps=10.0, staged_gbps=5.0, data_ok=True)]
    floors = {"pairs": {"0000:21:00.0-0000:01:00.0": {"min_link_fraction": 0.3}}}
    verdict = p2pverdict.judge(m, links_all(2, 4, 16), floors=floors)
    assert [p["verdict"] for p in verdict["pairs"]] == ["ok", "ok"]
    assert p2pverdict.judge(m, links_all(2, 4, 16))["pairs"][0]["verdict"] == "slow"


# --- collect: the probe run on the host (a stand-in probe program in a temp dir) -----------


@pytest.fixture
def fake_host(tmp_path, monkeypatch):
    from rigctl.core import gpulayer, hostfacts

    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\nexit 9\n")  # the driver does not answer: no topo, no NVLink
    smi.chmod(0o755)
    prog = tmp_path / "probe"

    def layer(root="/"):
        return {"simulated": False, "simulation": None, "sys_root": str(tmp_path / "sys"),
                "nvidia_smi": str(smi), "probe": [str(prog)], "simgpu_tool": None}

    monkeypatch.setattr(gpulayer, "layer", layer)
    monkeypatch.setattr(hostfacts, "read_gpus", lambda gl, driver=True: ([], {"gpus": []}))
    return prog


def test_collect_runs_the_probe_with_and_without_peer_access(fake_host, tmp_path):
    (tmp_path / "p2p.jsonl").write_text(probe_text({(0, 1): {"gbps": 24.4}, (1, 0): {"gbps": 24.6}}))
    (tmp_path / "staged.jsonl").write_text(probe_text(STAGED, p2p=False))
    fake_host.write_text(f'#!/bin/sh\ncase "$*" in *--no-p2p*) cat {tmp_path}/staged.jsonl;; '
                         f'*) cat {tmp_path}/p2p.jsonl;; esac\n')
    fake_host.chmod(0o755)
    evidence = p2pverdict.collect(str(tmp_path))
    assert evidence["available"] and evidence["gpus"] == ["0000:01:00.0", "0000:21:00.0"]
    assert evidence["staged"]["header"]["options"]["p2p"] is False and evidence["nvlink"] == {}
    verdict = p2pverdict.judge_evidence(evidence)
    assert verdict["source"] == "rigctl-probe and rigctl-probe --no-p2p"
    assert {p["staged_source"] for p in verdict["pairs"]} == {"probe --no-p2p"}
    assert json.loads(json.dumps(evidence)) == evidence  # kept as JSON


def test_collect_a_probe_that_hangs_is_evidence_against_p2p(fake_host, tmp_path):
    from rigctl.core import nccl

    fake_host.write_text("#!/bin/sh\nexec sleep 30\n")
    fake_host.chmod(0o755)
    evidence = p2pverdict.collect(str(tmp_path), timeout=1)
    assert evidence["timed_out"] and not evidence["available"]
    assert "did not finish within 1 s" in evidence["reason"]
    assert p2pverdict.judge_evidence(evidence) is None
    got = nccl.p2p_decision(None, None, error=evidence["reason"])  # what nccl_setup writes then
    assert (got["key"], got["value"]) == ("NCCL_P2P_DISABLE", "1") and "hangs" in got["reason"]


def test_collect_without_a_probe_says_why(tmp_path, monkeypatch):
    from rigctl.core import gpulayer

    monkeypatch.setattr(gpulayer, "layer", lambda root="/": {
        "simulated": False, "probe": [str(tmp_path / "missing")], "nvidia_smi": "nvidia-smi"})
    evidence = p2pverdict.collect(str(tmp_path))
    assert not evidence["available"] and "the cuda role builds it" in evidence["reason"]
