"""`rigctl verify` over three lab rigs: one healthy, one stopped (`docker stop`), one frozen
(`docker pause`). The healthy rig's full results come back; each bad rig is one
`unreachable` line with the SSH error, within the default connect timeout (10 s)."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.integration.conftest import lab_session

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def _docker(*args):
    return subprocess.run(["docker", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def lab3(tmp_path_factory):
    with lab_session(tmp_path_factory, "vf", "--rigs", "3", "--profile", "4x3090") as lab:
        stopped, paused = f"rigctl-{lab.name}-rig-2", f"rigctl-{lab.name}-rig-3"
        try:
            assert _docker("stop", stopped).returncode == 0
            assert _docker("pause", paused).returncode == 0
            yield lab
        finally:
            _docker("unpause", paused)
            _docker("start", stopped)


def test_verify_reports_bad_rigs_as_one_unreachable_line_and_keeps_the_healthy_one(lab3):
    # The healthy rig alone first: the bad rigs may add at most the connect timeout (10 s,
    # they run in parallel with it) plus slack, whatever the machine's load makes of the
    # healthy rig's own suites.
    started = time.monotonic()
    _, alone_data = lab3.rigctl.json("verify", "-i", lab3.inventory, "lab-rig-1", "--json",
                                     timeout=300)
    alone = time.monotonic() - started
    assert list(alone_data["hosts"]) == ["lab-rig-1"]
    started = time.monotonic()
    rc, data = lab3.rigctl.json("verify", "-i", lab3.inventory, "--json", timeout=300)
    took = time.monotonic() - started
    assert rc == 1, data
    hosts = data["hosts"]
    healthy = hosts["lab-rig-1"]
    assert healthy["unreachable"] == 0 and healthy["refused"] == 0
    assert len(healthy["checks"]) > 30  # every suite ran: the full results
    assert healthy["gpu_view"] == "simulated" and healthy["simulation_profile"] == "4x3090"
    assert healthy["passed"] > 5
    for bad in ("lab-rig-2", "lab-rig-3"):
        (only,) = hosts[bad]["checks"]
        assert only["outcome"] == "unreachable", only
        assert hosts[bad]["result"] == "unreachable" and hosts[bad]["passed"] == 0
        assert "\n" not in only["message"] and 0 < len(only["message"]) <= 300
        assert "CommandResult" not in only["message"]
    assert took < alone + 20, f"verify took {took:.1f} s, the healthy rig alone {alone:.1f} s"
    print(f"verify over 1 healthy + 1 stopped + 1 paused rig: {took:.1f} s "
          f"(the healthy rig alone: {alone:.1f} s)")


def test_verify_table_has_one_line_per_unreachable_rig(lab3):
    proc = lab3.rigctl("verify", "-i", lab3.inventory, timeout=300)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    for bad in ("lab-rig-2", "lab-rig-3"):
        assert len([ln for ln in lines if ln.startswith(f"{bad}  UNREACHABLE  ")]) == 1
    assert "CommandResult" not in proc.stdout + proc.stderr
    assert len(proc.stdout) < 20_000
    assert any(ln.startswith("gpu_view") and "SIMULATED" in ln for ln in lines)
