#!/usr/bin/python
"""Ansible module: the driver checks that need no fetch, before any change: for the
patched P2P flavor the user catalog entry, the kernel gate (rigctl.core.kernelgate) on
every target kernel and the registry keys against the NVIDIA base
(rigctl.core.p2pregistry); for every flavor the installed kernel meta-packages that
rig_kernel_hold holds."""

from __future__ import annotations

DOCUMENTATION = r"""
module: nvidia_kernel_gate
short_description: Refuse a P2P branch whose NVIDIA base cannot build on a target kernel
description:
  - The NVIDIA base a P2P branch was cut from (rig_driver_version, which its version.mk
    must equal) decides which kernels it builds on. Every target kernel of the rig
    (rig_host.kernel.targets) is checked; one the base cannot build on is refused naming
    the kernel, the branch and both fixes (a newer branch, or a held older kernel).
  - Checks rig_p2p_registry_dwords against the base (RMForceP2PType changed meaning at
    575; RMPcieP2PType exists from 575) and returns the modprobe options line.
  - Returns the installed kernel meta-packages of the rig's kernel flavours (what
    rig_kernel_hold holds).
  - Read only; a refusal changes nothing.
options:
  flavor: {description: rig_driver_flavor; the P2P checks run for p2p only., type: str, default: p2p}
  running: {description: The running kernel (rig_host.kernel.running)., type: str}
  source: {description: rig_p2p_source (p2p)., type: dict}
  catalog: {description: rig_p2p_catalog (the user catalog)., type: dict}
  driver_version: {description: rig_driver_version (the NVIDIA base)., type: str, required: true}
  kernels: {description: The target kernels., type: list, elements: str, required: true}
  registry_dwords: {description: rig_p2p_registry_dwords., type: dict}
  host: {description: The inventory name (named in messages)., type: str}
"""

RETURN = r"""
kernel_range: {description: kernelgate.kernel_range of the base., returned: success, type: dict}
modprobe_options: {description: The NVreg_RegistryDwords options line or null., returned: success, type: str}
source_label: {description: How the branch is named in messages., returned: p2p, type: str}
kernel_metas:
  description: Installed kernel meta-packages of the rig's kernel flavours.
  returned: success
  type: list
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.rigctl.core import catalog, driver, kernelgate, p2pregistry


def main():
    module = AnsibleModule(
        argument_spec={
            "flavor": {"type": "str", "default": "p2p", "choices": ["open", "p2p"]},
            "running": {"type": "str"},
            "source": {"type": "dict"},
            "catalog": {"type": "dict"},
            "driver_version": {"type": "str", "required": True},
            "kernels": {"type": "list", "elements": "str", "required": True},
            "registry_dwords": {"type": "dict"},
            "host": {"type": "str"},
        },
        supports_check_mode=True,
    )
    p = module.params
    # A token in the fork's URL never reaches the result or the invocation Ansible logs.
    module.no_log_values.update(driver.p2p_source_secrets(p["source"], p["catalog"]))
    kernels = p["kernels"] or []
    rc, out, _ = module.run_command(["dpkg-query", "-W", "-f",
                                     "${binary:Package} ${db:Status-Status}\n"],
                                    environ_update={"LC_ALL": "C"})
    installed = [line.split()[0].split(":")[0] for line in out.splitlines()
                 if len(line.split()) == 2 and line.split()[1] == "installed"] if rc == 0 else []
    metas = kernelgate.installed_metas(p["running"], kernels, installed)
    if p["flavor"] != "p2p":
        module.exit_json(changed=False, kernel_metas=metas, modprobe_options=None)
    user = p["catalog"] or {}
    name = (p["source"] or {}).get("catalog")
    if name and name not in catalog.P2P_CATALOG and name in user:
        found = catalog.entry_problems(name, user[name])
        if found:
            module.fail_json(msg="rig_p2p_catalog entry %s: %s. Nothing was changed."
                             % (name, "; ".join("%s (fix: %s)" % (m, f) for _, m, f in found)))
    try:
        resolved = driver.resolve_p2p_source(p["source"], user)
    except ValueError as exc:
        module.fail_json(msg="%s; nothing was changed" % exc)
    version = p["driver_version"]
    if resolved["catalog"]:
        label = "catalog entry %s (branch %s)" % (resolved["catalog"], resolved["branch"])
        if resolved["driver_version"] != version:
            module.fail_json(msg="catalog entry %s is NVIDIA %s, but rig_driver_version is %s: "
                                 "they must be the same version. Nothing was changed."
                             % (resolved["catalog"], resolved["driver_version"], version))
    else:
        label = "branch %s of %s" % (resolved["branch"], resolved["url"])
    refusal = kernelgate.refusal(version, kernels, label, host=p["host"],
                                 suggestions=catalog.suggested_branches(version, kernels))
    if refusal:
        module.fail_json(msg="%s. Fix: %s. Nothing was changed." % (refusal["message"],
                                                                  refusal["fix"]),
                         blocked=refusal["blocked"], kernel_range=refusal["range"],
                         source_label=label)
    errors = []
    for item in p2pregistry.problems(version, p["registry_dwords"]):
        text = "rig_p2p_registry_dwords: %s (fix: %s)" % (item["message"], item["fix"])
        if item["severity"] == "error":
            errors.append(text)
        else:
            module.warn(text)
    if errors:
        module.fail_json(msg="; ".join(errors) + ". Nothing was changed.", source_label=label)
    module.exit_json(changed=False, kernel_range=kernelgate.kernel_range(version), kernel_metas=metas,
                     modprobe_options=p2pregistry.modprobe_options(p["registry_dwords"]),
                     source_label=label)


if __name__ == "__main__":
    main()
