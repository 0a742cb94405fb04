"""rigctl.core.probe: the probe's output parser and judge, nvcc architecture flags, and the
probe program itself (compiled with the nvcc found on this machine, run without a GPU).

The JSON Lines samples below are HAND-WRITTEN samples of rigctl-probe's own output format
(documented in rigctl/core/probe.py), with plausible values for a 2x RTX 4090 rig. They are
not captures: the real GPU captures in ../shared/captures contain no probe output (the
probe is ours). test_samples_use_only_keys_the_probe_prints keeps them in line with the
program's source.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from rigctl.core import probe

REPO = Path(__file__).resolve().parents[2]
PROBE_CU = REPO / "roles" / "cuda" / "files" / probe.PROBE_SOURCE

# --- hand-written samples of the probe's format (not captures) -------------------------

HEADER = {
    "type": "probe",
    "probe": "rigctl-probe",
    "format": 1,
    "cuda_runtime": 12080,
    "cuda_driver": 12080,
    "device_count": 2,
    "device_order": "PCI_BUS_ID",
    "options": {"size_mib": 64, "iterations": 10, "p2p": True, "latency_bytes": 4, "latency_copies": 100},
}


def _device(index, bus_id):
    return {
        "type": "device",
        "index": index,
        "name": "NVIDIA GeForce RTX 4090",
        "pci_bus_id": bus_id,
        "uuid": f"GPU-0b3c2a51-7d8e-4f10-9a6b-00000000000{index}",
        "compute_capability": "8.9",
        "total_memory_bytes": 25390809088,
        "multiprocessors": 128,
        "usable": True,
        "kernel_ok": True,
        "ok": True,
        "error": None,
    }


def _host(index, bus_id):
    return {
        "type": "host_transfer",
        "device": index,
        "pci_bus_id": bus_id,
        "bytes": 67108864,
        "iterations": 10,
        "pinned": True,
        "h2d_gbps": 24.611,
        "h2d_gbps_max": 24.803,
        "d2h_gbps": 26.102,
        "d2h_gbps_max": 26.311,
        "data_ok": True,
        "mismatches": 0,
        "first_mismatch_offset": None,
        "ok": True,
        "error": None,
    }


def _pair(src, dst, gbps):
    return {
        "type": "pair",
        "src": src,
        "dst": dst,
        "src_pci_bus_id": BUS[src],
        "dst_pci_bus_id": BUS[dst],
        "can_access_peer": True,
        "peer_access": True,
        "mode": "p2p",
        "peer_access_error": None,
        "bytes": 67108864,
        "iterations": 10,
        "gbps": gbps,
        "gbps_max": gbps + 0.2,
        "latency_bytes": 4,
        "latency_us": 1.912,
        "data_ok": True,
        "mismatches": 0,
        "first_mismatch_offset": None,
        "ok": True,
        "error": None,
    }


BUS = ["0000:41:00.0", "0000:61:00.0"]

SUMMARY_OK = {
    "type": "summary",
    "ok": True,
    "exit_code": 0,
    "devices": 2,
    "devices_failed": 0,
    "host_transfers_failed": 0,
    "pairs": 2,
    "pairs_failed": 0,
    "pairs_data_failed": 0,
    "pairs_p2p": 2,
    "pairs_staged": 0,
    "errors": 0,
}

# What the probe prints on a machine without a driver (as the binary prints it here).
NO_DRIVER_SAMPLE = """\
{"type":"probe","probe":"rigctl-probe","format":1,"cuda_runtime":13000,"cuda_driver":0,"device_count":0,\
"device_order":"PCI_BUS_ID","options":{"size_mib":64,"iterations":10,"p2p":true,"latency_bytes":4,"latency_copies":100}}
{"type":"error","stage":"init","call":"cudaGetDeviceCount","cuda_error":"cudaErrorInsufficientDriver","code":35,\
"message":"CUDA driver version is insufficient for CUDA runtime version"}
{"type":"summary","ok":false,"exit_code":3,"devices":0,"devices_failed":0,"host_transfers_failed":0,"pairs":0,\
"pairs_failed":0,"pairs_data_failed":0,"pairs_p2p":0,"pairs_staged":0,"errors":1}
"""


def _records():
    return [
        HEADER,
        _device(0, BUS[0]),
        _device(1, BUS[1]),
        _host(0, BUS[0]),
        _host(1, BUS[1]),
        _pair(0, 1, 25.912),
        _pair(1, 0, 25.407),
        SUMMARY_OK,
    ]


def _text(records):
    return "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)


def _mutated(change):
    """The 2-GPU sample with `change(records)` applied to a deep copy."""
    records = copy.deepcopy(_records())
    change(records)
    return probe.parse_probe_output(_text(records))


def _pairs_of(records):
    return [r for r in records if r["type"] == "pair"]


def _fail_summary(records, **counts):
    summary = records[-1]
    summary.update(ok=False, exit_code=1, **counts)


# --- parse_probe_output -----------------------------------------------------------------


def test_parse_two_gpu_sample():
    parsed = probe.parse_probe_output(_text(_records()))
    assert parsed["header"]["cuda_runtime"] == 12080
    assert parsed["header"]["options"]["size_mib"] == 64
    assert [d["pci_bus_id"] for d in parsed["devices"]] == BUS
    assert [h["device"] for h in parsed["host_transfers"]] == [0, 1]
    assert [(p["src"], p["dst"]) for p in parsed["pairs"]] == [(0, 1), (1, 0)]
    assert parsed["pairs"][0]["gbps"] == 25.912
    assert parsed["summary"]["ok"] is True
    assert parsed["errors"] == []
    assert parsed["complete"] is True


def test_parse_ignores_blank_lines_crlf_and_unknown_types():
    lines = _text(_records()).splitlines()
    lines.insert(3, "")
    lines.insert(4, '{"type":"thermal","device":0,"celsius":61}')  # a future line type
    text = "\r\n".join(lines) + "\r\n\r\n"
    parsed = probe.parse_probe_output(text.encode())
    assert len(parsed["devices"]) == 2 and len(parsed["pairs"]) == 2
    assert parsed["complete"] is True


def test_parse_no_driver_output():
    parsed = probe.parse_probe_output(NO_DRIVER_SAMPLE)
    assert parsed["header"]["device_count"] == 0
    assert parsed["errors"][0]["stage"] == "init"
    assert parsed["errors"][0]["cuda_error"] == "cudaErrorInsufficientDriver"
    assert parsed["summary"]["exit_code"] == probe.EXIT_NO_GPU


def test_parse_truncated_output_is_incomplete():
    parsed = probe.parse_probe_output(_text(_records()[:-2]))  # killed during the last pair
    assert parsed["complete"] is False
    assert parsed["summary"] is None
    assert len(parsed["pairs"]) == 1


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no rigctl-probe header"),
        ("\n\n  \n", "no rigctl-probe header"),
        ('{"type":"device","index":0}\n', "should be the header"),
        ('{"type":"probe","probe":"other-tool","format":1}\n', "should be the header"),
        ("usage: rigctl-probe [--size-mib N]\n", "line 1 is not JSON"),
        ('{"type":"probe","probe":"rigctl-probe","format":1}\n{"type":"pair",\n', "line 2 is not JSON"),
        (
            '{"type":"probe","probe":"rigctl-probe","format":1}\n[1, 2]\n',
            'line 2 is not a JSON object with a "type"',
        ),
        (
            '{"type":"probe","probe":"rigctl-probe","format":1}\n{"kind":"pair"}\n',
            "line 2 is not a JSON object",
        ),
        ('{"type":"probe","probe":"rigctl-probe","format":2}\n', "format 2 is newer"),
        ('{"type":"probe","probe":"rigctl-probe"}\n', "no integer format"),
        (
            '{"type":"probe","probe":"rigctl-probe","format":1}\n{"type":"probe","probe":"rigctl-probe","format":1}\n',
            "second header",
        ),
        (
            '{"type":"probe","probe":"rigctl-probe","format":1}\n{"type":"summary","ok":true}\n{"type":"pair"}\n',
            "after the summary",
        ),
    ],
)
def test_parse_rejects_malformed_output(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        probe.parse_probe_output(text)


def test_parse_rejects_none():
    with pytest.raises(ValueError, match="got None"):
        probe.parse_probe_output(None)


# --- evaluate_probe ---------------------------------------------------------------------


def test_evaluate_all_ok():
    verdict = probe.evaluate_probe(
        probe.parse_probe_output(_text(_records())), expect_p2p=True, min_pair_gbps=20
    )
    assert verdict["ok"] is True
    assert verdict["problems"] == []
    assert verdict["pairs_tested"] == 2 and verdict["pairs_p2p"] == 2 and verdict["pairs_staged"] == 0
    assert verdict["exit_code"] == 0
    assert verdict["text"] == "2 GPU(s), 2 pair(s): data ok, P2P on 2/2, 25.4-25.9 GB/s"


def test_evaluate_data_mismatch_fails_the_pair():
    def corrupt(records):
        pair = _pairs_of(records)[1]
        pair.update(data_ok=False, ok=False, mismatches=1024, first_mismatch_offset=4096)
        _fail_summary(records, pairs_failed=1, pairs_data_failed=1)

    verdict = probe.evaluate_probe(_mutated(corrupt))
    assert verdict["ok"] is False
    assert [p["label"] for p in verdict["data_failed_pairs"]] == ["1->0"]
    assert verdict["data_failed_pairs"][0]["mismatches"] == 1024
    assert verdict["error_pairs"] == []
    assert verdict["text"].startswith("FAILED: GPU 1 (0000:61:00.0) -> GPU 0 (0000:41:00.0): data mismatch")


def test_evaluate_cuda_error_in_a_pair():
    def broken(records):
        pair = _pairs_of(records)[0]
        pair.update(data_ok=False, ok=False, gbps=None, gbps_max=None, latency_us=None)
        pair["error"] = {
            "call": "cudaMemcpyPeerAsync",
            "cuda_error": "cudaErrorIllegalAddress",
            "code": 700,
            "message": "an illegal memory access was encountered",
        }
        _fail_summary(records, pairs_failed=1)

    verdict = probe.evaluate_probe(_mutated(broken))
    assert verdict["ok"] is False
    assert verdict["data_failed_pairs"] == []
    assert [p["label"] for p in verdict["error_pairs"]] == ["0->1"]
    assert "cudaMemcpyPeerAsync: cudaErrorIllegalAddress" in verdict["error_pairs"][0]["error"]


def _staged(records):
    for pair in _pairs_of(records):
        pair.update(can_access_peer=False, peer_access=False, mode="staged", gbps=11.2, gbps_max=11.4)
    records[-1].update(pairs_p2p=0, pairs_staged=2)


def test_evaluate_no_peer_access_only_matters_when_p2p_is_expected():
    parsed = _mutated(_staged)
    relaxed = probe.evaluate_probe(parsed)
    assert relaxed["ok"] is True
    assert [p["label"] for p in relaxed["no_peer_access"]] == ["0->1", "1->0"]
    assert relaxed["text"] == "2 GPU(s), 2 pair(s): data ok, P2P on 0/2, 11.2-11.2 GB/s"

    strict = probe.evaluate_probe(parsed, expect_p2p=True)
    assert strict["ok"] is False
    assert len(strict["problems"]) == 2
    assert "no P2P (the driver reports no peer access possible)" in strict["problems"][0]


def test_evaluate_says_why_p2p_is_missing():
    def enable_failed(records):
        pair = _pairs_of(records)[0]
        pair.update(peer_access=False, mode="staged")
        pair["peer_access_error"] = {
            "call": "cudaDeviceEnablePeerAccess",
            "cuda_error": "cudaErrorTooManyPeers",
            "code": 711,
            "message": "peer mapping resources exhausted",
        }

    verdict = probe.evaluate_probe(_mutated(enable_failed), expect_p2p=True)
    assert verdict["ok"] is False
    assert "enabling failed: cudaDeviceEnablePeerAccess: cudaErrorTooManyPeers" in verdict["problems"][0]

    def no_p2p_option(records):
        records[0]["options"]["p2p"] = False
        for pair in _pairs_of(records):
            pair.update(peer_access=False, mode="staged")

    verdict = probe.evaluate_probe(_mutated(no_p2p_option), expect_p2p=True)
    assert "probe ran with --no-p2p" in verdict["problems"][0]


def test_evaluate_unexpected_p2p():
    verdict = probe.evaluate_probe(probe.parse_probe_output(_text(_records())), expect_p2p=False)
    assert verdict["ok"] is False
    assert [p["label"] for p in verdict["unexpected_p2p"]] == ["0->1", "1->0"]


def test_evaluate_bandwidth_floors():
    parsed = probe.parse_probe_output(_text(_records()))
    verdict = probe.evaluate_probe(parsed, min_pair_gbps=25.5)
    assert verdict["ok"] is False
    assert [(p["label"], p["gbps"]) for p in verdict["slow_pairs"]] == [("1->0", 25.407)]
    assert "25.41 GB/s, below 25.5 GB/s" in verdict["text"]

    verdict = probe.evaluate_probe(parsed, min_host_gbps=25)
    assert verdict["ok"] is False
    assert [h["slow"] for h in verdict["slow_host_transfers"]] == [{"h2d": 24.611}, {"h2d": 24.611}]


def test_evaluate_device_without_kernel_image():
    def no_image(records):
        device = records[2]
        device.update(kernel_ok=False, ok=False)
        device["error"] = {
            "call": "fill_pattern_kernel launch",
            "cuda_error": "cudaErrorNoKernelImageForDevice",
            "code": 209,
            "message": "no kernel image is available for execution on the device",
        }
        _fail_summary(records, devices_failed=1)

    verdict = probe.evaluate_probe(_mutated(no_image))
    assert verdict["ok"] is False
    assert verdict["failed_devices"][0]["index"] == 1
    assert "cudaErrorNoKernelImageForDevice" in verdict["failed_devices"][0]["error"]


def test_evaluate_host_transfer_mismatch():
    def bad_host(records):
        records[3].update(data_ok=False, ok=False, mismatches=7, first_mismatch_offset=64)
        _fail_summary(records, host_transfers_failed=1)

    verdict = probe.evaluate_probe(_mutated(bad_host))
    assert verdict["ok"] is False
    assert verdict["failed_host_transfers"] == [
        {"device": 0, "pci_bus_id": BUS[0], "error": "7 wrong words read back"}
    ]


def test_evaluate_no_driver():
    verdict = probe.evaluate_probe(probe.parse_probe_output(NO_DRIVER_SAMPLE))
    assert verdict["ok"] is False
    assert verdict["exit_code"] == 3
    assert verdict["devices"] == 0
    assert verdict["errors"] == [
        "cudaGetDeviceCount: cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA "
        "runtime version"
    ]
    assert verdict["text"].startswith("FAILED: probe error (init): cudaGetDeviceCount")


def test_evaluate_incomplete_output():
    verdict = probe.evaluate_probe(probe.parse_probe_output(_text(_records()[:-1])))
    assert verdict["ok"] is False
    assert verdict["complete"] is False
    assert verdict["exit_code"] is None
    assert "before its summary" in verdict["text"]


def test_evaluate_trusts_a_failed_summary():
    def failed(records):
        _fail_summary(records)

    verdict = probe.evaluate_probe(_mutated(failed))
    assert verdict["ok"] is False
    assert verdict["problems"] == ["probe reported failure (exit code 1)"]


# --- compute capabilities ---------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        ("Turing", "7.5"),
        ("Ampere", "8.6"),
        ("ampere", "8.6"),
        ("Ada", "8.9"),
        ("Hopper", "9.0"),
        ("Blackwell", "12.0"),
        ("NVIDIA GeForce RTX 2080 Ti", "7.5"),
        ("NVIDIA GeForce RTX 3090", "8.6"),
        ("GeForce RTX 3080 LHR", "8.6"),
        ("NVIDIA RTX A6000", "8.6"),
        ("NVIDIA A10", "8.6"),
        ("NVIDIA A100-SXM4-80GB", "8.0"),
        ("A100 SXM4 40GB", "8.0"),
        ("NVIDIA A30", "8.0"),
        ("NVIDIA GeForce RTX 4090", "8.9"),
        ("RTX 6000 Ada Generation", "8.9"),
        ("NVIDIA L4", "8.9"),
        ("NVIDIA L40S", "8.9"),
        ("NVIDIA H100 80GB HBM3", "9.0"),
        ("NVIDIA H100 PCIe", "9.0"),
        ("NVIDIA H200", "9.0"),
        ("NVIDIA GH200 480GB", "9.0"),
        ("NVIDIA GeForce RTX 5090", "12.0"),
        ("NVIDIA GeForce RTX 5070 Ti", "12.0"),
        ("RTX PRO 6000 Blackwell Server Edition", "12.0"),
        ("NVIDIA B200", "10.0"),
        ("NVIDIA GB200", "10.0"),
        ("NVIDIA B300 SXM6 AC", "10.3"),
        ("NVIDIA GB10", "12.1"),
        ("Tesla T4", "7.5"),
        ("2204", "8.6"),  # PCI device ids through gpudb
        ("0x2b85", "12.0"),
        ("0x20B510DE", "8.0"),
        ("8.6", "8.6"),
        ("sm_90a", "9.0"),
        ("compute_120", "12.0"),
        ((10, 3), "10.3"),
        ("Radeon RX 7900 XTX", None),
        ("", None),
        (None, None),
        ("ffff", None),
    ],
)
def test_compute_capability(value, expected):
    assert probe.compute_capability(value) == expected


def test_every_gpudb_model_has_a_capability():
    from rigctl.core import gpudb

    for device_id, (name, generation, _vram) in gpudb.MODELS.items():
        capability = probe.compute_capability(device_id)
        assert capability is not None, name
        if generation in ("Turing", "Ada", "Hopper"):
            assert capability == {"Turing": "7.5", "Ada": "8.9", "Hopper": "9.0"}[generation], name


@pytest.mark.parametrize(
    "value, expected",
    [
        ("8.6", "8.6"),
        (8.6, "8.6"),
        (12.0, "12.0"),
        ("sm_86", "8.6"),
        ("86", "8.6"),
        (120, "12.0"),
        ("103", "10.3"),
    ],
)
def test_normalize_capability(value, expected):
    assert probe.normalize_capability(value) == expected


@pytest.mark.parametrize("value", ["", "8", "x86", "0.0", "sm_", (8,), (8, 10), True, None])
def test_normalize_capability_rejects(value):
    with pytest.raises(ValueError, match="not a compute capability"):
        probe.normalize_capability(value)


# --- nvcc architecture flags ------------------------------------------------------------


@pytest.mark.parametrize(
    "toolkit, lowest, highest, present, absent",
    [
        ("11.8", "35", "90", ("37", "50", "72", "86", "89"), ("100", "120")),
        ("12.0", "50", "90", ("52", "70", "89"), ("35", "37", "100", "120")),
        ("12.6", "50", "90", ("87", "90"), ("100", "120")),
        ("12.8", "50", "120", ("100", "101", "120"), ("103", "121")),
        ("12.9", "50", "121", ("100", "101", "103", "120", "121"), ("110",)),
        ("13.0", "75", "121", ("80", "88", "103", "110", "120", "121"), ("50", "61", "70", "72", "101")),
        ("13.2", "75", "121", ("110",), ("72",)),  # newer than known: the last known table
    ],
)
def test_supported_architectures(toolkit, lowest, highest, present, absent):
    archs = probe.supported_architectures(toolkit)
    assert archs[0] == lowest and archs[-1] == highest
    assert archs == sorted(archs, key=int)
    for arch in present:
        assert arch in archs
    for arch in absent:
        assert arch not in archs


def test_supported_architectures_refuses_old_toolkits():
    with pytest.raises(ValueError, match="too old"):
        probe.supported_architectures("10.2")


RIG_GPUS = ["8.6", "8.9", "12.0", "9.0"]  # RTX 3090, 4090, 5090, H100


def _gencode(*pairs):
    flags = []
    for arch, code in pairs:
        flags += ["-gencode", f"arch=compute_{arch},code={code}"]
    return flags


@pytest.mark.parametrize(
    "toolkit, capabilities, flags, unsupported",
    [
        (
            "11.8",
            RIG_GPUS,
            _gencode(("86", "sm_86"), ("89", "sm_89"), ("90", "sm_90"), ("90", "compute_90")),
            ["12.0"],
        ),
        (
            "12.8.93",
            RIG_GPUS,
            _gencode(
                ("86", "sm_86"), ("89", "sm_89"), ("90", "sm_90"), ("120", "sm_120"), ("120", "compute_120")
            ),
            [],
        ),
        (
            "V13.0.88",
            RIG_GPUS,
            _gencode(
                ("86", "sm_86"), ("89", "sm_89"), ("90", "sm_90"), ("120", "sm_120"), ("121", "compute_121")
            ),
            [],
        ),
        ("13.0", ["8.6", "8.6", "sm_86"], _gencode(("86", "sm_86"), ("121", "compute_121")), []),
        ("13.0", ["6.1", "8.6"], _gencode(("86", "sm_86"), ("121", "compute_121")), ["6.1"]),
        ("12.0", ["7.0"], _gencode(("70", "sm_70"), ("90", "compute_90")), []),
        # No native code, same major: the binary-compatible cubin of the family base.
        (
            "12.8",
            ["12.1", "10.3"],
            _gencode(("100", "sm_100"), ("120", "sm_120"), ("120", "compute_120")),
            [],
        ),
        ("11.0", ["8.9"], _gencode(("80", "sm_80"), ("80", "compute_80")), []),
        # No GPUs known: the project's default targets, as far as the toolkit supports them.
        ("11.8", [], _gencode(("86", "sm_86"), ("89", "sm_89"), ("90", "sm_90"), ("90", "compute_90")), []),
        (
            "12.9",
            None,
            _gencode(
                ("86", "sm_86"), ("89", "sm_89"), ("90", "sm_90"), ("120", "sm_120"), ("121", "compute_121")
            ),
            [],
        ),
    ],
)
def test_nvcc_arch_flags(toolkit, capabilities, flags, unsupported):
    assert probe.nvcc_arch_flags(toolkit, capabilities) == flags
    assert probe.unsupported_capabilities(toolkit, capabilities) == unsupported


def test_arch_plan_tells_jit_from_unusable():
    plan = probe.arch_plan("11.8", ["8.6", "12.0", "10.0"])
    assert plan["toolkit"] == "11.8"
    assert plan["capabilities"] == ["8.6", "10.0", "12.0"]
    assert plan["sm"] == ["86"] and plan["ptx"] == "90"
    assert plan["unsupported"] == ["10.0", "12.0"]
    assert plan["jit"] == ["10.0", "12.0"]  # newer than compute_90: the PTX runs there
    assert plan["unusable"] == []

    plan = probe.arch_plan("13.0", ["6.1", "7.0", "8.9"])
    assert plan["sm"] == ["89"]
    assert plan["unsupported"] == plan["unusable"] == ["6.1", "7.0"]
    assert plan["jit"] == []


def test_arch_plan_rejects_bad_input():
    with pytest.raises(ValueError, match="not a compute capability"):
        probe.arch_plan("12.8", ["GeForce RTX 3090"])
    with pytest.raises(ValueError, match="not a CUDA toolkit version"):
        probe.arch_plan("latest", ["8.6"])


def test_build_command():
    argv = probe.build_command(
        "/usr/local/cuda-12.8/bin/nvcc", "/src/rigctl-probe.cu", "/out/rigctl-probe", "12.8", ["8.6"]
    )
    assert argv == [
        "/usr/local/cuda-12.8/bin/nvcc",
        "-O2",
        "-std=c++14",
        "-cudart",
        "static",
        "-gencode",
        "arch=compute_86,code=sm_86",
        "-gencode",
        "arch=compute_120,code=compute_120",
        "-o",
        "/out/rigctl-probe",
        "/src/rigctl-probe.cu",
    ]
    with_ccbin = probe.build_command(
        "nvcc", "a.cu", "a", "11.8", ["8.6"], ccbin="/usr/lib/nvidia-cuda-toolkit/bin"
    )
    assert with_ccbin[with_ccbin.index("-ccbin") + 1] == "/usr/lib/nvidia-cuda-toolkit/bin"
    assert with_ccbin[-3:] == ["-o", "a", "a.cu"]


def test_install_paths():
    assert probe.PROBE_SOURCE == "rigctl-probe.cu"
    assert probe.PROBE_SOURCE_PATH == "/usr/local/lib/rigctl/probe/rigctl-probe.cu"
    assert probe.PROBE_BINARY_PATH == "/usr/local/lib/rigctl/probe/rigctl-probe"
    assert probe.PROBE_BUILD_RECORD_PATH == "/usr/local/lib/rigctl/probe/build.json"


# --- the program ------------------------------------------------------------------------


def test_samples_use_only_keys_the_probe_prints():
    """Every key of the hand-written samples is a JSON key the program writes."""
    source = PROBE_CU.read_text()
    keys = set()
    for record in _records():
        keys.update(record)
        for value in record.values():
            if isinstance(value, dict):
                keys.update(value)
    keys.update(json.loads(NO_DRIVER_SAMPLE.splitlines()[1]))
    for key in sorted(keys):
        assert f'"{key}"' in source, key
    for kind in ("probe", "device", "host_transfer", "pair", "error", "summary"):
        assert f'str("type", "{kind}")' in source, kind


def _find_nvcc():
    for candidate in (os.environ.get("RIGCTL_TEST_NVCC"), "/usr/local/cuda/bin/nvcc", shutil.which("nvcc")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def built_probe(tmp_path_factory):
    """rigctl-probe compiled with this machine's nvcc for RTX 3090/4090/5090 + H100."""
    nvcc = _find_nvcc()
    if nvcc is None:
        pytest.skip(
            "no nvcc found (/usr/local/cuda/bin/nvcc, PATH, $RIGCTL_TEST_NVCC): cannot compile the probe"
        )
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60)
    match = re.search(r"release (\d+\.\d+)", version.stdout)
    assert match, f"cannot read the CUDA release from `{nvcc} --version`: {version.stdout}"
    toolkit = match.group(1)
    capabilities = [
        probe.compute_capability(name)
        for name in ("GeForce RTX 3090", "GeForce RTX 4090", "GeForce RTX 5090", "H100 PCIe")
    ]
    assert capabilities == ["8.6", "8.9", "12.0", "9.0"]
    out = tmp_path_factory.mktemp("probe")
    binary = out / "rigctl-probe"
    argv = probe.build_command(nvcc, str(PROBE_CU), str(binary), toolkit, capabilities)
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=str(out))
    assert result.returncode == 0, f"nvcc failed:\n{' '.join(argv)}\n{result.stderr}{result.stdout}"
    warnings = [line for line in result.stderr.splitlines() if "warning" in line.lower()]
    assert warnings == [], "\n".join(warnings)
    assert binary.is_file()
    return {"binary": str(binary), "toolkit": toolkit, "seconds": time.monotonic() - started}


def _run(binary, *args):
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)


def _has_nvidia_driver():
    return os.path.exists("/proc/driver/nvidia/version")


@pytest.mark.slow
def test_compiled_probe_reports_no_gpu_and_exits_3(built_probe):
    result = _run(built_probe["binary"], "--size-mib", "1", "--iterations", "1")
    parsed = probe.parse_probe_output(result.stdout)  # stdout is only JSON Lines
    header = parsed["header"]
    assert header["format"] == probe.PROBE_FORMAT
    major, minor = (int(x) for x in built_probe["toolkit"].split("."))
    assert header["cuda_runtime"] == major * 1000 + minor * 10
    assert header["options"] == {
        "size_mib": 1,
        "iterations": 1,
        "p2p": True,
        "latency_bytes": 4,
        "latency_copies": 100,
    }
    assert header["device_order"] == "PCI_BUS_ID"
    if _has_nvidia_driver():
        # A machine with a real GPU: the probe ran its checks; the output must still parse.
        assert result.returncode in (probe.EXIT_OK, probe.EXIT_CHECK_FAILED, probe.EXIT_NO_GPU), result.stderr
        assert parsed["complete"] is True
        return
    assert result.returncode == probe.EXIT_NO_GPU, result.stdout + result.stderr
    assert header["device_count"] == 0
    (error,) = parsed["errors"]
    assert error["stage"] == "init"
    assert error["call"] == "cudaGetDeviceCount"
    assert error["cuda_error"] in ("cudaErrorInsufficientDriver", "cudaErrorNoDevice")
    assert error["message"]
    assert parsed["summary"]["exit_code"] == probe.EXIT_NO_GPU and parsed["summary"]["ok"] is False
    assert "no usable GPU" in result.stderr
    verdict = probe.evaluate_probe(parsed)
    assert verdict["ok"] is False and verdict["exit_code"] == 3


@pytest.mark.slow
def test_compiled_probe_help_and_usage_errors(built_probe):
    result = _run(built_probe["binary"], "--help")
    assert result.returncode == 0
    for option in ("--size-mib", "--iterations", "--no-p2p", "--pairs", "exit codes"):
        assert option in result.stdout

    for args in (
        ["--size-mib", "0"],
        ["--iterations", "x"],
        ["--pairs", "0:0"],
        ["--pairs", "1-2"],
        ["--bogus"],
    ):
        result = _run(built_probe["binary"], *args)
        assert result.returncode == probe.EXIT_USAGE, args
        assert result.stdout == "", args
        assert "rigctl-probe: error:" in result.stderr, args
