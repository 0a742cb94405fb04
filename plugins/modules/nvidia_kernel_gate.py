#!/usr/bin/python
"""Ansible module: the driver checks against the target kernels, before any change.

mode table (before the fetch): for the patched P2P flavor the user catalog entry, the
kernel gate's table (rigctl.core.kernelgate) on every target kernel and the registry keys
against the NVIDIA base (rigctl.core.p2pregistry); for every flavor the installed kernel
meta-packages that rig_kernel_hold holds. Breaks that the files show
(kernelgate.EVIDENCE_BREAKS) are left to mode evidence.

mode evidence (before any module build or stock package install): the real module source
(the fetched fork tree, or the DKMS source inside the distribution's package, downloaded
into a temporary directory and read without installing it) against the real headers of
every target kernel (kernelgate.read_headers / scan_source / evidence_refusal)."""

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
  - Mode evidence reads the module source (source_dir, or the packages downloaded with
    apt-get download and read with dpkg-deb --fsys-tarfile, never installed) and every
    target kernel's include/linux/pci.h, and refuses a source that calls
    pci_resize_resource with three arguments and has no conftest for the exclude_bars form
    the headers declare.
  - Read only; a refusal changes nothing.
options:
  mode: {description: table (before the fetch) or evidence (the files)., type: str, default: table}
  flavor: {description: rig_driver_flavor; the P2P checks run for p2p only., type: str, default: p2p}
  source_dir: {description: The fetched fork tree (evidence; flavor p2p)., type: path}
  packages:
    description: The stock kernel module packages (evidence; flavor open).
    type: list
    elements: str
  os: {description: The rig's OS and version (named in the fix)., type: str}
  changed:
    description: What this run changed before the evidence check (named in a refusal).
    type: list
    elements: str
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
headers:
  description: "Evidence: per target kernel, the pci_resize_resource parameters of its pci.h."
  returned: evidence
  type: dict
scan: {description: "Evidence: the source's calls and conftest.", returned: evidence, type: dict}
"""

import os
import re
import shutil
import subprocess
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.rigctl.core import catalog, driver, kernelgate, p2pregistry


def _best(module, versions):
    best = None
    for v in versions:
        if best is None or module.run_command(["dpkg", "--compare-versions", v, "gt", best])[0] == 0:
            best = v
    return best


def _package_files(module, packages, version):
    """(files, label, why-unread) of the stock packages at ``version``: each downloaded into
    a temporary directory (or taken from apt's cache) and read, never installed."""
    files, names, why = [], [], []
    env = {"LC_ALL": "C"}
    tmp = tempfile.mkdtemp(prefix="rigctl-gate-", dir="/var/tmp")
    try:
        os.chmod(tmp, 0o755)  # apt fetches as _apt
        for pkg in packages or []:
            rc, out, _ = module.run_command(["apt-cache", "madison", pkg], environ_update=env)
            found = [line.split("|")[1].strip() for line in out.splitlines()
                     if line.count("|") >= 2 and line.split("|")[0].strip() == pkg]
            match = [v for v in found if re.match(r"^(\d+:)?%s-" % re.escape(version), v)]
            if not match:
                why.append("%s %s is not in the apt sources" % (pkg, version))
                continue
            ver = _best(module, match)
            cached = [os.path.join("/var/cache/apt/archives", n)
                      for n in sorted(os.listdir("/var/cache/apt/archives"))
                      if n.startswith("%s_%s_" % (pkg, ver.replace(":", "%3a")))
                      and n.endswith(".deb")] if os.path.isdir("/var/cache/apt/archives") else []
            if cached:
                deb = cached[0]
            else:
                rc, out, err = module.run_command(["apt-get", "download", "-q", "%s=%s" % (pkg, ver)],
                                                  cwd=tmp, environ_update=env)
                debs = [os.path.join(tmp, n) for n in os.listdir(tmp)
                        if n.startswith(pkg + "_") and n.endswith(".deb")]
                if rc != 0 or not debs:
                    why.append("apt-get download %s=%s failed: %s" % (pkg, ver, (err or out).strip()[-300:]))
                    continue
                deb = debs[0]
            proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE)
            try:
                got = list(kernelgate.tar_files(proc.stdout))
            finally:
                proc.stdout.close()
                proc.wait()
            if proc.returncode != 0:
                why.append("dpkg-deb --fsys-tarfile %s failed" % os.path.basename(deb))
                continue
            files.extend(got)
            names.append(("%s %s" % (pkg, ver), bool(got)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # named: the packages whose source mentions the call (all read ones where none does)
    named = [n for n, hit in names if hit] or [n for n, _ in names]
    return files, named, why


def _evidence(module, p):
    kernels = p["kernels"] or []
    version = p["driver_version"]
    headers = kernelgate.read_headers(kernels)
    unread = None
    if p["flavor"] == "p2p":
        if p["source_dir"] and os.path.isdir(p["source_dir"]):
            scan = kernelgate.scan_source(kernelgate.tree_files(p["source_dir"]))
            label = "the fork tree %s" % p["source_dir"]
        else:
            scan, unread = None, "no fetched tree at %s" % p["source_dir"]
            label = "the patched P2P source"
    else:
        files, names, why = _package_files(module, p["packages"], version)
        if names:
            scan = kernelgate.scan_source(files)
            label = "%s (read from the package, not installed)" % ", ".join(names)
        else:
            scan, unread = None, "; ".join(why) or "no package given"
            label = "the stock module packages %s" % ", ".join(p["packages"] or [])
        for text in why if names else []:
            module.warn(text)
    blocked = kernelgate.evidence_blocked(version, headers, scan)
    if scan is None and p["flavor"] == "p2p" and blocked:
        # no tree to read (check mode stops before the fetch): the table's view, as a warning
        module.warn("the fork tree could not be read (%s); by the known ranges NVIDIA %s does "
                    "not build on %s (pci_resize_resource): a real run checks the tree"
                    % (unread, version, ", ".join(blocked)))
        blocked = []
    found = kernelgate.evidence_refusal(version, blocked, headers, scan, label, host=p["host"],
                                        os_name=p["os"], flavor=p["flavor"],
                                        changed=p["changed"] or [], unread=unread)
    if found:
        module.fail_json(msg="%s. Fix: %s. %s." % (found["message"], found["fix"], found["done"]),
                         blocked=blocked, headers=headers, scan=scan, kernel_range=found["range"])
    if scan is None:
        module.warn("the module source could not be read (%s): the pci_resize_resource check "
                    "went by the known kernel ranges only" % unread)
    module.exit_json(changed=False, headers=headers, scan=scan, source_label=label,
                     kernel_range=kernelgate.kernel_range(version))


def main():
    module = AnsibleModule(
        argument_spec={
            "mode": {"type": "str", "default": "table", "choices": ["table", "evidence"]},
            "flavor": {"type": "str", "default": "p2p", "choices": ["open", "p2p"]},
            "source_dir": {"type": "path"},
            "packages": {"type": "list", "elements": "str"},
            "os": {"type": "str"},
            "changed": {"type": "list", "elements": "str"},
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
    if p["mode"] == "evidence":
        _evidence(module, p)
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
    # the breaks the files show are checked from them (mode evidence, after the fetch)
    refusal = kernelgate.refusal(version, kernels, label, host=p["host"],
                                 suggestions=catalog.suggested_branches(version, kernels),
                                 skip=kernelgate.EVIDENCE_BREAKS)
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
