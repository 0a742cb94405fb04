"""Rig health judgement (rigctl.core.health) on real captured outputs and constructed
inputs: Xid, AER (kernel log and sysfs counters), links and throttling under load, NVLink,
NUMA, power budget, DCGM, and evaluate() over all of them.

Captures are read in place from ../shared/captures (tests/captures.py); the values asserted
were read off the files.
"""

from __future__ import annotations

import json

import pytest

from rigctl.core import benchout, health, kernlog, nvsmi, pcidev, pcitopo, smiquery, smitopo
from tests.captures import read_capture
from tests.unit.test_parsers_health import DCGMI_FAIL_AND_WARN


def _gpus(*buses, name="NVIDIA GeForce RTX 3090", numa=None, gen_max=4, width_max=16,
          current_w=270, default_w=350):
    out = []
    for index, bus in enumerate(buses):
        out.append({
            "index": index, "bus_id": bus, "name": name,
            "numa_node": numa[index] if numa else 0,
            "link": {"gen_max": gen_max, "width_max": width_max},
            "power": {"current_w": current_w, "default_w": default_w},
        })
    return out


def _only(findings, check):
    return [f for f in findings if f["check"] == check]


# --- Xid --------------------------------------------------------------------------------


def test_xid_79_and_154_fail_naming_the_gpu_and_the_riser_fix():
    xid = kernlog.parse_xid(read_capture("dmesg-xid__rtx5080-xid79-154__1.txt"))
    findings = health.xid_findings(xid, _gpus("0000:01:00.0"))
    assert [(f["gpu"], f["severity"]) for f in findings] == [
        ({"index": 0, "bus_id": "0000:01:00.0"}, "fail"),
        ({"index": 0, "bus_id": "0000:01:00.0"}, "fail"),
    ]
    fell, recovery = findings
    assert fell["evidence"] == (
        "GPU 0 (0000:01:00.0): Xid 79 (GPU has fallen off the bus) x1: GPU has fallen off the bus."
    )
    assert "riser" in fell["fix"] and "PSU" in fell["fix"]
    assert "Xid 154" in recovery["evidence"] and "PF FLR" in recovery["evidence"]
    json.dumps(findings)


def test_xid_gpu_that_left_the_driver_is_named_by_bus_id():
    xid = kernlog.parse_xid(read_capture("dmesg-aer-xid__tesla-surprise-down-xid79__1.txt"))
    (fell,) = health.xid_findings(xid, [])
    assert fell["gpu"] == {"index": None, "bus_id": "0000:02:00.0"}
    assert fell["evidence"].startswith("GPU at 0000:02:00.0: Xid 79 (GPU has fallen off the bus) x1 at "
                                       "74889.644138 s after boot")


def test_xid_13_burst_warns_with_first_and_last_time():
    xid = kernlog.parse_xid(read_capture("dmesg-xid__a800x8-xid13__1.txt"))
    (f,) = health.xid_findings(xid, _gpus("0000:43:00.0"))
    assert f["severity"] == "warn"
    assert ("Xid 13 (Graphics engine exception) x6 from 93297.027938 to 93297.043905 s after boot"
            in f["evidence"])
    assert "application" in f["fix"]


def test_xid_45_after_nvlink_errors_informs_and_names_the_cause():
    xid = kernlog.parse_xid(read_capture("dmesg-xid__nvlink-node-xid45-after-145-149__1.txt"))
    findings = health.xid_findings(xid, [])
    assert {f["severity"] for f in findings} == {"info"}
    assert len(findings) == 4
    dc = [f for f in findings if f["gpu"]["bus_id"] == "0000:dc:00.0"][0]
    assert "x2" in dc["evidence"] and "after Xid 149" in dc["evidence"]
    assert "process python3" in dc["evidence"]


def test_xid_119_gsp_fails_with_wallclock_times():
    xid = kernlog.parse_xid(read_capture("dmesg-xid__a100x8-xid119__1.txt"))
    findings = health.xid_findings(xid, [])
    assert [f["severity"] for f in findings] == ["fail", "fail"]
    assert "at Sun Apr 26 23:12:26 2026" in findings[0]["evidence"]
    assert "GSP" in findings[0]["fix"]


def test_xid_codes_added_to_the_table():
    for code in (57, 58, 80, 140, 143):
        info = kernlog.xid_info(code)
        assert info["known"] and info["severity"] == "fail"
    assert "riser" in kernlog.xid_info(80)["fix"] or "PCIe" in kernlog.xid_info(80)["fix"]


# --- AER ---------------------------------------------------------------------------------


def test_aer_kernel_log_surprise_down_fails_with_slot_path():
    aer = kernlog.parse_aer(read_capture("dmesg-aer-xid__tesla-surprise-down-xid79__1.txt"))
    gpus = _gpus("0000:02:00.0")
    (f,) = health.aer_findings(gpus, {"0000:02:00.0": ["0000:00:02.0"]}, {}, aer)
    assert f["severity"] == "fail"
    assert f["gpu"] == {"index": 0, "bus_id": "0000:02:00.0"}
    assert f["evidence"] == (
        "GPU 0 (0000:02:00.0): bridge 0000:00:02.0 above it, slot path 0000:00:02.0 > 0000:02:00.0: "
        "2 AER records in the kernel log (corrected 1, fatal 1; SDES 1, Timeout 1) from 74785.66038"
    )
    assert "riser" in f["fix"]


def test_aer_kernel_log_corrected_only_warns():
    aer = kernlog.parse_aer(read_capture("dmesg-aer__amd-gpp-rootport-gpu__1.txt"))
    (f,) = health.aer_findings(_gpus("0000:0b:00.0"), {"0000:0b:00.0": ["0000:00:03.1"]}, {}, aer)
    assert f["severity"] == "warn"
    assert "3 AER records" in f["evidence"] and "BadTLP 1, Timeout 1" in f["evidence"]
    assert "from Sep 19 16:18:02" in f["evidence"]


def test_aer_kernel_log_of_other_devices_is_not_about_gpus():
    aer = kernlog.parse_aer(read_capture("dmesg-aer__intel-rp-wifi-rxerr-badtlp-baddllp__1.txt"))
    assert health.aer_findings(_gpus("0000:01:00.0"), {"0000:01:00.0": ["0000:00:01.0"]}, {}, aer) == []


NEW_COR = (
    "RxErr 112\nBadTLP 3\nBadDLLP 0\nRollover 0\nTimeout 1\nNonFatalErr 0\nCorrIntErr 0\nHeaderOF 0\n"
    "TOTAL_ERR_COR 116\n"
)
OLD_COR = (
    "Receiver Error 2\nBad TLP 0\nBad DLLP 0\nRELAY_NUM Rollover 0\nReplay Timer Timeout 0\n"
    "Advisory Non-Fatal 0\nCorrected Internal Error 0\nHeader Log Overflow 0\nTOTAL_ERR_COR 2\n"
)
NONFATAL = (
    "Undefined 0\nDLP 0\nSDES 0\nTLP 0\nFCP 0\nCmpltTO 4\nCmpltAbrt 0\nUnxCmplt 0\nTOTAL_ERR_NONFATAL 4\n"
)
ZERO_FATAL = "Undefined 0\nDLP 0\nSDES 0\nTOTAL_ERR_FATAL 0\n"


def test_aer_counters_both_kernel_spellings():
    new = kernlog.parse_aer_counters(NEW_COR)
    assert new["total"] == 116 and new["total_key"] == "TOTAL_ERR_COR"
    assert new["errors"]["RxErr"] == 112 and new["errors"]["AdvNonFatalErr"] == 0
    old = kernlog.parse_aer_counters(OLD_COR)
    assert old["errors"]["RxErr"] == 2 and old["errors"]["Timeout"] == 0
    assert set(old["errors"]) == set(new["errors"])
    assert kernlog.parse_aer_counters("") == {"errors": {}, "total": None, "total_key": None}
    with pytest.raises(ValueError, match="line 2 is not 'name count'"):
        kernlog.parse_aer_counters("RxErr 1\nRxErr many\n")


def test_aer_counters_riser_warns_shared_switch_named_once():
    gpus = _gpus("0000:03:00.0", "0000:04:00.0")
    paths = {"0000:03:00.0": ["0000:02:01.0", "0000:01:00.0", "0000:00:01.1"],
             "0000:04:00.0": ["0000:02:02.0", "0000:01:00.0", "0000:00:01.1"]}
    counters = {
        "0000:02:01.0": {"correctable": kernlog.parse_aer_counters(NEW_COR),
                         "nonfatal": kernlog.parse_aer_counters(ZERO_FATAL), "fatal": None},
        "0000:01:00.0": {"correctable": None, "nonfatal": kernlog.parse_aer_counters(NONFATAL),
                         "fatal": kernlog.parse_aer_counters(ZERO_FATAL)},
        "0000:04:00.0": {"correctable": kernlog.parse_aer_counters(OLD_COR),
                         "nonfatal": None, "fatal": None},
        "0000:02:02.0": {"correctable": kernlog.parse_aer_counters(OLD_COR.replace(" 2\n", " 0\n")),
                         "nonfatal": None, "fatal": None},
    }
    findings = health.aer_findings(gpus, paths, counters)
    assert len(findings) == 3
    switch, riser, few = findings
    assert switch["severity"] == "fail" and switch["gpu"] is None
    assert switch["evidence"] == (
        "bridge 0000:01:00.0 above GPU 0 (0000:03:00.0), GPU 1 (0000:04:00.0): aer_dev_nonfatal "
        "counts 4 non-fatal uncorrectable errors since boot (CmpltTO 4)"
    )
    assert riser["severity"] == "fail"  # 116 corrected: at least health.AER_CORRECTED_FAIL
    assert riser["gpu"] == {"index": 0, "bus_id": "0000:03:00.0"}
    assert riser["evidence"] == (
        "GPU 0 (0000:03:00.0): bridge 0000:02:01.0 above it, slot path 0000:00:01.1 > 0000:01:00.0 > "
        "0000:02:01.0 > 0000:03:00.0: aer_dev_correctable counts 116 corrected errors since boot "
        "(BadTLP 3, RxErr 112, Timeout 1)"
    )
    assert "riser" in riser["fix"]
    assert few["severity"] == "warn" and few["gpu"]["index"] == 1
    assert few["evidence"] == (
        "GPU 1 (0000:04:00.0): the GPU itself, slot path 0000:00:01.1 > 0000:01:00.0 > 0000:02:02.0 > "
        "0000:04:00.0: aer_dev_correctable counts 2 corrected errors since boot (RxErr 2)")


# --- load samples ---------------------------------------------------------------------------


def _sample(bus, gen=4, width=16, pstate="P0", util=90, temp=70, draw=265.0, limit=270.0, **reasons):
    row = {"index": 0, "pci.bus_id": f"00000000:{bus[5:]}", "pstate": pstate, "utilization.gpu": util,
           "temperature.gpu": temp, "power.draw": draw, "power.limit": limit,
           "pcie.link.gen.current": gen, "pcie.link.width.current": width}
    for key in health.THROTTLE_REASONS:
        row["clocks_event_reasons." + key] = "Active" if reasons.get(key) else "Not Active"
    return row


def test_link_under_load_fails_below_max_and_ignores_idle_samples():
    gpus = _gpus("0000:01:00.0", "0000:21:00.0", "0000:41:00.0")
    samples = [
        _sample("0000:01:00.0", gen=1, pstate="P8", util=0),  # idle: the Gen1 excuse
        _sample("0000:01:00.0", gen=4),
        _sample("0000:21:00.0", gen=3, width=8),
        _sample("0000:21:00.0", gen=3, width=8),
        _sample("0000:41:00.0", gen=1, pstate="P8", util=0),
    ]
    findings, unmeasured = health.link_load_findings(gpus, samples)
    ok, f = findings
    assert (ok["severity"], ok["evidence"]) == (
        "info", "GPU 0 (0000:01:00.0): Gen4 x16 under load, its maximum")
    assert f["gpu"] == {"index": 1, "bus_id": "0000:21:00.0"}
    assert f["severity"] == "fail"
    assert f["evidence"] == ("GPU 1 (0000:21:00.0): under load the link ran at Gen3 of Gen4 and x8 of x16 "
                             "(best of 2 loaded samples)")
    assert [g["index"] for g in unmeasured] == [2]


def test_throttle_reasons_severities_temperature_and_draw():
    gpus = _gpus("0000:01:00.0", "0000:21:00.0", "0000:41:00.0")
    samples = [
        _sample("0000:01:00.0", sw_power_cap=True),
        _sample("0000:01:00.0"),
        _sample("0000:21:00.0", hw_slowdown=True, temp=91),
        _sample("0000:41:00.0", draw=330.0),
    ]
    findings, measured = health.throttle_findings(gpus, samples)
    by = [(f["gpu"]["index"], f["severity"], f["evidence"].split(": ", 1)[1]) for f in findings]
    peak = "peak draw 265.0 W of 270.0 W limit)"
    assert by == [
        (0, "info", "2 samples while the probe ran (peak 70 C, " + peak + "; SW Power Cap in 1 of them"),
        (1, "fail", "HW Slowdown active in 1 of 1 samples under load (peak 91 C, " + peak),
        (1, "warn", "91 C under load (warning at 85 C) (peak 91 C, " + peak),
        (1, "info", "1 sample while the probe ran (peak 91 C, " + peak + "; no clock event reason"),
        (2, "warn", "drew 330.0 W, above its 270.0 W power limit"),
        (2, "info", "1 sample while the probe ran (peak 70 C, peak draw 330.0 W of 270.0 W limit); "
                    "no clock event reason"),
    ]
    assert "raise rig_power_limit_w" in findings[0]["fix"]
    assert "PSU" in findings[1]["fix"]
    assert measured["0000:21:00.0"]["reasons"] == {"hw_slowdown": 1}
    assert measured["0000:01:00.0"]["samples"] == 2


def test_throttle_from_real_q_captures_idle_and_old_names():
    q = smiquery.parse_nvidia_smi_q(read_capture("nvidia-smi-q-d-performance__geforce-495.44__1.txt"))
    samples = health.samples_from_q(q)
    assert samples[0]["clocks_event_reasons.hw_slowdown"] == "Not Active"
    assert samples[0]["pstate"] == "P0"
    gpus = [{"index": 0, "bus_id": "0000:0e:00.0", "name": "GeForce"}]
    findings, measured = health.throttle_findings(gpus, samples)
    assert [(f["severity"], f["evidence"]) for f in findings] == [
        ("info", "GPU 0 (0000:0e:00.0): 1 sample while the probe ran; no clock event reason")]
    assert measured["0000:0e:00.0"]["reasons"] == {}
    pro = smiquery.parse_nvidia_smi_q(read_capture("nvidia-smi-q__rtxpro6000x8__1.txt"))
    rows = health.samples_from_q(pro)
    assert len(rows) == 8
    assert {r["clocks_event_reasons.sw_power_cap"] for r in rows} == {"Not Active"}


# --- NVLink ---------------------------------------------------------------------------------


def test_nvlink_3090_bridge_up_from_real_captures():
    topo = smitopo.parse_topo_matrix(read_capture("topo-m__rtx3090x2-nv4__1.txt"))
    status = nvsmi.parse_nvlink_status(read_capture("nvlink-s__rtx3090x2__1.txt"))
    gpus = _gpus("0000:01:00.0", "0000:02:00.0")
    pairs = health.nvlink_pairs(topo, status, gpus)
    assert pairs == [{"gpus": [0, 1], "bus_ids": ["0000:01:00.0", "0000:02:00.0"], "links": 4,
                      "expected_links": 4, "active_links": 4, "link_gbs": 14.062,
                      "gbs_per_direction": 56.248, "state": "up"}]
    assert health.nvlink_findings(pairs, status, gpus) == []


def test_nvlink_a6000_third_gpu_unbridged_is_no_pair():
    topo = smitopo.parse_topo_matrix(read_capture("topo-m__rtxa6000x3-nv4__1.txt"))
    status = nvsmi.parse_nvlink_status(read_capture("nvlink-s__rtxa6000x3__1.txt"))
    gpus = _gpus("0000:01:00.0", "0000:02:00.0", "0000:03:00.0", name="NVIDIA RTX A6000")
    pairs = health.nvlink_pairs(topo, status, gpus)
    assert [(p["gpus"], p["state"]) for p in pairs] == [([0, 1], "up")]


def test_nvlink_links_down_fail_naming_the_links():
    topo = smitopo.parse_topo_matrix(read_capture("topo-m__rtx3090x2-nv4__1.txt"))
    text = read_capture("nvlink-s__rtx3090x2__1.txt")
    lines = text.splitlines(keepends=True)
    # GPU 1's links 2 and 3 inactive: a bridge that lost contact on one card
    gpu1 = [i for i, ln in enumerate(lines) if ln.startswith("GPU 1")][0]
    lines[gpu1 + 3] = lines[gpu1 + 3].split(":")[0] + ": <inactive>\n"
    lines[gpu1 + 4] = lines[gpu1 + 4].split(":")[0] + ": <inactive>\n"
    status = nvsmi.parse_nvlink_status("".join(lines))
    gpus = _gpus("0000:01:00.0", "0000:02:00.0")
    pairs = health.nvlink_pairs(topo, status, gpus)
    assert pairs[0]["state"] == "degraded" and pairs[0]["active_links"] == 2
    (f,) = health.nvlink_findings(pairs, status, gpus)
    assert f["severity"] == "fail"
    assert f["evidence"] == (
        "NVLink bridge between GPU 0 (0000:01:00.0) and GPU 1 (0000:02:00.0): topo -m shows NV4, "
        "nvidia-smi nvlink -s 2 of 4 links active (inactive: GPU 1 link 2, GPU 1 link 3)"
    )
    assert "reseat the NVLink bridge" in f["fix"]
    unread = health.nvlink_pairs(topo, None, gpus)
    assert unread[0]["state"] == "unknown"
    assert health.nvlink_findings(unread, None, gpus)[0]["severity"] == "warn"


# --- NUMA -----------------------------------------------------------------------------------


def test_numa_split_from_real_topo_names_crossing_pairs():
    topo = smitopo.parse_topo_matrix(read_capture("topo-m__rtx5090-4090x5-2numa__1.txt"))
    nodes = [topo["numa_node"][f"GPU{i}"] for i in range(5)]
    gpus = _gpus(*[f"0000:{b:02x}:00.0" for b in (1, 0x21, 0x41, 0x61, 0x81)], numa=nodes)
    (f,) = health.numa_findings(gpus, topo, host_nodes=2)
    assert f["severity"] == "warn" and f["gpu"] is None
    assert f["evidence"] == ("GPUs on 2 NUMA nodes (node 0: GPU 1, 2, 3, 4; node 1: GPU 0); pairs "
                             "crossing sockets: 0-1 (SYS), 0-2 (SYS), 0-3 (SYS), 0-4 (SYS)")
    assert "NCCL_P2P_LEVEL=SYS" in f["fix"]


def test_numa_single_socket_says_so_and_unknown_node_warns():
    topo = smitopo.parse_topo_matrix(read_capture("topo-m__rtx3090x2-nv4__1.txt"))
    (f,) = health.numa_findings(_gpus("0000:01:00.0", "0000:02:00.0"), topo, host_nodes=1)
    assert (f["severity"], f["evidence"]) == ("info", "single socket: every GPU (2) on NUMA node 0")
    gpus = _gpus("0000:01:00.0", "0000:81:00.0", numa=[0, -1])
    (f,) = health.numa_findings(gpus, None, host_nodes=2)
    assert f["severity"] == "warn" and f["gpu"]["index"] == 1
    assert "no NUMA node" in f["evidence"]


# --- power budget -----------------------------------------------------------------------------


def test_power_budget_seed_rig_is_over_the_default_budget_and_the_arithmetic():
    seed = health.power_budget([270] * 6, 1600)
    assert seed["ok"] is False and seed["over_w"] == 180
    assert seed["text"] == ("6 GPU limits 1620 W (platform draw not counted: rig_platform_watts unset) = "
                            "1620 W against 1440 W (90% of 1600 W PSU)")
    assert health.power_budget([270] * 6, 1600, max_load_percent=105)["ok"] is True
    over = health.power_budget([270] * 6, 1600, platform_w=200, max_load_percent=105)
    assert over["ok"] is False and over["over_w"] == 140
    assert health.power_budget([330] * 6, [1600, 1000], 250)["ok"] is True
    assert health.power_budget([330] * 6, [1600, 1000], 250, max_load_percent=80)["ok"] is False
    assert health.psu_total_w(None) is None
    for bad in ([], [1600, 0], "1600", True):
        with pytest.raises(ValueError):
            health.psu_total_w(bad)


def test_power_budget_findings_current_fails_default_warns():
    gpus = _gpus(*[f"0000:{b:02x}:00.0" for b in range(1, 7)], current_w=270, default_w=350)
    (f,) = health.power_budget_findings(gpus, 1600, max_load_percent=105)
    assert f["severity"] == "warn" and "default limits" in f["evidence"] and "420 W over" in f["evidence"]
    assert "rigctl-gpu-settings.service" in f["fix"]
    hot = _gpus(*[f"0000:{b:02x}:00.0" for b in range(1, 7)], current_w=300, default_w=250)
    (f,) = health.power_budget_findings(hot, 1600, max_load_percent=105)
    assert f["severity"] == "fail" and "current limits: 6 GPU limits 1800 W" in f["evidence"]
    assert health.power_budget_findings(gpus, None) == []


# --- DCGM ---------------------------------------------------------------------------------------


def test_dcgm_real_r3_capture_passes_and_says_deeper_levels_were_not_run():
    diag = benchout.parse_dcgmi_diag(read_capture("dcgmi-diag-r3__rtxpro6000x2__1.txt"))
    gpus = _gpus("0000:01:00.0", "0000:02:00.0", name="NVIDIA RTX PRO 6000 Blackwell Server Edition")
    (f,) = health.dcgm_findings(diag, gpus)
    assert f["severity"] == "info" and "levels 2-4 not run" in f["evidence"]
    (g,) = health.dcgm_findings(diag, _gpus("0000:01:00.0"))
    assert g["evidence"].startswith("dcgmi diag levels 2-4: not supported on GeForce")


def test_dcgm_failed_and_warned_tests():
    text = DCGMI_FAIL_AND_WARN
    findings = health.dcgm_findings(benchout.parse_dcgmi_diag(text), _gpus("0000:01:00.0"))
    assert [(f["severity"], f["evidence"]) for f in findings[:2]] == [
        ("fail", "dcgmi diag: Persistence Mode (Deployment) Fail: Warning: Persistence mode for GPU 0 is "
                 "disabled"),
        ("warn", "dcgmi diag: Inforom (Deployment) Warn: GPU: 1"),
    ]


# --- evaluate ------------------------------------------------------------------------------------


def test_evaluate_without_gpus_and_in_a_container():
    report = health.evaluate({"gpus": []})
    assert report["findings"] == []
    assert {c["status"] for c in report["checks"].values()} == {"not_applicable"}
    data = {"gpus": _gpus("0000:01:00.0"), "container": "docker",
            "kernel_log": {"xid": None, "aer": None, "error": "journalctl: no kernel messages; dmesg: "
                           "read kernel buffer failed: Operation not permitted"},
            "load": {"samples": [], "error": "the probe is not installed"}}
    report = health.evaluate(data)
    assert report["checks"]["xid"]["status"] == "unknown"
    assert report["checks"]["xid"]["reason"].startswith("unknown (container): kernel log not readable: ")
    assert report["checks"]["pcie_aer"]["reason"].startswith("unknown (container)")
    assert report["checks"]["throttle"] == {"status": "unknown", "reason": "the probe is not installed"}
    assert report["checks"]["power_budget"]["status"] == "not_applicable"
    assert report["checks"]["dcgm"] == {"status": "not_applicable",
                                        "reason": "dcgmi is not installed: DCGM diagnostics skipped"}
    assert report["checks"]["numa"]["status"] == "checked"


def test_evaluate_everything_at_once_round_trips_json():
    log = read_capture("dmesg-aer-xid__tesla-surprise-down-xid79__1.txt")
    gpus = _gpus("0000:02:00.0", "0000:03:00.0")
    data = {
        "gpus": gpus,
        "kernel_log": {"xid": kernlog.parse_xid(log), "aer": kernlog.parse_aer(log), "source": "dmesg"},
        "paths": {"0000:02:00.0": ["0000:00:02.0"], "0000:03:00.0": ["0000:00:03.0"]},
        "aer_counters": {"0000:03:00.0": {"correctable": kernlog.parse_aer_counters(NEW_COR),
                                          "nonfatal": None, "fatal": None}},
        "topo": smitopo.parse_topo_matrix(read_capture("topo-m__rtx3090x2-nv4__1.txt")),
        "nvlink": {"status": nvsmi.parse_nvlink_status(read_capture("nvlink-s__rtx3090x2__1.txt"))},
        "host_numa_nodes": 1,
        "load": {"samples": [_sample("0000:02:00.0"), _sample("0000:03:00.0", hw_power_brake_slowdown=True)]},
        "dcgm": {"installed": True, "diag": None, "error": "Error: unable to establish a connection"},
    }
    report = health.evaluate(data, psu_watts=750, platform_w=100)
    json.loads(json.dumps(report))
    checks = {f["check"] for f in report["findings"] if f["severity"] == "fail"}
    assert checks == {"xid", "pcie_aer", "throttle"}
    assert report["checks"]["nvlink"]["status"] == "checked"
    assert report["nvlink_pairs"][0]["state"] == "up"
    warned = {f["check"] for f in report["findings"] if f["severity"] == "warn"}
    assert warned == {"power_budget", "dcgm"}  # 116 corrected AER errors fail
    assert all(f["check"] in health.CHECKS for f in report["findings"])
    with pytest.raises(ValueError, match="unknown health check"):
        health.finding("nope", None, "fail", "x", "y")


def test_nvlink_slow_link_warns_with_the_model_speed():
    topo = smitopo.parse_topo_matrix(read_capture("topo-m__rtx3090x2-nv4__1.txt"))
    text = read_capture("nvlink-s__rtx3090x2__1.txt").replace("Link 2: 14.062", "Link 2: 7.031", 1)
    status = nvsmi.parse_nvlink_status(text)
    gpus = _gpus("0000:01:00.0", "0000:02:00.0")
    (pair,) = health.nvlink_pairs(topo, status, gpus)
    assert (pair["state"], pair["link_gbs"], pair["gbs_per_direction"]) == ("degraded", 7.031, 49.217)
    (f,) = health.nvlink_findings([pair], status, gpus)
    assert f["severity"] == "warn"
    assert f["evidence"].endswith(
        "14.062 GB/s per link expected for this model; slow: GPU 0 link 2 at 7.031 GB/s")


def test_aer_slot_path_from_the_real_switch_capture():
    bridges = pcidev.parse_lspci_vv(read_capture("lspci-vvv-bridges__rtxpro6000x8-pex890xx__1.txt"))
    path = pcitopo.upstream_bridges(bridges, "0000:06:00.0")
    counters = {"0000:02:03.0": {"correctable": kernlog.parse_aer_counters(NEW_COR), "nonfatal": None,
                                 "fatal": None}}
    gpus = _gpus("0000:06:00.0", name="NVIDIA RTX PRO 6000 Blackwell Server Edition")
    (f,) = health.aer_findings(gpus, {"0000:06:00.0": path}, counters)
    assert f["evidence"].startswith(
        "GPU 0 (0000:06:00.0): bridge 0000:02:03.0 above it, slot path 0000:00:01.1 > 0000:01:00.0 > "
        "0000:02:03.0 > 0000:06:00.0: aer_dev_correctable counts 116")
