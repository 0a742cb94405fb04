"""The hardware checks P2P depends on, one test per check (the same functions the
rig_hw_checks role runs). They claim things about real hardware (BAR1, IOMMU, ACS, links,
chipset lanes), so on lab rigs they are skipped, never passed. A failed check fails the
test when the rig's policy is enforce; under warn it is a visible `warn` outcome (counted;
it fails the run only with `rigctl verify --strict`).
"""

import json

import pytest

from rigctl.core import hwchecks
from rigctl.verify.checks import expect, skip_unless_real_gpu

_REPORTS: dict = {}


@pytest.fixture
def hw_report(host, rig_vars, rig_facts):
    skip_unless_real_gpu(rig_facts, "checking BAR1, IOMMU, ACS, PCIe links and chipset lanes")
    name = host.backend.get_hostname()
    if name not in _REPORTS:
        args = {"flavor": rig_vars["rig_driver_flavor"], "iommu_policy": rig_vars["rig_iommu_policy"]}
        if rig_vars["rig_driver_flavor"] == "p2p" and rig_vars.get("rig_driver_version"):
            args["p2p_base"] = rig_vars["rig_driver_version"]
        if rig_vars.get("rig_hw_check_policy"):
            args["policy"] = rig_vars["rig_hw_check_policy"]
        result = host.ansible("hw_checks", json.dumps(args), become=True, check=False)
        if result.get("failed") or "ansible_facts" not in result:
            pytest.fail(f"hw_checks failed on {name}: {result.get('msg') or result}")
        _REPORTS[name] = result["ansible_facts"]["rig_hw_checks"]
    return _REPORTS[name]


# What each check requires (the `expected` of a failed check; `found` lists the problems).
_REQUIRES = {
    "rebar": "BAR1 at least the VRAM on every GPU (Resizable BAR on)",
    "iommu": "IOMMU off or in passthrough",
    "acs": "ACS redirect off on every bridge between GPUs",
    "pcie_links": "every GPU's PCIe link at its maximum width and generation",
    "chipset": "every GPU on CPU lanes (none behind the chipset)",
    "generations": "one GPU generation on the rig",
    "display": "no display on a P2P GPU where the branch loses P2P with one",
}


def _check(report, name):
    result = next(r for r in report["results"] if r["name"] == name)
    if result["status"] == hwchecks.UNKNOWN:
        pytest.skip(result["summary"])
    expect(result["status"] == hwchecks.PASS, result["title"],
           expected=_REQUIRES.get(name, result["title"]),
           found=" | ".join(result["problems"]) or result["summary"], fix=result["fix"] or "-",
           warn=report["policy"] == hwchecks.WARN)


def test_rebar_bar1_covers_vram(hw_report):
    _check(hw_report, "rebar")


def test_iommu_mode_allows_p2p(hw_report):
    _check(hw_report, "iommu")


def test_acs_redirect_off_above_gpus(hw_report):
    _check(hw_report, "acs")


def test_pcie_links_at_max(hw_report):
    _check(hw_report, "pcie_links")


def test_gpus_on_cpu_lanes(hw_report):
    _check(hw_report, "chipset")


def test_one_gpu_generation_for_p2p(hw_report):
    _check(hw_report, "generations")


def test_no_display_on_p2p_gpus(hw_report):
    _check(hw_report, "display")


_VLLM_FIX = ("run vLLM with --disable-custom-all-reduce (add it to the service's ExecStart "
             "or the command line)")


def _vllm_commands(host) -> list:
    """vLLM command lines on the rig: running processes, and ExecStart lines of systemd
    units under /etc/systemd/system that start it."""
    found = []
    ps = host.run("ps -eo args=")
    for line in ps.stdout.splitlines():
        if "vllm" in line and ("serve" in line or "entrypoints" in line):
            found.append(("process", line.strip()))
    units = host.run("grep -hs '^ExecStart=.*vllm' /etc/systemd/system/*.service")
    for line in units.stdout.splitlines():
        found.append(("unit", line.strip()))
    return found


def test_vllm_custom_all_reduce_off_on_patched_3090s(host, rig_vars, rig_facts):
    """vLLM's custom all-reduce has returned wrong data on patched-P2P RTX 3090s (NCCL
    over the same links was correct): on such rigs every vLLM found must run with
    --disable-custom-all-reduce. Reads processes and unit files, not the GPUs."""
    cards = [g.get("name") or "" for g in rig_facts.get("gpus") or []]
    if rig_vars["rig_driver_flavor"] != "p2p" or not any("3090" in c for c in cards):
        pytest.skip("not a patched-P2P rig with RTX 3090s")
    found = _vllm_commands(host)
    if not found:
        pytest.skip("no vLLM process or unit on the rig; when you run vLLM here: "
                    + _VLLM_FIX + ", its custom all-reduce has returned wrong data on "
                    "patched-P2P 3090s")
    missing = [f"{kind}: {cmd[:120]}" for kind, cmd in found
               if "--disable-custom-all-reduce" not in cmd]
    expect(not missing, "vLLM without its custom all-reduce on patched-P2P 3090s",
           expected="--disable-custom-all-reduce on every vLLM (its custom all-reduce has "
           "returned wrong data on patched-P2P 3090s)",
           found=" | ".join(missing), fix=_VLLM_FIX, warn=True)
