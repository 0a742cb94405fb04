"""The preflight rules that decide whether a host may be provisioned."""

from __future__ import annotations

import copy

import pytest

from rigctl.core import preflight

BASE = {
    "os": {"id": "debian", "version_id": "12", "pretty_name": "Debian GNU/Linux 12 (bookworm)"},
    "arch": "x86_64",
    "python": "3.11.2",
    "euid": 0,
    "disk_free_gib": {"/": 50.0},
    "dpkg": {"present": True, "interrupted": False},
    "gpus": [{"bus_id": f"0000:0{i}:00.0"} for i in range(1, 5)],
    "gpu_view": "real",
    "kernel": {"with_headers": ["6.1.0-27-amd64"]},
    "secure_boot": {"state": "disabled", "source": "x"},
}


def facts(**changes):
    data = copy.deepcopy(BASE)
    data.update(changes)
    return data


def by_name(results):
    return {r["name"]: r for r in results}


def test_all_pass_on_a_good_host():
    results = preflight.evaluate(facts(), gpu_count=4)
    assert [r["status"] for r in results] == ["pass"] * len(results)
    assert preflight.failures(results) == []


@pytest.mark.parametrize(
    "osr",
    [
        {"id": "debian", "version_id": "11", "pretty_name": "Debian GNU/Linux 11 (bullseye)"},
        {"id": "ubuntu", "version_id": "20.04", "pretty_name": "Ubuntu 20.04.6 LTS"},
        {"id": "rocky", "version_id": "9.3", "pretty_name": "Rocky Linux 9.3"},
    ],
)
def test_unsupported_os_fails_with_name_and_list(osr):
    result = preflight.check_os(facts(os=osr))
    assert result["status"] == "fail"
    assert osr["pretty_name"] in result["message"]
    assert "Debian 12" in result["message"] and "Ubuntu 24.04" in result["message"]
    assert result["fix"]


@pytest.mark.parametrize("osr", [("debian", "13"), ("ubuntu", "22.04"), ("ubuntu", "24.04")])
def test_supported_os(osr):
    assert preflight.check_os(facts(os={"id": osr[0], "version_id": osr[1]}))["status"] == "pass"


def test_arch_python_become_disk():
    r = by_name(
        preflight.evaluate(
            facts(arch="aarch64", python="3.8.10", euid=1000, disk_free_gib={"/": 3.2}), min_free_disk_gib=10
        )
    )
    assert r["arch_supported"]["status"] == "fail" and "aarch64" in r["arch_supported"]["message"]
    assert r["python_usable"]["status"] == "fail"
    assert r["become_root"]["status"] == "fail" and "uid 1000" in r["become_root"]["message"]
    assert r["disk_space"]["status"] == "fail" and "3.2 GiB" in r["disk_space"]["message"]


def test_gpu_count_mismatch_names_what_was_found():
    result = preflight.check_gpus(facts(gpus=BASE["gpus"][:3]), expected=4)
    assert result["status"] == "fail"
    assert "expected 4" in result["message"] and "found 3" in result["message"]
    assert "0000:03:00.0" in result["message"]


def test_simulated_gpus_say_so():
    result = preflight.check_gpus(facts(gpu_view="simulated"), expected=4)
    assert result["status"] == "pass" and "simulated" in result["message"]


def test_no_gpu_warns_unless_expected():
    assert preflight.check_gpus(facts(gpus=[], gpu_view="none"))["status"] == "warn"
    assert preflight.check_gpus(facts(gpus=[], gpu_view="none"), expected=2)["status"] == "fail"


def test_headers_and_secure_boot_warnings():
    r = by_name(
        preflight.evaluate(
            facts(kernel={"with_headers": []}, secure_boot={"state": "enabled", "source": "x"}),
            driver_flavor="p2p",
        )
    )
    assert r["kernel_headers"]["status"] == "warn"
    assert r["secure_boot"]["status"] == "warn" and "signed" in r["secure_boot"]["message"]
    assert preflight.failures(list(r.values())) == []


def test_interrupted_dpkg_fails_with_the_command_that_fixes_it():
    result = preflight.check_dpkg(facts(dpkg={"present": True, "interrupted": True}))
    assert result["status"] == "fail"
    assert "dpkg --configure -a" in result["fix"]
    assert preflight.check_dpkg(facts(dpkg={"present": False, "interrupted": False}))["status"] == "skip"


def test_headers_matter_only_where_the_driver_is_built():
    no_headers = facts(kernel={"with_headers": []})
    unmanaged = preflight.check_headers(no_headers, driver_managed=False)
    assert unmanaged["status"] == "skip" and "rig_driver_version is null" in unmanaged["message"]
    assert by_name(preflight.evaluate(no_headers, driver_managed=False))["kernel_headers"][
        "status"] == "skip"
    managed = preflight.check_headers(no_headers, driver_managed=True)
    assert managed["status"] == "warn"
    assert "the driver role will refuse" in managed["message"]
    assert "installs them" not in managed["summary"]
    assert "apt-get install linux-headers-$(uname -r)" in managed["fix"]
