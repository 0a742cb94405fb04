#!/usr/bin/python
"""Ansible module: the rig health checks (rigctl.core.health), gathered in one round trip."""

from __future__ import annotations

DOCUMENTATION = r"""
module: rig_health
short_description: Rig health checks (Xid, PCIe errors, load, NVLink, NUMA, power budget, DCGM)
description:
  - Reads, through the GPU layer (real, or the simulated one of a lab rig), the kernel log
    since boot (journalctl -k -b, dmesg where journald has no kernel log), the AER
    counters of every GPU and of every bridge above it, nvidia-smi topo -m and nvlink -s,
    the GPUs' NUMA nodes, and with I(load) samples nvidia-smi while the rig probe loads
    the GPUs (link generation/width, clock event reasons, power draw, temperature). Runs
    dcgmi diag -r 1 where dcgmi is installed.
  - Evaluates every check (rigctl.core.health.evaluate) and returns the findings.
  - Never changes the host; the probe only copies data between GPU buffers it allocates.
    The load step is skipped while compute processes use the GPUs.
options:
  load: {type: bool, default: true, description: Run the probe and sample the GPUs while it runs.}
  dcgm: {type: bool, default: true, description: Run dcgmi diag -r 1 where dcgmi is installed.}
  psu_watts: {type: raw, required: false, description: rig_psu_watts (one number or a list).}
  platform_watts: {type: int, required: false, description: rig_platform_watts.}
  psu_max_load_percent: {type: int, default: 105, description: rig_psu_max_load_percent.}
"""

RETURN = r"""
ansible_facts:
  description: >-
    `rig_health`: gpu_view, simulation, gpus (index, bus_id, name), findings (check, gpu,
    severity, evidence, fix), checks (name -> status, reason), nvlink_pairs, measurements
    (per GPU under load), paths (GPU -> bridges above it), sources (what was read, errors).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.rigctl.core import health, healthfacts


def main():
    module = AnsibleModule(
        argument_spec={
            "load": {"type": "bool", "default": True},
            "dcgm": {"type": "bool", "default": True},
            "psu_watts": {"type": "raw", "required": False},
            "platform_watts": {"type": "int", "required": False},
            "psu_max_load_percent": {"type": "int", "default": health.PSU_MAX_LOAD_PERCENT},
        },
        supports_check_mode=True,
    )
    data, sources = healthfacts.gather(load=module.params["load"], dcgm=module.params["dcgm"])
    try:
        report = health.evaluate(data, module.params["psu_watts"], module.params["platform_watts"],
                                 module.params["psu_max_load_percent"])
    except ValueError as exc:
        module.fail_json(msg="rig_health: %s" % exc)
    gpus = data["gpus"]
    module.exit_json(
        changed=False,
        ansible_facts={
            "rig_health": {
                "gpu_view": sources["gpu_view"],
                "simulation": sources["simulation"],
                "gpus": [{"index": g["index"], "bus_id": g["bus_id"], "name": g["name"]}
                         for g in gpus],
                "findings": report["findings"],
                "checks": report["checks"],
                "nvlink_pairs": report["nvlink_pairs"],
                "measurements": report["measurements"],
                "paths": data["paths"],
                "sources": sources,
            }
        },
    )


if __name__ == "__main__":
    main()
