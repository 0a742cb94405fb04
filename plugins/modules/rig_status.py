#!/usr/bin/python
"""Ansible module: what `rigctl fleet status` shows of a rig, in one round trip
(rigctl.core.hostfacts, plus the driver record of rigctl.core.driver)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: rig_status
short_description: A GPU rig's status for a fleet overview, in one round trip
description:
  - The facts C(rig_facts) gathers (OS, kernels, GPUs with power limits, the NVIDIA driver
    with the module each kernel loads, NVIDIA/CUDA/NCCL packages, the pending reboot, the
    GPU view) and the driver record rigctl's driver role keeps in
    C(/var/lib/rigctl/nvidia-driver.json) (flavor, version and, for a patched P2P module,
    fork, branch, commit and build time).
  - One task per rig keeps C(rigctl fleet status) fast on a large fleet (the controller's
    cost grows with tasks per host).
  - Read only; never changes the host. On a lab rig the GPUs are the simulated ones
    (C(gpu_view=simulated)).
options: {}
"""

RETURN = r"""
ansible_facts:
  description: "`rig_status`: {host: rig_facts' facts, driver_record: the driver record or null}."
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.rigctl.core import driver, hostfacts


def main():
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    status = {"host": hostfacts.gather(), "driver_record": driver.read_provenance()}
    module.exit_json(changed=False, ansible_facts={"rig_status": status})


if __name__ == "__main__":
    main()
