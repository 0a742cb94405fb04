#!/usr/bin/python
"""Ansible module: the rig's pending-reboot mark (rigctl.core.reboot)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: rig_reboot_mark
short_description: Record, clear or read why a rig needs a reboot
description:
  - Keeps /var/lib/rigctl/reboot-required, the reasons a rig needs a reboot, each under a
    key, with the boot it was written in. A mark of an earlier boot counts as cleared
    (the reboot happened) and is removed by every call but C(state=query).
  - rig_facts reports the mark as C(rig_host.reboot); rigctl verify warns about it; the
    provision summary prints a line per rig that needs a reboot.
options:
  state:
    description: >-
      present: add (or update) the reason under key; absent: remove the mark (after a
      reboot the role made itself); current: only remove a mark of an earlier boot; query:
      read only.
    type: str
    default: query
    choices: [present, absent, current, query]
  key: {type: str, required: false, description: What the reason is about (e.g. iommu).}
  reason: {type: str, required: false, description: One line saying what needs the reboot.}
"""

RETURN = r"""
ansible_facts:
  description: "`rig_reboot`: required, reasons, since, mark, cleared_by_reboot."
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.rigctl.core import reboot


def main():
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "default": "query",
                      "choices": ["present", "absent", "current", "query"]},
            "key": {"type": "str", "required": False},
            "reason": {"type": "str", "required": False},
        },
        required_if=[("state", "present", ("key", "reason"))],
        supports_check_mode=True,
    )
    state = module.params["state"]
    if state == "query":
        module.exit_json(changed=False, ansible_facts={"rig_reboot": reboot.status()})
    try:
        changed, status = reboot.update(
            state, module.params["key"], module.params["reason"], check_mode=module.check_mode
        )
    except OSError as exc:
        module.fail_json(msg="cannot update %s: %s" % (reboot.MARK, exc))
    module.exit_json(changed=changed, ansible_facts={"rig_reboot": status})


if __name__ == "__main__":
    main()
