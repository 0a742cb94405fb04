"""The lab demo's parts that need no lab: the inventory it writes passes `rigctl inventory
check` and gives each rig what the demo says; reading the CLI's output (drift caught,
what a re-provision changed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rigctl import inventory as inv_mod
from rigctl.cli import main
from rigctl.lab import demo
from rigctl.lab.model import Lab, Rig, render_inventory


@pytest.fixture
def lab_inventory(tmp_path, monkeypatch):
    """The inventory `rigctl lab up --profiles 4x3090,2x4090` writes (its own renderer)."""
    monkeypatch.setenv("RIGCTL_HOME", str(tmp_path / "home"))
    lab = Lab(name="demo", rigs=[Rig(1, 22201, "4x3090", 4), Rig(2, 22202, "2x4090", 2)])
    path = tmp_path / "lab-inventory.yml"
    path.write_text(render_inventory(lab))
    return path


def _check(capsys, path) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(["inventory", "check", "-i", str(path)])
    out = capsys.readouterr()
    return exc.value.code, out.out + out.err


@pytest.mark.parametrize("quick", [False, True], ids=["full", "quick"])
def test_demo_inventory_passes_inventory_check(tmp_path, lab_inventory, capsys, quick):
    dest = demo.write_inventory(tmp_path / "demo-inventory", lab_inventory, quick=quick)
    code, text = _check(capsys, dest)
    assert code == 0, text
    assert "2 rigs (lab-rig-1, lab-rig-2)" in text
    assert "no warnings" in text


def test_demo_inventory_gives_each_rig_its_settings(tmp_path, lab_inventory):
    dest = demo.write_inventory(tmp_path / "demo-inventory", lab_inventory)
    inv, selected = inv_mod.require_valid([str(dest)])
    assert selected == list(demo.RIGS)
    rig1, rig2 = (inv.host_vars(h) for h in demo.RIGS)
    for rig in (rig1, rig2):
        assert rig["rig_driver_flavor"] == "open"
        assert rig["rig_driver_version"] == demo.DRIVER_VERSION
        assert rig["rig_driver_source"] == "debian"
        assert rig["rig_persistence_mode"] is True
        assert rig["ansible_port"] in (22201, 22202)  # the lab's connection settings
    assert rig1["rig_power_limit_w"] == demo.POWER_W == 270
    assert rig1["rig_power_limit_overrides"] == {demo.OVERRIDE_BUS: demo.OVERRIDE_W}
    assert rig2["rig_power_limit_w"] == 400
    assert rig2["rig_compute_mode"] == "exclusive_process"
    assert not rig2.get("rig_power_limit_overrides")
    assert "workstation" in inv.host_groups("lab-rig-1")
    assert "desktop" in inv.host_groups("lab-rig-2")


def test_quick_inventory_leaves_the_driver_unmanaged(tmp_path, lab_inventory):
    dest = demo.write_inventory(tmp_path / "demo-inventory", lab_inventory, quick=True)
    inv, _ = inv_mod.require_valid([str(dest)])
    assert inv.host_vars("lab-rig-1")["rig_driver_version"] is None
    assert inv.host_vars("lab-rig-1")["rig_power_limit_w"] == 270


def test_write_inventory_replaces_an_older_one(tmp_path, lab_inventory):
    dest = tmp_path / "demo-inventory"
    (dest / "host_vars").mkdir(parents=True)
    (dest / "host_vars" / "stale.yml").write_text("rig_power_limit_w: 1\n")
    demo.write_inventory(dest, lab_inventory)
    assert not (dest / "host_vars" / "stale.yml").exists()
    assert (dest / "hosts.yml").read_text() == lab_inventory.read_text()


VERIFY_DRIFT = """\
lab-rig-1: 18 passed, 1 failed, 36 skipped
lab-rig-2: 19 passed, 0 failed, 36 skipped

FAIL lab-rig-1 test_power_limit_applied: every GPU at its planned power limit
  expected: all at target
  found:    GPU 1 (0000:21:00.0): 300.0 W, want 270 W (rig_power_limit_w)
  fix:      run `rigctl provision host HOST` (role gpu_tuning)
"""


def test_drift_caught_needs_the_gpu_and_the_fix():
    assert demo.drift_caught(VERIFY_DRIFT)
    assert demo.drift_caught(VERIFY_DRIFT.replace("(0000:21:00.0)", "(00000000:21:00.0)"))
    assert not demo.drift_caught(VERIFY_DRIFT.replace("GPU 1 (0000:21", "GPU 2 (0000:41"))
    assert not demo.drift_caught(VERIFY_DRIFT.replace("FAIL lab-rig-1", "FAIL lab-rig-2"))
    assert not demo.drift_caught(VERIFY_DRIFT.replace("  fix:", "  hint:"))
    assert not demo.drift_caught("FAIL lab-rig-1 test_persistenced_enabled: nvidia-persistenced ...\n")


def test_changed_tasks_from_the_plain_summary():
    text = (
        "provision lab-rig-1, lab-rig-2\n"
        "host   result  ok  changed\n"
        "changed: lab-rig-1: Set the GPU power limits, clock locks and compute modes that differ\n"
        "    --- before\n"
        "warning: lab-rig-2: something\n"
    )
    assert demo.changed_tasks(text) == [
        ("lab-rig-1", "Set the GPU power limits, clock locks and compute modes that differ")
    ]


def test_fmt_duration():
    assert demo.fmt_duration(9.4) == "9s"
    assert demo.fmt_duration(65) == "1m05s"
    assert demo.fmt_duration(600) == "10m00s"


def test_demo_runs_the_labs_default_release_and_its_driver():
    """The demo says what the lab rigs really are: the release it asks for, and the driver
    version Debian non-free has there, which the Molecule scenario of that release builds
    for real (so the demo's DKMS build is the one CI proves). Debian 12, not the lab's
    default Debian 13, whose stock 550.163.01-2 does not build on its current kernel."""
    import yaml

    from rigctl.lab import model

    root = Path(__file__).resolve().parents[2]
    assert demo.RELEASE in model.RELEASES and demo.RELEASE_NAME == "Debian 12"
    scenario = yaml.safe_load((root / "molecule/nvidia_driver_open/molecule.yml").read_text())
    rigs = scenario["provisioner"]["inventory"]["group_vars"]["rigs"]
    assert rigs["rig_driver_source"] == "debian" and rigs["rig_driver_version"] == demo.DRIVER_VERSION
    create = (root / "molecule/nvidia_driver_open/create.yml").read_text()
    assert f"--release, {demo.RELEASE}" in create

