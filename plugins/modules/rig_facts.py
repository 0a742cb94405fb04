#!/usr/bin/python
"""Ansible module: gather a rig's facts in one round trip (rigctl.core.hostfacts)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: rig_facts
short_description: Gather the facts rigctl's roles need about a GPU rig
description:
  - OS, kernels and their headers, Secure Boot, kernel command line and IOMMU mode,
    NVIDIA GPUs on PCI with their links, the NVIDIA driver (loaded, per-kernel module file,
    userspace, packages, DKMS), and whether the GPU view is real or simulated.
  - Optionally evaluates the preflight rules on those facts.
  - Read only; never changes the host.
options:
  preflight:
    description: Evaluate the preflight rules with these inputs.
    type: dict
    required: false
    suboptions:
      min_free_disk_gib: {type: float, default: 10}
      gpu_count: {type: int, required: false}
      driver_flavor: {type: str, default: open, choices: [open, p2p]}
      driver_managed:
        description: rig_driver_version is set (kernel headers are needed for the module build).
        type: bool
        default: true
"""

RETURN = r"""
ansible_facts:
  description: "`rig_host`: the facts; `rig_preflight`: preflight results when asked."
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.rigctl.core import hostfacts, preflight


def main():
    module = AnsibleModule(
        argument_spec={
            "preflight": {
                "type": "dict",
                "required": False,
                "options": {
                    "min_free_disk_gib": {"type": "float", "default": 10},
                    "gpu_count": {"type": "int", "required": False},
                    "driver_flavor": {"type": "str", "default": "open", "choices": ["open", "p2p"]},
                    "driver_managed": {"type": "bool", "default": True},
                },
            }
        },
        supports_check_mode=True,
    )
    facts = hostfacts.gather()
    result = {"rig_host": facts}
    if module.params["preflight"] is not None:
        results = preflight.evaluate(facts, **module.params["preflight"])
        result["rig_preflight"] = results
        for item in results:
            if item["status"] == preflight.WARN:
                module.warn("preflight: " + item["summary"])
    module.exit_json(changed=False, ansible_facts=result)


if __name__ == "__main__":
    main()
