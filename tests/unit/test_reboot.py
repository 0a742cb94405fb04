"""The pending-reboot mark (rigctl.core.reboot): boots, reasons, clearing, old marks."""

from __future__ import annotations

import json
import os

import pytest

from rigctl.core import reboot


def _boot(root, boot_id="b1", start=100, btime=1_700_000_000):
    (root / "proc/sys/kernel/random").mkdir(parents=True, exist_ok=True)
    (root / "proc/sys/kernel/random/boot_id").write_text(boot_id + "\n")
    fields = ["S"] + ["0"] * 18 + [str(start)] + ["0"] * 10
    (root / "proc/1").mkdir(parents=True, exist_ok=True)
    (root / "proc/1/stat").write_text("1 (systemd two) " + " ".join(fields) + "\n")
    (root / "proc/stat").write_text(f"cpu 1 2 3\nbtime {btime}\n")


@pytest.fixture
def root(tmp_path):
    _boot(tmp_path)
    return tmp_path


def _mark(root):
    return root / reboot.MARK.lstrip("/")


def test_boot_token_is_boot_id_and_pid1_start(root):
    assert reboot.boot_token(str(root)) == "b1/100"
    _boot(root, start=250)  # a container restart: same kernel boot id, new PID 1
    assert reboot.boot_token(str(root)) == "b1/250"


def test_pid1_start_field_after_a_comm_with_spaces_and_parens(tmp_path):
    _boot(tmp_path, start=4242)
    (tmp_path / "proc/1/stat").write_text(
        (tmp_path / "proc/1/stat").read_text().replace("(systemd two)", "(a (b) c)")
    )
    assert reboot.boot_token(str(tmp_path)) == "b1/4242"


def test_boot_token_matches_the_reboot_modules_boot_time_command():
    # BOOT_TIME_COMMAND prints the same two values (cut -f22 counts from the pid)
    assert "boot_id" in reboot.BOOT_TIME_COMMAND and "-f22 /proc/1/stat" in reboot.BOOT_TIME_COMMAND


def test_no_mark_no_reboot(root):
    got = reboot.status(str(root))
    assert got == {"required": False, "reasons": [], "since": None, "mark": reboot.MARK,
                   "cleared_by_reboot": False}


def test_present_records_the_boot_and_is_idempotent(root):
    changed, status = reboot.update("present", "iommu", "kernel command line: x", root=str(root))
    assert changed and status["required"] and status["reasons"] == ["kernel command line: x"]
    data = json.loads(_mark(root).read_text())
    assert data["boot"] == "b1/100" and data["schema"] == 1
    assert data["reasons"] == {"iommu": "kernel command line: x"}
    assert oct(os.stat(_mark(root)).st_mode & 0o777) == "0o644"
    assert reboot.update("present", "iommu", "kernel command line: x", root=str(root))[0] is False
    # another reason joins, the first stays; since stays the first one's
    changed, status = reboot.update("present", "driver", "nvidia 535", root=str(root))
    assert changed and status["reasons"] == ["nvidia 535", "kernel command line: x"]
    assert status["since"] == data["since"]
    assert reboot.status(str(root))["required"] is True


def test_a_reboot_clears_the_mark(root):
    reboot.update("present", "iommu", "kernel command line: x", root=str(root))
    _boot(root, start=999)  # rebooted (or a lab rig's container restarted)
    got = reboot.status(str(root))
    assert got["required"] is False and got["reasons"] == [] and got["cleared_by_reboot"] is True
    # the next writer removes the old mark first
    assert reboot.update("current", root=str(root)) == (True, reboot.describe(None, True))
    assert not _mark(root).exists()
    assert reboot.update("current", root=str(root))[0] is False


def test_new_reason_after_a_reboot_starts_a_new_mark(root):
    reboot.update("present", "iommu", "old", root=str(root))
    _boot(root, boot_id="b2", start=5)
    changed, status = reboot.update("present", "iommu", "new", root=str(root))
    assert changed and status["reasons"] == ["new"]
    assert json.loads(_mark(root).read_text())["boot"] == "b2/5"


def test_check_mode_writes_nothing(root):
    changed, status = reboot.update("present", "iommu", "x", root=str(root), check_mode=True)
    assert changed and status["required"] and not _mark(root).exists()


def test_absent_removes_the_mark(root):
    reboot.update("present", "iommu", "x", root=str(root))
    assert reboot.update("absent", root=str(root))[0] is True
    assert not _mark(root).exists()
    assert reboot.update("absent", root=str(root))[0] is False


def test_present_needs_key_and_reason(root):
    with pytest.raises(ValueError):
        reboot.update("present", "iommu", "", root=str(root))


def test_old_plain_text_mark_pending_until_pid1_restarts(root):
    _mark(root).parent.mkdir(parents=True)
    _mark(root).write_text("kernel command line: iommu=pt (rig_iommu_policy: passthrough)\n")
    # PID 1 started at btime + 100 ticks; written after that: pending
    started = 1_700_000_000 + 100 / os.sysconf("SC_CLK_TCK")
    os.utime(_mark(root), (started + 60, started + 60))
    got = reboot.status(str(root))
    assert got["required"]
    assert got["reasons"] == ["kernel command line: iommu=pt (rig_iommu_policy: passthrough)"]
    # written before PID 1 started: a reboot came after it
    os.utime(_mark(root), (started - 60, started - 60))
    assert reboot.status(str(root))["cleared_by_reboot"] is True
    assert reboot.update("current", root=str(root))[0] is True and not _mark(root).exists()


def test_unreadable_boot_keeps_asking(tmp_path):
    mark = tmp_path / reboot.MARK.lstrip("/")
    mark.parent.mkdir(parents=True)
    mark.write_text("something\n")
    assert reboot.status(str(tmp_path))["required"] is True


def test_facts_table_row():
    from rigctl.cli.facts_cmd import fmt_reboot

    assert fmt_reboot(None) == "unknown"
    assert fmt_reboot(reboot.describe(None, True)) == "not needed"
    mark = {"since": "2026-12-01T00:00:00Z", "reasons": {"iommu": "kernel command line: x"}, "boot": "b"}
    assert fmt_reboot(reboot.describe(mark, True)) == (
        "NEEDED (since 2026-12-01T00:00:00Z): kernel command line: x"
    )


def test_run_result_lists_rigs_to_reboot_last_mark_wins(tmp_path):
    from rigctl.runner import RunResult

    result = RunResult(playbook="provision.yml", status="successful", rc=0, artifacts=tmp_path)
    pending = {"required": True, "reasons": ["kernel command line: x"]}
    result.host_facts = {
        "a": {"rig_host": {"reboot": pending}},
        "b": {"rig_host": {"reboot": pending}, "rig_reboot": {"required": False, "reasons": []}},
        "c": {"rig_host": {"reboot": {"required": False}}, "rig_reboot": pending},
        "d": {"rig_host": {}},
    }
    assert result.reboots() == {"a": ["kernel command line: x"], "c": ["kernel command line: x"]}
    assert result.as_dict()["reboot_required"] == result.reboots()


def test_provision_summary_prints_a_line_per_rig_to_reboot(tmp_path, capsys):
    from rigctl.progress import print_summary
    from rigctl.runner import RunResult

    result = RunResult(playbook="provision.yml", status="successful", rc=0, artifacts=tmp_path)
    result.host_facts = {"rig-b": {"rig_reboot": {"required": True, "reasons": ["r1", "r2"]}},
                         "rig-a": {"rig_host": {"reboot": {"required": False, "reasons": []}}}}
    print_summary(result, "provision")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("reboot")]
    assert lines == ["reboot needed: rig-b: r1; r2"]
