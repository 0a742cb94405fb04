"""BAR1 (the VRAM aperture) from lspci, picked by size and prefetchability, never by region
number (gpufacts.bar1_from_lspci): every real lspci capture, and the simulated rigs."""

from __future__ import annotations

import pytest

from rigctl.core import gpufacts, pcidev
from tests.captures import capture_names, read_capture

# What each capture says, read by hand from the capture.
EXPECTED = {
    # -v without region numbers: Memory at ... (64-bit, prefetchable) [size=32G]
    "lspci-v__rtx4090__1.txt": {"0000:01:00.0": 32768},
    # Region 1 256M, ReBAR BAR 1 current 256MB (small BAR, supports up to 64GB)
    "lspci-vv__rtxa6000x4__1.txt": dict.fromkeys(
        ["0000:01:00.0", "0000:41:00.0", "0000:81:00.0", "0000:c1:00.0"], 256),
    # the VRAM BAR is region 2 (128G); region 0 (64M) is prefetchable too
    "lspci-vvv__rtxpro6000x8__1.txt": dict.fromkeys(
        ["0000:06:00.0", "0000:07:00.0", "0000:75:00.0", "0000:76:00.0", "0000:84:00.0",
         "0000:85:00.0", "0000:f4:00.0", "0000:f5:00.0"], 131072),
    # regions unassigned ([virtual], no size): ReBAR BAR 1 current 256MB
    "lspci-vvvv__rtx3090-rk3568__1.txt": {"0002:21:00.0": 256},
    "lspci-vvvv__rtx3090-rk3588__1.txt": {"0000:01:00.0": 256},
    # bridges only: no GPU
    "lspci-vvv-bridges__rtxpro6000x8-pex890xx__1.txt": {},
}


def test_every_lspci_capture_is_listed_here():
    names = [n for n in capture_names() if n.startswith("lspci")]
    if not names:
        pytest.skip("real captures not present")
    assert sorted(names) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bar1_from_lspci_capture(name):
    devices = pcidev.parse_lspci_vv(read_capture(name))
    assert gpufacts.bar1_from_lspci(devices) == EXPECTED[name]


def test_audio_function_and_non_prefetchable_regions_have_no_bar1():
    dev = {"bdf": "0000:01:00.1", "vendor_id": "10de", "description": "NVIDIA audio",
           "memory_regions": [{"index": 0, "prefetchable": False, "size_bytes": 16384}], "rebar": None}
    assert gpufacts.bar1_from_lspci([dev]) == {}


def test_rebar_current_size_of_the_largest_region_wins_over_its_printed_size():
    dev = {"bdf": "0000:41:00.0", "vendor_id": "10de", "description": "NVIDIA GPU",
           "memory_regions": [{"index": 0, "prefetchable": False, "size_bytes": 16 << 20},
                              {"index": 1, "prefetchable": True, "size_bytes": 256 << 20},
                              {"index": 3, "prefetchable": True, "size_bytes": 32 << 20}],
           "rebar": [{"bar": 1, "current_bytes": 32 << 30}, {"bar": 3, "current_bytes": 32 << 20}]}
    assert gpufacts.bar1_from_lspci([dev]) == {"0000:41:00.0": 32768}
