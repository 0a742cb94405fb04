"""The simulated GPU layer's health faults inside real lab rigs (Debian containers, Python of
the rig): the one-file simulator runs there, the unprivileged `rig` user's probe loads the
GPUs (the load flag directory the lab's tmpfiles.d entry makes at boot), faults added at run
time reach the kernel log and the sysfs AER counters, and a reboot drops them. The formats
themselves are checked against the real-format parsers in tests/unit/test_simgpu_health.py."""

from __future__ import annotations

import pytest

from rigctl.core import kernlog, probe, smiquery

from .conftest import lab_session

pytestmark = pytest.mark.lab

RIGS = ("lab-rig-1", "lab-rig-2")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with lab_session(tmp_path_factory, "itsim", "--profiles", "4x3090-throttle,4x3090-aer") as made:
        yield made


def ssh(lab, rig, command: str, check=True) -> str:
    proc = lab.rigctl("lab", "ssh", "--name", lab.name, rig, "--", command, timeout=120)
    if check:
        assert proc.returncode == 0, (command, proc.stdout, proc.stderr)
    return proc.stdout


def test_unprivileged_probe_loads_the_gpus_and_one_throttles(lab):
    out = ssh(lab, RIGS[0], (
        "RIGCTL_SIMGPU_PROBE_SECONDS=4 rigctl-simgpu probe > /tmp/probe.out 2> /tmp/probe.err & "
        "sleep 2; nvidia-smi --query-gpu=index,clocks_event_reasons.active,"
        "clocks_event_reasons.hw_power_brake_slowdown --format=csv; wait; echo; cat /tmp/probe.out"
    ))
    csv, _, lines = out.partition("\n\n")
    rows = smiquery.parse_query_gpu_csv(csv)
    assert rows[1]["clocks_event_reasons.hw_power_brake_slowdown"] == "Active"
    assert {r["clocks_event_reasons.active"] for r in rows} != {"0x0000000000000001"}
    verdict = probe.evaluate_probe(probe.parse_probe_output(lines), expect_p2p=False)
    assert verdict["ok"] and verdict["pairs_tested"] == 12
    assert ssh(lab, RIGS[0], "rigctl-simgpu load status") == "off\n"
    assert "load flag not set" not in ssh(lab, RIGS[0], "cat /tmp/probe.err")


def test_aer_faults_reach_sysfs_and_kernel_log_and_a_reboot_drops_them(lab):
    rig = RIGS[1]
    base = "/var/lib/rigctl-simgpu/sys/bus/pci/devices"
    counted = kernlog.parse_aer_counters(ssh(lab, rig, f"cat {base}/0000:43:00.0/aer_dev_correctable"))
    assert counted["total"] == 260
    ssh(lab, rig, "sudo -n rigctl-simgpu fault add aer --gpu 0 --errors RxErr=3")
    ssh(lab, rig, "sudo -n rigctl-simgpu fault add xid --gpu 1 --code 79")
    assert kernlog.parse_aer_counters(ssh(lab, rig, f"cat {base}/0000:01:00.0/aer_dev_correctable"))[
        "errors"]["RxErr"] == 3
    log = kernlog.parse_kernel_log(ssh(lab, rig, "rigctl-simgpu kernel-log"))
    assert log["xid"]["gpus"]["0000:21:00.0"]["fallen_off_bus"]
    assert log["aer"]["devices"]["0000:01:00.0"]["count"] == 3
    lab.rigctl("lab", "restart", "--name", lab.name, rig, check=True)
    log = kernlog.parse_kernel_log(ssh(lab, rig, "rigctl-simgpu kernel-log"))
    assert log["xid"]["count"] == 0 and "0000:01:00.0" not in log["aer"]["devices"]
    assert "0000:43:00.0" in log["aer"]["devices"]  # the profile's faults are there every boot
    # the kernel starts its AER counters from zero at boot: back to the profile's (tmpfiles.d)
    after = kernlog.parse_aer_counters(ssh(lab, rig, f"cat {base}/0000:01:00.0/aer_dev_correctable"))
    assert after["errors"]["RxErr"] == 0 and after["total"] == 0
    profile_errors = ssh(lab, rig, f"cat {base}/0000:43:00.0/aer_dev_correctable")
    assert kernlog.parse_aer_counters(profile_errors) == counted
