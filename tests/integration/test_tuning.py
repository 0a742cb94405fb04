"""GPU tuning and hardware checks on lab rigs over SSH: power limits, clock locks and compute
mode set, survive a reboot through the boot unit, refused out of range, untouched in check
mode, back to defaults when removed; each hardware-check
failure profile warns and goes on under `warn`, stops before any driver or tuning change
under `enforce`."""

from __future__ import annotations

import json
import posixpath
import shlex
import uuid

import pytest
import yaml

from .conftest import lab_session

pytestmark = [pytest.mark.lab, pytest.mark.slow]

PROFILES = ["4x3090", "4x3090-smallbar", "4x3090-iommu", "4x3090-x4riser"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with lab_session(tmp_path_factory, "it-tune", "--profiles", ",".join(PROFILES)) as session:
        yield _tuning_lab(session)


def _tuning_lab(session):
    rigctl, home, name = session.rigctl, session.home, session.name
    base = yaml.safe_load(open(session.inventory).read())

    def inventories(per_rig: dict[str, dict]) -> str:
        """The lab's inventory with these variables added to these rigs."""
        data = yaml.safe_load(yaml.safe_dump(base))
        for rig, rig_vars in per_rig.items():
            data["all"]["children"]["rigs"]["children"]["lab"]["hosts"][rig].update(rig_vars)
        path = home / f"inv-{uuid.uuid4().hex[:6]}.yml"
        path.write_text(yaml.safe_dump(data))
        return str(path)

    def inventory(rig: str, **rig_vars) -> str:
        return inventories({rig: rig_vars})

    def ssh(rig: str, command: str) -> str:
        proc = rigctl("lab", "ssh", "--name", name, rig, command)
        return proc.stdout

    def limits(rig: str) -> list[float]:
        out = ssh(rig, "nvidia-smi --query-gpu=power.limit --format=csv,noheader,nounits")
        return [float(x) for x in out.split()]

    return type(
        "Lab",
        (),
        {
            "name": name,
            "rigctl": rigctl,
            "inventory": staticmethod(inventory),
            "inventories": staticmethod(inventories),
            "ssh": staticmethod(ssh),
            "limits": staticmethod(limits),
        },
    )


LIMITS = {"rig_power_limit_w": 275, "rig_power_limit_overrides": {"0000:41:00.0": 250}}


def test_out_of_range_limit_refused_and_nothing_changed(lab):
    inv = lab.inventory("lab-rig-1", rig_power_limit_w=400)
    proc = lab.rigctl("provision", "host", "lab-rig-1", "-i", inv)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    err = proc.stderr
    assert "nothing changed" in err and "GPU 0 (0000:01:00.0" in err
    assert "400 W from rig_power_limit_w is outside this card's range 100-350 W" in err
    assert lab.limits("lab-rig-1") == [350.0] * 4
    assert "inactive" in lab.ssh("lab-rig-1", "systemctl is-active nvidia-persistenced || true")


def test_check_mode_changes_nothing(lab):
    inv = lab.inventory("lab-rig-1", **LIMITS)
    proc = lab.rigctl("provision", "host", "lab-rig-1", "-i", inv, "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lab.limits("lab-rig-1") == [350.0] * 4
    assert "No such file" in lab.ssh("lab-rig-1", "cat /etc/rigctl/gpu-settings.conf 2>&1")


def test_limits_applied_then_back_after_reboot_without_rigctl(lab):
    inv = lab.inventory("lab-rig-1", **LIMITS)
    rc, summary = lab.rigctl.json("provision", "host", "lab-rig-1", "-i", inv, "--json")
    assert rc == 0, summary
    assert lab.limits("lab-rig-1") == [275.0, 275.0, 250.0, 275.0]
    rc, again = lab.rigctl.json("provision", "host", "lab-rig-1", "-i", inv, "--json")
    assert rc == 0 and again["hosts"]["lab-rig-1"]["changed"] == 0, again["changes"]
    lab.rigctl("lab", "restart", "--name", lab.name, "lab-rig-1", check=True)
    assert lab.limits("lab-rig-1") == [275.0, 275.0, 250.0, 275.0]
    state = lab.ssh(
        "lab-rig-1",
        "systemctl is-active rigctl-gpu-settings nvidia-persistenced; "
        "nvidia-smi --query-gpu=persistence_mode --format=csv,noheader",
    )
    assert state.split() == ["active", "active"] + ["Enabled"] * 4
    proc = lab.rigctl("verify", "-i", inv, "-l", "lab-rig-1")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_removing_the_setting_restores_defaults_and_removes_the_unit(lab):
    inv = lab.inventory("lab-rig-1")
    proc = lab.rigctl("provision", "host", "lab-rig-1", "-i", inv)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lab.limits("lab-rig-1") == [350.0] * 4
    out = lab.ssh("lab-rig-1", "ls /etc/systemd/system/rigctl-gpu-settings.service 2>&1")
    assert "No such file" in out


SETTINGS = {
    "rig_gpu_clock_lock_mhz": {"min": 210, "max": 1695},
    "rig_gpu_clock_lock_overrides": {"2": {"min": 210, "max": 1500}},
    "rig_compute_mode": "exclusive_process",
}


def _modes(lab, rig):
    out = lab.ssh(rig, "nvidia-smi --query-gpu=compute_mode --format=csv,noheader")
    return out.split()


def _locks(lab, rig):
    status = json.loads(lab.ssh(rig, "rigctl-simgpu status --json"))
    return [g["locked_clocks_mhz"] for g in status["gpus"]]


def test_out_of_range_clock_lock_refused_and_nothing_changed(lab):
    inv = lab.inventory(
        "lab-rig-1",
        rig_gpu_clock_lock_mhz={"min": 210, "max": 2500},
        rig_compute_mode="exclusive_process",
        **LIMITS,
    )
    proc = lab.rigctl("provision", "host", "lab-rig-1", "-i", inv)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    err = proc.stderr
    assert "nothing changed" in err and "GPU 0 (0000:01:00.0" in err
    assert (
        "clock lock 210-2500 MHz from rig_gpu_clock_lock_mhz is outside this card's range 0-2100 MHz"
    ) in err
    assert _modes(lab, "lab-rig-1") == ["Default"] * 4
    assert _locks(lab, "lab-rig-1") == [None] * 4
    assert lab.limits("lab-rig-1") == [350.0] * 4


def test_clock_lock_and_compute_mode_applied_back_after_reboot_then_removed(lab):
    inv = lab.inventory("lab-rig-1", **SETTINGS)
    rc, summary = lab.rigctl.json("provision", "host", "lab-rig-1", "-i", inv, "--json")
    assert rc == 0, summary
    assert _modes(lab, "lab-rig-1") == ["Exclusive_Process"] * 4
    want = [[210, 1695], [210, 1695], [210, 1500], [210, 1695]]
    assert _locks(lab, "lab-rig-1") == want
    rc, again = lab.rigctl.json("provision", "host", "lab-rig-1", "-i", inv, "--json")
    assert rc == 0 and again["hosts"]["lab-rig-1"]["changed"] == 0, again["changes"]
    lab.rigctl("lab", "restart", "--name", lab.name, "lab-rig-1", check=True)
    assert _modes(lab, "lab-rig-1") == ["Exclusive_Process"] * 4  # the boot unit, not rigctl
    assert _locks(lab, "lab-rig-1") == want
    proc = lab.rigctl("verify", "-i", inv, "-l", "lab-rig-1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "test_clock_lock_applied" in proc.stdout and "test_compute_mode_applied" in proc.stdout
    # Removing the settings restores the defaults and removes the boot unit.
    proc = lab.rigctl("provision", "host", "lab-rig-1", "-i", lab.inventory("lab-rig-1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _modes(lab, "lab-rig-1") == ["Default"] * 4
    assert _locks(lab, "lab-rig-1") == [None] * 4
    out = lab.ssh(
        "lab-rig-1", "ls /etc/systemd/system/rigctl-gpu-settings.service /run/rigctl/gpu-clocks.json 2>&1"
    )
    assert out.count("No such file") == 2


FAILING = {
    "lab-rig-2": ("4x3090-smallbar", "BAR1 is 256 MiB, smaller than its 24576 MiB VRAM"),
    "lab-rig-3": ("4x3090-iommu", "IOMMU is translating DMA"),
    "lab-rig-4": ("4x3090-x4riser", "GPU 2 (0000:41:00.0) NVIDIA GeForce RTX 3090: link x4"),
}


def _host_lines(output: str, kind: str, rig: str) -> str:
    """What the plain summary says about one rig: its `failed:` (or `warning:`) lines and
    the message lines indented under them."""
    keep, out = False, []
    for line in output.splitlines():
        if line.startswith("    "):
            if keep:
                out.append(line)
            continue
        keep = line.startswith(f"{kind}: {rig}: ")
        if keep:
            out.append(line)
    return "\n".join(out)


@pytest.fixture(scope="module")
def failing_runs(lab):
    """The three failing rigs provisioned together (one `provision fleet` run each way, the
    rigs side by side instead of one after another): under `enforce` (the state of each is
    read right after), then under `warn`."""
    def run(policy):
        inv = lab.inventories({rig: {"rig_hw_check_policy": policy, **LIMITS} for rig in FAILING})
        proc = lab.rigctl("provision", "fleet", "-i", inv, "--limit", ",".join(FAILING))
        after = {rig: (lab.limits(rig),
                       lab.ssh(rig, "systemctl is-enabled nvidia-persistenced || true").strip())
                 for rig in FAILING}
        return proc, after

    return {"enforce": run("enforce"), "warn": run("warn")}


@pytest.mark.parametrize("rig", sorted(FAILING))
def test_failure_profile_enforce_stops_warn_goes_on(failing_runs, rig):
    profile, needle = FAILING[rig]
    proc, after = failing_runs["enforce"]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    said = _host_lines(proc.stderr, "failed", rig)
    assert "Stop when a hardware check fails (policy enforce)" in said, (profile, said)
    assert needle in said, (profile, said)
    # Stopped before any driver or tuning change.
    limits, enabled = after[rig]
    assert limits == [350.0] * 4
    assert "disabled" in enabled
    proc, after = failing_runs["warn"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    said = _host_lines(proc.stdout, "warning", rig)
    assert needle in said and "(policy warn)" in said, (profile, proc.stdout + proc.stderr)
    assert after[rig][0] == [275.0, 275.0, 250.0, 275.0]


# --- provision and verify agree: drift made by hand is caught, then repaired -----------

TUNED = {**LIMITS, **SETTINGS}
TUNING_CHECKS = ("test_power_limit_applied", "test_clock_lock_applied",
                 "test_compute_mode_applied", "test_power_limit_unit_ran_this_boot")


@pytest.fixture(scope="module")
def drift_lab(lab):
    """lab-rig-1 (4x3090) of the module's lab, where the tests above left it: back at the
    defaults (no lab of its own to bring up and take down)."""
    return lab


def _by_hand(lab, command):
    """Run a command on lab-rig-1 over `rigctl lab ssh` (as a rig owner would by hand)."""
    lab.rigctl("lab", "ssh", "--name", lab.name, "lab-rig-1", command, check=True)


def _verify(lab, inv):
    """{check name: check} of the tuning and facts suites on lab-rig-1."""
    rc, result = lab.rigctl.json("verify", "-i", inv, "-l", "lab-rig-1", "--json",
                                 "-k", "test_tuning or test_facts")
    checks = {c["name"].split("[")[0]: c for c in result["hosts"]["lab-rig-1"]["checks"]}
    return rc, checks


def _provision(lab, inv, timings, label):
    import time

    start = time.monotonic()
    rc, summary = lab.rigctl.json("provision", "host", "lab-rig-1", "-i", inv, "--json")
    timings[label] = round(time.monotonic() - start, 1)
    assert rc == 0, summary
    return summary


def test_provision_then_verify_agree_and_each_drift_is_caught_then_repaired(drift_lab):
    lab, timings = drift_lab, {}
    inv = lab.inventory("lab-rig-1", **TUNED)
    first = _provision(lab, inv, timings, "first provision")
    # The driver is not managed here: no kernel module is built, so no headers warning.
    assert not [w for w in first["warnings"] if "headers" in w["message"]], first["warnings"]
    rc, checks = _verify(lab, inv)
    failed = {n: c.get("details") or c["message"] for n, c in checks.items()
              if c["outcome"] not in ("passed", "simulated", "skipped")}
    assert not failed, failed
    # They read the simulated GPU layer: never a plain pass on a lab rig.
    assert all(checks[n]["outcome"] == "simulated" for n in TUNING_CHECKS), checks
    again = _provision(lab, inv, timings, "no-op re-run")
    assert again["hosts"]["lab-rig-1"]["changed"] == 0, again["changes"]

    # Drift made by hand, as a rig owner would.
    _by_hand(lab, "sudo nvidia-smi -i 1 -pl 300 && sudo nvidia-smi -i 0 -c 0 "
             "&& sudo nvidia-smi -i 2 -rgc && sudo systemctl stop rigctl-gpu-settings")
    rc, checks = _verify(lab, inv)
    assert rc == 1
    found = {n: checks[n]["details"] for n in TUNING_CHECKS if checks[n]["outcome"] == "failed"}
    assert set(found) == set(TUNING_CHECKS), checks
    assert "GPU 1 (0000:21:00.0): 300" in found["test_power_limit_applied"]["found"]
    clocks = found["test_clock_lock_applied"]
    assert clocks["found"] == "GPU 2 (0000:41:00.0): unlocked", clocks
    assert clocks["expected"] == ("GPU 2 (0000:41:00.0): locked 210-1500 MHz "
                                  "(rig_gpu_clock_lock_overrides['2'])"), clocks
    compute = found["test_compute_mode_applied"]
    assert compute["found"] == "GPU 0 (0000:01:00.0): default", compute
    assert "exclusive_process" in compute["expected"] and "provision" in compute["fix"]
    assert "active=False" in found["test_power_limit_unit_ran_this_boot"]["found"]
    assert all(d["fix"] for d in found.values())

    # One provision repairs all of it; only the tuning task changes.
    repair = _provision(lab, inv, timings, "repair")
    tasks = {c["task"] for c in repair["changes"]}
    assert tasks == {"Set the GPU power limits, clock locks and compute modes that differ"}, tasks
    rc, checks = _verify(lab, inv)
    # They read the simulated GPU layer: never a plain pass on a lab rig.
    assert all(checks[n]["outcome"] == "simulated" for n in TUNING_CHECKS), checks
    assert lab.limits("lab-rig-1") == [275.0, 275.0, 250.0, 275.0]
    assert _modes(lab, "lab-rig-1") == ["Exclusive_Process"] * 4
    assert _locks(lab, "lab-rig-1") == [[210, 1695], [210, 1695], [210, 1500], [210, 1695]]
    again = _provision(lab, inv, timings, "no-op after repair")
    assert again["hosts"]["lab-rig-1"]["changed"] == 0, again["changes"]

    # With nothing configured, null is the card's default on both sides: -c 3 and -lgc by
    # hand are drift too.
    plain = lab.inventory("lab-rig-1")
    _provision(lab, plain, timings, "back to defaults")
    _by_hand(lab, "sudo nvidia-smi -i 3 -c 3 && sudo nvidia-smi -i 3 -lgc 210,1200")
    rc, checks = _verify(lab, plain)
    assert checks["test_compute_mode_applied"]["outcome"] == "failed", checks
    assert "GPU 3 (0000:61:00.0): exclusive_process" in (
        checks["test_compute_mode_applied"]["details"]["found"])
    assert checks["test_clock_lock_applied"]["details"]["found"] == (
        "GPU 3 (0000:61:00.0): locked 210-1200 MHz")
    _provision(lab, plain, timings, "repair defaults")
    assert _modes(lab, "lab-rig-1") == ["Default"] * 4 and _locks(lab, "lab-rig-1") == [None] * 4
    again = _provision(lab, plain, timings, "no-op at defaults")
    assert again["hosts"]["lab-rig-1"]["changed"] == 0, again["changes"]
    print("timings (s):", timings)


def test_check_diff_shows_per_gpu_before_and_after(drift_lab):
    lab = drift_lab
    inv = lab.inventory("lab-rig-1", **TUNED)
    lab.rigctl("provision", "host", "lab-rig-1", "-i", inv, check=True)
    _by_hand(lab, "sudo nvidia-smi -i 1 -pl 300")
    proc = lab.rigctl("provision", "host", "lab-rig-1", "-i", inv, "--check", "--diff")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "--- GPU 1 (0000:21:00.0) NVIDIA GeForce RTX 3090" in out, out
    assert "-power limit: 300 W" in out and "+power limit: 275 W" in out, out
    assert "GPU 0 (0000:01:00.0)" not in out, out
    assert lab.limits("lab-rig-1")[1] == 300.0  # check mode: nothing set
    rc, summary = lab.rigctl.json("provision", "host", "lab-rig-1", "-i", inv, "--check",
                                  "--json")
    assert rc == 0 and summary["hosts"]["lab-rig-1"]["changed"] == 1, summary["changes"]


# --- a rig provisioned by an earlier rigctl: rigctl-power-limits is migrated -----------

LEGACY_UNIT = "rigctl-power-limits.service"
LEGACY_CONF = "/etc/rigctl/power-limits.conf"
LEGACY_SCRIPT = "/usr/local/sbin/rigctl-power-limits"
# What an earlier rigctl installed (its power-limits-only format): 300 W on every GPU,
# applied at boot by its own unit and script.
LEGACY_FILES = {
    LEGACY_CONF: "# Written by rigctl (role gpu_tuning).\n" + "".join(
        f"0000:{bus}:00.0 300\n" for bus in ("01", "21", "41", "61")),
    LEGACY_SCRIPT: "#!/bin/sh\nwhile read -r bus w _; do\n"
                   "  case \"$bus\" in ''|'#'*) continue ;; esac\n"
                   "  nvidia-smi -i \"$bus\" -pl \"$w\"\ndone < \"$1\"\n",
    f"/etc/systemd/system/{LEGACY_UNIT}": (
        "[Unit]\nDescription=rigctl: GPU power limits\nConditionPathExists=" + LEGACY_CONF +
        "\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=" + LEGACY_SCRIPT + " " +
        LEGACY_CONF + "\n\n[Install]\nWantedBy=multi-user.target\n"),
}


def test_boot_unit_of_an_earlier_rigctl_is_migrated(drift_lab):
    lab = drift_lab
    plain = lab.inventory("lab-rig-1")
    _provision(lab, plain, {}, "defaults")  # nothing of rigctl's boot unit on the rig
    for path, text in LEGACY_FILES.items():
        _by_hand(lab, f"sudo mkdir -p {posixpath.dirname(path)} && printf '%s' {shlex.quote(text)} "
                      f"| sudo tee {path} >/dev/null && sudo chmod 0755 {path}")
    _by_hand(lab, f"sudo systemctl daemon-reload && sudo systemctl enable --now {LEGACY_UNIT}")
    assert lab.limits("lab-rig-1") == [300.0] * 4  # the old unit ran

    inv = lab.inventory("lab-rig-1", **LIMITS)
    summary = _provision(lab, inv, {}, "migration")
    tasks = {c["task"] for c in summary["changes"]}
    assert ("Remove the boot unit, file and script of an earlier rigctl "
            "(now rigctl-gpu-settings.service)") in tasks, tasks
    assert f"Stop and disable the boot unit of an earlier rigctl ({LEGACY_UNIT})" in tasks, tasks
    gone = lab.ssh("lab-rig-1", f"ls {' '.join(LEGACY_FILES)} 2>&1; "
                   f"systemctl show -p LoadState --value {LEGACY_UNIT}")
    assert gone.count("No such file") == 3 and gone.split()[-1] == "not-found", gone
    assert lab.limits("lab-rig-1") == [275.0, 275.0, 250.0, 275.0]
    new = lab.ssh("lab-rig-1", "systemctl is-enabled rigctl-gpu-settings; "
                  "systemctl is-active rigctl-gpu-settings; cat /etc/rigctl/gpu-settings.conf")
    assert new.split()[:2] == ["enabled", "active"], new
    assert "0000:41:00.0 250  # GPU 2" in new and "rigctl-gpu-settings.service" in new, new

    again = _provision(lab, inv, {}, "re-run")
    assert again["hosts"]["lab-rig-1"]["changed"] == 0, again["changes"]
    # At the next boot only the new unit applies the settings (the old one is gone).
    lab.rigctl("lab", "restart", "--name", lab.name, "lab-rig-1", check=True)
    assert lab.limits("lab-rig-1") == [275.0, 275.0, 250.0, 275.0]
    rc, checks = _verify(lab, inv)
    assert all(checks[n]["outcome"] == "simulated" for n in TUNING_CHECKS), checks
    _provision(lab, plain, {}, "back to defaults")
