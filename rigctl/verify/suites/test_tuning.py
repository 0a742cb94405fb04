"""GPU tuning: persistence through nvidia-persistenced, power limits now and at boot.

On a lab rig these read the simulated GPU layer: a passed power-limit check there means
"the role set the simulated limit and the boot unit re-applies it" (the results table marks
the rig simulated); nvidia-persistenced there is the lab's stand-in unit.
"""

import json

import pytest

from rigctl.core import gpufacts
from rigctl.verify.checks import expect

_GPU_FACTS: dict = {}


@pytest.fixture
def gpu_facts(host, rig_vars):
    """gpu_facts module output with the inventory's power-limit plan, once per host."""
    name = host.backend.get_hostname()
    if name not in _GPU_FACTS:
        args = {"plan": True, "power_limit_overrides": rig_vars.get("rig_power_limit_overrides") or {}}
        if rig_vars.get("rig_power_limit_w") is not None:
            args["power_limit_w"] = rig_vars["rig_power_limit_w"]
        result = host.ansible("gpu_facts", json.dumps(args), become=True, check=False)
        if result.get("failed") or "ansible_facts" not in result:
            pytest.fail(f"gpu_facts failed on {name}: {result.get('msg') or result}")
        _GPU_FACTS[name] = result["ansible_facts"]
    facts = _GPU_FACTS[name]
    if not facts["rig_gpus"]["gpus"]:
        pytest.skip("no NVIDIA GPU on this rig: nothing to tune")
    return facts


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


def test_persistence_mode_on(rig_vars, gpu_facts):
    if not rig_vars["rig_persistence_mode"]:
        pytest.skip("rig_persistence_mode is false")
    off = [f"GPU {g['index']} ({g['bus_id']})" for g in gpu_facts["rig_gpus"]["gpus"]
           if g["persistence"] is not True]
    expect(not off, "persistence mode on for every GPU (set by nvidia-persistenced)",
           expected="Enabled on all", found=f"not enabled: {', '.join(off)}",
           fix=f"systemctl restart {gpufacts.PERSISTENCED_UNIT}; check its journal")


def test_power_limit_applied(gpu_facts):
    plan = gpu_facts["rig_gpu_power_plan"]
    expect(not plan["errors"], "the inventory's power limits fit the cards",
           expected="no errors", found=plan["errors"], fix="fix rig_power_limit_w / overrides")
    wrong = [f"GPU {g['index']} ({g['bus_id']}): {g['current_w']} W, want {g['target_w']} W "
             f"({g['source']})" for g in plan["gpus"] if g["change"]]
    expect(not wrong, "every GPU at its planned power limit", expected="all at target",
           found="; ".join(wrong), fix="run `rigctl provision host HOST` (role gpu_tuning)")


def test_power_limit_unit_enabled(host, gpu_facts):
    plan = gpu_facts["rig_gpu_power_plan"]
    unit = gpu_facts["rig_gpus"]["power_unit"]  # systemctl show (testinfra raises on no unit)
    conf = host.file(gpufacts.POWER_CONF)
    if not plan["configured"]:
        expect(not conf.exists and not unit["present"],
               "no power limit configured: no boot unit (cards at their default limit)",
               expected="no boot unit", found=f"conf exists={conf.exists}, unit={unit}",
               fix="run `rigctl provision host HOST` (it removes the unit)")
        return
    listed = {}
    for line in conf.content_string.splitlines() if conf.exists else []:
        parts = line.split("#")[0].split()
        if len(parts) == 2:
            listed[parts[0]] = float(parts[1])
    want = {bus: float(w) for bus, w in plan["configured"].items()}
    expect(unit["enabled"] and listed == want,
           f"{gpufacts.POWER_UNIT} enabled and {gpufacts.POWER_CONF} lists every configured limit",
           expected=f"enabled, {want}", found=f"enabled={unit['enabled']}, {listed}",
           fix="run `rigctl provision host HOST` (role gpu_tuning)")


def test_power_limit_unit_ran_this_boot(host, gpu_facts):
    if not gpu_facts["rig_gpu_power_plan"]["configured"]:
        pytest.skip("no power limit configured")
    state = gpu_facts["rig_gpus"]["power_unit"]
    started = host.run(f"systemctl show -p ExecMainStartTimestampMonotonic --value {gpufacts.POWER_UNIT}")
    expect(state["active"] and state["result"] == "success",
           f"{gpufacts.POWER_UNIT} ran at this boot and succeeded",
           expected="active, result success",
           found=f"active={state['active']}, result={state['result']}, "
           f"started={started.stdout.strip()}",
           fix=f"journalctl -b -u {gpufacts.POWER_UNIT} (it runs after the next reboot)")
