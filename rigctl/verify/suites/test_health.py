"""Rig health: what kills used GPUs on risers, one test per fact a rig owner cares about.

One ``rig_health`` module run per rig (rigctl.core.health judges what it gathered): Xid
errors in the kernel log since boot, PCIe errors (AER) on every GPU and the bridges above
it, the PCIe links and the clocks while the rig probe loads the GPUs, NVLink bridges, the
NUMA layout, the power limits against the PSU budget, DCGM level 1 where it is installed.
A ``fail`` finding fails its test; a ``warn`` finding is a ``warn`` outcome (fails the run
only with ``--strict``); ``info`` findings pass and are shown in the report. A check whose
input cannot be read is skipped with the reason (``unknown (container): ...`` where a
container hides it), one that does not apply to the rig is skipped saying why. On a lab rig
every pass is ``passed (simulated)``. Every finding is attached to the rig's results under
``health`` (rigctl.verify.checks.attach) for the report.
"""

import json

import pytest

from rigctl.core import health
from rigctl.verify import checks
from rigctl.verify.checks import expect, reads_gpu

_REPORTS: dict = {}


@pytest.fixture
def rig_health(host, rig_vars, rig_facts):
    if rig_facts["gpu_view"] == "none":
        pytest.skip("no NVIDIA GPU on PCI: no GPU health to check")
    name = host.backend.get_hostname()
    if name not in _REPORTS:
        args = {"psu_max_load_percent": rig_vars.get("rig_psu_max_load_percent",
                                                     health.PSU_MAX_LOAD_PERCENT)}
        if rig_vars.get("rig_psu_watts") is not None:
            args["psu_watts"] = rig_vars["rig_psu_watts"]
        if rig_vars.get("rig_platform_watts") is not None:
            args["platform_watts"] = rig_vars["rig_platform_watts"]
        result = host.ansible("rig_health", json.dumps(args), become=True, check=False)
        if result.get("failed") or "ansible_facts" not in result:
            pytest.fail(f"rig_health failed on {name}: {result.get('msg') or result}")
        report = result["ansible_facts"]["rig_health"]
        _REPORTS[name] = report
        checks.attach("health", report["findings"])
    return _REPORTS[name]


# what each check requires (the `expected` of a failed check)
_EXPECTED = {
    "xid": "no Xid error that points at hardware, link, firmware or power since boot",
    "pcie_aer": "no PCIe error counted on any GPU or bridge above it, none in the kernel log",
    "pcie_link_load": "every GPU's link at its maximum generation and width under load",
    "throttle": "no hardware or thermal clock slowdown under load, temperatures below "
    f"{health.TEMP_WARN_C} C, draw within the limit",
    "nvlink": "every NVLink bridge with all links active at full speed",
    "numa": "GPUs that exchange data on one CPU socket",
    "power_budget": "power limits (and the GPUs' defaults) within the PSU budget",
    "dcgm": "dcgmi diag -r 1 passes",
}


def _judge(report, check, only=None):
    status = report["checks"][check]
    if status["status"] != health.CHECKED:
        pytest.skip(f"{health.CHECKS[check]}: {status['reason']}")
    found = [f for f in report["findings"] if f["check"] == check and (only is None or only(f))]
    bad = [f for f in found if f["severity"] in (health.FAIL, health.WARN)]
    if not bad:
        return found
    top = health.worst(bad)
    shown = [f for f in bad if f["severity"] == top]
    fixes = []
    for f in shown:
        if f["fix"] not in fixes:
            fixes.append(f["fix"])
    expect(False, health.CHECKS[check], expected=_EXPECTED[check],
           found=" | ".join(f["evidence"] for f in shown), fix=" | ".join(fixes),
           warn=top == health.WARN)
    return found


@reads_gpu
def test_no_xid_errors_since_boot(rig_health):
    _judge(rig_health, "xid")


@reads_gpu
def test_no_pcie_errors_on_gpu_slot_paths(rig_health):
    _judge(rig_health, "pcie_aer")


@reads_gpu
def test_pcie_links_at_max_under_load(rig_health):
    _judge(rig_health, "pcie_link_load")


@reads_gpu
def test_no_throttling_under_load(rig_health):
    _judge(rig_health, "throttle")


@reads_gpu
def test_nvlink_bridges_up(rig_health):
    _judge(rig_health, "nvlink")


@reads_gpu
def test_gpus_on_one_cpu_socket(rig_health):
    _judge(rig_health, "numa")


@reads_gpu
def test_power_limits_within_psu_budget(rig_health):
    _judge(rig_health, "power_budget", only=lambda f: f["severity"] != health.WARN)


@reads_gpu
def test_default_power_limits_within_psu_budget(rig_health):
    _judge(rig_health, "power_budget", only=lambda f: f["severity"] != health.FAIL)


@reads_gpu
def test_dcgm_diag_level1(rig_health):
    _judge(rig_health, "dcgm")
