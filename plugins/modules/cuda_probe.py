#!/usr/bin/python
"""Ansible module: compile the rig probe with the installed nvcc, only when something that
goes into the binary changed (rigctl.core.probe decides the flags)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: cuda_probe
short_description: Compile rigctl-probe.cu with nvcc for this rig's GPUs
description:
  - Builds C(DIRECTORY/rigctl-probe) from C(DIRECTORY/rigctl-probe.cu) with O(nvcc): native
    code for every GPU capability on this rig that the toolkit supports, plus PTX of the
    newest architecture it knows (see rigctl.core.probe). nvcc needs no GPU.
  - Records what went into the binary (source checksum, nvcc and its version, the command,
    the GPU capabilities) in C(DIRECTORY/build.json) and rebuilds only when one of them
    changed or the binary is missing: a re-run changes nothing.
  - A failed compile fails the task with nvcc's error lines; a working binary from before is
    kept. Check mode reports whether it would build.
options:
  nvcc: {type: str, required: true}
  toolkit_version: {type: str, required: true}
  directory: {type: str, required: true}
  ccbin: {type: str, description: host compiler directory for nvcc (-ccbin)}
"""

RETURN = r"""
binary: {description: path of the probe, returned: always, type: str}
record: {description: the build record, returned: always, type: dict}
reasons: {description: why it was (or would be) built, returned: always, type: list}
"""

import datetime
import hashlib
import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.rigctl.core import gpulayer, gpumodel, hostfacts, probe


def _capabilities():
    pci, _ = hostfacts.read_gpus(gpulayer.layer(), driver=False)
    caps = []
    for gpu in gpumodel.build(pci, []):
        cap = (probe.compute_capability(gpu["name"]) or probe.compute_capability(gpu["generation"])
               or probe.compute_capability(gpu["device_id"]))
        if cap and cap not in caps:
            caps.append(cap)
    return sorted(caps)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            nvcc=dict(type="str", required=True),
            toolkit_version=dict(type="str", required=True),
            directory=dict(type="str", required=True),
            ccbin=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    source = os.path.join(p["directory"], probe.PROBE_SOURCE)
    binary = os.path.join(p["directory"], "rigctl-probe")
    record_path = os.path.join(p["directory"], "build.json")
    try:
        with open(source, "rb") as handle:
            source_sha = hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        source_sha = None  # check mode on a first run: the source is not copied yet
    rc, out, _ = module.run_command([p["nvcc"], "--version"]) if os.path.exists(p["nvcc"]) else (127, "", "")
    nvcc_version = out.strip().splitlines()[-1] if rc == 0 and out.strip() else None
    caps = _capabilities()
    plan = probe.arch_plan(p["toolkit_version"], caps or None)
    argv = probe.build_command(p["nvcc"], source, binary + ".new", p["toolkit_version"], caps or None,
                                p["ccbin"])
    want = {"source_sha256": source_sha, "nvcc": p["nvcc"], "nvcc_version": nvcc_version,
            "toolkit_version": p["toolkit_version"], "capabilities": caps, "argv": argv}
    try:
        with open(record_path) as handle:
            have = json.load(handle)
    except (OSError, ValueError):
        have = {}
    reasons = []
    if not os.path.isfile(binary):
        reasons.append("no probe binary yet")
    for key in ("source_sha256", "nvcc", "nvcc_version", "capabilities", "argv"):
        if have.get(key) != want[key]:
            reasons.append("%s changed" % key)
    result = dict(binary=binary, record=have or want, reasons=reasons, arch=plan,
                  changed=bool(reasons))
    for cap in plan["unusable"]:
        module.warn("CUDA %s cannot build code for compute capability %s on this rig: the probe "
                    "will not run on those GPUs" % (p["toolkit_version"], cap))
    if not reasons or module.check_mode:
        module.exit_json(**result)
    if nvcc_version is None:
        module.fail_json(msg="nvcc %s does not answer: the toolkit is not installed properly"
                         % p["nvcc"], **result)
    rc, out, err = module.run_command(argv, cwd=p["directory"])
    if rc != 0:
        lines = [ln for ln in (err + out).splitlines() if "error" in ln.lower()][:15]
        module.fail_json(msg="nvcc could not compile the probe (rc=%d): %s" % (
            rc, " | ".join(lines) or (err + out).strip()[-800:]), argv=argv, **result)
    os.chmod(binary + ".new", 0o755)
    os.rename(binary + ".new", binary)
    want["built_at"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    want["binary_sha256"] = hashlib.sha256(open(binary, "rb").read()).hexdigest()
    with open(record_path + ".new", "w") as handle:
        json.dump(want, handle, indent=2, sort_keys=True)
    os.rename(record_path + ".new", record_path)
    result["record"] = want
    module.exit_json(**result)


if __name__ == "__main__":
    main()
