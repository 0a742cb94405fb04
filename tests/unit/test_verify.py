"""`rigctl verify` without a lab: outcomes, counting, rendering, JUnit, the collector, the
SSH error reading, and the per-rig workers against ports on 127.0.0.1 that refuse or hang."""

from __future__ import annotations

import socket
import textwrap
import threading
import time
import xml.etree.ElementTree as ET

import pytest

from rigctl.core import hostfacts
from rigctl.verify import checks
from rigctl.verify.run import Check, VerifyResult, _Collector, run_suites

# What testinfra raised in a real run against a stopped lab rig (Ansible ad-hoc module).
ANSIBLE_UNREACHABLE = (
    "Unexpected exit code 4 for CommandResult(backend=<testinfra.backend.local.LocalBackend "
    "object at 0x7f>, exit_status=4, command=b'ansible --tree /tmp/x -i inv.yml -m rig_facts "
    "--become lab-rig-2', _stdout=b'[ERROR]: Task failed: Data could not be sent to remote "
    "host \"127.0.0.1\". Make sure this host can be reached over ssh: ssh: connect to host "
    "127.0.0.1 port 23401: Connection refused\\nOrigin: <adhoc \\'rig_facts\\' task>\\n\\n"
    "lab-rig-2 | UNREACHABLE! => \\n    changed: false\\n', _stderr=b'')"
)


class _Result:  # testinfra's CommandResult, as far as the reader looks at it
    def __init__(self, rc, stderr):
        self.rc = rc
        self.stderr = stderr


def _result_with_everything() -> VerifyResult:
    r = VerifyResult()
    r.rigs = {"rig-a": {"gpu_view": "simulated", "profile": "4x3090"},
              "rig-b": {"gpu_view": "real", "profile": None}}
    r.checks = [
        Check("rig-a", "test_real_thing", "test_facts", "passed"),
        Check("rig-a", "test_power", "test_tuning", "simulated"),
        Check("rig-a", "test_rebar", "test_hw_checks", "warn", "Resizable BAR",
              {"what": "Resizable BAR", "expected": "BAR1 >= VRAM", "found": "GPU 0: 256 MiB",
               "fix": "BIOS"}),
        Check("rig-a", "test_needs_gpu", "test_cuda", "skipped", "GPUs are simulated"),
        Check("rig-b", "test_real_thing", "test_facts", "passed"),
        Check("rig-b", "test_power", "test_tuning", "failed", "power limit",
              {"what": "power limit", "expected": "300 W", "found": "350 W", "fix": "provision"}),
    ]
    r.add_host_result("rig-c", "unreachable", "ssh: connect to host 127.0.0.1 port 1: "
                      "Connection refused\r\nand a second line")
    return r


# --- outcomes and counting ---------------------------------------------------------------


def test_add_host_result_is_one_counted_failing_line():
    r = VerifyResult()
    r.checks.append(Check("rig-x", "test_something", "test_facts", "passed"))
    c = r.add_host_result("rig-x", "refused", "host key changed\nline two")
    assert r.hosts()["rig-x"] == [c]  # replaces anything collected for that rig
    assert c.outcome == "refused" and c.message == "host key changed line two"
    assert r.host_outcome("rig-x") == "refused" and not r.ok
    data = r.as_dict()["hosts"]["rig-x"]
    assert data["refused"] == 1 and data["result"] == "refused" and data["ok"] is False
    with pytest.raises(ValueError):
        r.add_host_result("rig-y", "exploded", "?")


def test_simulated_passes_are_passes_counted_apart_and_warns_fail_only_strict():
    r = VerifyResult()
    r.rigs["rig-a"] = {"gpu_view": "simulated", "profile": "4x3090"}
    r.checks = [Check("rig-a", "a", "m", "passed"), Check("rig-a", "b", "m", "simulated"),
                Check("rig-a", "c", "m", "warn")]
    data = r.as_dict()
    assert data["ok"] is True
    host = data["hosts"]["rig-a"]
    assert (host["passed"], host["simulated"], host["warn"]) == (1, 1, 1)
    assert host["gpu_view"] == "simulated" and host["simulation_profile"] == "4x3090"
    assert [c["outcome"] for c in host["checks"]] == ["passed", "simulated", "warn"]
    r.strict = True
    assert r.ok is False and r.as_dict()["hosts"]["rig-a"]["ok"] is False


def test_messages_are_one_short_line():
    assert checks.one_line("a\n  b\r\n c") == "a b c"
    long = checks.one_line("x" * 5000)
    assert len(long) == checks.MESSAGE_LIMIT and long.endswith("...")


# --- reading SSH errors ------------------------------------------------------------------


def test_connection_error_from_ansible_unreachable_text():
    assert checks.connection_error(ANSIBLE_UNREACHABLE) == (
        "ssh: connect to host 127.0.0.1 port 23401: Connection refused"
    )


def test_connection_error_from_testinfra_ssh_exit_255():
    exc = RuntimeError(_Result(255, "Connection timed out during banner exchange\r\n"
                                    "Connection to 127.0.0.1 port 2 timed out\r\n"))
    assert checks.connection_error(exc) == "Connection timed out during banner exchange"
    assert checks.connection_error(checks.RigUnreachable("gone\nfor good")) == "gone for good"


def test_other_failures_are_not_connection_errors():
    assert checks.connection_error("assert 3 == 4") is None
    assert checks.connection_error(RuntimeError(_Result(1, "No such file"))) is None
    assert checks.connection_error("CommandResult(exit_status=1, _stderr=b'permission')") is None


# --- rendering ---------------------------------------------------------------------------


def test_render_table_marks_simulated_and_one_line_per_unreachable_rig(capsys):
    from rigctl.cli.verify_cmd import render

    render(_result_with_everything())
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(ln for ln in lines if ln.startswith("check"))
    assert "rig-a" in header and "rig-b" in header and "rig-c" not in header
    view = next(ln for ln in lines if ln.startswith("gpu_view"))
    assert "SIMULATED GPUs (4x3090)" in view and "real GPUs" in view
    power = next(ln for ln in lines if ln.startswith("test_power"))
    assert "pass (simulated)" in power and "FAIL" in power
    assert [ln for ln in lines if "rig-c" in ln and "UNREACHABLE" in ln] == [
        "rig-c  UNREACHABLE  ssh: connect to host 127.0.0.1 port 1: Connection refused "
        "and a second line"
    ]
    assert ("rig-a (SIMULATED GPUs (4x3090)): 1 passed, 1 passed (simulated), 1 warn, "
            "0 failed, 1 skipped") in lines
    assert "rig-b (real GPUs): 1 passed, 0 warn, 1 failed, 0 skipped" in lines
    assert "WARN rig-a test_rebar: Resizable BAR" in out
    assert "  found:    GPU 0: 256 MiB" in out and "CommandResult" not in out


def test_checks_skipped_for_one_reason_share_one_line():
    from rigctl.cli.verify_cmd import skip_lines

    sim = "GPUs are simulated (lab profile 4x3090)"
    checks = [
        Check("rig-a", "test_rebar", "test_hw_checks", "skipped", f"{sim}: BAR1 size needs real hardware"),
        Check("rig-a", "test_link", "test_hw_checks", "passed"),
        Check("rig-a", "test_acs", "test_hw_checks", "skipped", f"{sim}: ACS needs real hardware"),
        Check("rig-a", "test_nccl", "test_nccl", "skipped", "rig_nccl_version is not set"),
        Check("rig-a", "test_p2p_bw", "test_p2p", "recorded", "recorded, not observed: lab figures"),
        Check("rig-a", "test_xid", "test_health", "skipped", f"{sim}: the kernel log needs real hardware"),
    ]
    assert skip_lines("rig-a", checks) == [
        f"skip rig-a: {sim}: 3 checks (test_rebar, test_acs, test_xid)",
        "skip rig-a test_nccl: rig_nccl_version is not set",
        "recorded rig-a test_p2p_bw: recorded, not observed: lab figures",
    ]


def test_json_of_a_mixed_run():
    data = _result_with_everything().as_dict()
    assert data["ok"] is False
    assert data["totals"]["simulated"] == 1 and data["totals"]["unreachable"] == 1
    assert data["hosts"]["rig-c"]["checks"] == [{
        "name": "connection", "suite": "rig", "outcome": "unreachable",
        "message": "ssh: connect to host 127.0.0.1 port 1: Connection refused and a second line",
    }]
    assert data["hosts"]["rig-a"]["ok"] is True and data["hosts"]["rig-b"]["ok"] is False


# --- JUnit -------------------------------------------------------------------------------


def _junit(result, tmp_path):
    path = tmp_path / "verify.xml"
    result.write_junit(str(path))
    return ET.parse(path).getroot()


def test_junit_has_gpu_view_outcomes_and_one_error_per_unreachable_rig(tmp_path):
    root = _junit(_result_with_everything(), tmp_path)
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert list(suites) == ["rig-a", "rig-b", "rig-c"]

    def props(el):
        return {p.get("name"): p.get("value") for p in el.find("properties")}

    assert props(suites["rig-a"]) == {"gpu_view": "simulated", "simulation_profile": "4x3090"}
    cases = {c.get("name"): c for c in suites["rig-a"].iter("testcase")}
    assert props(cases["test_power"])["outcome"] == "simulated"
    assert cases["test_power"].find("failure") is None  # a simulated pass is a pass
    assert props(cases["test_rebar"])["outcome"] == "warn"
    assert props(cases["test_rebar"])["found"] == "GPU 0: 256 MiB"
    assert cases["test_rebar"].find("failure") is None  # warn fails only with --strict
    assert suites["rig-a"].get("failures") == "0" and suites["rig-a"].get("skipped") == "1"
    assert suites["rig-b"].find("testcase/failure").get("message") == "power limit"
    (only,) = list(suites["rig-c"].iter("testcase"))
    assert only.find("error").get("type") == "unreachable"
    assert root.get("tests") == "7" and root.get("errors") == "1" and root.get("failures") == "1"


def test_junit_strict_makes_warn_a_failure(tmp_path):
    r = _result_with_everything()
    r.strict = True
    root = _junit(r, tmp_path)
    rebar = next(c for c in root.iter("testcase") if c.get("name") == "test_rebar")
    assert rebar.find("failure").get("type") == "warn"


# --- the collector (in the worker) --------------------------------------------------------


SUITE = '''
import pytest
from rigctl.verify.checks import expect


class _R:
    def __init__(self):
        self.rc = 255
        self.stderr = "ssh: connect to host 127.0.0.1 port 9: Connection refused"


def test_a_pass():
    pass


def test_b_gpu_read_on_simulated(record_property):
    record_property("gpu_view", "simulated")
    record_property("reads_gpu", True)


def test_c_gpu_read_on_real(record_property):
    record_property("gpu_view", "real")
    record_property("reads_gpu", True)


def test_d_fails():
    expect(False, "a thing holds", expected="300 W", found="350 W", fix="provision")


def test_e_warns():
    expect(False, "BAR1 covers VRAM", expected="BAR1 >= VRAM", found="256 MiB", fix="BIOS",
           warn=True)


def test_f_raw_error():
    raise RuntimeError("first line of a long story\\n" + "detail " * 500)


def test_g_skip():
    pytest.skip("needs real GPUs")


def test_h_connection_lost():
    raise RuntimeError(_R())


def test_i_never_runs():
    pass
'''


def test_collector_outcomes_and_stop_on_lost_connection(tmp_path, monkeypatch):
    (tmp_path / "test_fake_suite.py").write_text(textwrap.dedent(SUITE))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    monkeypatch.setenv("RIGCTL_VERIFY_WORKER", "1")
    collector = _Collector()
    pytest.main([str(tmp_path), "-c", str(tmp_path / "pytest.ini"), "-p", "no:cacheprovider",
                 "-p", "no:terminal", "--rootdir", str(tmp_path)], plugins=[collector])
    got = {c.name: c for c in collector.result.checks}
    assert {n: c.outcome for n, c in got.items()} == {
        "test_a_pass": "passed",
        "test_b_gpu_read_on_simulated": "simulated",
        "test_c_gpu_read_on_real": "passed",
        "test_d_fails": "failed",
        "test_e_warns": "warn",
        "test_f_raw_error": "failed",
        "test_g_skip": "skipped",
        "test_h_connection_lost": "failed",
    }  # test_i never ran: the session stopped at the lost connection
    assert got["test_d_fails"].details["found"] == "350 W"
    assert got["test_e_warns"].details["expected"] == "BAR1 >= VRAM"
    assert got["test_f_raw_error"].message == "RuntimeError: first line of a long story"
    assert collector.lost == "ssh: connect to host 127.0.0.1 port 9: Connection refused"


# --- host facts in containers ------------------------------------------------------------


def test_secure_boot_in_a_container_is_unknown_not_disabled(tmp_path):
    sb = hostfacts.secure_boot(str(tmp_path), "docker")
    assert sb["state"] == "unknown" and "container (docker)" in sb["source"]
    assert hostfacts.secure_boot(str(tmp_path))["state"] == "disabled"  # bare metal, BIOS


def test_simulated_iommu_says_so(tmp_path):
    (tmp_path / "kernel").mkdir()
    sim = hostfacts.iommu(str(tmp_path), {}, simulated=True)
    assert sim["mode"] == "off" and sim["simulated"] is True and "simulated" in sim["source"]
    assert hostfacts.iommu(str(tmp_path), {})["simulated"] is False


# --- the workers: rigs on 127.0.0.1 that refuse or hang ----------------------------------


def _inventory(tmp_path, hosts: dict[str, int]):
    (tmp_path / "known_hosts").write_text("")
    lines = ["all:", "  children:", "    rigs:", "      hosts:"]
    for name, port in hosts.items():
        lines.append(f"        {name}: {{ansible_host: 127.0.0.1, ansible_port: {port}}}")
    lines += ["      vars:", "        ansible_user: rig",
              f"        ansible_ssh_common_args: -o UserKnownHostsFile={tmp_path}/known_hosts "
              "-o StrictHostKeyChecking=yes"]
    path = tmp_path / "inventory.yml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_server():
    """A TCP port on 127.0.0.1 that accepts and never says anything (a frozen sshd)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held, stop = [], threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    for c in held:
        c.close()
    srv.close()


def _env(tmp_path):
    from rigctl.runner import ansible_env

    env = ansible_env()
    env["HOME"] = str(tmp_path)  # ssh's own files (control sockets) stay in the test's dir
    return env


def test_refusing_and_frozen_rigs_are_one_unreachable_line_each(tmp_path, silent_server):
    inv = _inventory(tmp_path, {"rig-refuses": _closed_port(), "rig-frozen": silent_server})
    started = time.monotonic()
    r = run_suites(["rig-refuses", "rig-frozen"], inv, env=_env(tmp_path), connect_timeout=3)
    took = time.monotonic() - started
    hosts = r.hosts()
    assert [c.outcome for c in hosts["rig-refuses"]] == ["unreachable"]
    assert "Connection refused" in hosts["rig-refuses"][0].message
    assert [c.outcome for c in hosts["rig-frozen"]] == ["unreachable"]
    assert "banner exchange" in hosts["rig-frozen"][0].message
    assert took < 25, took  # in parallel, each within its connect timeout (plus start-up)
    assert not r.ok


def test_a_rig_past_its_deadline_is_killed_and_unreachable(tmp_path, silent_server):
    inv = _inventory(tmp_path, {"rig-frozen": silent_server})
    started = time.monotonic()
    r = run_suites(["rig-frozen"], inv, env=_env(tmp_path), connect_timeout=60, rig_timeout=3)
    assert time.monotonic() - started < 15
    (only,) = r.checks
    assert only.outcome == "unreachable" and "3 s per-rig deadline" in only.message


# --- report data attached by the suites (checks.attach) ---------------------------------


@pytest.fixture
def clean_attached():
    checks.clear_attached()
    yield
    checks.clear_attached()


def test_attach_lists_extend_dicts_update_others_replace(clean_attached):
    checks.attach("health", [{"check": "xid", "gpu": "0000:01:00.0", "severity": "fail",
                              "evidence": "Xid 79", "fix": "reseat the riser"}])
    checks.attach("health", [{"check": "aer", "gpu": None, "severity": "warn",
                              "evidence": "RxErr 12", "fix": "riser"}])
    checks.attach("nccl", {"evidence": "probe"})
    checks.attach("nccl", {"settings": []})
    checks.attach("note", "one")
    checks.attach("note", "two")
    got = checks.attached()
    assert [f["check"] for f in got["health"]] == ["xid", "aer"]
    assert got["nccl"] == {"evidence": "probe", "settings": []} and got["note"] == "two"
    got["health"].clear()  # a copy
    assert len(checks.attached()["health"]) == 2


def test_attach_refuses_bad_keys_and_values(clean_attached):
    with pytest.raises(ValueError, match="lower-case"):
        checks.attach("P2P Matrix", {})
    with pytest.raises(TypeError, match="not JSON-serializable"):
        checks.attach("p2p", {"x": object()})
    assert checks.attached() == {}


def test_attached_data_is_carried_per_rig_into_the_result_and_json():
    from rigctl.verify.run import _merge

    r = VerifyResult()
    _merge(r, {"host": "rig-a", "gpu_view": "simulated", "profile": "4x3090", "rc": 0,
               "checks": [{"host": "rig-a", "name": "t", "suite": "test_x", "outcome": "simulated"}],
               "report": {"p2p": {"pairs": []}, "health": [{"check": "xid"}]}})
    _merge(r, {"host": "rig-b", "gpu_view": "real", "rc": 0, "checks": [
        {"host": "rig-b", "name": "t", "suite": "test_x", "outcome": "passed"}]})
    assert r.report("rig-a")["health"] == [{"check": "xid"}] and r.report("rig-b") == {}
    data = r.as_dict()["hosts"]
    assert data["rig-a"]["report"]["p2p"] == {"pairs": []} and data["rig-b"]["report"] == {}


# --- verify --local, --strict, --report (the suites replaced: nothing runs on this machine) --


def _fake_run_suites(seen, outcome="skipped", view="none"):
    def fake(hosts, inventory, **kw):
        import yaml

        seen["hosts"], seen["kw"] = hosts, kw
        seen["inventory"] = yaml.safe_load(open(inventory))
        import os
        import stat

        seen["mode"] = stat.S_IMODE(os.stat(inventory).st_mode)
        r = VerifyResult(strict=kw.get("strict", False))
        r.rigs[hosts[0]] = {"gpu_view": view, "profile": None, "report": {}}
        r.checks = [Check(hosts[0], "test_facts_gathered", "test_facts", "passed"),
                    Check(hosts[0], "test_power_limit_applied", "test_tuning", outcome,
                          "no NVIDIA GPU on this host (gpu_view none): a GPU check does not apply")]
        return r
    return fake


def test_verify_local_runs_the_suites_on_a_local_connection_inventory(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from rigctl.cli.verify_cmd import verify

    seen: dict = {}
    monkeypatch.setattr("rigctl.verify.run.run_suites", _fake_run_suites(seen))
    report = tmp_path / "r.html"
    got = CliRunner().invoke(verify, ["--local", "--report", str(report)])
    assert got.exit_code == 0, got.output
    (name,) = seen["hosts"]
    host_vars = seen["inventory"]["all"]["children"]["rigs"]["hosts"][name]
    assert host_vars["ansible_connection"] == "local" and seen["mode"] == 0o600
    assert not [k for k in host_vars if k.startswith("rig_")]  # no inventory: the defaults
    assert f"{name} (no GPU): 1 passed, 0 warn, 0 failed, 1 skipped" in got.output
    assert "HTML report: " in got.output and report.read_text().startswith("<!DOCTYPE html>")
    assert "no NVIDIA GPU on this host" in report.read_text()


def test_verify_local_takes_a_hosts_rig_variables_only(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from rigctl.cli.verify_cmd import verify

    inv = tmp_path / "hosts.yml"
    inv.write_text("all:\n  children:\n    rigs:\n      hosts:\n        rig-a:\n"
                   "          ansible_host: 192.0.2.10\n          ansible_user: rig\n"
                   "          rig_power_limit_w: 275\n")
    seen: dict = {}
    monkeypatch.setattr("rigctl.verify.run.run_suites", _fake_run_suites(seen))
    got = CliRunner().invoke(verify, ["--local", "-i", str(inv), "rig-a"])
    assert got.exit_code == 0, got.output
    host_vars = seen["inventory"]["all"]["children"]["rigs"]["hosts"]["rig-a"]
    assert host_vars["rig_power_limit_w"] == 275 and "ansible_host" not in host_vars
    assert "ansible_user" not in host_vars
    from rigctl.errors import InputError

    bad = CliRunner().invoke(verify, ["--local", "rig-a"])  # the CLI prints it, exit 2
    assert isinstance(bad.exception, InputError) and "come from an inventory" in str(bad.exception)


def test_strict_makes_a_warning_fail_the_run(monkeypatch):
    from click.testing import CliRunner

    from rigctl.cli.verify_cmd import verify

    seen: dict = {}
    monkeypatch.setattr("rigctl.verify.run.run_suites", _fake_run_suites(seen, "warn", "real"))
    assert CliRunner().invoke(verify, ["--local"]).exit_code == 0
    got = CliRunner().invoke(verify, ["--local", "--strict"])
    assert got.exit_code == 1 and seen["kw"]["strict"] is True


def test_recorded_not_observed_is_its_own_outcome_and_never_a_pass():
    r = VerifyResult()
    r.rigs["rig-a"] = {"gpu_view": "real", "profile": None}
    r.checks = [Check("rig-a", "test_clock_lock_applied", "test_tuning", "recorded",
                      "recorded, not observed: clock locks agree with rigctl's record")]
    data = r.as_dict()["hosts"]["rig-a"]
    assert data["recorded"] == 1 and data["passed"] == 0 and r.ok
    from rigctl.cli.verify_cmd import summary_line

    assert "1 recorded, not observed" in summary_line(r, "rig-a", r.checks)
