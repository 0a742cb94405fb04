"""rigctl.core.parsers against real captured GPU tool outputs.

The captures are read in place from ../shared/captures (tests/captures.py; provenance of
each file in that folder's SOURCES.md). Every capture there, except the optional plain
`nvidia-smi` tables, is exercised below or in test_parsers_health.py (kernel logs, benchmark
outputs and the other health-check inputs) with values read off the file.
"""

from __future__ import annotations

import pytest

from rigctl.core import drvinfo, p2pbench, parsers, pcidev, smiquery, smitopo
from tests.captures import capture_names, read_capture

GIB = 2**30
MIB = 2**20

# --- /proc/driver/nvidia/version ------------------------------------------------------

PROC_OPEN = "proc-driver-nvidia-version__open-595.71.05__1.txt"


def test_proc_driver_version_open_module_without_final_newline():
    text = read_capture(PROC_OPEN)
    assert not text.endswith("\n")  # the source stripped it; the parser must not care
    info = drvinfo.parse_proc_driver_version(text)
    assert info["version"] == "595.71.05"
    assert info["flavor"] == "open"
    assert info["arch"] == "x86_64"
    assert "(root@proxmox)" in info["build"]
    assert info["build"].startswith("Release Build")
    assert info["gcc"] == "gcc version 14.2.0 (Debian 14.2.0-19)"


def test_proc_driver_version_proprietary_layout():
    text = (
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\n"
        "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n"
    )
    info = drvinfo.parse_proc_driver_version(text)
    assert info["version"] == "550.54.14"
    assert info["flavor"] == "proprietary"
    assert info["arch"] == "x86_64"
    assert info["gcc"].startswith("gcc version 12.2.0")


def test_proc_driver_version_two_part_version_and_no_gcc():
    info = drvinfo.parse_proc_driver_version(
        "NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  565.77  Release Build  (b@h)  x"
    )
    assert info["version"] == "565.77"
    assert info["arch"] == "aarch64"
    assert info["gcc"] is None


@pytest.mark.parametrize("text", ["", "hello\n", "cat: /proc/driver/nvidia/version: No such file"])
def test_proc_driver_version_rejects_other_text(text):
    with pytest.raises(ValueError, match="NVRM"):
        drvinfo.parse_proc_driver_version(text)


# --- modinfo --------------------------------------------------------------------------

MODINFO = "modinfo__rtxa6000__1.txt"


def test_modinfo_proprietary_dkms_module():
    info = drvinfo.parse_modinfo(read_capture(MODINFO))
    assert info["filename"] == "/lib/modules/5.15.0-30-generic/updates/dkms/nvidia.ko"
    assert info["version"] == "510.73.05"
    assert info["license"] == "NVIDIA"
    assert info["flavor"] == "proprietary"
    assert info["location"] == "dkms"
    assert info["srcversion"] == "1E2265D2AF1616FE7B5DC23"
    assert info["vermagic"] == "5.15.0-30-generic SMP mod_unload modversions"
    assert info["depends"] == ["drm"]
    assert info["firmware"] == ["nvidia/510.73.05/gsp.bin"]
    assert info["name"] == "nvidia"
    assert info["params"]["NVreg_EnableMSI"] == "int"
    assert info["params"]["NVreg_RegistryDwords"] == "charp"
    assert info["params"]["NvSwitchRegDwords"] == "NvSwitch regkey (charp)"
    assert info["params"]["NvSwitchBlacklist"] == "NvSwitchBlacklist=uuid[,uuid...] (charp)"
    assert len(info["params"]) == 39


@pytest.mark.parametrize(
    ("filename", "license_", "location", "flavor"),
    [
        ("/lib/modules/6.1.0-27-amd64/kernel/drivers/video/nvidia.ko", "Dual MIT/GPL", "kernel", "open"),
        ("/lib/modules/6.1.0-27-amd64/updates/dkms/nvidia.ko.xz", "Dual MIT/GPL", "dkms", "open"),
        ("/lib/modules/6.1.0-27-amd64/updates/nvidia.ko", "NVIDIA", "updates", "proprietary"),
        ("/lib/modules/6.1.0-27-amd64/extra/nvidia.ko", "GPL", "other", None),
    ],
)
def test_modinfo_location_and_flavor(filename, license_, location, flavor):
    text = (
        f"filename:       {filename}\nversion:        570.86.16\nlicense:        {license_}\n"
        "depends:        \nvermagic:       6.1.0-27-amd64 SMP preempt mod_unload modversions \n"
        "parm:           NVreg_OpenRmEnableUnsupportedGpus:int\n"
    )
    info = drvinfo.parse_modinfo(text)
    assert info["location"] == location
    assert info["flavor"] == flavor
    assert info["depends"] == []
    assert info["params"] == {"NVreg_OpenRmEnableUnsupportedGpus": "int"}


def test_modinfo_rejects_error_output():
    with pytest.raises(ValueError, match="modinfo"):
        drvinfo.parse_modinfo("modinfo: ERROR: Module nvidia not found.\n")


# --- nvidia-smi --query-gpu CSV -------------------------------------------------------

CSV_4080 = "query-gpu-csv__rtx4080super__1.txt"
CSV_H200 = "query-gpu-csv__h200__1.txt"


def test_query_gpu_csv_rtx4080super_all_fields():
    rows = smiquery.parse_query_gpu_csv(read_capture(CSV_4080))
    assert len(rows) == 1
    row = rows[0]
    assert "memory.total" in row and "memory.total [MiB]" not in row
    assert row["name"] == "NVIDIA GeForce RTX 4080 SUPER"
    assert row["driver_version"] == "595.71.05"
    assert row["kmd_version"] == "595.71.05"
    assert row["pci.bus_id"] == "00000000:01:00.0"
    assert row["pci.device_id"] == "0x270210DE"
    assert row["uuid"] == "GPU-00000000-0000-0000-0000-000000000000"
    assert row["serial"] is None  # [N/A]
    assert row["index"] == 0
    assert row["count"] == 1
    assert row["memory.total"] == 16376
    assert row["memory.used"] == 596
    assert row["power.limit"] == 320.0
    assert row["power.default_limit"] == 320.0
    assert row["power.min_limit"] == 150.0
    assert row["power.max_limit"] == 400.0
    assert row["power.draw"] == 26.2
    assert row["pcie.link.gen.current"] == 1
    assert row["pcie.link.gen.max"] == 4
    assert row["pcie.link.gen.hostmax"] == 5
    assert row["pcie.link.width.current"] == 16
    assert row["pcie.link.width.max"] == 16
    assert row["persistence_mode"] == "Disabled"
    assert row["display_active"] == "Enabled"
    assert row["display_mode"] is None  # [Requested functionality has been deprecated]
    assert row["temperature.memory"] is None  # N/A
    assert row["compute_cap"] == "8.9"
    assert row["vbios_version"] == "95.03.44.00.B2"
    assert row["inforom.oem"] == "2.0"
    assert row["clocks.max.sm"] == 3165
    assert row["fan.speed"] == 0
    assert row["compute_mode"] == "Default"
    assert row["platform.peer_type"] == "Direct Connected"


def test_query_gpu_csv_h200_all_fields():
    (row,) = smiquery.parse_query_gpu_csv(read_capture(CSV_H200))
    assert row["name"] == "NVIDIA H200"
    assert row["driver_version"] == "590.48.01"
    assert row["pci.bus_id"] == "00000000:83:00.0"
    assert row["memory.total"] == 143771
    assert row["power.limit"] == 700.0
    assert row["power.min_limit"] == 200.0
    assert row["power.max_limit"] == 700.0
    assert row["enforced.power.limit"] == 700.0
    assert row["pcie.link.gen.max"] == 5
    assert row["pcie.link.gen.hostmax"] is None
    assert row["pcie.link.width.max"] == 16
    assert row["persistence_mode"] == "Enabled"
    assert row["ecc.mode.current"] == "Enabled"
    assert row["edpp_multiplier"] == 100.0
    assert row["platform.chassis_serial_number"] is None  # empty cell
    assert row["clocks.max.sm"] == 1980


def test_query_gpu_csv_with_fields_noheader_nounits():
    fields = ["index", "pci.bus_id", "name", "memory.total", "power.limit", "persistence_mode",
              "driver_version", "serial"]
    text = (
        "0, 00000000:01:00.0, NVIDIA GeForce RTX 3090, 24576, 350.00, Enabled, 565.77, [N/A]\n"
        "1, 00000000:21:00.0, NVIDIA GeForce RTX 3090, 24576, 280.00, Disabled, 565.77, [N/A]\n"
    )
    rows = smiquery.parse_query_gpu_csv(text, fields=fields)
    assert [r["index"] for r in rows] == [0, 1]
    assert rows[1]["power.limit"] == 280.0
    assert rows[0]["driver_version"] == "565.77"  # a version, not a float
    assert rows[0]["serial"] is None
    # a comma-separated field string works, and a header that is there anyway is skipped
    header = ", ".join(fields[:3]) + "\n"
    assert smiquery.parse_query_gpu_csv(header + "0, 00000000:01:00.0, X\n", fields=",".join(fields[:3])) == [
        {"index": 0, "pci.bus_id": "00000000:01:00.0", "name": "X"}
    ]


def test_query_gpu_csv_units_kept_without_nounits():
    text = (
        "memory.total [MiB], power.limit [W], clocks.max.sm [MHz], utilization.gpu [%]\n"
        "24576 MiB, 350.00 W, 2100 MHz, 0 %\n"
    )
    assert smiquery.parse_query_gpu_csv(text) == [
        {"memory.total": 24576, "power.limit": 350.0, "clocks.max.sm": 2100, "utilization.gpu": 0}
    ]


def test_query_gpu_csv_errors():
    assert smiquery.parse_query_gpu_csv("") == []
    with pytest.raises(ValueError, match="row 1 has 2 values for 3 fields"):
        smiquery.parse_query_gpu_csv("a, b\n", fields=["index", "name", "uuid"])
    with pytest.raises(ValueError, match="not a field name"):
        smiquery.parse_query_gpu_csv(
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n"
        )


# --- nvidia-smi -q --------------------------------------------------------------------

Q_CASES = {
    # file: (driver, cuda, attached, {gpu index: expected values})
    "nvidia-smi-q__rtx3090x2__1.txt": (
        "560.35.03", "12.6", 2,
        {
            0: dict(bus_id="00000000:41:00.0", product_name="NVIDIA GeForce RTX 3090",
                    architecture="Ampere", uuid="GPU-4aba3cfa-7b42-cca6-97f4-5cdd281b0746",
                    fb=24576, bar1=256, power=(350.0, 350.0, 350.0, 100.0, 350.0, 30.10),
                    gen=(4, 1), width=(16, 16), device_id="0x220410DE", persistence="Enabled"),
            1: dict(bus_id="00000000:81:00.0", bar1=256, power=(350.0, 350.0, 350.0, 100.0, 350.0, 36.88)),
        },
    ),
    "nvidia-smi-q__rtx3080__1.txt": (
        "550.54.14", "12.4", 1,
        {
            0: dict(bus_id="00000000:08:00.0", product_name="NVIDIA GeForce RTX 3080",
                    architecture="Ampere", fb=10240, bar1=256,
                    power=(320.0, 320.0, 320.0, 100.0, 350.0, 98.99), gen=(4, 4), width=(16, 16),
                    device_id="0x221610DE", persistence="Disabled"),
        },
    ),
    "nvidia-smi-q__rtx4090x8__1.txt": (
        "550.127.05", "12.4", 8,
        {
            0: dict(bus_id="00000000:01:00.0", product_name="NVIDIA GeForce RTX 4090",
                    architecture="Ada Lovelace", uuid="GPU-8ee5f1e0-e705-aac5-6d6e-b97ad59601ef",
                    fb=24564, bar1=256, power=(450.0, 450.0, 450.0, 150.0, 450.0, 20.0),
                    gen=(4, 1), width=(16, 16), device_id="0x268410DE"),
            7: dict(bus_id="00000000:E1:00.0", uuid="GPU-78ae265e-d539-389c-f1b8-41b35aa0adb6",
                    fb=24564, bar1=256),
        },
    ),
    "nvidia-smi-q__rtx5090__1.txt": (
        "570.124.06", "12.8", 1,
        {
            0: dict(bus_id="00000000:02:00.0", product_name="NVIDIA GeForce RTX 5090",
                    architecture="Blackwell", uuid="GPU-ea2294a3-4d61-1757-8aed-f91723f16ad2",
                    fb=32607, bar1=32768, power=(575.0, 575.0, 575.0, 400.0, 575.0, 23.78),
                    gen=(5, 1), width=(16, 8), device_id="0x2B8510DE", persistence="Enabled"),
        },
    ),
    "nvidia-smi-q__rtxa6000x9__1.txt": (
        "550.127.05", "12.4", 9,
        {
            0: dict(bus_id="00000000:4F:00.0", product_name="NVIDIA RTX A6000", architecture="Ampere",
                    fb=46068, bar1=65536, power=(300.0, 300.0, 300.0, 100.0, 300.0, 24.69),
                    device_id="0x223010DE"),
            8: dict(bus_id="00000000:D6:00.0", fb=46068, bar1=65536),
        },
    ),
    "nvidia-smi-q__rtxpro6000x8__1.txt": (
        "595.58.03", "13.2", 8,
        {
            0: dict(bus_id="00000000:06:00.0",
                    product_name="NVIDIA RTX PRO 6000 Blackwell Server Edition",
                    architecture="Blackwell", uuid="GPU-e588912b-1368-6b4f-0e2a-0d08f8afb39b",
                    fb=97887, bar1=131072, power=(600.0, 600.0, 600.0, 300.0, 600.0, 39.17),
                    gen=(5, 1), width=(16, 16), device_id="0x2BB510DE", persistence="Enabled"),
            7: dict(bus_id="00000000:F5:00.0", bar1=131072),
        },
    ),
}


@pytest.mark.parametrize("name", sorted(Q_CASES))
def test_nvidia_smi_q_captures(name):
    driver, cuda, attached, expected = Q_CASES[name]
    result = smiquery.parse_nvidia_smi_q(read_capture(name))
    assert result["driver_version"] == driver
    assert result["cuda_version"] == cuda
    assert result["attached_gpus"] == attached
    assert len(result["gpus"]) == attached
    for index, want in expected.items():
        gpu = result["gpus"][index]
        assert gpu["bus_id"] == want["bus_id"]
        assert gpu["pci"]["bus_id"] == want["bus_id"]
        for key, field in (("product_name", "product_name"), ("architecture", "architecture"),
                           ("uuid", "uuid"), ("persistence", "persistence_mode")):
            if key in want:
                assert gpu[field] == want[key]
        if "fb" in want:
            assert gpu["fb_total_mib"] == want["fb"]
        if "bar1" in want:
            assert gpu["bar1_total_mib"] == want["bar1"]
        if "power" in want:
            current, requested, default, low, high, draw = want["power"]
            assert gpu["power"] == {
                "current_limit_w": current,
                "requested_limit_w": requested,
                "default_limit_w": default,
                "min_limit_w": low,
                "max_limit_w": high,
                "draw_w": draw,
            }
        if "gen" in want:
            assert (gpu["pci"]["link_gen_max"], gpu["pci"]["link_gen_current"]) == want["gen"]
        if "width" in want:
            assert (gpu["pci"]["link_width_max"], gpu["pci"]["link_width_current"]) == want["width"]
        if "device_id" in want:
            assert gpu["pci"]["device_id"] == want["device_id"]


def test_nvidia_smi_q_every_gpu_of_the_4090_rig():
    result = smiquery.parse_nvidia_smi_q(read_capture("nvidia-smi-q__rtx4090x8__1.txt"))
    assert [g["bus_id"] for g in result["gpus"]] == [
        "00000000:01:00.0", "00000000:25:00.0", "00000000:41:00.0", "00000000:61:00.0",
        "00000000:81:00.0", "00000000:A1:00.0", "00000000:C1:00.0", "00000000:E1:00.0",
    ]
    assert {g["persistence_mode_enabled"] for g in result["gpus"]} == {True}
    assert {g["pci"]["link_gen_device_max"] for g in result["gpus"]} == {4}


def test_nvidia_smi_q_tree_keeps_sections_and_empty_values():
    tree = smiquery.parse_nvidia_smi_q_tree(read_capture("nvidia-smi-q__rtx5090__1.txt"))
    assert tree["header"]["Driver Version"] == "570.124.06"
    gpu = tree["gpus"][0]["tree"]
    assert gpu["Platform Info"]["Chassis Serial Number"] == ""
    assert gpu["PCI"]["GPU Link Info"]["PCIe Generation"]["Host Max"] == "5"
    assert gpu["GPU Power Readings"]["Instantaneous Power Draw"] == "23.78 W"


OLD_POWER_LAYOUT = """
==============NVSMI LOG==============

Timestamp                                 : Wed Feb  1 23:16:49 2023
Driver Version                            : 525.60.13
CUDA Version                              : 12.0

Attached GPUs                             : 1
GPU 00000000:41:00.0
    Power Readings
        Power Management                  : Supported
        Power Draw                        : 83.12 W
        Power Limit                       : 300.00 W
        Default Power Limit               : 450.00 W
        Enforced Power Limit              : 300.00 W
        Min Power Limit                   : 150.00 W
        Max Power Limit                   : 600.00 W
    Power Samples
        Duration                          : Not Found
"""


def test_nvidia_smi_q_older_power_layout_and_display_subset():
    result = smiquery.parse_nvidia_smi_q(OLD_POWER_LAYOUT)
    gpu = result["gpus"][0]
    assert gpu["power"] == {
        "current_limit_w": 300.0,
        "requested_limit_w": 300.0,
        "default_limit_w": 450.0,
        "min_limit_w": 150.0,
        "max_limit_w": 600.0,
        "draw_w": 83.12,
    }
    # -d POWER shows no product name, memory or PCI: those come back None
    assert gpu["product_name"] is None
    assert gpu["fb_total_mib"] is None
    assert gpu["bar1_total_mib"] is None
    assert gpu["pci"]["link_gen_max"] is None


def test_nvidia_smi_q_rejects_other_text():
    with pytest.raises(ValueError, match="NVSMI LOG"):
        smiquery.parse_nvidia_smi_q("Failed to initialize NVML: Driver/library version mismatch\n")


# --- nvidia-smi topo -m ---------------------------------------------------------------

TOPO_H200 = "topo-m__h200x8-nics__1.txt"
TOPO_4090 = "topo-m__rtx4090x2__1.txt"
TOPO_5070 = "topo-m__rtx5070-5060tix4__1.txt"
TOPO_PRO6000 = "topo-m__rtxpro6000x8__1.txt"


def test_topo_matrix_h200_nvlink_and_nics():
    topo = smitopo.parse_topo_matrix(read_capture(TOPO_H200))
    assert topo["devices"] == [f"GPU{i}" for i in range(8)] + [f"NIC{i}" for i in range(10)]
    assert topo["gpus"] == [f"GPU{i}" for i in range(8)]
    assert topo["links"]["GPU0"]["GPU0"] == "X"
    assert topo["links"]["GPU0"]["GPU7"] == "NV18"
    assert topo["links"]["GPU0"]["NIC3"] == "PIX"
    assert topo["links"]["GPU4"]["NIC0"] == "SYS"
    assert topo["links"]["NIC0"]["GPU3"] == "PIX"
    assert topo["links"]["NIC9"]["NIC9"] == "X"
    assert topo["cpu_affinity"]["GPU0"] == "0-63,128-191"
    assert topo["cpu_affinity"]["GPU4"] == "64-127,192-255"
    assert topo["numa_affinity"]["GPU3"] == "0"
    assert topo["numa_affinity"]["GPU4"] == "1"
    assert topo["gpu_numa_id"] == {f"GPU{i}": None for i in range(8)}
    assert topo["nic_legend"]["NIC0"] == "mlx5_0"
    assert topo["nic_legend"]["NIC9"] == "mlx5_9"
    assert "NIC0" not in topo["cpu_affinity"]


def test_topo_matrix_older_driver_without_gpu_numa_id():
    topo = smitopo.parse_topo_matrix(read_capture(TOPO_4090))
    assert topo["devices"] == ["GPU0", "GPU1"]
    assert topo["links"] == {"GPU0": {"GPU0": "X", "GPU1": "SYS"}, "GPU1": {"GPU0": "SYS", "GPU1": "X"}}
    assert topo["affinity_columns"] == ["CPU Affinity", "NUMA Affinity"]
    assert topo["cpu_affinity"] == {"GPU0": "0-127", "GPU1": "0-127"}
    assert topo["numa_affinity"] == {"GPU0": None, "GPU1": None}
    assert topo["gpu_numa_id"] == {"GPU0": None, "GPU1": None}
    assert topo["nic_legend"] == {}


def test_topo_matrix_ansi_header_phb():
    text = read_capture(TOPO_5070)
    assert "\x1b[4m" in text
    topo = smitopo.parse_topo_matrix(text)
    assert topo["devices"] == [f"GPU{i}" for i in range(5)]
    assert topo["affinity_columns"] == ["CPU Affinity", "NUMA Affinity", "GPU NUMA ID"]
    for a in topo["devices"]:
        for b in topo["devices"]:
            assert topo["links"][a][b] == ("X" if a == b else "PHB")
    assert set(topo["cpu_affinity"].values()) == {"0-23"}
    assert set(topo["numa_affinity"].values()) == {"0"}


def test_topo_matrix_pcie_switches_two_sockets():
    topo = smitopo.parse_topo_matrix(read_capture(TOPO_PRO6000))
    links = topo["links"]
    assert links["GPU0"]["GPU1"] == "PIX"
    assert links["GPU0"]["GPU2"] == "NODE"
    assert links["GPU0"]["GPU4"] == "SYS"
    assert links["GPU6"]["GPU7"] == "PIX"
    assert topo["cpu_affinity"]["GPU7"] == "64-127,192-238"
    assert topo["numa_affinity"]["GPU7"] == "1"


def test_topo_matrix_rejects_other_text():
    with pytest.raises(ValueError, match="topo -m"):
        smitopo.parse_topo_matrix("No devices were found\n")


# --- nvidia-smi topo -p2p -------------------------------------------------------------


def test_topo_p2p_h100_spaces_and_legend():
    p2p = smitopo.parse_topo_p2p(read_capture("topo-p2p-r__h100x8__1.txt"))
    assert p2p["devices"] == [f"GPU{i}" for i in range(8)]
    for a in p2p["devices"]:
        for b in p2p["devices"]:
            assert p2p["status"][a][b] == ("X" if a == b else "OK")
    assert p2p["legend"]["CNS"] == "Chipset not supported"
    assert p2p["legend"]["NS"] == "Not supported"
    assert "DR" not in p2p["legend"]


def test_topo_p2p_partial_chipset_not_supported():
    p2p = smitopo.parse_topo_p2p(read_capture("topo-p2p-r__l4x2__1.txt"))
    assert p2p["status"] == {"GPU0": {"GPU0": "X", "GPU1": "CNS"}, "GPU1": {"GPU0": "CNS", "GPU1": "X"}}
    assert p2p["legend"] == {}


@pytest.mark.parametrize(
    ("name", "has_dr"),
    [("topo-p2p-rw__rtx5070-5060tix4__1.txt", False), ("topo-p2p-rw__rtx5070-5060tix4__2.txt", True)],
)
def test_topo_p2p_ansi_tabs(name, has_dr):
    text = read_capture(name)
    assert "\x1b[" in text and "\t" in text
    p2p = smitopo.parse_topo_p2p(text)
    assert p2p["devices"] == [f"GPU{i}" for i in range(5)]
    assert p2p["status"]["GPU0"]["GPU4"] == "OK"
    assert p2p["status"]["GPU3"]["GPU3"] == "X"
    assert ("DR" in p2p["legend"]) is has_dr
    if has_dr:
        assert p2p["legend"]["DR"] == "Disabled by regkey"


def test_topo_p2p_rejects_other_text():
    with pytest.raises(ValueError, match="topo -p2p"):
        smitopo.parse_topo_p2p("Invalid combination of input arguments.\n")


# --- lspci ----------------------------------------------------------------------------


def test_lspci_v_non_root_access_denied():
    (dev,) = pcidev.parse_lspci_vv(read_capture("lspci-v__rtx4090__1.txt"))
    assert dev["bdf"] == "01:00.0"
    assert dev["class"] == "VGA compatible controller"
    assert dev["description"] == "NVIDIA Corporation AD102 [GeForce RTX 4090]"
    assert dev["vendor_id"] is None and dev["device_id"] is None
    assert dev["revision"] == "a1"
    assert dev["physical_slot"] == "49"
    assert dev["capabilities_access_denied"] is True
    assert dev["rebar"] is None and dev["lnkcap"] is None and dev["lnksta"] is None
    assert dev["kernel_driver"] == "nvidia"
    assert dev["kernel_modules"] == ["nvidiafb", "nouveau", "nvidia_drm", "nvidia"]
    sizes = [(r["size"], r["size_bytes"], r["prefetchable"], r["index"]) for r in dev["memory_regions"]]
    assert sizes == [
        ("16M", 16 * MIB, False, None), ("32G", 32 * GIB, True, None), ("32M", 32 * MIB, True, None),
    ]


def test_lspci_vv_a6000_small_bar_and_gen1_idle():
    devices = pcidev.parse_lspci_vv(read_capture("lspci-vv__rtxa6000x4__1.txt"))
    assert [d["bdf"] for d in devices] == [
        "01:00.0", "01:00.1", "41:00.0", "41:00.1", "81:00.0", "81:00.1", "c1:00.0", "c1:00.1",
    ]
    gpus = [d for d in devices if d["class"] == "VGA compatible controller"]
    audio = [d for d in devices if d["class"] == "Audio device"]
    assert len(gpus) == 4 and len(audio) == 4
    for gpu in gpus:
        assert gpu["description"] == "NVIDIA Corporation GA102GL [RTX A6000]"
        assert gpu["kernel_driver"] == "nvidia"
        bar1 = [b for b in gpu["rebar"] if b["bar"] == 1][0]
        assert bar1["current_bytes"] == 256 * MIB
        assert bar1["supported_bytes"][0] == 64 * MIB
        assert max(bar1["supported_bytes"]) == 64 * GIB
        assert [r["index"] for r in gpu["memory_regions"]] == [0, 1, 3]
        assert gpu["memory_regions"][1]["size_bytes"] == 256 * MIB
        assert gpu["lnkcap"] == {"speed_gts": 16.0, "gen": 4, "width": 16}
        assert gpu["lnksta"] == {
            "speed_gts": 2.5, "gen": 1, "width": 16, "speed_downgraded": True, "width_downgraded": False,
        }
    for dev in audio:
        assert dev["kernel_driver"] == "snd_hda_intel"
        assert dev["rebar"] is None


def test_lspci_vvv_pro6000_rebar_on_bar2_and_virtual_rebar():
    devices = pcidev.parse_lspci_vv(read_capture("lspci-vvv__rtxpro6000x8__1.txt"))
    assert len(devices) == 8
    assert [d["bdf"] for d in devices] == [
        "06:00.0", "07:00.0", "75:00.0", "76:00.0", "84:00.0", "85:00.0", "f4:00.0", "f5:00.0",
    ]
    assert [d["numa_node"] for d in devices] == [0, 0, 0, 0, 1, 1, 1, 1]
    dev = devices[0]
    assert dev["class"] == "3D controller"
    assert dev["description"] == "NVIDIA Corporation Device 2bb5"
    assert dev["rebar"] == [
        {"bar": 2, "current_bytes": 128 * GIB, "supported_bytes": [64 * MIB * 2**i for i in range(12)]}
    ]
    assert len(dev["virtual_rebar"]) == 1
    assert dev["virtual_rebar"][0]["bar"] == 2
    assert dev["virtual_rebar"][0]["current_bytes"] == 4 * GIB
    assert max(dev["virtual_rebar"][0]["supported_bytes"]) == 8 * 2**60  # 8EB
    # the SR-IOV capability's own Region lines are not the device's BARs
    assert [r["index"] for r in dev["memory_regions"]] == [0, 2, 4]
    assert dev["memory_regions"][1]["size_bytes"] == 128 * GIB
    assert dev["lnkcap"] == {"speed_gts": 32.0, "gen": 5, "width": 16}
    assert dev["lnksta"]["speed_downgraded"] is True
    assert dev["lnksta"]["width"] == 16 and dev["lnksta"]["width_downgraded"] is False


def test_lspci_vvvv_rk3568_x1_downgraded_no_driver_line():
    (dev,) = pcidev.parse_lspci_vv(read_capture("lspci-vvvv__rtx3090-rk3568__1.txt"))
    assert dev["bdf"] == "0002:21:00.0"
    assert dev["description"] == "NVIDIA Corporation GA102 [GeForce RTX 3090]"
    assert dev["kernel_driver"] is None
    assert dev["kernel_modules"] == ["nvidia_drm", "nvidia"]
    assert dev["lnkcap"] == {"speed_gts": 16.0, "gen": 4, "width": 16}
    assert dev["lnksta"] == {
        "speed_gts": 2.5, "gen": 1, "width": 1, "speed_downgraded": True, "width_downgraded": True,
    }
    unassigned = [r for r in dev["memory_regions"] if r["address"] == "<unassigned>"]
    assert [r["index"] for r in unassigned] == [1, 3]
    assert all(r["size_bytes"] is None and r["virtual"] for r in unassigned)
    bar1 = [b for b in dev["rebar"] if b["bar"] == 1][0]
    assert bar1["current_bytes"] == 256 * MIB
    assert max(bar1["supported_bytes"]) == 32 * GIB


def test_lspci_vvvv_rk3588_gen3_x4_nouveau():
    (dev,) = pcidev.parse_lspci_vv(read_capture("lspci-vvvv__rtx3090-rk3588__1.txt"))
    assert dev["bdf"] == "0000:01:00.0"
    assert dev["kernel_driver"] == "nouveau"
    assert dev["lnksta"] == {
        "speed_gts": 8.0, "gen": 3, "width": 4, "speed_downgraded": True, "width_downgraded": True,
    }
    assert dev["memory_regions"][1]["size_bytes"] == 256 * MIB


def test_lspci_numeric_ids_and_domain():
    text = (
        "0000:01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GA102 [GeForce RTX 3090] "
        "[10de:2204] (rev a1) (prog-if 00 [VGA controller])\n"
        "\tSubsystem: Gigabyte Technology Co., Ltd Device 403b [1458:403b]\n"
        "\tRegion 1: Memory at 38000000000 (64-bit, prefetchable) [size=32G]\n"
    )
    (dev,) = pcidev.parse_lspci_vv(text)
    assert dev["bdf"] == "0000:01:00.0"
    assert dev["class_id"] == "0300"
    assert (dev["vendor_id"], dev["device_id"]) == ("10de", "2204")
    assert dev["description"] == "NVIDIA Corporation GA102 [GeForce RTX 3090]"
    assert dev["memory_regions"][0]["size_bytes"] == 32 * GIB


def test_lspci_errors_and_sizes():
    assert pcidev.parse_lspci_vv("") == []
    with pytest.raises(ValueError, match="not lspci output"):
        pcidev.parse_lspci_vv("pcilib: Cannot open /proc/bus/pci\n")
    assert pcidev.parse_size("256MB") == 256 * MIB
    assert pcidev.parse_size("32GB") == 32 * GIB
    assert pcidev.parse_size("16GB") == 16 * GIB
    assert pcidev.parse_size("64MB") == 64 * MIB
    assert pcidev.parse_size("512K") == 512 * 1024
    assert pcidev.parse_size("1PB") == 2**50
    assert pcidev.parse_size("lots") is None


# --- link speeds ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "gts"),
    [("16.0 GT/s PCIe", 16.0), ("8.0 GT/s", 8.0), ("2.5 GT/s PCIe\n", 2.5), ("5 GT/s", 5.0),
     ("32.0 GT/s PCIe", 32.0), ("Unknown", None), ("", None)],
)
def test_parse_sysfs_link_speed(text, gts):
    assert pcidev.parse_sysfs_link_speed(text) == gts


def test_parse_sysfs_link_speed_rejects_garbage():
    with pytest.raises(ValueError):
        pcidev.parse_sysfs_link_speed("fast")


@pytest.mark.parametrize(("gts", "gen"), [(2.5, 1), (5, 2), (5.0, 2), (8, 3), (16.0, 4), (32, 5), (64, 6)])
def test_pcie_gen_from_speed(gts, gen):
    assert pcidev.pcie_gen_from_speed(gts) == gen


def test_pcie_gen_from_speed_rejects_non_pcie_rates():
    with pytest.raises(ValueError):
        pcidev.pcie_gen_from_speed(3.0)


# --- p2pBandwidthLatencyTest ----------------------------------------------------------

UNI_OFF = "Unidirectional P2P=Disabled Bandwidth Matrix (GB/s)"
UNI_ON = "Unidirectional P2P=Enabled Bandwidth (P2P Writes) Matrix (GB/s)"
BI_OFF = "Bidirectional P2P=Disabled Bandwidth Matrix (GB/s)"
BI_ON = "Bidirectional P2P=Enabled Bandwidth Matrix (GB/s)"
LAT_OFF = "P2P=Disabled Latency Matrix (us)"
LAT_ON = "P2P=Enabled Latency (P2P Writes) Matrix (us)"


def test_p2p_test_3090x2_cannot_access():
    result = p2pbench.parse_p2p_bandwidth_latency_test(
        read_capture("p2pBandwidthLatencyTest__rtx3090x2__1.txt")
    )
    assert [(d["index"], d["name"], d["pci_bus_id"]) for d in result["devices"]] == [
        (0, "NVIDIA GeForce RTX 3090", "41"), (1, "NVIDIA GeForce RTX 3090", "61"),
    ]
    assert result["peer_access"] == [
        {"device": 0, "peer": 1, "can_access": False},
        {"device": 1, "peer": 0, "can_access": False},
    ]
    assert result["can_access"] == [[True, False], [False, True]]
    assert set(result["matrices"]) == {UNI_OFF, UNI_ON, BI_OFF, BI_ON, LAT_OFF, LAT_ON}
    assert result["matrices"][UNI_OFF] == [[829.35, 11.17], [11.42, 830.63]]
    assert result["matrices"][BI_ON][1][0] == 16.60
    assert result["matrices"][LAT_OFF] == [[1.59, 11.53], [10.29, 1.51]]
    assert result["cpu_matrices"][LAT_OFF] == [[1.83, 5.46], [5.47, 1.77]]
    assert result["cpu_matrices"][LAT_ON][1][1] == 1.76


def test_p2p_test_3090x4_spaces_in_connectivity_matrix():
    result = p2pbench.parse_p2p_bandwidth_latency_test(
        read_capture("p2pBandwidthLatencyTest__rtx3090x4__1.txt")
    )
    assert [d["pci_bus_id"] for d in result["devices"]] == ["19", "53", "8d", "c7"]
    assert result["devices"][0]["name"] == "GeForce RTX 3090"
    assert result["can_access"] == [[i == j for j in range(4)] for i in range(4)]
    assert len(result["peer_access"]) == 12
    assert result["matrices"][UNI_OFF][0][1] == 5.90
    assert result["matrices"][LAT_ON][0][1] == 18.50
    assert len(result["matrices"][BI_OFF]) == 4 and len(result["matrices"][BI_OFF][3]) == 4


def test_p2p_test_4090x2_early_driver_can_access_asymmetric():
    result = p2pbench.parse_p2p_bandwidth_latency_test(
        read_capture("p2pBandwidthLatencyTest__rtx4090x2__1.txt")
    )
    assert result["can_access"] == [[True, True], [True, True]]
    assert all(p["can_access"] for p in result["peer_access"])
    assert result["matrices"][UNI_ON][0][1] == 27.07
    assert result["matrices"][UNI_ON][1][0] == 11.46
    assert result["matrices"][BI_ON][0][1] == 54.11
    assert result["matrices"][LAT_ON][0][1] == 1.14


def test_p2p_test_4090x2_later_driver_cannot_access():
    result = p2pbench.parse_p2p_bandwidth_latency_test(
        read_capture("p2pBandwidthLatencyTest__rtx4090x2__2.txt")
    )
    assert result["can_access"] == [[True, False], [False, True]]
    assert result["matrices"][UNI_ON][0][1] == 22.18


def test_p2p_test_4090x6_partial_single_matrix():
    result = p2pbench.parse_p2p_bandwidth_latency_test(
        read_capture("p2pBandwidthLatencyTest__rtx4090x6__1.txt")
    )
    assert result["devices"] == []
    assert result["can_access"] is None
    assert list(result["matrices"]) == [BI_ON]
    matrix = result["matrices"][BI_ON]
    assert len(matrix) == 6 and all(len(row) == 6 for row in matrix)
    assert matrix[0][1] == 50.11
    assert matrix[5][4] == 51.21


def test_p2p_test_5070_5060ti_mixed_access():
    result = p2pbench.parse_p2p_bandwidth_latency_test(
        read_capture("p2pBandwidthLatencyTest__rtx5070-5060tix4__1.txt")
    )
    names = [d["name"] for d in result["devices"]]
    assert names == ["NVIDIA GeForce RTX 5070"] + ["NVIDIA GeForce RTX 5060 Ti"] * 4
    assert [d["pci_bus_id"] for d in result["devices"]] == ["4", "9", "a", "b", "c"]
    assert result["can_access"][0] == [True, False, False, False, False]
    assert result["can_access"][1] == [False, True, True, True, True]
    assert sum(p["can_access"] for p in result["peer_access"]) == 12
    assert result["matrices"][LAT_ON][1][2] == 0.48
    assert result["matrices"][LAT_ON][1][0] == 20.61
    assert result["cpu_matrices"][LAT_ON][4][4] == 2.82


def test_p2p_test_rejects_other_text():
    with pytest.raises(ValueError, match="p2pBandwidthLatencyTest"):
        p2pbench.parse_p2p_bandwidth_latency_test("CUDA error: no CUDA-capable device is detected\n")


# --- misc -----------------------------------------------------------------------------


def test_strip_ansi():
    assert parsers.strip_ansi("\t\x1b[4mGPU0\tGPU1\x1b[0m") == "\tGPU0\tGPU1"
    assert parsers.strip_ansi("plain") == "plain"


EXERCISED = (
    {PROC_OPEN, MODINFO, CSV_4080, CSV_H200, TOPO_H200, TOPO_4090, TOPO_5070, TOPO_PRO6000}
    | set(Q_CASES)
    | {
        "topo-p2p-r__h100x8__1.txt",
        "topo-p2p-r__l4x2__1.txt",
        "topo-p2p-rw__rtx5070-5060tix4__1.txt",
        "topo-p2p-rw__rtx5070-5060tix4__2.txt",
        "lspci-v__rtx4090__1.txt",
        "lspci-vv__rtxa6000x4__1.txt",
        "lspci-vvv__rtxpro6000x8__1.txt",
        "lspci-vvvv__rtx3090-rk3568__1.txt",
        "lspci-vvvv__rtx3090-rk3588__1.txt",
        "p2pBandwidthLatencyTest__rtx3090x2__1.txt",
        "p2pBandwidthLatencyTest__rtx3090x4__1.txt",
        "p2pBandwidthLatencyTest__rtx4090x2__1.txt",
        "p2pBandwidthLatencyTest__rtx4090x2__2.txt",
        "p2pBandwidthLatencyTest__rtx4090x6__1.txt",
        "p2pBandwidthLatencyTest__rtx5070-5060tix4__1.txt",
    }
)


def test_every_capture_is_exercised():
    from tests.unit.test_parsers_health import EXERCISED as HEALTH_EXERCISED

    names = capture_names()
    if not names:
        pytest.skip("real captures not present")
    exercised = EXERCISED | HEALTH_EXERCISED
    missing = [n for n in names if n not in exercised and not n.startswith("nvidia-smi__")]
    assert missing == [], f"captures without a parser test: {missing}"
