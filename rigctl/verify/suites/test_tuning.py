"""GPU tuning: persistence through nvidia-persistenced; power limits, clock locks and
compute mode now and at boot.

On a lab rig these read the simulated GPU layer: a passed power-limit check there means
"the role set the simulated limit and the boot unit re-applies it" (the results table marks
the rig simulated); nvidia-persistenced there is the lab's stand-in unit. Locked clocks
cannot be read back through nvidia-smi on every driver: where the GPUs cannot say (real
drivers) the clock-lock check compares the inventory with what rigctl recorded it applied
since boot (/run/rigctl/gpu-clocks.json); on a lab rig it reads the simulator's own state.
Power limit, clocks and compute mode are compared by rigctl.core.gpufacts.plan_tuning (via
the gpu_facts module), the comparison provision converges: null is the card's default.
"""

import json

import pytest

from rigctl.core import gpufacts
from rigctl.verify.checks import attach, expect, reads_gpu, recorded_not_observed

_GPU_FACTS: dict = {}


@pytest.fixture
def gpu_facts(host, rig_vars):
    """gpu_facts module output with the inventory's power-limit and settings plans, once
    per host."""
    name = host.backend.get_hostname()
    if name not in _GPU_FACTS:
        args = {"plan": True, "power_limit_overrides": rig_vars.get("rig_power_limit_overrides") or {},
                "clock_lock_overrides": rig_vars.get("rig_gpu_clock_lock_overrides") or {}}
        if rig_vars.get("rig_power_limit_w") is not None:
            args["power_limit_w"] = rig_vars["rig_power_limit_w"]
        if rig_vars.get("rig_gpu_clock_lock_mhz") is not None:
            args["clock_lock_mhz"] = rig_vars["rig_gpu_clock_lock_mhz"]
        if rig_vars.get("rig_compute_mode") is not None:
            args["compute_mode"] = rig_vars["rig_compute_mode"]
        result = host.ansible("gpu_facts", json.dumps(args), become=True, check=False)
        if result.get("failed") or "ansible_facts" not in result:
            pytest.fail(f"gpu_facts failed on {name}: {result.get('msg') or result}")
        _GPU_FACTS[name] = result["ansible_facts"]
        attach("gpus", result["ansible_facts"]["rig_gpus"]["gpus"])  # for the report
    facts = _GPU_FACTS[name]
    if not facts["rig_gpus"]["gpus"]:
        pytest.skip("no NVIDIA GPU on this rig: nothing to tune")
    return facts


@reads_gpu
def test_persistenced_enabled(host, rig_vars, gpu_facts):
    unit = host.service(gpufacts.PERSISTENCED_UNIT)
    want = bool(rig_vars["rig_persistence_mode"])
    expect(
        unit.is_enabled == want and unit.is_running == want,
        f"{gpufacts.PERSISTENCED_UNIT} {'enabled and running' if want else 'off'} "
        "(rig_persistence_mode)",
        expected="enabled, active" if want else "disabled, inactive",
        found=f"enabled={unit.is_enabled}, running={unit.is_running}",
        fix="run `rigctl provision host HOST` (role gpu_tuning)",
    )


@reads_gpu
def test_persistence_mode_on(rig_vars, gpu_facts):
    if not rig_vars["rig_persistence_mode"]:
        pytest.skip("rig_persistence_mode is false")
    off = [f"GPU {g['index']} ({g['bus_id']})" for g in gpu_facts["rig_gpus"]["gpus"]
           if g["persistence"] is not True]
    expect(not off, "persistence mode on for every GPU (set by nvidia-persistenced)",
           expected="Enabled on all", found=f"not enabled: {', '.join(off)}",
           fix=f"systemctl restart {gpufacts.PERSISTENCED_UNIT}; check its journal")


@reads_gpu
def test_power_limit_applied(gpu_facts):
    plan = gpu_facts["rig_gpu_power_plan"]
    expect(not plan["errors"], "the inventory's power limits fit the cards",
           expected="no errors", found=plan["errors"], fix="fix rig_power_limit_w / overrides")
    wrong = [f"GPU {g['index']} ({g['bus_id']}): {g['current_w']} W, want {g['target_w']} W "
             f"({g['source']})" for g in plan["gpus"] if g["change"]]
    expect(not wrong, "every GPU at its planned power limit", expected="all at target",
           found="; ".join(wrong), fix="run `rigctl provision host HOST` (role gpu_tuning)")


def _boot_conf(host):
    """Whether the boot unit's file exists and what it lists (gpufacts.parse_settings_conf:
    power, clocks, compute, unreadable lines)."""
    conf = host.file(gpufacts.SETTINGS_CONF)
    return conf.exists, gpufacts.parse_settings_conf(conf.content_string if conf.exists else "")


def _boot_settings(gpu_facts):
    return bool(gpu_facts["rig_gpu_power_plan"]["configured"]
                or gpu_facts["rig_gpu_settings_plan"]["configured"])


def test_power_limit_unit_enabled(host, gpu_facts):
    plan = gpu_facts["rig_gpu_power_plan"]
    settings = gpu_facts["rig_gpu_settings_plan"]
    unit = gpu_facts["rig_gpus"]["settings_unit"]  # systemctl show (testinfra raises on no unit)
    exists, read = _boot_conf(host)
    power, clocks, compute = read["power"], read["clocks"], read["compute"]
    if not _boot_settings(gpu_facts):
        expect(not exists and not unit["present"],
               "no power limit, clock lock or compute mode configured: no boot unit (cards at "
               "their defaults)",
               expected="no boot unit", found=f"conf exists={exists}, unit={unit}",
               fix="run `rigctl provision host HOST` (it removes the unit)")
        return
    want = {bus: float(w) for bus, w in plan["configured"].items()}
    want_clocks = {bus: c["clocks"] for bus, c in settings["configured"].items() if "clocks" in c}
    want_compute = {bus: c["compute"] for bus, c in settings["configured"].items() if "compute" in c}
    expect(unit["enabled"] and (power, clocks, compute) == (want, want_clocks, want_compute)
           and not read["unreadable"],
           f"{gpufacts.SETTINGS_UNIT} enabled and {gpufacts.SETTINGS_CONF} lists every configured "
           "power limit, clock lock and compute mode",
           expected=f"enabled, {want}, clocks {want_clocks}, compute {want_compute}",
           found=f"enabled={unit['enabled']}, {power}, clocks {clocks}, compute {compute}"
           + (f", unreadable lines {read['unreadable']}" if read["unreadable"] else ""),
           fix="run `rigctl provision host HOST` (role gpu_tuning)")


def _drift(gpu_facts, what):
    """The GPUs whose live `what` (power, clocks, compute) differs from the desired state:
    gpufacts.plan_tuning, the same comparison provision converges."""
    return [d for d in gpu_facts.get("rig_gpu_tuning_drift") or [] if d["what"] == what]


def _per_gpu(items, key):
    return "; ".join(f"GPU {d['index']} ({d['bus_id']}): {d[key]}"
                     + (f" ({d['source']})" if key == "expected" else "") for d in items)


@reads_gpu
def test_clock_lock_applied(rig_vars, gpu_facts):
    settings = gpu_facts["rig_gpu_settings_plan"]
    configured = rig_vars.get("rig_gpu_clock_lock_mhz") is not None or bool(
        rig_vars.get("rig_gpu_clock_lock_overrides"))
    live = all(g["clocks_current_source"] == "gpu" for g in settings["gpus"])
    if not configured and not live:
        pytest.skip("no clock lock configured (rig_gpu_clock_lock_mhz), and this driver cannot "
                    "read locked clocks back: a lock set by hand cannot be seen")
    expect(not settings["errors"], "the inventory's clock locks fit the cards",
           expected="no errors", found=settings["errors"],
           fix="fix rig_gpu_clock_lock_mhz / rig_gpu_clock_lock_overrides")
    drift = _drift(gpu_facts, "clocks")
    read = ("read from the GPUs" if live
            else f"compared with what rigctl locked since boot, {gpufacts.CLOCKS_RECORD}")
    expect(not drift,
           "every GPU's core clocks locked as planned, unlocked where no lock is configured "
           f"(nvidia-smi -lgc / -rgc; {read})",
           expected=_per_gpu(drift, "expected"), found=_per_gpu(drift, "found"),
           fix="run `rigctl provision host HOST` (role gpu_tuning sets them again); after a "
           f"reboot: journalctl -b -u {gpufacts.SETTINGS_UNIT}")
    if not live:
        # Agreeing with rigctl's own record is not the GPU saying so: never a pass.
        unread = [g for g in settings["gpus"] if g["clocks_current_source"] != "gpu"]
        recorded_not_observed(
            f"clock locks of {len(unread)} GPU(s) agree with what rigctl applied since boot "
            f"({gpufacts.CLOCKS_RECORD}); this driver cannot read locked clocks back")


@reads_gpu
def test_compute_mode_applied(rig_vars, gpu_facts):
    settings = gpu_facts["rig_gpu_settings_plan"]
    want = rig_vars.get("rig_compute_mode") or "default"
    unreadable = [g for g in settings["gpus"] if g["compute_current"] is None]
    if unreadable and want == "default":
        pytest.skip("compute mode not readable (no NVIDIA driver answers nvidia-smi)")
    drift = _drift(gpu_facts, "compute") + [
        {"index": g["index"], "bus_id": g["bus_id"], "expected": want, "found": "unreadable",
         "source": g["compute_source"]} for g in unreadable]
    expect(not drift,
           f"every GPU in the compute mode {want} (rig_compute_mode; null is the card's "
           "default; nvidia-smi --query-gpu=compute_mode)",
           expected=_per_gpu(drift, "expected"), found=_per_gpu(drift, "found"),
           fix="run `rigctl provision host HOST` (role gpu_tuning sets it again); after a "
           f"reboot: journalctl -b -u {gpufacts.SETTINGS_UNIT}")


@reads_gpu
def test_power_limit_unit_ran_this_boot(host, gpu_facts):
    if not _boot_settings(gpu_facts):
        pytest.skip("no power limit, clock lock or compute mode configured")
    state = gpu_facts["rig_gpus"]["settings_unit"]
    started = host.run(f"systemctl show -p ExecMainStartTimestampMonotonic --value {gpufacts.SETTINGS_UNIT}")
    expect(state["active"] and state["result"] == "success",
           f"{gpufacts.SETTINGS_UNIT} ran at this boot and succeeded",
           expected="active, result success",
           found=f"active={state['active']}, result={state['result']}, "
           f"started={started.stdout.strip()}",
           fix=f"run `rigctl provision host HOST` (it starts the unit); if it fails: "
           f"journalctl -b -u {gpufacts.SETTINGS_UNIT}")
