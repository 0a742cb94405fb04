"""Progress lines while a playbook runs: one line per meaningful step per rig, Ansible's
plumbing dropped, and a long step (a DKMS build) shown still running with its time.

The events are shaped like ansible-runner's (`task`, `role`, `task_action` in event_data),
fed in the order a two-rig provision run produces them, with a clock the test moves.
"""

from __future__ import annotations

import io

from rich.console import Console

from rigctl.progress import LONG_STEP_S, TICK_EVERY_S, LiveProgress, PlainProgress, StepTracker, is_internal

HOSTS = ["lab-rig-1", "lab-rig-2"]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def data(role: str, action: str) -> dict:
    return {"role": role, "task_action": action}


ARGSPEC = "Validating arguments against arg spec 'main' - Install the NVIDIA driver with open kernel modules"


def run_task(tracker, task, role, action, results, clock=None, took=0.0):
    """One task: its start, then each host's result; returns the lines."""
    d = data(role, action)
    lines = tracker.task_started(task, d)
    if clock:
        clock.advance(took)
    for host, status in results.items():
        lines += tracker.host_event(host, task, status, d)
    return lines


def test_internal_tasks_are_recognised():
    assert is_internal(ARGSPEC, data("nvidia_driver", "ansible.builtin.validate_argument_spec"))
    assert is_internal(ARGSPEC, {})  # by its name, also without the action
    for action in ("ansible.builtin.include_tasks", "include_role", "ansible.builtin.set_fact"):
        assert is_internal("Check the hardware", data("rig_hw_checks", action))
    assert not is_internal("Gather rig facts", data("rig_facts", "rig_facts"))
    assert not is_internal("Report the hardware checks", data("rig_hw_checks", "ansible.builtin.debug"))


def test_one_line_per_meaningful_step_per_rig():
    clock = Clock()
    t = StepTracker(HOSTS, clock=clock)
    both = dict.fromkeys(HOSTS, "ok")
    lines = []
    lines += run_task(t, ARGSPEC, "rig_facts", "ansible.builtin.validate_argument_spec", both)
    lines += run_task(t, "Gather rig facts", "rig_facts", "rig_facts", both)
    # An include and then its task of the same name (gpu_tuning does this): shown once.
    plan = "Read the GPUs and plan their power limits"
    lines += run_task(t, plan, "gpu_tuning", "ansible.builtin.include_tasks", both)
    lines += run_task(t, plan, "gpu_tuning", "gpu_facts", both)
    lines += run_task(t, "Blacklist nouveau", "nvidia_driver", "ansible.builtin.include_tasks", both)
    lines += run_task(t, "Work out packages", "nvidia_driver", "ansible.builtin.set_fact", both)
    lines += run_task(
        t,
        "Set the GPU power limits that differ",
        "gpu_tuning",
        "gpu_settings",
        {"lab-rig-1": "changed", "lab-rig-2": "ok"},
    )
    lines += run_task(
        t,
        "Stop when a preflight check fails",
        "rig_preflight",
        "ansible.builtin.fail",
        dict.fromkeys(HOSTS, "skipped"),
    )
    assert lines == [
        "lab-rig-1: ok: rig_facts / Gather rig facts",
        "lab-rig-2: ok: rig_facts / Gather rig facts",
        f"lab-rig-1: ok: gpu_tuning / {plan}",
        f"lab-rig-2: ok: gpu_tuning / {plan}",
        "lab-rig-1: changed: gpu_tuning / Set the GPU power limits that differ",
        "lab-rig-2: ok: gpu_tuning / Set the GPU power limits that differ",
    ]
    assert not any("Validating arguments" in line for line in lines)


def test_repeated_results_of_one_step_give_one_line_unless_worse():
    t = StepTracker(HOSTS, clock=Clock())
    d = data("nvidia_driver", "ansible.builtin.apt")
    t.task_started("Install the driver packages", d)
    # A loop's item failure, then the task's own failure: one line.
    lines = t.host_event("lab-rig-1", "Install the driver packages", "failed", d)
    lines += t.host_event("lab-rig-1", "Install the driver packages", "failed", d)
    assert lines == ["lab-rig-1: failed: nvidia_driver / Install the driver packages"]


def test_failures_are_shown_even_for_internal_tasks():
    t = StepTracker(HOSTS, clock=Clock())
    lines = run_task(
        t, ARGSPEC, "nvidia_driver", "ansible.builtin.validate_argument_spec", {"lab-rig-2": "failed"}
    )
    lines += run_task(t, "Check the host", "rig_preflight", "include_tasks", {"lab-rig-1": "unreachable"})
    assert lines == [
        f"lab-rig-2: failed: nvidia_driver / {ARGSPEC}",
        "lab-rig-1: unreachable: rig_preflight / Check the host",
    ]


def test_verbose_shows_everything():
    t = StepTracker(HOSTS, verbose=1, clock=Clock())
    lines = run_task(t, ARGSPEC, "cuda", "validate_argument_spec", {"lab-rig-1": "ok"})
    lines += run_task(t, "Install the toolkit", "cuda", "ansible.builtin.apt", {"lab-rig-1": "skipped"})
    assert lines == [
        f"TASK cuda / {ARGSPEC}",
        f"lab-rig-1: ok: cuda / {ARGSPEC}",
        "TASK cuda / Install the toolkit",
        "lab-rig-1: skipped: cuda / Install the toolkit",
    ]


def test_long_step_reports_still_running_per_rig_then_its_time():
    clock = Clock()
    t = StepTracker(HOSTS, clock=clock)
    build = "Install the stock open kernel modules (DKMS build)"
    d = data("nvidia_driver", "ansible.builtin.apt")
    assert t.task_started(build, d) == []
    clock.advance(LONG_STEP_S - 1)
    assert t.ticks() == []
    clock.advance(1)
    assert t.ticks() == [
        f"lab-rig-1: still running 15s: nvidia_driver / {build}",
        f"lab-rig-2: still running 15s: nvidia_driver / {build}",
    ]
    assert t.ticks() == []  # not again until TICK_EVERY_S later
    clock.advance(TICK_EVERY_S)
    assert [line.split(": ")[1] for line in t.ticks()] == ["still running 45s"] * 2
    # rig 2 finishes first; only rig 1 is still running after that.
    clock.advance(60)
    assert t.host_event("lab-rig-2", build, "changed", d) == [
        f"lab-rig-2: changed: nvidia_driver / {build} (1m45s)"
    ]
    assert t.ticks() == [f"lab-rig-1: still running 1m45s: nvidia_driver / {build}"]
    assert t.elapsed("lab-rig-1") == 105 and t.elapsed("lab-rig-2") is None
    clock.advance(150)
    assert t.host_event("lab-rig-1", build, "changed", d) == [
        f"lab-rig-1: changed: nvidia_driver / {build} (4m15s)"
    ]
    assert t.ticks() == []


def test_internal_task_never_ticks():
    clock = Clock()
    t = StepTracker(HOSTS, clock=clock)
    t.task_started("Check the hardware", data("rig_hw_checks", "include_tasks"))
    clock.advance(600)
    assert t.ticks() == []


def test_failed_rig_stays_failed_and_stops_running():
    clock = Clock()
    t = StepTracker(HOSTS, clock=clock)
    run_task(t, "Gather rig facts", "rig_facts", "rig_facts", {"lab-rig-1": "failed", "lab-rig-2": "ok"})
    t.task_started("Build", data("nvidia_driver", "command"))
    clock.advance(100)
    assert [line.split(":")[0] for line in t.ticks()] == ["lab-rig-2"]
    assert t.rows["lab-rig-1"].status == "failed" and t.rows["lab-rig-1"].failed == 1


def test_plain_progress_prefixes_time_and_ticks():
    clock = Clock()
    out = io.StringIO()
    p = PlainProgress(HOSTS, stream=out, clock=clock)
    d = data("nvidia_driver", "ansible.builtin.apt")
    p.task_started(ARGSPEC, data("nvidia_driver", "validate_argument_spec"))
    p.host_event("lab-rig-1", ARGSPEC, "ok", data("nvidia_driver", "validate_argument_spec"))
    p.task_started("Build the modules", d)
    clock.advance(20)
    p.tick()
    clock.advance(5)
    p.host_event("lab-rig-1", "Build the modules", "changed", d)
    assert out.getvalue().splitlines() == [
        "[  20.0s] lab-rig-1: still running 20s: nvidia_driver / Build the modules",
        "[  20.0s] lab-rig-2: still running 20s: nvidia_driver / Build the modules",
        "[  25.0s] lab-rig-1: changed: nvidia_driver / Build the modules (25s)",
    ]


def test_plain_progress_context_runs_and_stops_its_ticker():
    out = io.StringIO()
    with PlainProgress(HOSTS, stream=out) as p:
        p.task_started("Gather rig facts", data("rig_facts", "rig_facts"))
        p.host_event("lab-rig-1", "Gather rig facts", "ok", data("rig_facts", "rig_facts"))
    assert p._thread is not None and not p._thread.is_alive()
    assert out.getvalue().endswith("lab-rig-1: ok: rig_facts / Gather rig facts\n")


def test_live_table_shows_step_and_its_elapsed_time():
    live = LiveProgress(HOSTS)
    clock = Clock()
    live.tracker.clock = clock
    d = data("nvidia_driver", "ansible.builtin.apt")
    live.task_started(ARGSPEC, data("nvidia_driver", "validate_argument_spec"))
    live.task_started("Build the modules", d)
    clock.advance(75)
    live.host_event("lab-rig-2", "Build the modules", "changed", d)
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(live._render())
    text = console.file.getvalue()
    rig1 = next(line for line in text.splitlines() if "lab-rig-1" in line)
    rig2 = next(line for line in text.splitlines() if "lab-rig-2" in line)
    assert "running" in rig1 and "nvidia_driver / Build the modules" in rig1 and "1m15s" in rig1
    assert "changed" in rig2 and "1m15s" not in rig2
    assert "Validating" not in text
