"""`rigctl fleet status` without a host: the records under $RIGCTL_HOME (verify results,
the rollout read side), what a rig's facts turn into (driver, GPUs, power limits, CUDA,
NCCL), the row of an unreachable rig, and the CLI's input errors. The lab run is
tests/integration/test_fleet_status.py."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys

import pytest

from rigctl.fleet import records
from rigctl.fleet import status as st
from rigctl.verify.run import Check, VerifyResult


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("RIGCTL_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def _inventory(tmp_path, hosts: dict[str, int]) -> str:
    lines = ["all:", "  children:", "    rigs:", "      hosts:"]
    for name, port in hosts.items():
        lines.append(f"        {name}: {{ansible_host: 127.0.0.1, ansible_port: {port}}}")
    lines += ["      vars:", "        ansible_user: rig"]
    path = tmp_path / "inventory.yml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


# --- records ------------------------------------------------------------------------------


def test_address_is_what_ssh_connects_to():
    assert records.address("r1", {"ansible_host": "10.0.0.5", "ansible_port": 2222,
                                  "ansible_user": "ops"}) == "ops@10.0.0.5:2222"
    assert records.address("r1", {}) == "r1:22"


def test_verify_results_are_recorded_per_rig_and_read_back_for_the_same_rig_only(tmp_path, home):
    inv = _inventory(tmp_path, {"rig-a": 22201, "rig-b": 22202})
    result = VerifyResult()
    result.checks.append(Check("rig-a", "test_x", "test_gpu", "simulated"))
    result.checks.append(Check("rig-a", "test_y", "test_gpu", "passed"))
    result.rigs["rig-a"] = {"gpu_view": "simulated", "profile": "4x3090"}
    result.add_host_result("rig-b", "unreachable", "ssh: connect to host 127.0.0.1 port 22202: "
                           "Connection refused")
    written = records.record_verify(result, inv)
    assert len(written) == 2 and all(p.parent == home / "verify" for p in written)
    a = records.last_verify("rig-a", "rig@127.0.0.1:22201")
    assert a["result"] == "ok" and a["gpu_view"] == "simulated"
    assert a["counts"]["simulated"] == 1 and a["counts"]["passed"] == 1
    assert a["simulation_profile"] == "4x3090"
    b = records.last_verify("rig-b", "rig@127.0.0.1:22202")
    assert b["result"] == "unreachable" and b["counts"]["unreachable"] == 1
    # same name, another rig (another lab's port): not this rig's record
    assert records.last_verify("rig-a", "rig@127.0.0.1:22299") is None
    # a later run replaces the record
    result2 = VerifyResult()
    result2.checks.append(Check("rig-a", "test_x", "test_gpu", "failed", "drift"))
    records.record_verify(result2, inv)
    assert records.last_verify("rig-a", "rig@127.0.0.1:22201")["result"] == "failed"


def test_an_unreadable_inventory_records_nothing_and_raises_nothing(tmp_path, home):
    result = VerifyResult()
    result.checks.append(Check("rig-a", "test_x", "test_gpu", "passed"))
    assert records.record_verify(result, str(tmp_path / "missing.yml")) == []
    assert not (home / "verify").exists()


def _rollout(root, rid, rigs, state="done"):
    (root / rid).mkdir(parents=True)
    (root / rid / "rollout.json").write_text(json.dumps(
        {"schema": 1, "id": rid, "started": "2026-12-01T10:00:00Z", "finished": None,
         "state": state, "rigs": rigs}))


def test_the_last_rollout_is_the_newest_record_naming_the_same_rig(home):
    root = records.rollouts_dir()
    assert records.last_rollout("rig-a", "rig@127.0.0.1:22201") is None  # no rollouts yet
    _rollout(root, "20261201T100000Z-aaaaaa",
             {"rig-a": {"address": "rig@127.0.0.1:22201", "result": "done"}})
    _rollout(root, "20261202T100000Z-bbbbbb",
             {"rig-a": {"address": "rig@10.9.9.9:22", "result": "failed"}})  # another rig-a
    _rollout(root, "20261203T100000Z-cccccc", {"rig-b": {"address": "x:22", "result": "done"}})
    (root / "20261204T100000Z-dddddd").mkdir()  # a rollout still writing its record
    got = records.last_rollout("rig-a", "rig@127.0.0.1:22201")
    assert got["id"] == "20261201T100000Z-aaaaaa" and got["rig"]["result"] == "done"
    assert st.rollout_text(got) == "20261201T100000Z-aaaaaa done"
    assert st.rollout_text(None) == "-"


def test_age_reads_like_a_person_would_say_it():
    now = datetime.datetime(2026, 12, 2, 12, 0, 0, tzinfo=datetime.UTC)
    assert records.age("2026-12-02T11:59:30Z", now) == "30s ago"
    assert records.age("2026-12-02T11:15:00Z", now) == "45m ago"
    assert records.age("2026-12-02T09:00:00Z", now) == "3h ago"
    assert records.age("2026-11-28T12:00:00Z", now) == "4d ago"
    assert records.age("garbage", now) == "?" and records.age(None, now) == "?"


# --- a rig's facts as status fields -------------------------------------------------------


def _facts(**over):
    facts = {
        "os": {"pretty_name": "Debian GNU/Linux 12 (bookworm)"},
        "kernel": {"running": "6.1.0-27-amd64", "targets": ["6.1.0-27-amd64"]},
        "gpu_view": "real",
        "simulation": {"profile": None},
        "gpus": [{"index": i, "bus_id": f"0000:0{i}:00.0", "name": "NVIDIA GeForce RTX 3090",
                  "power": {"current_w": 270.0 if i != 2 else 250.0}, "simulated": False}
                 for i in range(4)],
        "driver": {"loaded": {"version": "535.261.03", "flavor": "open"},
                   "modules": {"6.1.0-27-amd64": {"version": "535.261.03", "flavor": "open",
                                                  "location": "dkms", "filename": "/x/nvidia.ko",
                                                  "module": "nvidia"}},
                   "packages": [{"name": "cuda-toolkit-12-8", "version": "12.8.1-1", "held": True},
                                {"name": "nvidia-cuda-toolkit", "version": "11.8.89~11.8.0-5~deb12u1",
                                 "held": False},
                                {"name": "libnccl2", "version": "2.26.2-1+cuda12.8", "held": True}]},
        "reboot": {"required": False, "reasons": []},
    }
    facts.update(over)
    return facts


def test_cuda_and_nccl_come_from_the_installed_packages():
    pk = _facts()["driver"]["packages"]
    assert [(t["release"], t["source"]) for t in st.toolkits(pk)] == [("11.8", "debian"), ("12.8", "nvidia")]
    assert st.nccl(pk) == {"version": "2.26.2-1+cuda12.8", "nccl": "2.26.2", "release": "1", "cuda": "12.8"}
    assert st.toolkits(None) == [] and st.nccl([]) is None


def test_a_real_rig_row():
    rig = st.RigStatus("r1", "rig@10.0.0.1:22", "yes", facts=_facts(), driver_record=None)
    data = st.summarize(rig)
    row = dict(zip(st.COLUMNS, st.row(data), strict=True))
    assert row["driver"] == "open 535.261.03"
    assert row["gpus"] == "4x RTX 3090"
    assert row["power limits"] == "270/270/250/270 W"
    assert row["cuda"] == "11.8 (debian), 12.8" and row["nccl"] == "2.26.2 (cuda12.8)"
    assert row["reboot"] == "no" and row["last verify"] == "-" and row["last rollout"] == "-"
    assert data["gpus"]["simulated"] is False and data["gpus"]["view"] == "real"


def test_a_patched_p2p_module_shows_its_fork_and_commit():
    facts = _facts()
    facts["driver"]["loaded"] = None
    facts["driver"]["modules"]["6.1.0-27-amd64"].update(version="565.57.01", flavor="p2p")
    record = {"flavor": "p2p", "version": "565.57.01", "fork": "https://github.com/tinygrad/open-gpu-kernel-modules.git",
              "branch": "565.57.01-p2p", "commit": "0123456789abcdef0123456789abcdef01234567",
              "build_time": "2026-12-01T10:00:00Z"}
    data = st.summarize(st.RigStatus("r1", "a:22", "yes", facts=facts, driver_record=record))
    assert st.driver_text(data["driver"]) == "p2p 565.57.01 [open-gpu-kernel-modules@0123456789ab]"
    assert data["driver"]["record"]["branch"] == "565.57.01-p2p"


def test_a_module_installed_but_another_loaded_says_both():
    facts = _facts()
    facts["driver"]["modules"]["6.1.0-27-amd64"]["version"] = "570.86.15"
    data = st.summarize(st.RigStatus("r1", "a:22", "yes", facts=facts))
    assert st.driver_text(data["driver"]) == "open 570.86.15 (loaded open 535.261.03)"


def test_a_simulated_rig_says_simulated_in_the_gpu_column_and_json():
    facts = _facts(gpu_view="simulated", simulation={"profile": "2x4090"})
    facts["gpus"] = [{"index": i, "name": "NVIDIA GeForce RTX 4090", "power": {"current_w": 450.0},
                      "simulated": True} for i in range(2)]
    facts["driver"] = {"loaded": None, "modules": {}, "packages": []}
    facts["reboot"] = {"required": True, "reasons": ["nvidia module changed"]}
    data = st.summarize(st.RigStatus("lab-rig-2", "rig@127.0.0.1:22202", "yes", facts=facts))
    row = dict(zip(st.COLUMNS, st.row(data), strict=True))
    assert row["gpus"] == "2x RTX 4090 simulated"
    assert row["power limits"] == "450 W x2" and row["driver"] == "none"
    assert row["reboot"] == "NEEDED" and data["reboot"]["reasons"] == ["nvidia module changed"]
    g = data["gpus"]
    assert g["simulated"] is True and g["view"] == "simulated" and g["simulation_profile"] == "2x4090"
    assert all(x["simulated"] for x in g["list"])


def test_an_unreachable_rig_is_one_row_saying_so():
    rig = st.RigStatus("r3", "rig@127.0.0.1:22203", "unreachable",
                       problem="ssh: connect to host 127.0.0.1 port 22203: Connection refused")
    data = st.summarize(rig)
    assert "gpus" not in data and data["problem"].endswith("Connection refused")
    assert st.row(data) == ["r3", "UNREACHABLE", "-", "-", "-", "-", "-", "-", "-", "-"]


def test_the_last_verify_cell():
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ok = st.verify_text({"result": "ok", "gpu_view": "simulated", "time": now})
    assert ok.startswith("ok (simulated) ")
    assert st.verify_text({"result": "failed", "gpu_view": "real", "time": now}).startswith("failed ")
    assert st.verify_text(None) == "-"


def test_forks_follow_the_fleet_up_to_a_cap():
    assert st.forks_for(1) == 1 and st.forks_for(8) == 8 and st.forks_for(500) == st.MAX_FORKS


# --- the CLI ------------------------------------------------------------------------------


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "rigctl", *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_fleet_status_help():
    proc = _cli("fleet", "status", "--help")
    assert proc.returncode == 0 and "--json" in proc.stdout and "simulated" in proc.stdout


def test_a_missing_inventory_is_an_input_error_and_nothing_is_contacted(tmp_path, home):
    import os

    env = dict(os.environ, RIGCTL_HOME=str(home))
    proc = _cli("fleet", "status", "-i", str(tmp_path / "nope.yml"), env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: ") and "nothing was contacted" in proc.stderr
    assert "inventory not found" in proc.stderr and "pass -i PATH" in proc.stderr
    assert not (home / "runs").exists()  # no Ansible run was started


def test_collect_runs_one_play_with_forks_sized_to_the_fleet(tmp_path, home, monkeypatch):
    """collect() hands the play to the CLI's run helper (host key gate, then Ansible) with
    ANSIBLE_FORKS set for that run only; a rig without a result is a row saying why."""
    import os

    from rigctl import inventory as inv_mod
    from rigctl.cli import _run
    from rigctl.runner import Failure, RunResult

    inv_path = _inventory(tmp_path, {f"r{i}": 22200 + i for i in range(1, 4)})
    inv = inv_mod.load([inv_path])
    seen = {}

    def fake_run(playbook, paths, selected, **kw):
        seen.update(playbook=playbook, selected=list(selected), forks=os.environ.get("ANSIBLE_FORKS"),
                    quiet=kw.get("quiet"), check=kw.get("check"))
        r = RunResult(playbook=playbook, status="failed", rc=4, artifacts=tmp_path)
        r.host_facts["r1"] = {"rig_status": {"host": _facts(), "driver_record": None}}
        r.failures.append(Failure("r2", "SSH host key check", "offered key SHA256:abc is not known"))
        r.failures.append(Failure("r3", "Rig status", "Failed to connect\nmore", unreachable=True))
        return r

    monkeypatch.setattr(_run, "run", fake_run)
    monkeypatch.delenv("ANSIBLE_FORKS", raising=False)
    rigs, _ = st.collect([inv_path], inv, ["r1", "r2", "r3"])
    assert seen == {"playbook": "fleet_status.yml", "selected": ["r1", "r2", "r3"], "forks": "3",
                    "quiet": True, "check": True}
    assert "ANSIBLE_FORKS" not in os.environ
    assert [(r.name, r.reachable) for r in rigs] == [("r1", "yes"), ("r2", "refused"), ("r3", "unreachable")]
    assert rigs[0].address == "rig@127.0.0.1:22201" and rigs[0].data["gpus"]["count"] == 4
    assert rigs[1].problem.startswith("offered key") and rigs[2].problem == "Failed to connect"


def test_run_suites_records_only_when_asked(tmp_path, home):
    """The hook in rigctl.verify.run.run_suites: `rigctl verify` passes record=True; other
    callers (tests, Molecule) write nothing under $RIGCTL_HOME."""
    from rigctl.verify.run import run_suites

    inv = _inventory(tmp_path, {"rig-a": 22201})

    def refused():
        r = VerifyResult()
        r.add_host_result("rig-a", "refused", "host key changed")
        return r

    run_suites(["rig-a"], inv, result=refused())
    assert not (home / "verify").exists()
    run_suites(["rig-a"], inv, result=refused(), record=True)
    rec = records.last_verify("rig-a", "rig@127.0.0.1:22201")
    assert rec["result"] == "refused" and rec["counts"]["refused"] == 1
