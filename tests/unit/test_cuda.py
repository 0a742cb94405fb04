"""CUDA toolkit / driver / NCCL-build logic shipped to hosts (rigctl.core.cuda)."""

from __future__ import annotations

import pytest

from rigctl.core import cuda
from rigctl.core import driver as driverlib

# --- CUDA release strings -------------------------------------------------------------


@pytest.mark.parametrize("text,parsed", [
    ("12.8", (12, 8)),
    ("11.0", (11, 0)),
    ("13.0", (13, 0)),
    ("12.10", (12, 10)),
    (" 12.8\n", (12, 8)),
    (12.8, (12, 8)),
])
def test_parse_cuda_version(text, parsed):
    assert cuda.parse_cuda_version(text) == parsed


def test_cuda_12_10_is_not_12_1():
    assert cuda.parse_cuda_version("12.10") != cuda.parse_cuda_version("12.1")
    assert cuda.cuda_key("12.10") == "12.10"
    assert cuda.cuda_key("12.1") == "12.1"
    # Ordered as releases, not as decimals: 12.10 comes after 12.9.
    assert cuda.parse_cuda_version("12.10") > cuda.parse_cuda_version("12.9")


def test_cuda_key_normalises_leading_zero():
    assert cuda.cuda_key("12.08") == "12.8"


@pytest.mark.parametrize("bad", ["", None, "12", "12.8.1", "v12.8", "cuda12.8", "12.x", "1.2", "12.123",
                                 "twelve", "12,8"])
def test_parse_cuda_version_rejects_other_text(bad):
    with pytest.raises(ValueError, match="not a CUDA version"):
        cuda.parse_cuda_version(bad)
    with pytest.raises(ValueError):
        cuda.cuda_key(bad)


# --- toolkit <-> driver table ---------------------------------------------------------


@pytest.mark.parametrize("release", sorted(cuda.TOOLKIT_DRIVER, key=cuda.parse_cuda_version))
def test_every_toolkit_runs_fully_on_its_own_driver(release):
    driver = cuda.TOOLKIT_DRIVER[release]
    assert cuda.toolkit_driver(release) == driver
    assert cuda.driver_cuda_version(driver) == release
    support = cuda.driver_support(release, driver)
    assert support["supported"] is True and support["mode"] == "full"


def test_toolkit_drivers_grow_with_the_release():
    ordered = sorted(cuda.TOOLKIT_DRIVER, key=cuda.parse_cuda_version)
    drivers = [driverlib.version_tuple(cuda.TOOLKIT_DRIVER[r]) for r in ordered]
    assert drivers == sorted(drivers)


def test_toolkit_driver_unknown_for_a_release_newer_than_the_table():
    assert cuda.toolkit_driver("13.1") is None
    assert cuda.toolkit_driver("12.10") is None


@pytest.mark.parametrize("driver,release", [
    ("535.261.03", "12.2"),
    ("535.54.03", "12.2"),
    ("535.54.02", "12.1"),
    ("570.86.16", "12.8"),
    ("570.26", "12.8"),
    ("565.57.01", "12.6"),
    ("550.54.14", "12.4"),
    ("450.80.02", "11.0"),
    ("450.36.06", "11.0"),
    ("520.61.05", "11.8"),
    ("580.65.06", "13.0"),
    ("595.71.05", "13.0"),
])
def test_driver_cuda_version(driver, release):
    assert cuda.driver_cuda_version(driver) == release


@pytest.mark.parametrize("driver", ["440.33.01", "418.87.00", "", None])
def test_driver_cuda_version_none_for_old_or_missing_drivers(driver):
    assert cuda.driver_cuda_version(driver) is None


# --- driver_support --------------------------------------------------------------------


def test_driver_support_full():
    got = cuda.driver_support("12.8", "570.86.16")
    assert got["supported"] is True and got["mode"] == "full"
    assert got["needs"] == "570.26" and got["minimum"] == "525.60.13"
    assert got["cuda"] == "12.8" and got["driver"] == "570.86.16" and got["driver_cuda"] == "12.8"
    assert got["message"] is None and got["fix"] is None


def test_driver_support_exactly_the_shipped_driver_is_full():
    assert cuda.driver_support("12.4", "550.54.14")["mode"] == "full"


def test_driver_support_minor_compat_refused_by_default():
    got = cuda.driver_support("12.8", "565.57.01")
    assert got["supported"] is False
    assert got["mode"] == "minor-compat"
    assert got["driver_cuda"] == "12.6"
    # The message names the toolkit, its driver, the installed driver and what it supports.
    for text in ("CUDA 12.8", "570.26", "565.57.01", "12.6", "minor version compatibility"):
        assert text in got["message"]
    # The fix names every way out, with the variables to set.
    for text in ("570.26", "rig_cuda_version to 12.6", "rig_cuda_minor_version_compat: true"):
        assert text in got["fix"]


def test_driver_support_minor_compat_accepted_when_allowed():
    got = cuda.driver_support("12.8", "565.57.01", allow_minor_compat=True)
    assert got["supported"] is True
    assert got["mode"] == "minor-compat"
    assert got["message"] is None and got["fix"] is None


def test_allow_minor_compat_does_not_change_a_full_or_unsupported_answer():
    assert cuda.driver_support("12.4", "570.86.16", allow_minor_compat=True)["mode"] == "full"
    below = cuda.driver_support("12.8", "520.61.05", allow_minor_compat=True)
    assert below["supported"] is False and below["mode"] == "unsupported"


def test_driver_support_unsupported_below_the_majors_minimum():
    got = cuda.driver_support("12.8", "520.61.05")
    assert got["supported"] is False and got["mode"] == "unsupported"
    assert got["driver_cuda"] == "11.8"
    for text in ("CUDA 12.8", "570.26", "any CUDA 12.x needs at least 525.60.13", "520.61.05"):
        assert text in got["message"]
    for text in ("rig_cuda_version", "11.8 or older", "rig_driver_version"):
        assert text in got["fix"]


def test_driver_support_cuda11_minor_compat_minimum():
    # 11.1 on 450.80.02: below 11.1's driver, at the 11.x minor-compat minimum.
    assert cuda.driver_support("11.1", "450.80.02")["mode"] == "minor-compat"
    # 450.51.06 runs 11.0 (its own 450.36.06 is older) but is below the 11.x minimum for 11.1.
    assert cuda.driver_support("11.0", "450.51.06")["mode"] == "full"
    assert cuda.driver_support("11.1", "450.51.06")["mode"] == "unsupported"


def test_driver_support_release_newer_than_the_table_uses_the_majors_minimum():
    got = cuda.driver_support("13.1", "580.82.07")
    assert got["needs"] is None and got["minimum"] == "580.65.06"
    assert got["supported"] is True and got["mode"] == "full"
    assert got["driver_cuda"] == "13.0"


def test_driver_support_release_newer_than_the_table_below_the_minimum():
    got = cuda.driver_support("13.1", "575.51.03")
    assert got["supported"] is False and got["mode"] == "unsupported"
    # Without a table entry the major's minimum is what the message asks for.
    assert "CUDA 13.1 needs NVIDIA driver 580.65.06 or newer" in got["message"]
    assert "575.51.03" in got["message"]
    assert "12.9 or older" in got["fix"] and "rig_driver_version" in got["fix"]


def test_driver_support_unknown_major():
    got = cuda.driver_support("10.2", "440.33.01")
    assert got["supported"] is False and got["mode"] == "unsupported"
    assert got["minimum"] is None and got["needs"] is None
    assert "10.2" in got["message"]
    assert got["fix"] == "use a CUDA release of major 11/12/13"


def test_driver_support_rejects_a_malformed_release():
    with pytest.raises(ValueError):
        cuda.driver_support("12", "570.86.16")


# --- which driver version the toolkit meets ------------------------------------------

ALL_SOURCES = {
    "loaded_version_sysfs": "570.86.16",
    "loaded": {"version": "565.57.01"},
    "userspace_versions": ["550.54.14"],
}


def test_installed_driver_prefers_the_sysfs_module_version():
    assert cuda.installed_driver_version(ALL_SOURCES, "560.35.03") == ("570.86.16", "loaded kernel module")


def test_installed_driver_then_proc_loaded_module():
    facts = dict(ALL_SOURCES, loaded_version_sysfs=None)
    assert cuda.installed_driver_version(facts, "560.35.03") == ("565.57.01", "loaded kernel module")


def test_installed_driver_then_nvidia_smi():
    facts = dict(ALL_SOURCES, loaded_version_sysfs="", loaded=None)
    assert cuda.installed_driver_version(facts, "560.35.03") == ("560.35.03", "nvidia-smi")


def test_installed_driver_then_the_newest_userspace_library():
    facts = {"loaded_version_sysfs": None, "loaded": {},
             "userspace_versions": ["535.54.03", "535.261.03", "470.256.02"]}
    # Version order, not string order ("535.54.03" > "535.261.03" as strings).
    assert cuda.installed_driver_version(facts) == ("535.261.03", "installed userspace libraries")


def test_installed_driver_none():
    assert cuda.installed_driver_version({}) == (None, None)
    assert cuda.installed_driver_version({"loaded": None, "userspace_versions": []}, None) == (None, None)


# --- toolkit packages and paths per source -------------------------------------------


@pytest.mark.parametrize("source,release,package,home,nvcc,ccbin", [
    ("cuda-repo", "12.8", "cuda-toolkit-12-8", "/usr/local/cuda-12.8", "/usr/local/cuda-12.8/bin/nvcc", None),
    ("mirror", "12.10", "cuda-toolkit-12-10", "/usr/local/cuda-12.10", "/usr/local/cuda-12.10/bin/nvcc",
     None),
    ("cuda-repo", "11.8", "cuda-toolkit-11-8", "/usr/local/cuda-11.8", "/usr/local/cuda-11.8/bin/nvcc", None),
    ("debian", "11.8", "nvidia-cuda-toolkit", "/usr", "/usr/bin/nvcc", "/usr/lib/nvidia-cuda-toolkit/bin"),
    ("debian", "12.4", "nvidia-cuda-toolkit", "/usr", "/usr/bin/nvcc", "/usr/lib/nvidia-cuda-toolkit/bin"),
])
def test_toolkit_locations_per_source(source, release, package, home, nvcc, ccbin):
    assert source in cuda.SOURCES
    assert cuda.toolkit_package(source, release) == package
    assert cuda.toolkit_home(source, release) == home
    assert cuda.toolkit_nvcc(source, release) == nvcc
    assert cuda.toolkit_ccbin(source) == ccbin


def test_toolkit_package_validates_the_release():
    with pytest.raises(ValueError):
        cuda.toolkit_package("cuda-repo", "12.8.1")


# --- apt versions of the toolkit -----------------------------------------------------


@pytest.mark.parametrize("deb,source,release,ok", [
    ("11.8.89~11.8.0-5~deb12u1", "debian", "11.8", True),
    ("11.8.89~11.8.0-5~deb12u1", "debian", "12.4", False),
    ("12.4.131~12.4.1-2", "debian", "12.4", True),
    ("12.8.1-1", "cuda-repo", "12.8", True),
    ("12.8.0-1", "mirror", "12.8", True),
    ("12.8.1-1", "cuda-repo", "12.1", False),
    ("12.10.0-1", "cuda-repo", "12.1", False),
    ("12.1.1-1", "cuda-repo", "12.10", False),
    ("1:12.8.1-1", "cuda-repo", "12.8", True),
    ("2:11.8.89~11.8.0-5", "debian", "11.8", True),
    ("1:12.9.0-1", "cuda-repo", "12.8", False),
    ("", "cuda-repo", "12.8", False),
    (None, "cuda-repo", "12.8", False),
    ("garbage", "cuda-repo", "12.8", False),
])
def test_deb_matches_cuda(deb, source, release, ok):
    assert cuda.deb_matches_cuda(deb, source, release) is ok


def test_pick_toolkit_version_nvidia_newest_update_of_the_release():
    madison = ["12.9.0-1", "12.8.1-1", "12.8.0-1", "12.6.3-1"]
    assert cuda.pick_toolkit_version(madison, "cuda-repo", "12.8") == "12.8.1-1"
    assert cuda.pick_toolkit_version(list(reversed(madison)), "cuda-repo", "12.8") == "12.8.1-1"


def test_pick_toolkit_version_compares_numbers_not_strings():
    assert cuda.pick_toolkit_version(["12.8.9-1", "12.8.10-1"], "mirror", "12.8") == "12.8.10-1"


def test_pick_toolkit_version_debian():
    madison = ["11.8.89~11.8.0-5~deb12u1"]
    assert cuda.pick_toolkit_version(madison, "debian", "11.8") == "11.8.89~11.8.0-5~deb12u1"
    assert cuda.pick_toolkit_version(madison, "debian", "12.4") is None


def test_pick_toolkit_version_same_epoch():
    assert cuda.pick_toolkit_version(["1:12.8.0-1", "1:12.8.1-1"], "cuda-repo", "12.8") == "1:12.8.1-1"


def test_pick_toolkit_version_nothing_matches():
    assert cuda.pick_toolkit_version([], "cuda-repo", "12.8") is None
    assert cuda.pick_toolkit_version(["12.6.3-1", "12.9.0-1"], "cuda-repo", "12.8") is None


@pytest.mark.parametrize("madison,source,release,newest", [
    (["12.8.1-1", "1:12.8.0-1"], "cuda-repo", "12.8", "1:12.8.0-1"),
    (["11.8.89~11.8.0-5~deb12u1", "11.8.89~11.8.0-5"], "debian", "11.8", "11.8.89~11.8.0-5"),
])
def test_pick_toolkit_version_uses_debian_version_order(madison, source, release, newest):
    assert cuda.pick_toolkit_version(madison, source, release) == newest


MADISON_DEBIAN = (
    "nvidia-cuda-toolkit | 11.8.89~11.8.0-5~deb12u1 | http://deb.debian.org/debian bookworm/non-free "
    "amd64 Packages\n"
)
MADISON_NVIDIA = (
    "cuda-toolkit-12-8 |   12.8.1-1 | https://developer.download.nvidia.com/compute/cuda/repos/debian12/"
    "x86_64  Packages\n"
    "cuda-toolkit-12-8 |   12.8.0-1 | https://developer.download.nvidia.com/compute/cuda/repos/debian12/"
    "x86_64  Packages\n"
)
MADISON_NCCL = (
    "  libnccl2 | 2.26.2-1+cuda12.8 | https://developer.download.nvidia.com/compute/cuda/repos/debian12/"
    "x86_64  Packages\n"
    "  libnccl2 | 2.26.2-1+cuda12.2 | https://developer.download.nvidia.com/compute/cuda/repos/debian12/"
    "x86_64  Packages\n"
    "  libnccl2 | 2.21.5-1+cuda12.4 | https://developer.download.nvidia.com/compute/cuda/repos/debian12/"
    "x86_64  Packages\n"
)


def test_parse_madison_debian():
    assert cuda.parse_madison(MADISON_DEBIAN) == ["11.8.89~11.8.0-5~deb12u1"]


def test_parse_madison_nvidia_keeps_apt_order():
    assert cuda.parse_madison(MADISON_NVIDIA) == ["12.8.1-1", "12.8.0-1"]


def test_parse_madison_feeds_pick_toolkit_version():
    assert cuda.pick_toolkit_version(cuda.parse_madison(MADISON_NVIDIA), "cuda-repo", "12.8") == "12.8.1-1"
    assert cuda.pick_toolkit_version(cuda.parse_madison(MADISON_DEBIAN), "debian", "11.8") == \
        "11.8.89~11.8.0-5~deb12u1"


def test_parse_madison_nccl():
    assert cuda.parse_madison(MADISON_NCCL) == ["2.26.2-1+cuda12.8", "2.26.2-1+cuda12.2", "2.21.5-1+cuda12.4"]


@pytest.mark.parametrize("text", ["", None, "N: Unable to locate package cuda-toolkit-12-8\n",
                                  "W: Unable to locate package libnccl2\n"])
def test_parse_madison_without_versions(text):
    assert cuda.parse_madison(text) == []


# --- nvcc ----------------------------------------------------------------------------

NVCC_11_8 = """nvcc: NVIDIA (R) Cuda compiler driver
Copyright (c) 2005-2022 NVIDIA Corporation
Built on Wed_Sep_21_10:33:58_PDT_2022
Cuda compilation tools, release 11.8, V11.8.89
Build cuda_11.8.r11.8/compiler.31833905_0
"""
NVCC_12_8 = """nvcc: NVIDIA (R) Cuda compiler driver
Copyright (c) 2005-2025 NVIDIA Corporation
Built on Fri_Feb_21_20:23:50_PST_2025
Cuda compilation tools, release 12.8, V12.8.93
Build cuda_12.8.r12.8/compiler.35583870_0
"""


@pytest.mark.parametrize("text,release", [(NVCC_11_8, "11.8"), (NVCC_12_8, "12.8")])
def test_parse_nvcc_version(text, release):
    assert cuda.parse_nvcc_version(text) == release


@pytest.mark.parametrize("text", ["", None, "bash: nvcc: command not found\n",
                                  "Cuda compilation tools, release 12.8\n"])
def test_parse_nvcc_version_rejects_other_text(text):
    with pytest.raises(ValueError, match="not nvcc --version output"):
        cuda.parse_nvcc_version(text)


# --- NCCL apt versions ---------------------------------------------------------------


@pytest.mark.parametrize("deb,parsed", [
    ("2.26.2-1+cuda12.8", {"nccl": "2.26.2", "release": "1", "cuda": "12.8"}),
    ("2.21.5-1+cuda11.0", {"nccl": "2.21.5", "release": "1", "cuda": "11.0"}),
    ("1:2.21.5-2+cuda12.4", {"nccl": "2.21.5", "release": "2", "cuda": "12.4"}),
    (" 2.18.5-1+cuda12.2\n", {"nccl": "2.18.5", "release": "1", "cuda": "12.2"}),
])
def test_parse_nccl_deb_version(deb, parsed):
    assert cuda.parse_nccl_deb_version(deb) == parsed


@pytest.mark.parametrize("deb", ["", None, "2.26.2-1", "2.26.2+cuda12.8", "2.26-1+cuda12.8",
                                 "2.26.2-1+cuda12", "2.26.2-1+cuda12.8~rc1"])
def test_parse_nccl_deb_version_rejects_other_versions(deb):
    assert cuda.parse_nccl_deb_version(deb) is None


@pytest.mark.parametrize("deb,wanted,ok", [
    ("2.21.5-1+cuda12.4", "2.21.5", True),
    ("2.21.5-2+cuda12.4", "2.21.5", True),
    ("2.21.5-1+cuda12.4", "2.21.5-1", True),
    ("2.21.5-2+cuda12.4", "2.21.5-1", False),
    ("2.21.5-1+cuda12.4", "2.21.5-2", False),
    ("2.21.5-2+cuda11.0", "2.21.5-2", True),
    ("2.21.50-1+cuda12.4", "2.21.5", False),
    ("2.21.5-1+cuda12.4", "2.21.50", False),
    ("2.21.5-1", "2.21.5", False),
    ("", "2.21.5", False),
])
def test_nccl_version_matches(deb, wanted, ok):
    assert cuda.nccl_version_matches(deb, wanted) is ok


# --- select_nccl_build ---------------------------------------------------------------

NCCL_SOURCE = [
    "2.26.2-1+cuda12.8",
    "2.26.2-1+cuda12.4",
    "2.26.2-1+cuda12.2",
    "2.21.5-1+cuda12.4",
    "2.21.5-1+cuda11.0",
]


def test_select_nccl_build_exact_cuda_release():
    got = cuda.select_nccl_build(NCCL_SOURCE, "2.26.2", "12.8")
    assert got["version"] == "2.26.2-1+cuda12.8" and got["cuda"] == "12.8"
    assert got["candidates"] == ["2.26.2-1+cuda12.8", "2.26.2-1+cuda12.4", "2.26.2-1+cuda12.2"]
    assert got["error"] is None and got["fix"] is None


def test_select_nccl_build_exact_release_preferred_over_a_newer_build_of_it():
    source = ["2.21.5-2+cuda12.2", "2.21.5-1+cuda12.4"]
    got = cuda.select_nccl_build(source, "2.21.5", "12.4")
    assert got["version"] == "2.21.5-1+cuda12.4"


@pytest.mark.parametrize("toolkit,chosen", [("12.6", "2.26.2-1+cuda12.4"), ("12.3", "2.26.2-1+cuda12.2"),
                                            ("12.9", "2.26.2-1+cuda12.8"), ("12.10", "2.26.2-1+cuda12.8")])
def test_select_nccl_build_newest_older_release_of_the_major(toolkit, chosen):
    got = cuda.select_nccl_build(NCCL_SOURCE, "2.26.2", toolkit)
    assert got["version"] == chosen and got["error"] is None


def test_select_nccl_build_refuses_builds_newer_than_the_toolkit():
    got = cuda.select_nccl_build(NCCL_SOURCE, "2.26.2", "12.1")
    assert got["version"] is None and got["cuda"] is None
    assert got["error"] == ("no build of NCCL 2.26.2 fits CUDA 12.1: the source has 2.26.2-1+cuda12.8 "
                            "(CUDA 12.8), 2.26.2-1+cuda12.4 (CUDA 12.4), 2.26.2-1+cuda12.2 (CUDA 12.2)")
    assert "12.x up to 12.1" in got["fix"] and "rig_cuda_version" in got["fix"]


@pytest.mark.parametrize("toolkit", ["11.8", "13.0"])
def test_select_nccl_build_refuses_another_major(toolkit):
    got = cuda.select_nccl_build(NCCL_SOURCE, "2.26.2", toolkit)
    assert got["version"] is None
    assert f"fits CUDA {toolkit}" in got["error"]
    for build in ("2.26.2-1+cuda12.8 (CUDA 12.8)", "2.26.2-1+cuda12.2 (CUDA 12.2)"):
        assert build in got["error"]
    assert f"{toolkit.split('.')[0]}.x" in got["fix"]


def test_select_nccl_build_older_major_build_for_an_older_toolkit():
    got = cuda.select_nccl_build(NCCL_SOURCE, "2.21.5", "11.8")
    assert got["version"] == "2.21.5-1+cuda11.0" and got["cuda"] == "11.0"


def test_select_nccl_build_missing_release_lists_what_the_source_has():
    got = cuda.select_nccl_build(NCCL_SOURCE + ["2.21.5-2+cuda12.4"], "2.19.3", "12.4")
    assert got["version"] is None and got["candidates"] == []
    assert got["error"] == "NCCL 2.19.3 is not in the source; it has 2.21.5-1, 2.21.5-2, 2.26.2-1"
    assert "rig_nccl_version" in got["fix"] and "2.19.3" in got["fix"]


def test_select_nccl_build_missing_package_release():
    got = cuda.select_nccl_build(NCCL_SOURCE, "2.26.2-3", "12.8")
    assert got["version"] is None
    assert got["error"] == "NCCL 2.26.2-3 is not in the source; it has 2.21.5-1, 2.26.2-1"


def test_select_nccl_build_empty_source():
    got = cuda.select_nccl_build([], "2.26.2", "12.8")
    assert got["error"] == "NCCL 2.26.2 is not in the source; it has no NCCL at all"


def test_select_nccl_build_wanted_with_package_release():
    source = ["2.21.5-2+cuda12.4", "2.21.5-1+cuda12.4"]
    assert cuda.select_nccl_build(source, "2.21.5-1", "12.4")["version"] == "2.21.5-1+cuda12.4"
    # Without the package release the newest one of that CUDA build wins.
    assert cuda.select_nccl_build(source, "2.21.5", "12.4")["version"] == "2.21.5-2+cuda12.4"


@pytest.mark.parametrize("driver,chosen", [
    ("550.54.14", "2.26.2-1+cuda12.4"),
    ("535.261.03", "2.26.2-1+cuda12.2"),
    ("570.86.16", "2.26.2-1+cuda12.8"),
    ("580.65.06", "2.26.2-1+cuda12.8"),
])
def test_select_nccl_build_without_a_toolkit_chooses_by_driver(driver, chosen):
    got = cuda.select_nccl_build(NCCL_SOURCE, "2.26.2", None, driver)
    assert got["version"] == chosen and got["error"] is None


def test_select_nccl_build_without_a_toolkit_refuses_builds_the_driver_cannot_run():
    # 545.29.06 is below 12.4's driver: only minor-compat, which the driver path never accepts.
    got = cuda.select_nccl_build(["2.26.2-1+cuda12.8", "2.26.2-1+cuda12.4"], "2.26.2", None, "545.29.06")
    assert got["version"] is None
    assert got["error"].startswith("no build of NCCL 2.26.2 runs on driver 545.29.06: the source has ")
    assert "2.26.2-1+cuda12.4 (CUDA 12.4)" in got["error"]
    assert "newer driver" in got["fix"]


def test_select_nccl_build_without_toolkit_or_driver_takes_the_newest_build():
    got = cuda.select_nccl_build(NCCL_SOURCE, "2.26.2")
    assert got["version"] == "2.26.2-1+cuda12.8"


def test_select_nccl_build_ignores_non_nccl_versions():
    got = cuda.select_nccl_build(["garbage", "2.26.2-1", "2.26.2-1+cuda12.4"], "2.26.2", "12.4")
    assert got["version"] == "2.26.2-1+cuda12.4"
    assert got["candidates"] == ["2.26.2-1+cuda12.4"]


# --- NCCL header and library --------------------------------------------------------

NCCL_H = """/*************************************************************************
 * Copyright (c) 2015-2021, NVIDIA CORPORATION. All rights reserved.
 ************************************************************************/

#ifndef NCCL_H_
#define NCCL_H_

#include <cuda_runtime.h>
#include <cuda_fp16.h>

// #define NCCL_MAJOR 3
#define NCCL_MAJOR 2
#define NCCL_MINOR 21
#define NCCL_PATCH 5
#define NCCL_SUFFIX ""

#define NCCL_VERSION_CODE 22105
#define NCCL_VERSION(X,Y,Z) (((X) <= 2 && (Y) <= 8) ? (X) * 1000 + (Y) * 100 + (Z) : \\
    (X) * 10000 + (Y) * 100 + (Z))
"""


def test_parse_nccl_header_version():
    assert cuda.parse_nccl_header_version(NCCL_H) == "2.21.5"


@pytest.mark.parametrize("missing", ["MAJOR", "MINOR", "PATCH"])
def test_parse_nccl_header_version_needs_every_define(missing):
    text = NCCL_H.replace(f"#define NCCL_{missing} ", f"#define NCCL_X{missing} ")
    with pytest.raises(ValueError, match=f"NCCL_{missing}"):
        cuda.parse_nccl_header_version(text)


@pytest.mark.parametrize("text", ["", None])
def test_parse_nccl_header_version_empty(text):
    with pytest.raises(ValueError):
        cuda.parse_nccl_header_version(text)


def test_parse_nccl_library_version_from_bytes():
    blob = (b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) + b"\x00NCCL version 2.21.5+cuda11.0\x00"
            + b"\xff\xfe NCCL_DEBUG\x00")
    assert cuda.parse_nccl_library_version(blob) == {"nccl": "2.21.5", "cuda": "11.0"}


def test_parse_nccl_library_version_from_text():
    got = cuda.parse_nccl_library_version("NCCL version 2.26.2+cuda12.8")
    assert got == {"nccl": "2.26.2", "cuda": "12.8"}


@pytest.mark.parametrize("data", [b"", None, "", b"\x7fELF no version here", b"NCCL version 2.21.5\x00"])
def test_parse_nccl_library_version_none(data):
    assert cuda.parse_nccl_library_version(data) is None
