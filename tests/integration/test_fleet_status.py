"""`rigctl fleet status` on a lab of three rigs (a 4x3090, a 2x4090 and a third one stopped
with `docker stop`): one row per rig, the stopped one a row saying unreachable; GPUs of
lab rigs read `simulated`; the last `rigctl verify` result appears for the rig it ran on
(recorded under $RIGCTL_HOME by verify itself); the rollout column reads "-" (no rollout
record). What each row says is checked against the rig itself."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.integration.conftest import lab_session

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def _docker(*args):
    return subprocess.run(["docker", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def lab3(tmp_path_factory):
    with lab_session(tmp_path_factory, "fs", "--profiles", "4x3090,2x4090,4x3090") as lab:
        stopped = f"rigctl-{lab.name}-rig-3"
        try:
            assert _docker("stop", stopped).returncode == 0
            yield lab
        finally:
            _docker("start", stopped)


def _on_rig(lab, i: int, *cmd: str) -> str:
    proc = _docker("exec", f"rigctl-{lab.name}-rig-{i}", *cmd)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_status_json_has_one_entry_per_rig_and_the_stopped_one_is_unreachable(lab3):
    started = time.monotonic()
    rc, data = lab3.rigctl.json("fleet", "status", "-i", lab3.inventory, "--json", timeout=300)
    took = time.monotonic() - started
    assert rc == 1, data  # a rig is not reachable
    assert data["ok"] is False
    assert data["order"] == ["lab-rig-1", "lab-rig-2", "lab-rig-3"]
    rigs = data["rigs"]
    for name, count, model in (("lab-rig-1", 4, "RTX 3090"), ("lab-rig-2", 2, "RTX 4090")):
        rig = rigs[name]
        assert rig["reachable"] == "yes" and rig["problem"] is None
        g = rig["gpus"]
        assert g["view"] == "simulated" and g["simulated"] is True
        assert g["count"] == count and g["models"] == {model: count}
        assert all(gpu["simulated"] for gpu in g["list"])
        # the power limits are what the rig's (simulated) nvidia-smi says
        smi = _on_rig(lab3, int(name[-1]), "nvidia-smi", "--query-gpu=power.limit",
                      "--format=csv,noheader,nounits")
        assert g["power_limits_w"] == [float(x) for x in smi.split()]
        assert rig["driver"]["installed"] == [] and rig["driver"]["loaded"] is None
        assert rig["cuda"] == [] and rig["nccl"] is None
        assert rig["reboot"]["required"] is False
        assert rig["last_rollout"] is None
        assert rig["address"].startswith("rig@127.0.0.1:")
    bad = rigs["lab-rig-3"]
    assert bad["reachable"] == "unreachable"
    assert "Connection refused" in bad["problem"] and "\n" not in bad["problem"]
    assert "gpus" not in bad and bad["last_verify"] is None
    print(f"fleet status over 2 reachable + 1 stopped rig: {took:.1f} s")


def test_status_table_has_one_row_per_rig_and_says_simulated(lab3):
    proc = lab3.rigctl("fleet", "status", "-i", lab3.inventory, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    header = lines[0].split()
    assert header[:3] == ["rig", "reachable", "driver"]
    rows = {ln.split()[0]: ln for ln in lines[1:4]}
    assert set(rows) == {"lab-rig-1", "lab-rig-2", "lab-rig-3"}
    assert "4x RTX 3090 simulated" in rows["lab-rig-1"]
    assert "2x RTX 4090 simulated" in rows["lab-rig-2"]
    assert rows["lab-rig-3"].split()[1] == "UNREACHABLE"
    assert rows["lab-rig-1"].rstrip().endswith("-")  # no rollout has touched it
    assert [ln for ln in lines if ln.startswith("lab-rig-3: unreachable: ")]
    assert "simulated: GPUs of lab rigs are simulated" in proc.stdout


def test_the_last_verify_result_shows_for_the_rig_it_ran_on(lab3):
    rc, verify = lab3.rigctl.json("verify", "-i", lab3.inventory, "lab-rig-1", "--json", timeout=600)
    assert verify["hosts"]["lab-rig-1"]["gpu_view"] == "simulated"
    want = verify["hosts"]["lab-rig-1"]["result"]
    records = list((lab3.home / "verify").glob("lab-rig-1-*.json"))
    assert len(records) == 1
    rc, data = lab3.rigctl.json("fleet", "status", "-i", lab3.inventory, "--json", timeout=300)
    v = data["rigs"]["lab-rig-1"]["last_verify"]
    assert v["result"] == want and v["gpu_view"] == "simulated"
    assert v["counts"]["simulated"] == verify["hosts"]["lab-rig-1"]["simulated"]
    assert v["address"] == data["rigs"]["lab-rig-1"]["address"]
    assert json.loads(records[0].read_text())["time"] == v["time"]
    assert data["rigs"]["lab-rig-2"]["last_verify"] is None
    proc = lab3.rigctl("fleet", "status", "-i", lab3.inventory, "lab-rig-1", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = next(ln for ln in proc.stdout.splitlines() if ln.startswith("lab-rig-1 "))
    assert f"{want} (simulated)" in row if want == "ok" else want in row


def test_an_unknown_host_key_is_a_refused_row_and_nothing_connects(lab3, tmp_path):
    inv = tmp_path / "inventory.yml"
    text = open(lab3.inventory).read()
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    inv.write_text(text.replace(str(lab3.home / "labs" / lab3.name / "known_hosts"), str(empty)))
    assert text != inv.read_text()
    rc, data = lab3.rigctl.json("fleet", "status", "-i", str(inv), "lab-rig-1", "--json", timeout=300)
    assert rc == 1
    rig = data["rigs"]["lab-rig-1"]
    assert rig["reachable"] == "refused" and "gpus" not in rig
    assert "SHA256:" in rig["problem"]
    assert data["run"]["hosts"]["lab-rig-1"]["failed"] == 1
