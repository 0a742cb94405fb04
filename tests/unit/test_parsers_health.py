"""Parsers for the coming rig health checks, against real captured outputs.

Kernel logs (rigctl.core.kernlog: Xid, AER), lspci AER blocks and bridge topology
(rigctl.core.parsers, rigctl.core.pcitopo), nvidia-smi nvlink -s / compute apps
(rigctl.core.nvsmi), -q -d PERFORMANCE and topo -m (rigctl.core.parsers), nvbandwidth,
nccl-tests and dcgmi diag (rigctl.core.benchout). Captures are read in place from
../shared/captures (tests/captures.py; provenance in that folder's SOURCES.md); every
value asserted here was read off the file. EXERCISED is checked by
test_parsers.py::test_every_capture_is_exercised.
"""

from __future__ import annotations

import json
import re

import pytest

from rigctl.core import benchout, kernlog, nvsmi, pcidev, pcitopo, smiquery, smitopo
from tests.captures import read_capture

# --- kernel log: Xid ----------------------------------------------------------------------

XID_79_154 = "dmesg-xid__rtx5080-xid79-154__1.txt"
XID_119 = "dmesg-xid__a100x8-xid119__1.txt"
XID_13 = "dmesg-xid__a800x8-xid13__1.txt"
XID_418 = "dmesg-xid__driver418-xid31-13-32__1.txt"
XID_45 = "dmesg-xid__nvlink-node-xid45-after-145-149__1.txt"
XID_31 = "dmesg-xid__rtx5070ti-xid31__1.txt"
AER_XID_79 = "dmesg-aer-xid__tesla-surprise-down-xid79__1.txt"
AER_AMD = "dmesg-aer__amd-gpp-rootport-gpu__1.txt"
AER_INTEL = "dmesg-aer__intel-rp-wifi-rxerr-badtlp-baddllp__1.txt"


def _xid(gpu, code):
    (entry,) = [e for e in gpu["xids"] if e["code"] == code]
    return entry


def test_xid_79_then_154_without_timestamps():
    xid = kernlog.parse_xid(read_capture(XID_79_154))
    assert xid["count"] == 2
    assert list(xid["gpus"]) == ["0000:01:00.0"]
    gpu = xid["gpus"]["0000:01:00.0"]
    assert gpu["uuid"] == "GPU-5f7a9ad6-8a58-1f45-473a-76281b72153c"
    assert gpu["board_serial"] == "0"
    assert gpu["codes"] == [79, 154]
    assert gpu["fallen_off_bus"] is True
    assert gpu["worst_severity"] == "fail"
    fell = _xid(gpu, 79)
    assert fell["count"] == 1
    assert fell["messages"] == ["GPU has fallen off the bus."]
    assert fell["severity"] == "fail"
    assert "riser" in fell["fix"]
    assert fell["first_time"] is None and fell["first_wallclock"] is None
    recovery = [e for e in xid["events"] if e["code"] == 154][0]
    assert recovery["recovery_action"] == "PF FLR"
    assert recovery["pid"] is None and recovery["process"] is None
    assert recovery["line"] == 6
    json.dumps(xid)


def test_xid_119_gsp_timeouts_dmesg_T_domain_0001():
    xid = kernlog.parse_xid(read_capture(XID_119))
    assert xid["count"] == 2
    assert sorted(xid["gpus"]) == ["0001:6c:00.0", "0001:96:00.0"]
    first, second = xid["events"]
    assert first["bus_id"] == "0001:6c:00.0"
    assert first["code"] == 119
    assert first["pid"] == 10200
    assert first["process"] == "NvmlTaskRunner"
    assert first["wallclock"] == "Sun Apr 26 23:12:26 2026"
    assert first["time"] is None
    assert first["message"].startswith("Timeout after 45s of waiting for RPC response from GPU5 GSP!")
    assert "sequence 24174" in first["message"]
    assert second["wallclock"] == "Sun Apr 26 23:13:11 2026"
    assert "GPU6 GSP" in second["message"]
    entry = _xid(xid["gpus"]["0001:96:00.0"], 119)
    assert entry["severity"] == "fail"
    assert entry["name"] == "GSP RPC timeout"
    assert entry["processes"] == ["NvmlTaskRunner"]


def test_xid_13_burst_unknown_pid_first_last_times():
    xid = kernlog.parse_xid(read_capture(XID_13))
    assert xid["count"] == 6
    gpu = xid["gpus"]["0000:43:00.0"]
    entry = _xid(gpu, 13)
    assert entry["count"] == 6
    assert entry["first_time"] == 93297.027938
    assert entry["last_time"] == 93297.043905
    assert entry["processes"] == []
    assert {e["pid"] for e in xid["events"]} == {None}
    assert len(entry["messages"]) == 6
    assert entry["messages"][0] == (
        "Graphics Exception: ESR 0x52e7b0=0x101000e 0x52e7b4=0x4 0x52e7a8=0xc81eb60 0x52e7ac=0x1174"
    )
    assert entry["severity"] == "warn"
    assert gpu["worst_severity"] == "warn"


def test_xid_driver_418_formats_without_pid():
    xid = kernlog.parse_xid(read_capture(XID_418))
    gpu = xid["gpus"]["0000:01:00.0"]
    assert gpu["uuid"] == "GPU-8a47641b-dff6-f09f-618c-c3eb58fb430d"
    assert gpu["board_serial"] is None
    assert gpu["codes"] == [13, 31, 32]
    assert [e["code"] for e in xid["events"]] == [31, 13, 13, 13, 13, 32]
    assert _xid(gpu, 13)["count"] == 4
    mmu = _xid(gpu, 31)
    assert mmu["first_time"] == 31543.449443
    assert mmu["messages"][0].startswith("Ch 0000003a, intr 10000000. MMU Fault")
    assert _xid(gpu, 32)["messages"] == ["Channel ID 00000052 intr 02000000"]
    assert _xid(gpu, 32)["last_time"] == 31609.615516


def test_xid_45_after_nvlink_errors_journal_kernel_prefix():
    xid = kernlog.parse_xid(read_capture(XID_45))
    assert xid["count"] == 7
    assert sorted(xid["gpus"]) == ["0000:97:00.0", "0000:ba:00.0", "0000:dc:00.0", "0000:ed:00.0"]
    dc = _xid(xid["gpus"]["0000:dc:00.0"], 45)
    assert dc["count"] == 2
    assert dc["caused_by"] == [149]
    assert dc["processes"] == ["python3"]
    assert dc["severity"] == "info"
    assert _xid(xid["gpus"]["0000:97:00.0"], 45)["count"] == 1
    assert _xid(xid["gpus"]["0000:ed:00.0"], 45)["caused_by"] == [145]
    assert xid["events"][0]["pid"] == 1818990
    assert xid["events"][0]["message"] == "Ch 00000001 caused by previous Xid 149"
    assert kernlog.xid_info(145)["severity"] == "fail"  # the cause is an NVLink error


def test_xid_31_open_module_load_line_and_uuid():
    xid = kernlog.parse_xid(read_capture(XID_31))
    assert xid["driver_version"] == "595.71.05"
    (event,) = xid["events"]
    assert event["bus_id"] == "0000:01:00.0"
    assert event["code"] == 31
    assert event["pid"] == 13705
    assert event["process"] == "UnrealEditor"
    assert event["time"] == 365.969681
    assert event["message"].endswith("FAULT_PDE ACCESS_TYPE_VIRT_READ")
    gpu = xid["gpus"]["0000:01:00.0"]
    assert gpu["uuid"] == "GPU-4e391288-897c-ba5d-6944-dfbea55ebcfa"
    assert gpu["fallen_off_bus"] is False


def test_xid_table_covers_the_rig_codes():
    for code in (13, 31, 43, 45):
        assert kernlog.xid_info(code)["severity"] in ("warn", "info")
        assert "application" in kernlog.xid_info(code)["fix"] or code == 45
    for code in (48, 63, 64, 94, 95):
        assert "memory" in kernlog.xid_info(code)["fix"]
    for code in (79, 119, 120, 74, 62, 48, 95, 154):
        assert kernlog.xid_info(code)["severity"] == "fail"
    assert kernlog.xid_info(61)["severity"] == "warn"
    assert "GSP" in kernlog.xid_info(120)["fix"]
    assert "NVLink" in kernlog.xid_info(74)["meaning"]
    unknown = kernlog.xid_info(999)
    assert unknown["known"] is False and unknown["severity"] == "warn"
    for code, entry in kernlog.XID_CODES.items():
        assert isinstance(code, int) and len(entry) == 4 and entry[3] in ("fail", "warn", "info")


@pytest.mark.parametrize(
    ("line", "uptime", "wall", "message"),
    [
        ("[  365.969681] NVRM: x", 365.969681, None, "NVRM: x"),
        ("[Fri Aug 29 20:09:52 2025] pcieport 0000:00:1d.3: AER: y", None, "Fri Aug 29 20:09:52 2025",
         "pcieport 0000:00:1d.3: AER: y"),
        ("Sep 19 16:18:02 bubz kernel: [68183.615790] pcieport z", 68183.61579, "Sep 19 16:18:02",
         "pcieport z"),
        ("2026-05-18T10:00:01+0000 node1 kernel: NVRM: Xid", None, "2026-05-18T10:00:01+0000", "NVRM: Xid"),
        ("kernel: NVRM: q", None, None, "NVRM: q"),
        ("kern  :err   : [ 12.5] NVRM: r", 12.5, None, "NVRM: r"),
        ("[ 12.500000] rig kernel: NVRM: s", 12.5, None, "NVRM: s"),
        ("NVRM: plain", None, None, "NVRM: plain"),
    ],
)
def test_split_kernel_prefix(line, uptime, wall, message):
    assert kernlog.split_kernel_prefix(line) == (uptime, wall, message)


def test_xid_malformed_line_and_other_text():
    with pytest.raises(ValueError, match=r"line 2: an NVRM Xid line without"):
        kernlog.parse_xid("[1.0] NVRM: loading\n[2.0] NVRM: Xid (garbage): x\n")
    with pytest.raises(ValueError, match="got None"):
        kernlog.parse_xid(None)
    empty = kernlog.parse_xid("[    0.000000] Linux version 6.8.0\n\n")
    assert empty == {"events": [], "gpus": {}, "count": 0, "driver_version": None}


def test_xid_synthetic_old_bus_form_and_spaces_in_process_name():
    text = (
        "[ 10.0] NVRM: Xid (0000:02:00): 62, pid=77, name=Web Content, 0f4b(2d90) 00000000\n"
        "[ 11.0] NVRM: Xid (PCI:0000:02:00): 62, pid=77, name=Web Content, 0f4b(2d90) 00000000\n"
    )
    gpu = kernlog.parse_xid(text)["gpus"]["0000:02:00.0"]
    entry = _xid(gpu, 62)
    assert entry["count"] == 2
    assert entry["processes"] == ["Web Content"]
    assert entry["messages"] == ["0f4b(2d90) 00000000"]
    assert (entry["first_time"], entry["last_time"]) == (10.0, 11.0)


# --- kernel log: AER ----------------------------------------------------------------------


def test_aer_surprise_down_then_xid_79_old_kernel_format():
    log = kernlog.parse_kernel_log(read_capture(AER_XID_79))
    aer = log["aer"]
    assert aer["count"] == 2
    corrected, fatal = aer["records"]
    assert corrected["device"] == "0000:00:02.0"
    assert corrected["reporter"] == "0000:00:02.0"
    assert corrected["source"] == "0000:00:02.0"  # id=0010 decoded
    assert corrected["severity"] == "corrected"
    assert corrected["type"] == "Data Link Layer"
    assert corrected["id_role"] == "Transmitter ID"
    assert (corrected["status"], corrected["mask"]) == (0x1000, 0x2000)
    assert corrected["printed_errors"] == ["Replay Timer Timeout"]
    assert corrected["errors"] == ["Timeout"]
    assert corrected["time"] == 74785.66038
    assert fatal["severity"] == "fatal"
    assert fatal["severity_printed"] == "Uncorrected (Fatal)"
    assert fatal["type"] == "Transaction Layer"
    assert fatal["id_role"] == "Receiver ID"
    assert fatal["errors"] == ["SDES"]
    assert fatal["printed_errors"] == ["Surprise Down Error"]
    assert fatal["first_error"] == "SDES"
    port = aer["devices"]["0000:00:02.0"]
    assert (port["vendor_id"], port["device_id"]) == ("8086", "6f04")
    assert port["count"] == 2
    assert port["severities"] == {"corrected": 1, "fatal": 1}
    assert port["errors"] == {"Timeout": 1, "SDES": 1}
    assert port["reporting_ports"] == ["0000:00:02.0"]
    assert (port["first_time"], port["last_time"]) == (74785.66038, 74889.542044)
    assert aer["devices"]["0000:02:00.0"]["no_aer_driver"] is True
    assert aer["devices"]["0000:02:00.0"]["count"] == 0
    gpu = log["xid"]["gpus"]["0000:02:00.0"]
    assert gpu["codes"] == [79]
    assert gpu["uuid"] == "GPU-660d987e-5b28-3bf6-2a2d-1d5ecae7f6df"
    assert gpu["board_serial"] == "0322716036227"
    assert _xid(gpu, 79)["first_time"] == 74889.644138
    json.dumps(log)


def test_aer_amd_root_port_journalctl_partial():
    aer = kernlog.parse_aer(read_capture(AER_AMD))
    assert aer["count"] == 3
    assert [r["errors"] for r in aer["records"]] == [["Timeout"], ["BadTLP"], []]
    assert [r["id_role"] for r in aer["records"]] == ["Transmitter ID", "Receiver ID", "Transmitter ID"]
    last = aer["records"][-1]
    assert last["status"] is None  # the excerpt is cut inside this record
    port = aer["devices"]["0000:00:03.1"]
    assert (port["vendor_id"], port["device_id"]) == ("1022", "1453")
    assert port["severities"] == {"corrected": 3}
    assert port["types"] == ["Data Link Layer"]
    assert port["errors"] == {"Timeout": 1, "BadTLP": 1}
    assert port["first_wallclock"] == "Sep 19 16:18:02"
    assert port["first_time"] == 68183.61581
    assert port["last_time"] == 68183.726207
    assert {r["source"] for r in aer["records"]} == {"0000:00:00.0"}
    assert list(aer["devices"]) == ["0000:00:03.1"]


def test_aer_intel_wifi_rxerr_badtlp_baddllp_multi_bit_status():
    aer = kernlog.parse_aer(read_capture(AER_INTEL))
    assert aer["count"] == 3
    cut, port_rec, phys = aer["records"]
    # starts inside a record: no header line, no reporter, severity unknown
    assert cut["device"] == "0000:06:00.0" and cut["reporter"] is None and cut["severity"] is None
    assert cut["status"] == 0x1081
    assert cut["errors"] == ["RxErr", "BadDLLP", "Timeout"]
    assert cut["first_error"] == "RxErr"
    assert port_rec["device"] == "0000:00:1d.3"
    assert port_rec["multiple"] is True
    assert port_rec["source"] == "0000:06:00.0"
    assert port_rec["errors"] == ["Timeout"]
    assert phys["type"] == "Physical Layer"
    assert phys["reporter"] == "0000:00:1d.3"
    assert phys["driver"] == "ath10k_pci"
    # 0xc1 = bits 0, 6, 7: BadDLLP's line was cut from the excerpt, the status still names it
    assert phys["printed_errors"] == ["RxErr", "BadTLP"]
    assert phys["errors"] == ["RxErr", "BadTLP", "BadDLLP"]
    wifi = aer["devices"]["0000:06:00.0"]
    assert (wifi["vendor_id"], wifi["device_id"]) == ("168c", "003e")
    assert wifi["errors"] == {"RxErr": 2, "BadDLLP": 2, "Timeout": 1, "BadTLP": 1}
    assert wifi["severities"] == {"unknown": 1, "corrected": 1}
    assert wifi["reporting_ports"] == ["0000:00:1d.3"]
    assert wifi["first_wallclock"] == "Fri Aug 29 20:09:52 2025"
    assert aer["devices"]["0000:00:1d.3"]["device_id"] == "54b3"


def test_aer_malformed_lines():
    with pytest.raises(ValueError, match=r"line 1: a 'PCIe Bus Error' line"):
        kernlog.parse_aer("pcieport 0000:00:01.0: PCIe Bus Error: something odd\n")
    with pytest.raises(ValueError, match=r"line 2: an AER 'error status/mask='"):
        kernlog.parse_aer(
            "pcieport 0000:00:01.0: AER: Corrected error received: 0000:00:01.0\n"
            "pcieport 0000:00:01.0:   device [zz] error status/mask=1/2\n"
        )
    assert kernlog.parse_aer("hello\n") == {"records": [], "devices": {}, "count": 0}


def test_aer_synthetic_newer_uncorrected_nonfatal():
    text = (
        "pcieport 0000:00:01.1: AER: Uncorrectable (Non-Fatal) error message received from 0000:01:00.0\n"
        "nvidia 0000:01:00.0: PCIe Bus Error: severity=Uncorrectable (Non-Fatal), type=Transaction Layer, "
        "(Requester ID)\n"
        "nvidia 0000:01:00.0:   device [10de:2684] error status/mask=00104000/00400000\n"
        "nvidia 0000:01:00.0:    [14] CmpltTO                (First)\n"
        "nvidia 0000:01:00.0:    [20] UnsupReq\n"
    )
    (record,) = kernlog.parse_aer(text)["records"]
    assert record["severity"] == "nonfatal"
    assert record["errors"] == ["CmpltTO", "UnsupReq"]
    assert record["first_error"] == "CmpltTO"
    assert record["reporter"] == "0000:00:01.1"
    assert record["source"] == "0000:01:00.0"


# --- lspci AER blocks and bridge topology ------------------------------------------------

BRIDGES = "lspci-vvv-bridges__rtxpro6000x8-pex890xx__1.txt"


def test_lspci_bridges_aer_and_topology_above_gpu_06():
    bridges = pcidev.parse_lspci_vv(read_capture(BRIDGES))
    assert [d["bdf"] for d in bridges] == ["00:01.1", "01:00.0", "02:03.0"]
    assert [d["bus"] for d in bridges] == [
        {"primary": 0, "secondary": 1, "subordinate": 8},
        {"primary": 1, "secondary": 2, "subordinate": 8},
        {"primary": 2, "secondary": 6, "subordinate": 6},
    ]
    root, upstream, downstream = bridges
    for dev in bridges:
        aer = dev["aer"]
        assert aer["uncorrectable"] == [] and aer["correctable"] == []
        assert set(aer["UESta"]) == {
            "DLP", "SDES", "TLP", "FCP", "CmpltTO", "CmpltAbrt", "UnxCmplt", "RxOF", "MalfTLP", "ECRC",
            "UnsupReq", "ACSViol",
        }
        assert aer["CEMsk"]["AdvNonFatalErr"] is True
        assert aer["UESvrt"]["SDES"] is True
    assert root["aer"]["UESvrt"]["CmpltTO"] is False
    assert upstream["aer"]["UESvrt"]["CmpltTO"] is True
    assert root["aer"]["RootSta"] == {
        "CERcvd": False, "MultCERcvd": False, "UERcvd": False, "MultUERcvd": False,
        "FirstFatal": False, "NonFatalMsg": False, "FatalMsg": False,
    }
    assert root["aer"]["RootCmd"] == {"CERptEn": False, "NFERptEn": False, "FERptEn": False}
    assert "RootSta" not in downstream["aer"]
    assert downstream["lnksta"]["speed_gts"] == 2.5
    assert downstream["acs_ctl"]["ReqRedir"] is False
    gpus = pcidev.parse_lspci_vv(read_capture("lspci-vvv__rtxpro6000x8__1.txt"))
    parents = pcitopo.bridge_parents(bridges + gpus)
    assert parents["0000:06:00.0"] == "0000:02:03.0"
    assert parents["0000:02:03.0"] == "0000:01:00.0"
    assert parents["0000:01:00.0"] == "0000:00:01.1"
    assert parents["0000:00:01.1"] is None
    assert parents["0000:07:00.0"] is None  # its downstream port is not in the capture
    assert pcitopo.upstream_bridges(bridges, "00000000:06:00.0") == [
        "0000:02:03.0", "0000:01:00.0", "0000:00:01.1",
    ]
    assert pcitopo.upstream_bridges(bridges, "0000:75:00.0") == []


def test_lspci_gpu_aer_blocks():
    gpus = pcidev.parse_lspci_vv(read_capture("lspci-vvv__rtxpro6000x8__1.txt"))
    assert all(g["aer"]["uncorrectable"] == [] and g["aer"]["correctable"] == [] for g in gpus)
    assert gpus[0]["aer"]["CESta"] == {
        "RxErr": False, "BadTLP": False, "BadDLLP": False, "Rollover": False, "Timeout": False,
        "AdvNonFatalErr": False,
    }
    a6000 = pcidev.parse_lspci_vv(read_capture("lspci-vv__rtxa6000x4__1.txt"))
    by_bdf = {d["bdf"]: d for d in a6000}
    assert by_bdf["01:00.0"]["aer"]["uncorrectable"] == []
    # the HDA functions carry UnsupReq+ / AdvNonFatalErr+ (masked: CEMsk AdvNonFatalErr+)
    assert by_bdf["01:00.1"]["aer"]["uncorrectable"] == ["UnsupReq"]
    assert by_bdf["01:00.1"]["aer"]["correctable"] == ["AdvNonFatalErr"]
    no_caps = pcidev.parse_lspci_vv(read_capture("lspci-v__rtx4090__1.txt"))
    assert no_caps[0]["aer"] is None


# --- nvidia-smi nvlink -s -----------------------------------------------------------------


def test_nvlink_status_3090_pair_spaces():
    status = nvsmi.parse_nvlink_status(read_capture("nvlink-s__rtx3090x2__1.txt"))
    assert [g["index"] for g in status["gpus"]] == [0, 1]
    gpu0 = status["gpus"][0]
    assert gpu0["name"] == "NVIDIA GeForce RTX 3090"
    assert gpu0["uuid"] == "GPU-1aff65f8-8897-eaee-29e4-6871ef7491a0"
    assert gpu0["links"] == [{"link": i, "active": True, "speed_gbs": 14.062} for i in range(4)]
    assert gpu0["active_links"] == 4
    assert gpu0["total_gbs"] == 56.248
    assert status["gpus"][1]["uuid"] == "GPU-fef3f583-99bd-ac7f-c761-eddb679067e0"


def test_nvlink_status_a6000_third_gpu_all_inactive_tabs():
    status = nvsmi.parse_nvlink_status(read_capture("nvlink-s__rtxa6000x3__1.txt"))
    assert len(status["gpus"]) == 3
    assert [g["active_links"] for g in status["gpus"]] == [4, 4, 0]
    assert [g["all_inactive"] for g in status["gpus"]] == [False, False, True]
    gpu2 = status["gpus"][2]
    assert gpu2["uuid"] == "GPU-02c05ee3-bdb5-aac7-f9e8-a4c8f3f725b3"
    assert gpu2["links"] == []
    assert status["gpus"][1]["name"] == "NVIDIA RTX A6000"


def test_nvlink_status_inactive_link_lines_and_errors():
    text = "GPU 0: NVIDIA GeForce RTX 3090 (UUID: GPU-x)\n\t Link 0: <inactive>\n\t Link 1: 14.062 GB/s\n"
    (gpu,) = nvsmi.parse_nvlink_status(text)["gpus"]
    assert gpu["links"][0] == {"link": 0, "active": False, "speed_gbs": None}
    assert gpu["active_links"] == 1 and gpu["all_inactive"] is False
    with pytest.raises(ValueError, match="Failed to initialize NVML"):
        nvsmi.parse_nvlink_status("Failed to initialize NVML: Driver/library version mismatch\n")
    with pytest.raises(ValueError, match="line 1: a Link line before"):
        nvsmi.parse_nvlink_status("\t Link 0: 14.062 GB/s\n")


# --- nvidia-smi topo -m (new captures) ---------------------------------------------------


def test_topo_3090_nv4_pair_spaces_lxc_cpuset():
    topo = smitopo.parse_topo_matrix(read_capture("topo-m__rtx3090x2-nv4__1.txt"))
    assert topo["links"] == {"GPU0": {"GPU0": "X", "GPU1": "NV4"}, "GPU1": {"GPU0": "NV4", "GPU1": "X"}}
    assert topo["nvlink_pairs"] == [{"gpus": ["GPU0", "GPU1"], "links": 4}]
    assert topo["cpu_affinity"] == {"GPU0": "4,6,9,15,17", "GPU1": "4,6,9,15,17"}
    assert topo["affinity_columns"] == ["CPU Affinity", "NUMA Affinity", "GPU NUMA ID"]
    assert topo["gpu_numa_id"] == {"GPU0": None, "GPU1": None}
    assert topo["numa_node"] == {"GPU0": 0, "GPU1": 0}


def test_topo_a6000_nv4_tabs_ansi_old_layout():
    text = read_capture("topo-m__rtxa6000x3-nv4__1.txt")
    assert "\t" in text and "\x1b[4m" in text
    topo = smitopo.parse_topo_matrix(text)
    assert topo["devices"] == ["GPU0", "GPU1", "GPU2"]
    assert topo["affinity_columns"] == ["CPU Affinity", "NUMA Affinity"]
    assert topo["links"]["GPU0"]["GPU1"] == "NV4"
    assert topo["links"]["GPU2"]["GPU0"] == "NODE"
    assert topo["nvlink_pairs"] == [{"gpus": ["GPU0", "GPU1"], "links": 4}]
    assert set(topo["cpu_affinity"].values()) == {"0-31,64-95"}
    assert topo["numa_node"] == {"GPU0": 0, "GPU1": 0, "GPU2": 0}


def test_topo_mixed_5090_4090_two_numa_nodes():
    topo = smitopo.parse_topo_matrix(read_capture("topo-m__rtx5090-4090x5-2numa__1.txt"))
    assert topo["gpus"] == [f"GPU{i}" for i in range(5)]
    assert topo["numa_node"] == {"GPU0": 1, "GPU1": 0, "GPU2": 0, "GPU3": 0, "GPU4": 0}
    assert topo["cpu_affinity"]["GPU0"] == "8-15,24-31"
    assert topo["cpu_affinity"]["GPU3"] == "0-7,16-23"
    assert {topo["links"]["GPU0"][g] for g in ("GPU1", "GPU2", "GPU3", "GPU4")} == {"SYS"}
    assert topo["links"]["GPU1"]["GPU2"] == "PHB"
    assert topo["links"]["GPU3"]["GPU4"] == "PHB"
    assert topo["links"]["GPU1"]["GPU3"] == "NODE"
    assert topo["nvlink_pairs"] == []


def test_topo_nvlink_pairs_h200_mesh():
    topo = smitopo.parse_topo_matrix(read_capture("topo-m__h200x8-nics__1.txt"))
    assert len(topo["nvlink_pairs"]) == 28
    assert {p["links"] for p in topo["nvlink_pairs"]} == {18}
    assert topo["numa_node"]["GPU4"] == 1


# --- nvidia-smi -q -d PERFORMANCE ---------------------------------------------------------


def test_q_performance_old_throttle_reasons_block():
    q = smiquery.parse_nvidia_smi_q(read_capture("nvidia-smi-q-d-performance__geforce-495.44__1.txt"))
    assert q["driver_version"] == "495.44"
    assert q["cuda_version"] == "11.5"
    (gpu,) = q["gpus"]
    assert gpu["bus_id"] == "00000000:0E:00.0"
    assert gpu["performance_state"] == "P0"
    assert gpu["clocks_event_reasons"] == {
        "Idle": "Active",
        "Applications Clocks Setting": "Not Active",
        "SW Power Cap": "Not Active",
        "HW Slowdown": "Not Active",
        "HW Thermal Slowdown": "Not Active",
        "HW Power Brake Slowdown": "Not Active",
        "Sync Boost": "Not Active",
        "SW Thermal Slowdown": "Not Active",
        "Display Clock Setting": "Not Active",
    }
    assert gpu["clocks_event_reasons_active"] == ["Idle"]
    assert gpu["clocks_event_counters_us"] is None
    assert gpu["fb_total_mib"] is None  # -d PERFORMANCE shows nothing else


def test_q_full_new_clocks_event_reasons_and_counters():
    q = smiquery.parse_nvidia_smi_q(read_capture("nvidia-smi-q__rtxpro6000x8__1.txt"))
    gpu = q["gpus"][0]
    assert gpu["performance_state"] == "P8"
    assert gpu["clocks_event_reasons_active"] == []
    assert gpu["clocks_event_reasons"]["SW Power Cap"] == "Not Active"
    assert gpu["clocks_event_counters_us"]["SW Power Capping"] == 182086
    assert gpu["clocks_event_counters_us"]["HW Power Braking"] == 0
    idle_3090 = smiquery.parse_nvidia_smi_q(read_capture("nvidia-smi-q__rtx3090x2__1.txt"))["gpus"][0]
    assert idle_3090["clocks_event_reasons_active"] == ["Idle"]


# --- --query-compute-apps CSV -------------------------------------------------------------


def test_query_compute_apps_csv_4080super():
    rows = nvsmi.parse_query_compute_apps_csv(read_capture("query-compute-apps-csv__rtx4080super__1.txt"))
    assert [(r["pid"], r["process_name"], r["used_memory_mib"]) for r in rows] == [
        (2165, "/usr/bin/kwin_wayland", 25), (5022, "ffmpeg", 503), (5021, "ffmpeg", 360),
    ]
    row = rows[0]
    assert row["gpu_bus_id"] == "00000000:01:00.0"
    assert row["bus_id"] == "0000:01:00.0"
    assert row["gpu_uuid"] == "GPU-00000000-0000-0000-0000-000000000000"
    assert row["gpu_serial"] is None
    assert row["gpu_name"] == "NVIDIA GeForce RTX 4080 SUPER"
    assert row["timestamp"] == "2026/06/26 11:59:58.909"


def test_query_compute_apps_csv_noheader_empty_and_errors():
    rows = nvsmi.parse_query_compute_apps_csv(
        "1234, 7, 00000000:41:00.0, 100\n", fields="pid,process_name,gpu_bus_id,used_memory"
    )
    assert rows[0]["process_name"] == "7" and rows[0]["bus_id"] == "0000:41:00.0"
    assert rows[0]["used_memory_mib"] == 100
    assert nvsmi.parse_query_compute_apps_csv("pid, process_name, used_gpu_memory [MiB]\n") == []
    with pytest.raises(ValueError, match="row 1 has 2 values for 3 fields"):
        nvsmi.parse_query_compute_apps_csv("pid, process_name, used_gpu_memory [MiB]\n1, x\n")
    with pytest.raises(ValueError, match="pid 'abc' is not a number"):
        nvsmi.parse_query_compute_apps_csv("pid, process_name\nabc, x\n")


# --- nvbandwidth --------------------------------------------------------------------------


def test_nvbandwidth_h800_v02_all_testcases():
    result = benchout.parse_nvbandwidth(read_capture("nvbandwidth__h800x8__1.txt"))
    assert result["version"] == "v0.2"
    assert result["git_version"] == "42e94d2"
    assert result["cuda_runtime_version"] == 11080
    assert result["cuda_driver_version"] == 12000
    assert result["driver_version"] == "525.105.17"
    assert result["devices"] == [{"index": i, "name": "NVIDIA H800"} for i in range(8)]
    cases = result["testcases"]
    assert len(cases) == 30
    h2d = cases["host_to_device_memcpy_ce"]
    assert h2d["title"] == "memcpy CE CPU(row) -> GPU(column) bandwidth"
    assert h2d["unit"] == "GB/s"
    assert h2d["columns"] == list(range(8)) and h2d["rows"] == [0]
    assert h2d["matrix"] == [[55.28, 55.30, 55.32, 55.30, 55.31, 55.34, 55.32, 55.34]]
    assert h2d["sum"] == 442.52
    d2d = cases["device_to_device_memcpy_read_ce"]
    assert d2d["rows"] == list(range(8))
    assert [d2d["matrix"][i][i] for i in range(8)] == [None] * 8
    assert d2d["matrix"][0][1] == 172.16
    assert d2d["matrix"][7][5] == 172.57
    assert d2d["sum"] == 9643.22
    assert cases["device_to_device_bidirectional_memcpy_write_sm"]["sum"] == 18341.61
    assert cases["one_to_all_read_sm"]["title"] == "memcpy SM GPU(column) <- All GPUs total bandwidth"
    assert {c["status"] for c in cases.values()} == {"measured"}


def test_nvbandwidth_4090_partial_third_test():
    result = benchout.parse_nvbandwidth(read_capture("nvbandwidth__rtx4090x8__1.txt"))
    assert result["driver_version"] == "545.29.06"
    assert result["cuda_runtime_version"] == 12030
    assert len(result["devices"]) == 8
    cases = result["testcases"]
    assert list(cases) == [
        "host_to_device_memcpy_ce", "device_to_host_memcpy_ce", "host_to_device_bidirectional_memcpy_ce",
    ]
    assert cases["host_to_device_memcpy_ce"]["matrix"][0][2] == 23.90
    assert cases["device_to_host_memcpy_ce"]["sum"] == 214.28
    cut = cases["host_to_device_bidirectional_memcpy_ce"]
    assert cut["status"] == "incomplete"
    assert cut["matrix"] == [] and cut["sum"] is None and cut["columns"] == list(range(8))


def test_nvbandwidth_a6000_v08_layout_name_from_sum():
    result = benchout.parse_nvbandwidth(read_capture("nvbandwidth__rtxa6000x6__1.txt"))
    assert result["version"] == "v0.8"
    assert result["cuda_driver_version"] == 13000
    assert result["driver_version"] == "580.95.05"
    assert result["devices"] == []  # the poster replaced them with '...'
    (name,) = result["testcases"]
    assert name == "device_to_device_memcpy_read_ce"
    case = result["testcases"][name]
    assert case["columns"] == list(range(6)) and case["rows"] == list(range(6))
    assert case["matrix"][0] == [None, 26.34, 26.35, 21.95, 22.64, 21.80]
    assert case["matrix"][3][4] == 26.34
    assert case["matrix"][5][0] == 21.86
    assert case["sum"] == 715.53


def test_nvbandwidth_errors_and_waived():
    with pytest.raises(ValueError, match="not nvbandwidth output"):
        benchout.parse_nvbandwidth("bash: nvbandwidth: command not found\n")
    bad = "memcpy CE GPU(row) -> GPU(column) bandwidth (GB/s)\n     0     1\n0   N/A\n"
    with pytest.raises(ValueError, match="line 3: row 0 has 1 cells for 2 columns"):
        benchout.parse_nvbandwidth(bad)
    waived = benchout.parse_nvbandwidth(
        "nvbandwidth Version: v0.8\n\nRunning device_to_device_memcpy_read_ce.\nWaived.\n"
    )
    assert waived["testcases"]["device_to_device_memcpy_read_ce"]["status"] == "waived"


# --- nccl-tests ---------------------------------------------------------------------------


def test_nccl_all_reduce_2080ti_full_with_trailer():
    result = benchout.parse_nccl_tests(read_capture("nccl-all_reduce_perf__rtx2080tix2__1.txt"))
    assert result["params"]["nGpus"] == 2
    assert result["params"]["maxBytes"] == 1073741824
    assert result["params"]["step"] == "2(factor)"
    assert result["params"]["warmup_iters"] == 5 and result["params"]["iters"] == 20
    assert result["nranks"] == 2
    assert [d["bus_id"] for d in result["devices"]] == ["0000:b4:00.0", "0000:b5:00.0"]
    assert result["devices"][0]["host"] == "autodl-container-xxxxx"
    assert result["devices"][1]["name"] == "NVIDIA GeForce RTX 2080 Ti"
    assert result["devices"][0]["pid"] == 31706
    assert len(result["rows"]) == 28
    first, last = result["rows"][0], result["rows"][-1]
    assert (first["size"], first["count"], first["type"], first["redop"], first["root"]) == (
        8, 2, "float", "sum", -1,
    )
    assert first["out_of_place"] == {"time_us": 12.25, "algbw": 0.0, "busbw": 0.0, "wrong": 0}
    assert first["in_place"]["time_us"] == 12.00
    assert last["size"] == 1073741824
    assert last["out_of_place"]["time_us"] == 268588.0
    assert last["in_place"]["busbw"] == 4.00
    assert result["avg_bus_bandwidth"] == 2.05774
    assert result["out_of_bounds"] == 0 and result["out_of_bounds_ok"] is True
    assert result["max_busbw"] == 4.0
    assert result["wrong_total"] == 0
    assert result["version"] is None


def test_nccl_all_reduce_4090x4_old_header_bus_numbers_only():
    result = benchout.parse_nccl_tests(read_capture("nccl-all_reduce_perf__rtx4090x4__1.txt"))
    assert [d["pci_bus"] for d in result["devices"]] == [0x1A, 0x1B, 0x3D, 0x3E]
    assert {d["bus_id"] for d in result["devices"]} == {None}
    assert result["devices"][0]["host"] == "bd4e8bef7fdf"
    assert result["nranks"] == 4
    assert len(result["rows"]) == 29
    assert result["rows"][-1]["size"] == 2147483648
    assert result["rows"][-1]["out_of_place"]["busbw"] == 2.59
    assert result["max_busbw"] == 2.59
    assert result["avg_bus_bandwidth"] == 1.40135  # trailing space after the value


def test_nccl_all_reduce_5090x8_new_header_no_trailer():
    result = benchout.parse_nccl_tests(read_capture("nccl-all_reduce_perf__rtx5090x8__1.txt"))
    assert result["version"] == "2.18.2"
    assert result["nccl_headers"] == 22907 and result["nccl_library"] == 22907
    assert result["test"] == "all_reduce_perf"
    assert result["params"]["unalign"] == 0
    assert result["params"]["warmup_iters"] == 1
    assert result["nranks"] == 8
    assert [d["bus_id"][5:7] for d in result["devices"]] == ["01", "11", "61", "71", "81", "91", "e1", "f1"]
    assert {d["host"] for d in result["devices"]} == {"crazy"}
    assert len(result["rows"]) == 25
    peak = [r for r in result["rows"] if r["size"] == 33554432][0]
    assert peak["out_of_place"] == {"time_us": 1284.81, "algbw": 26.12, "busbw": 45.70, "wrong": 0}
    assert peak["in_place"]["busbw"] == 45.65
    assert result["max_busbw"] == 45.70
    assert result["avg_bus_bandwidth"] is None and result["out_of_bounds"] is None


def test_nccl_errors_and_wrong_counts():
    with pytest.raises(ValueError, match="no results header"):
        benchout.parse_nccl_tests("# nThread 1 nGpus 2\nsegfault\n")
    header = (
        "#       size         count      type   redop    root     time   algbw   busbw #wrong     time"
        "   algbw   busbw #wrong\n"
    )
    with pytest.raises(ValueError, match="line 2: 3 values for the 13 header columns"):
        benchout.parse_nccl_tests(header + "  8  2  float\n")
    result = benchout.parse_nccl_tests(
        header + "  1024  256  float  sum  -1  20.0  0.05  0.07  3  19.3  0.05  0.08  N/A\n"
    )
    assert result["rows"][0]["out_of_place"]["wrong"] == 3
    assert result["rows"][0]["in_place"]["wrong"] is None
    assert result["wrong_total"] == 3
    assert result["nranks"] is None


def test_nccl_oldest_header_error_column_without_redop_root():
    text = (
        "# nThread 1 nGpus 2 minBytes 8 maxBytes 128 step: 2(factor) warmup iters: 5 iters: 20\n"
        "#\n#                                                 out-of-place                    in-place\n"
        "#       size         count    type     time   algbw   busbw  error     time   algbw   busbw  error\n"
        "           8             2   float    10.05    0.00    0.00  0e+00    10.01    0.00    0.00  0e+00\n"
    )
    result = benchout.parse_nccl_tests(text)
    (row,) = result["rows"]
    assert (row["size"], row["count"], row["type"]) == (8, 2, "float") and "redop" not in row
    assert row["in_place"] == {"time_us": 10.01, "algbw": 0.0, "busbw": 0.0, "wrong": None, "error": 0.0}
    assert result["nranks"] == 2


# --- every new parser's result survives JSON (no int keys, no tuples) ----------------------


@pytest.mark.parametrize(
    ("name", "parse"),
    [
        (AER_XID_79, kernlog.parse_kernel_log),
        (AER_INTEL, kernlog.parse_kernel_log),
        (XID_418, kernlog.parse_kernel_log),
        (BRIDGES, pcidev.parse_lspci_vv),
        ("nvlink-s__rtxa6000x3__1.txt", nvsmi.parse_nvlink_status),
        ("topo-m__rtxa6000x3-nv4__1.txt", smitopo.parse_topo_matrix),
        ("nvidia-smi-q-d-performance__geforce-495.44__1.txt", smiquery.parse_nvidia_smi_q),
        ("query-compute-apps-csv__rtx4080super__1.txt", nvsmi.parse_query_compute_apps_csv),
        ("nvbandwidth__rtxa6000x6__1.txt", benchout.parse_nvbandwidth),
        ("nccl-all_reduce_perf__rtx5090x8__1.txt", benchout.parse_nccl_tests),
        ("dcgmi-diag-r3__rtxpro6000x2__1.txt", benchout.parse_dcgmi_diag),
    ],
)
def test_results_round_trip_through_json(name, parse):
    result = parse(read_capture(name))
    assert json.loads(json.dumps(result)) == result


# --- dcgmi diag ---------------------------------------------------------------------------


def test_dcgmi_diag_r3_printed_twice():
    result = benchout.parse_dcgmi_diag(read_capture("dcgmi-diag-r3__rtxpro6000x2__1.txt"))
    assert result["success_lines"] == 2
    assert len(result["runs"]) == 2
    assert result["runs"][0]["results"] == result["runs"][1]["results"]
    assert result["dcgm_version"] == "3.3.9"
    assert result["driver_version"] == "570.172.08"
    assert result["gpu_device_ids"] == ["2bb5", "2bb5"]
    assert result["sections"] == ["Deployment", "Integration", "Hardware", "Stress"]
    assert len(result["tests"]) == 15
    assert result["results"]["Denylist"] == "Pass"
    assert result["results"]["Page Retirement/Row Remap"] == "Pass"
    assert result["results"]["Inforom"] == "Pass"
    deployment = [t for t in result["tests"] if t["section"] == "Deployment"]
    assert len(deployment) == 9 and {t["result"] for t in deployment} == {"Pass"}
    pcie = [t for t in result["tests"] if t["name"] == "PCIe"][0]
    assert (pcie["section"], pcie["result"], pcie["detail"], pcie["text"]) == (
        "Integration", "Skip", "All", "Skip - All",
    )
    assert result["results"]["GPU Memory"] == "Skip"
    stress = [t["name"] for t in result["tests"] if t["section"] == "Stress"]
    assert stress == ["Targeted Stress", "Targeted Power", "Memory Bandwidth", "EUD Test"]
    assert result["failed"] == [] and result["warned"] == [] and result["passed"] is True


#: A dcgmi diag table with a failed and a warned test (the shape of dcgmi's output; made up,
#: no capture has failures): shared with tests/unit/test_health.py.
DCGMI_FAIL_AND_WARN = (
    "+---------------------------+------------------------------------------------+\n"
    "| Diagnostic                | Result                                         |\n"
    "+===========================+================================================+\n"
    "|-----  Deployment  --------+------------------------------------------------|\n"
    "| Persistence Mode          | Fail                                           |\n"
    "|                           | Warning: Persistence mode for GPU 0 is disabled|\n"
    "| Inforom                   | Warn - GPU: 1                                  |\n"
    "+---------------------------+------------------------------------------------+\n"
)


def test_dcgmi_diag_fail_with_warning_rows_and_errors():
    text = DCGMI_FAIL_AND_WARN
    result = benchout.parse_dcgmi_diag(text)
    assert result["failed"] == ["Persistence Mode"] and result["passed"] is False
    assert result["tests"][0]["details"] == ["Warning: Persistence mode for GPU 0 is disabled"]
    assert result["warned"] == ["Inforom"]
    assert result["tests"][1]["detail"] == "GPU: 1"
    assert result["dcgm_version"] is None and len(result["runs"]) == 1
    with pytest.raises(ValueError, match="it says: Error: unable to establish a connection"):
        benchout.parse_dcgmi_diag("Error: unable to establish a connection to the specified host: x\n")
    with pytest.raises(ValueError, match=re.escape("no 'Diagnostic | Result' table")):
        benchout.parse_dcgmi_diag("")


EXERCISED = {
    XID_79_154, XID_119, XID_13, XID_418, XID_45, XID_31, AER_XID_79, AER_AMD, AER_INTEL, BRIDGES,
    "nvlink-s__rtx3090x2__1.txt",
    "nvlink-s__rtxa6000x3__1.txt",
    "topo-m__rtx3090x2-nv4__1.txt",
    "topo-m__rtx5090-4090x5-2numa__1.txt",
    "topo-m__rtxa6000x3-nv4__1.txt",
    "nvidia-smi-q-d-performance__geforce-495.44__1.txt",
    "query-compute-apps-csv__rtx4080super__1.txt",
    "nvbandwidth__h800x8__1.txt",
    "nvbandwidth__rtx4090x8__1.txt",
    "nvbandwidth__rtxa6000x6__1.txt",
    "nccl-all_reduce_perf__rtx2080tix2__1.txt",
    "nccl-all_reduce_perf__rtx4090x4__1.txt",
    "nccl-all_reduce_perf__rtx5090x8__1.txt",
    "dcgmi-diag-r3__rtxpro6000x2__1.txt",
}
