#!/usr/bin/python
"""Ansible module: the steps of `rigctl fleet update` around a rig's converge, in one round
trip each: `prepare` (is the rig busy? stop its drain units) and `finish` (start them again,
read the state the rig was left in)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: rig_rollout
short_description: Busy check, drain and state read of a rig during a fleet rollout
description:
  - >-
    With step=prepare: looks for GPU compute processes (nvidia-smi --query-compute-apps,
    through the GPU layer, the simulated tool on a lab rig) and for active units among
    the given units (rig_drain_units). A rig with either is busy and is left alone unless
    force is set. Otherwise the active units are stopped and remembered in
    /var/lib/rigctl/rollout-drained.json, so that step=finish (or a later rollout after
    a crash) starts them again.
  - >-
    With step=finish: starts the units that prepare recorded and removes the record.
  - >-
    With step=finish and defer_if_reboot: when the rig has a pending reboot (the reboot mark
    of rigctl.core.reboot), nothing is started (C(deferred)): the rollout reboots the rig
    and runs finish after the reboot.
  - >-
    Both steps return the rig's facts (rigctl.core.hostfacts, as rig_facts gathers them),
    the driver record and the boot token, so the rollout knows the driver before and
    after and whether the rig rebooted. With gather=false, prepare leaves the rig's facts
    out (the rig_facts role gathers them next in the same play) except on a busy rig that
    is left alone (its only read).
options:
  step:
    description: Which step.
    type: str
    required: true
    choices: [prepare, finish]
  units:
    description: The rig's drain units.
    type: list
    elements: str
    default: []
  force:
    description: Drain and go on even when the rig is busy.
    type: bool
    default: false
  gather:
    description: Return the rig's facts (host) with step=prepare.
    type: bool
    default: true
  defer_if_reboot:
    description: With step=finish, do nothing while a reboot is pending.
    type: bool
    default: false
"""

RETURN = r"""
ansible_facts:
  description: >-
    `rig_rollout_prepare` or `rig_rollout_finish` (one per step, so that one play can run
    both): step, busy, apps (compute processes), apps_readable, units_active, stopped,
    started, deferred, host (hostfacts; absent with gather=false), driver_record, boot.
  returned: always
  type: dict
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.rigctl.core import driver, gpulayer, healthfacts, hostfacts, reboot

DRAINED = "/var/lib/rigctl/rollout-drained.json"


def _active(unit):
    rc, out, _ = hostfacts.run(["systemctl", "is-active", unit], timeout=20)
    return out.strip() in ("active", "activating", "reloading")


def _systemctl(module, verb, unit):
    rc, out, err = hostfacts.run(["systemctl", verb, unit], timeout=300)
    if rc != 0:
        module.fail_json(msg="systemctl %s %s failed: %s" % (verb, unit, (err or out).strip()))


def _read_drained():
    try:
        with open(DRAINED) as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return []
    units = data.get("units") if isinstance(data, dict) else None
    return [u for u in units or [] if isinstance(u, str)]


def _write_drained(units):
    os.makedirs(os.path.dirname(DRAINED), exist_ok=True)
    tmp = DRAINED + ".tmp"
    with open(tmp, "w") as fh:
        json.dump({"units": units, "boot": reboot.boot_token()}, fh)
    os.replace(tmp, DRAINED)


def main():
    module = AnsibleModule(
        argument_spec={
            "step": {"type": "str", "required": True, "choices": ["prepare", "finish"]},
            "units": {"type": "list", "elements": "str", "default": []},
            "force": {"type": "bool", "default": False},
            "gather": {"type": "bool", "default": True},
            "defer_if_reboot": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    step = module.params["step"]
    out = {"step": step, "busy": False, "apps": [], "apps_readable": True, "units_active": [],
           "stopped": [], "started": [], "deferred": False}
    changed = False
    gather = True
    if step == "prepare":
        apps = healthfacts.busy_processes(gpulayer.layer()["nvidia_smi"])
        out["apps_readable"] = apps is not None
        out["apps"] = [{"pid": a.get("pid"), "name": a.get("process_name"),
                        "bus_id": a.get("bus_id")} for a in apps or []]
        out["units_active"] = [u for u in module.params["units"] if _active(u)]
        out["busy"] = bool(out["apps"] or out["units_active"])
        if out["busy"] and not module.params["force"]:
            pass  # left alone (the rollout skips it): its facts are its only read
        elif out["units_active"]:
            changed = True
            if not module.check_mode:
                _write_drained(sorted(set(_read_drained()) | set(out["units_active"])))
                for unit in out["units_active"]:
                    _systemctl(module, "stop", unit)
            out["stopped"] = list(out["units_active"])
        if not out["busy"] or module.params["force"]:
            gather = module.params["gather"]
    elif module.params["defer_if_reboot"] and reboot.status().get("required"):
        out["deferred"] = True  # the rollout reboots the rig, then runs finish again
        gather = False
    else:
        units = _read_drained()
        if units:
            changed = True
            if not module.check_mode:
                for unit in units:
                    _systemctl(module, "start", unit)
                os.unlink(DRAINED)
            out["started"] = units
    if gather:
        out["host"] = hostfacts.gather()
    out["driver_record"] = driver.read_provenance()
    out["boot"] = reboot.boot_token()
    module.exit_json(changed=changed, ansible_facts={"rig_rollout_" + step: out})


if __name__ == "__main__":
    main()
