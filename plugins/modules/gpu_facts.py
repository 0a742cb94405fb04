#!/usr/bin/python
"""Ansible module: structured GPU facts per rig, and the power-limit, clock-lock and
compute-mode plans (rigctl.core.gpufacts)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: gpu_facts
short_description: Structured facts about a rig's NVIDIA GPUs
description:
  - Per GPU index, bus id, uuid, name, generation, VRAM, BAR1 size, power limit
    current/default/min/max, persistence mode, PCIe link generation and width (current,
    link max, card max), whether it is attached through the chipset.
  - Also the state of C(nvidia-persistenced.service) and C(rigctl-gpu-settings.service).
  - With O(plan), the power-limit plan (what each GPU's limit must be), the settings
    plan (clock locks, compute mode) with their errors, and the drift of the live state
    from them (rigctl.core.gpufacts.plan_tuning, the comparison gpu_settings
    converges); nothing is set.
  - Read only. On a lab rig the GPUs are the simulated ones (C(gpu_view=simulated)).
options:
  power_limit_w: {description: rig_power_limit_w, type: int, required: false}
  power_limit_overrides: {description: rig_power_limit_overrides, type: dict, default: {}}
  clock_lock_mhz: {description: "rig_gpu_clock_lock_mhz ({min, max})", type: dict, required: false}
  clock_lock_overrides: {description: rig_gpu_clock_lock_overrides, type: dict, default: {}}
  compute_mode:
    description: rig_compute_mode
    type: str
    required: false
    choices: [default, exclusive_process, prohibited]
  plan: {description: Return the power-limit and settings plans, type: bool, default: false}
"""

RETURN = r"""
ansible_facts:
  description: >-
    `rig_gpus`: the facts; `rig_gpu_power_plan`, `rig_gpu_settings_plan`,
    `rig_gpu_tuning_drift` and `rig_gpu_settings_conf` (the boot unit's file,
    rigctl.core.gpufacts.settings_conf) when O(plan).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.rigctl.core import gpufacts


def main():
    module = AnsibleModule(
        argument_spec=dict(gpufacts.settings_argument_spec(), plan={"type": "bool", "default": False}),
        supports_check_mode=True,
    )
    facts = gpufacts.gather(lspci=False)
    result = {"rig_gpus": facts}
    if module.params["plan"]:
        p = module.params
        plan = gpufacts.plan_tuning(facts["gpus"], p["power_limit_w"], p["power_limit_overrides"],
                                    p["clock_lock_mhz"], p["clock_lock_overrides"],
                                    p["compute_mode"])
        result["rig_gpu_power_plan"] = plan["power"]
        result["rig_gpu_settings_plan"] = plan["settings"]
        result["rig_gpu_tuning_drift"] = plan["drift"]
        result["rig_gpu_settings_conf"] = gpufacts.settings_conf(plan["power"], plan["settings"])
    module.exit_json(changed=False, ansible_facts=result)


if __name__ == "__main__":
    main()
