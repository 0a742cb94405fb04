#!/usr/bin/python
"""Ansible module: the hardware checks P2P depends on (rigctl.core.hwchecks), one round trip."""

from __future__ import annotations

DOCUMENTATION = r"""
module: hw_checks
short_description: Check Resizable BAR, IOMMU, ACS, PCIe links, chipset GPUs, GPU generations, displays
description:
  - Gathers the GPU facts (sysfs, nvidia-smi when a driver answers, lspci -vv) and the IOMMU
    mode, and evaluates every check with the rig's policy.
  - Read only; never fails by itself. Failed checks are module warnings; the rig_hw_checks
    role stops the run when the policy is enforce.
options:
  flavor: {type: str, default: open, choices: [open, p2p]}
  policy: {type: str, required: false, choices: [enforce, warn]}
  iommu_policy: {type: str, default: check, choices: [check, passthrough, "off"]}
  p2p_base:
    description:
      - The NVIDIA base of the P2P branch (rig_driver_version, flavor p2p): a GPU driving a
        display breaks P2P on RTX 5090s with branches before 610.x.
    type: str
"""

RETURN = r"""
ansible_facts:
  description: >-
    `rig_hw_checks`: policy, results (name, status, summary, problems, fix), failed,
    problems, stop; `rig_hw_cpu_vendor`; `rig_hw_cmdline`.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.rigctl.core import gpufacts, gpulayer, hostfacts, hwchecks


def main():
    module = AnsibleModule(
        argument_spec={
            "flavor": {"type": "str", "default": "open", "choices": ["open", "p2p"]},
            "policy": {"type": "str", "required": False, "choices": ["enforce", "warn"]},
            "iommu_policy": {"type": "str", "default": "check", "choices": ["check", "passthrough", "off"]},
            "p2p_base": {"type": "str", "required": False},
        },
        supports_check_mode=True,
    )
    facts = gpufacts.gather(lspci=True)
    iommu = hostfacts.read_iommu()
    vendor = hostfacts.cpu_vendor("/")
    display = hwchecks.read_display(gpulayer.layer("/"), facts["gpus"], facts["driver_answers"])
    report = hwchecks.evaluate(
        facts, iommu, vendor, module.params["flavor"], module.params["policy"],
        module.params["iommu_policy"], module.params["p2p_base"], display,
    )
    report["display"] = display
    report["iommu"] = iommu
    report["gpus"] = facts["gpus"]
    report["errors"] = facts["errors"]
    for result in report["results"]:
        if result["status"] == hwchecks.FAIL and report["policy"] == hwchecks.WARN:
            for line in result["problems"]:
                module.warn(f"hardware check {result['name']} (policy warn): {line}")
        elif result["status"] == hwchecks.UNKNOWN:
            module.warn(f"hardware check {result['name']}: {result['summary']}")
    module.exit_json(
        changed=False,
        ansible_facts={
            "rig_hw_checks": report,
            "rig_hw_cpu_vendor": vendor,
            "rig_hw_cmdline": hwchecks.iommu_cmdline(module.params["iommu_policy"], vendor),
        },
    )


if __name__ == "__main__":
    main()
