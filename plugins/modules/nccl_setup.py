#!/usr/bin/python
"""Ansible module: the NCCL decisions of the nccl role, one round trip per phase
(rigctl.core.cuda picks the build, rigctl.core.nccl writes nccl.conf)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: nccl_setup
short_description: Pick the NCCL build for the rig's CUDA and write /etc/nccl.conf from the rig's P2P state
description:
  - O(phase=plan) asks apt which builds of libnccl2 the configured source has, picks the
    build of O(version) for the rig's CUDA toolkit (O(cuda_version), else the installed
    nvcc's release, else what the driver runs) and refuses, listing what the source has,
    when none fits. An installed build of the same version for the same CUDA is kept.
  - O(phase=conf) reads the rig's P2P state and writes C(/etc/nccl.conf) with a comment
    above every line saying why it is there (and, for the P2P line, which evidence decided).
    The rig probe's per-pair verdict (rigctl.core.p2pverdict: copies both ways intact and
    faster than staged through host memory) decides where the probe can run: this boot's
    record in C(/run/rigctl/p2p-evidence.json), else a fresh run (the simulated probe on a
    lab rig), kept as that record outside check mode. C(nvidia-smi topo -p2p r) and
    C(topo -m) alone are the fallback. InfiniBand devices and the inventory's settings are
    merged in. Check mode reports the diff.
options:
  phase: {type: str, required: true, choices: [plan, conf]}
  version: {type: str, description: rig_nccl_version (phase plan)}
  cuda_version: {type: str, description: rig_cuda_version (null when CUDA is not managed)}
  socket_ifname: {type: str, description: rig_nccl_socket_ifname}
  env: {type: dict, default: {}, description: rig_nccl_env}
  driver_flavor: {type: str, description: rig_driver_flavor when rigctl manages the driver}
  path: {type: str, default: /etc/nccl.conf}
  probe: {type: bool, default: true, description: run the rig probe when no record of this boot exists}
"""

RETURN = r"""
packages: {description: "apt name=version to install", returned: phase=plan, type: list}
build: {description: "chosen build: version, cuda, candidates", returned: phase=plan, type: dict}
settings: {description: "key, value, reason, source per nccl.conf line", returned: phase=conf, type: list}
p2p: {description: the P2P decision, returned: phase=conf, type: dict}
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.rigctl.core import cuda, nccl, p2pverdict

PACKAGES = ("libnccl2", "libnccl-dev")


def phase_plan(module, params):
    rc, out, _ = module.run_command(["apt-cache", "madison", "libnccl2"], environ_update={"LANG": "C"})
    available = cuda.parse_madison(out) if rc == 0 else []
    cuda_version, cuda_from = params["cuda_version"], "rig_cuda_version"
    if not cuda_version:
        found = cuda.read_nvcc_version("nvcc")
        cuda_version, cuda_from = (found, "the installed nvcc") if found else (None, None)
    driver_version = None
    if cuda_version is None:
        driver_version, _ = cuda.read_driver_version()
    installed = cuda.installed_deb_version("libnccl2")
    choice = cuda.select_nccl_build(available, params["version"], cuda_version, driver_version)
    if installed and installed in choice["candidates"] and choice["version"]:
        if cuda.parse_nccl_deb_version(installed)["cuda"] == choice["cuda"]:
            choice["version"] = installed
    if choice["error"]:
        module.fail_json(msg="%s (CUDA from %s). Nothing was changed." % (
            choice["error"], cuda_from or "the driver"), fix=choice["fix"], build=choice)
    module.exit_json(changed=False, build=dict(choice, cuda_from=cuda_from, installed=installed),
                     packages=["%s=%s" % (p, choice["version"]) for p in PACKAGES],
                     pins=[{"package": p, "version": choice["version"]} for p in PACKAGES])


def _verdict_brief(verdict):
    if not verdict:
        return None
    keep = ("p2p_pairs", "not_p2p_pairs", "ok", "problems", "source", "simulated", "text", "gpus")
    return {k: verdict.get(k) for k in keep}


def phase_conf(module, params):
    matrix, links, error = nccl.read_p2p()
    # The rig probe's per-pair copies decide where they exist (this boot's record, else a
    # fresh run, kept as the record outside check mode); topo -p2p r alone is the fallback.
    evidence, evidence_from = (nccl.read_evidence(run=True, record=not module.check_mode)
                               if params["probe"] else (None, "probe disabled (probe: false)"))
    verdict = p2pverdict.judge_evidence(evidence) if evidence else None
    if evidence and links is None:
        links = evidence.get("topo_links")
    if evidence and evidence.get("timed_out"):
        # the probe hung on a copy: whatever topo says, P2P cannot be trusted here
        p2p = nccl.p2p_decision(None, links, params["driver_flavor"], evidence_from)
    else:
        p2p = nccl.p2p_decision(matrix, links, params["driver_flavor"], error, verdict=verdict,
                                no_probe_reason=evidence_from)
    p2p["evidence_from"] = evidence_from if evidence else None
    p2p["verdict"] = _verdict_brief(verdict)
    ib = nccl.ib_devices()
    entries = nccl.settings(p2p, ib, params["socket_ifname"], params["env"])
    if params["socket_ifname"]:
        interfaces = nccl.net_interfaces()
        if not nccl.ifname_matches(params["socket_ifname"], interfaces):
            module.warn("rig_nccl_socket_ifname %r selects none of this rig's interfaces (%s): NCCL "
                        "will fail to bootstrap" % (params["socket_ifname"], ", ".join(interfaces)))
    text = nccl.render(entries)
    path = params["path"]
    try:
        with open(path) as handle:
            old = handle.read()
    except OSError:
        old = None
    changed = old != text
    result = dict(changed=changed, settings=entries, p2p=p2p, ib_devices=ib, path=path)
    if module._diff:
        result["diff"] = {"before": old or "", "after": text, "before_header": path, "after_header": path}
    if changed and not module.check_mode:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or "/", prefix=".rigctl-nccl-")
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        module.atomic_move(tmp, path)
    module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            phase=dict(type="str", required=True, choices=["plan", "conf"]),
            version=dict(type="str"),
            cuda_version=dict(type="str"),
            socket_ifname=dict(type="str"),
            env=dict(type="dict", default={}),
            driver_flavor=dict(type="str"),
            path=dict(type="str", default=nccl.CONF_PATH),
            probe=dict(type="bool", default=True),
        ),
        required_if=[("phase", "plan", ("version",))],
        supports_check_mode=True,
    )
    if module.params["phase"] == "plan":
        phase_plan(module, module.params)
    phase_conf(module, module.params)


if __name__ == "__main__":
    main()
