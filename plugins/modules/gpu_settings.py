#!/usr/bin/python
"""Ansible module: set GPU power limits, clock locks and compute mode idempotently
(rigctl.core.gpufacts plans), in one round trip."""

from __future__ import annotations

DOCUMENTATION = r"""
module: gpu_settings
short_description: Set NVIDIA GPU power limits, clock locks and compute mode, only where they differ
description:
  - Reads every GPU's current, default, min and max power limit, maximum SM clock and
    compute mode; validates every target against the card's own range before anything is
    set (an out-of-range value fails naming the GPU, its range and the inventory key, and
    nothing changes); then runs C(nvidia-smi -i BUS -pl W), C(-lgc MIN,MAX) / C(-rgc) and
    C(-c 0|2|3) only for GPUs whose setting differs.
  - GPUs without a configured limit are put back to their default limit; without a
    configured clock lock they are unlocked (C(-rgc)) when rigctl locked them; without
    O(compute_mode) they are put back to the C(Default) compute mode.
  - The comparison is rigctl.core.gpufacts.plan_tuning on the live GPU state, the same
    function the verification suites use (through gpu_facts), so provision converges
    exactly what verify checks. Null means the card's default for every setting.
  - Locked clocks are read from the GPU where the GPU layer can say (lab rigs). Real
    drivers cannot read them back through nvidia-smi's query fields everywhere; there the
    module compares with what it locked since boot (C(/run/rigctl/gpu-clocks.json), tmpfs;
    the boot script writes it too) and asserts every configured lock again on each run
    (C(nvidia-smi -lgc) with the same values changes nothing on a GPU that has them), so a
    lock reset by hand is repaired; those are returned in RV(reasserted), not as changes.
  - With O(boot_unit), starts C(rigctl-gpu-settings.service) when it has not run at this
    boot (it applies the configured settings; the module then sets only what it left),
    so provision leaves the unit run and nothing is applied twice.
  - Supports check mode and diff mode (per GPU the power limit, clocks and compute mode
    before and after; the boot unit when it would be started). C(changed) is the same in
    check mode as in a real run.
  - Does not survive a reboot by itself; the gpu_tuning role's boot unit re-applies.
options:
  power_limit_w: {description: rig_power_limit_w (every GPU), type: int, required: false}
  power_limit_overrides:
    description: "rig_power_limit_overrides: selector (index, bus id, UUID) -> watts"
    type: dict
    default: {}
  clock_lock_mhz: {description: "rig_gpu_clock_lock_mhz ({min, max}, every GPU)", type: dict, required: false}
  clock_lock_overrides:
    description: "rig_gpu_clock_lock_overrides: selector -> {min, max}"
    type: dict
    default: {}
  compute_mode:
    description: rig_compute_mode (null is default)
    type: str
    required: false
    choices: [default, exclusive_process, prohibited]
  boot_unit:
    description: Start rigctl-gpu-settings.service (written and enabled) when it has not run at this boot.
    type: bool
    default: false
"""

RETURN = r"""
gpus:
  description: per GPU the power plan entry (target_w, source, current_w, change)
  returned: always
  type: list
settings:
  description: per GPU the settings plan entry (clocks_target, clocks_change, compute_target, compute_change)
  returned: always
  type: list
changes:
  description: "per change: index, bus_id, what (power, clocks, compute), from, to, source"
  returned: always
  type: list
configured: {description: "bus id -> watts of the GPUs with a configured limit", returned: always, type: dict}
unit_started: {description: the boot unit was (check mode - would be) started, returned: always, type: bool}
reasserted:
  description: "configured clock locks asserted again because the driver cannot read them back"
  returned: always
  type: list
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.rigctl.core import gpudb, gpufacts, gpulayer, hostfacts


def _plan(module, facts):
    p = module.params
    return gpufacts.plan_tuning(facts["gpus"], p["power_limit_w"], p["power_limit_overrides"],
                                p["clock_lock_mhz"], p["clock_lock_overrides"], p["compute_mode"])


def _changes(plan):
    out = []
    for gpu in plan["power"]["gpus"]:
        if gpu["change"]:
            out.append({"index": gpu["index"], "bus_id": gpu["bus_id"], "what": "power",
                        "from": gpu["current_w"], "to": gpu["target_w"], "source": gpu["source"]})
    for gpu in plan["settings"]["gpus"]:
        if gpu["clocks_change"]:
            out.append({"index": gpu["index"], "bus_id": gpu["bus_id"], "what": "clocks",
                        "from": gpu["clocks_current"], "to": gpu["clocks_target"],
                        "source": gpu["clocks_source"]})
        if gpu["compute_change"]:
            out.append({"index": gpu["index"], "bus_id": gpu["bus_id"], "what": "compute",
                        "from": gpu["compute_current"], "to": gpu["compute_target"],
                        "source": gpu["compute_source"]})
    return out


def main():
    spec = gpufacts.settings_argument_spec()
    spec["boot_unit"] = {"type": "bool", "default": False}
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    facts = gpufacts.gather(lspci=False)
    plan = _plan(module, facts)
    if plan["errors"]:
        # Plan first: nothing is set when any GPU's value is refused.
        module.fail_json(msg="; ".join(plan["errors"]), errors=plan["errors"],
                         gpus=plan["power"]["gpus"], settings=plan["settings"]["gpus"],
                         changes=[], changed=False)
    unit = facts["settings_unit"]
    # The boot unit applies the configured settings; start it when it has not run at this
    # boot (first provision, a failed or stopped run), so that it is not applied twice.
    start_unit = bool(module.params["boot_unit"] and unit["present"] and not unit["active"])
    changes = _changes(plan)
    result = {
        "changed": bool(changes) or start_unit,
        "changes": changes,
        "unit_started": start_unit,
        "gpus": plan["power"]["gpus"],
        "settings": plan["settings"]["gpus"],
        "configured": plan["power"]["configured"],
        "diff": gpufacts.tuning_diff(plan, gpufacts.SETTINGS_UNIT, start_unit),
    }
    # Where the driver cannot read locked clocks back, a lock reset by hand cannot be seen:
    # configured locks are asserted again on every run (nvidia-smi -lgc with the same
    # values changes nothing on a GPU that has them) and listed, not counted as changes.
    reassert = [g for g in plan["settings"]["gpus"] if g["clocks_target"]
                and not g["clocks_change"] and g["clocks_current_source"] != "gpu"]
    result["reasserted"] = [{"index": g["index"], "bus_id": g["bus_id"], "what": "clocks",
                             "to": g["clocks_target"]} for g in reassert]
    if module.check_mode or not (result["changed"] or reassert):
        module.exit_json(**result)

    if start_unit:
        rc, out, err = hostfacts.run(["systemctl", "start", gpufacts.SETTINGS_UNIT])
        if rc != 0:
            module.fail_json(
                msg="%s failed: %s; see journalctl -b -u %s"
                % (gpufacts.SETTINGS_UNIT, (out + err).strip() or "rc=%d" % rc, gpufacts.SETTINGS_UNIT),
                changes=changes, changed=True)
        # What the unit did not set (GPUs back at their defaults) is set below.
        facts = gpufacts.gather(lspci=False)
        remaining = _plan(module, facts)
    else:
        remaining = plan
    smi = gpulayer.layer()["nvidia_smi"]
    record = gpufacts.read_clock_record()

    def run(gpu, args, what):
        rc, out, err = hostfacts.run([smi, "-i", gpu["bus_id"]] + args)
        if rc != 0:
            if what == "clocks":
                gpufacts.write_clock_record(record)
            module.fail_json(
                msg=f"GPU {gpu['index']} ({gpu['bus_id']}): nvidia-smi {' '.join(args)} "
                f"failed: {(out + err).strip()}",
                changes=changes, changed=True,
            )

    for gpu in remaining["power"]["gpus"]:
        if gpu["change"]:
            run(gpu, ["-pl", str(gpu["target_w"])], "power")
    clocks_changed = False
    if not start_unit:
        for gpu in reassert:
            run(gpu, ["-lgc", "%d,%d" % tuple(gpu["clocks_target"])], "clocks")
    for gpu in remaining["settings"]["gpus"]:
        if gpu["clocks_change"] == "lock":
            low, high = gpu["clocks_target"]
            run(gpu, ["-lgc", f"{low},{high}"], "clocks")
            record[gpu["bus_id"]] = [low, high]
            clocks_changed = True
        elif gpu["clocks_change"] == "reset":
            run(gpu, ["-rgc"], "clocks")
            record.pop(gpu["bus_id"], None)
            clocks_changed = True
        if gpu["compute_change"]:
            number = gpudb.COMPUTE_MODES[gpu["compute_target"]][0]
            run(gpu, ["-c", str(number)], "compute")
    if clocks_changed:
        gpufacts.write_clock_record(record)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
