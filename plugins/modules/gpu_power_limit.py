#!/usr/bin/python
"""Ansible module: set GPU power limits, clock locks and compute mode idempotently
(rigctl.core.gpufacts plans), in one round trip."""

from __future__ import annotations

DOCUMENTATION = r"""
module: gpu_power_limit
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
  - Locked clocks cannot be read back through nvidia-smi's query fields on every driver.
    The module therefore records what it locked since boot in C(/run/rigctl/gpu-clocks.json)
    (tmpfs, gone at reboot like the locks; the boot script writes it too) and compares the
    plan against that record. A lock set by hand with C(nvidia-smi -lgc) is not seen; a
    GPU with a configured lock but no record is locked again.
  - Supports check mode (reports what would change). Returns per GPU what changed.
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
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.rigctl.core import constants, gpufacts, hostfacts


def main():
    module = AnsibleModule(
        argument_spec=gpufacts.settings_argument_spec(),
        supports_check_mode=True,
    )
    params = module.params
    facts = gpufacts.gather(lspci=False)
    plan = gpufacts.plan_power_limits(facts["gpus"], params["power_limit_w"],
                                      params["power_limit_overrides"])
    settings = gpufacts.plan_gpu_settings(facts["gpus"], params["clock_lock_mhz"],
                                          params["clock_lock_overrides"], params["compute_mode"])
    errors = plan["errors"] + settings["errors"]
    if errors:
        # Plan first: nothing is set when any GPU's value is refused.
        module.fail_json(msg="; ".join(errors), errors=errors, gpus=plan["gpus"],
                         settings=settings["gpus"], changes=[], changed=False)
    smi = constants.SIMGPU_TOOL if facts["simulation"] else "nvidia-smi"
    changes = []
    record = gpufacts.read_clock_record()

    def run(gpu, args, what):
        if module.check_mode:
            return
        rc, out, err = hostfacts.run([smi, "-i", gpu["bus_id"]] + args)
        if rc != 0:
            if what == "clocks":
                gpufacts.write_clock_record(record)
            module.fail_json(
                msg=f"GPU {gpu['index']} ({gpu['bus_id']}): nvidia-smi {' '.join(args)} "
                f"failed: {(out + err).strip()}",
                changes=changes, changed=bool(changes),
            )

    for gpu in plan["gpus"]:
        if gpu["change"]:
            run(gpu, ["-pl", str(gpu["target_w"])], "power")
            changes.append({"index": gpu["index"], "bus_id": gpu["bus_id"], "what": "power",
                            "from": gpu["current_w"], "to": gpu["target_w"],
                            "source": gpu["source"]})
    clocks_changed = False
    for gpu in settings["gpus"]:
        if gpu["clocks_change"] == "lock":
            low, high = gpu["clocks_target"]
            run(gpu, ["-lgc", f"{low},{high}"], "clocks")
            record[gpu["bus_id"]] = [low, high]
            clocks_changed = True
            changes.append({"index": gpu["index"], "bus_id": gpu["bus_id"], "what": "clocks",
                            "from": gpu["clocks_current"], "to": gpu["clocks_target"],
                            "source": gpu["clocks_source"]})
        elif gpu["clocks_change"] == "reset":
            run(gpu, ["-rgc"], "clocks")
            record.pop(gpu["bus_id"], None)
            clocks_changed = True
            changes.append({"index": gpu["index"], "bus_id": gpu["bus_id"], "what": "clocks",
                            "from": gpu["clocks_current"], "to": None, "source": "default"})
        if gpu["compute_change"]:
            number = gpufacts.COMPUTE_MODES[gpu["compute_target"]][0]
            run(gpu, ["-c", str(number)], "compute")
            changes.append({"index": gpu["index"], "bus_id": gpu["bus_id"], "what": "compute",
                            "from": gpu["compute_current"], "to": gpu["compute_target"],
                            "source": gpu["compute_source"]})
    if clocks_changed and not module.check_mode:
        gpufacts.write_clock_record(record)
    module.exit_json(changed=bool(changes), gpus=plan["gpus"], settings=settings["gpus"],
                     changes=changes, configured=plan["configured"])


if __name__ == "__main__":
    main()
