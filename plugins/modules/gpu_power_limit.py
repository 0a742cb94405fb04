#!/usr/bin/python
"""Ansible module: set GPU power limits idempotently (rigctl.core.gpufacts plan)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: gpu_power_limit
short_description: Set NVIDIA GPU power limits, only where they differ
description:
  - Reads every GPU's current, default, min and max limit; validates every target against
    the card's own range before anything is set (an out-of-range value fails naming the
    GPU, its range and the inventory key, and nothing changes); then runs
    C(nvidia-smi -i BUS -pl W) only for GPUs whose limit differs.
  - GPUs without a configured limit are put back to their default limit.
  - Supports check mode (reports what would change). Returns per GPU what changed.
  - Does not survive a reboot by itself; the gpu_tuning role's boot unit re-applies.
options:
  power_limit_w: {description: rig_power_limit_w (every GPU), type: int, required: false}
  power_limit_overrides:
    description: "rig_power_limit_overrides: selector (index, bus id, UUID) -> watts"
    type: dict
    default: {}
"""

RETURN = r"""
gpus:
  description: per GPU the plan entry (target_w, source, current_w, change)
  returned: always
  type: list
changes: {description: "per changed GPU: index, bus_id, from_w, to_w, source", returned: always, type: list}
configured: {description: "bus id -> watts of the GPUs with a configured limit", returned: always, type: dict}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.rigctl.core import constants, gpufacts, hostfacts


def main():
    module = AnsibleModule(
        argument_spec={
            "power_limit_w": {"type": "int", "required": False},
            "power_limit_overrides": {"type": "dict", "default": {}},
        },
        supports_check_mode=True,
    )
    facts = gpufacts.gather(lspci=False)
    plan = gpufacts.plan_power_limits(
        facts["gpus"], module.params["power_limit_w"], module.params["power_limit_overrides"]
    )
    if plan["errors"]:
        module.fail_json(msg="; ".join(plan["errors"]), errors=plan["errors"], gpus=plan["gpus"],
                         changes=[], changed=False)
    smi = constants.SIMGPU_TOOL if facts["simulation"] else "nvidia-smi"
    changes = []
    for gpu in plan["gpus"]:
        if not gpu["change"]:
            continue
        change = {
            "index": gpu["index"],
            "bus_id": gpu["bus_id"],
            "from_w": gpu["current_w"],
            "to_w": gpu["target_w"],
            "source": gpu["source"],
        }
        if not module.check_mode:
            rc, out, err = hostfacts.run([smi, "-i", gpu["bus_id"], "-pl", str(gpu["target_w"])])
            if rc != 0:
                module.fail_json(
                    msg=f"GPU {gpu['index']} ({gpu['bus_id']}): nvidia-smi -pl {gpu['target_w']} "
                    f"failed: {(out + err).strip()}",
                    changes=changes, changed=bool(changes),
                )
        changes.append(change)
    module.exit_json(changed=bool(changes), gpus=plan["gpus"], changes=changes,
                     configured=plan["configured"])


if __name__ == "__main__":
    main()
