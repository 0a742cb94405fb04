#!/usr/bin/python
"""Ansible module: the CUDA toolkit decisions of the cuda role, one round trip per phase
(rigctl.core.cuda decides)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: cuda_toolkit
short_description: Check, plan and select CUDA toolkits against the installed driver
description:
  - O(phase=check) (before any change) finds the NVIDIA driver the toolkit will meet (the
    loaded module, else nvidia-smi, else the installed libraries; the driver rigctl is about
    to install when none is there yet) and refuses a toolkit release that driver does not
    run, naming both versions and the fix.
  - O(phase=plan) asks apt (after the source is configured) which version of each release's
    package the source has; keeps an installed build of the release, else takes the newest;
    refuses a release the source does not carry, listing what it has.
  - O(phase=default) points C(/usr/local/cuda) at the default toolkit (through
    update-alternatives when NVIDIA's packages registered C(cuda), else a symlink; a real
    directory there is never replaced) and checks that its nvcc is the release asked for.
  - Supports check mode.
options:
  phase: {type: str, required: true, choices: [check, plan, default]}
  version: {type: str, required: true, description: rig_cuda_version}
  extra_versions: {type: list, elements: str, default: [], description: rig_cuda_extra_versions}
  source: {type: str, required: true, choices: [cuda-repo, debian, mirror]}
  allow_minor_compat: {type: bool, default: false, description: rig_cuda_minor_version_compat}
  planned_driver:
    type: str
    description: "rig_driver_version: used when no driver is installed yet (check mode, first run)"
"""

RETURN = r"""
driver: {description: "driver version and where it was read", returned: phase=check, type: dict}
support: {description: per release the driver support verdict, returned: phase=check, type: list}
packages: {description: "apt name=version to install", returned: phase=plan, type: list}
pins: {description: "package/version pairs for apt preferences", returned: phase=plan, type: list}
toolkits:
  description: "per release: version, package, deb_version, home, nvcc, default"
  returned: phase=plan
  type: list
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.rigctl.core import cuda


def _releases(params):
    seen = []
    for release in [params["version"]] + list(params["extra_versions"] or []):
        key = cuda.cuda_key(release)
        if key not in seen:
            seen.append(key)
    return seen


def phase_check(module, params, releases):
    version, where = cuda.read_driver_version()
    if version is None and params["planned_driver"]:
        version, where = params["planned_driver"], "rig_driver_version (not installed yet)"
    if version is None:
        module.fail_json(
            msg="no NVIDIA driver on this rig (no loaded module, nvidia-smi does not answer, no "
            "driver libraries): CUDA %s cannot be checked against it. Install the driver first "
            "(set rig_driver_version), then run again. Nothing was changed." % params["version"],
            changed=False)
    support = []
    for release in releases:
        verdict = cuda.driver_support(release, version, params["allow_minor_compat"])
        support.append(verdict)
    refused = [s for s in support if not s["supported"]]
    if refused:
        module.fail_json(
            msg="; ".join("%s (driver read from the %s)" % (s["message"], where) for s in refused)
            + ". Refused before anything was installed.",
            fix=refused[0]["fix"], support=support, driver={"version": version, "from": where},
            changed=False)
    for s in support:
        if s["mode"] == "minor-compat":
            module.warn("CUDA %s runs on driver %s only through minor version compatibility "
                        "(rig_cuda_minor_version_compat: true)" % (s["cuda"], version))
    module.exit_json(changed=False, driver={"version": version, "from": where}, support=support)


def phase_plan(module, params, releases):
    source = params["source"]
    if source == "debian" and len(releases) > 1:
        module.fail_json(msg="the debian source ships one CUDA toolkit; %s cannot be installed "
                         "side by side. Use rig_cuda_source: cuda-repo (or mirror), or empty "
                         "rig_cuda_extra_versions. Nothing was changed." % ", ".join(releases[1:]))
    toolkits, problems = [], []
    for release in releases:
        package = cuda.toolkit_package(source, release)
        rc, out, err = module.run_command(["apt-cache", "madison", package],
                                          environ_update={"LANG": "C"})
        available = cuda.parse_madison(out) if rc == 0 else []
        installed = cuda.installed_deb_version(package)
        if installed and cuda.deb_matches_cuda(installed, source, release):
            chosen = installed
        else:
            chosen = cuda.pick_toolkit_version(available, source, release)
        if chosen is None:
            problems.append("CUDA %s is not in the %s source (package %s): %s" % (
                release, source, package,
                "it has " + ", ".join(available[:8]) if available
                else "the source has no %s package at all" % package))
            continue
        toolkits.append({
            "version": release, "package": package, "deb_version": chosen,
            "home": cuda.toolkit_home(source, release), "nvcc": cuda.toolkit_nvcc(source, release),
            "default": release == releases[0], "installed": installed,
        })
    if problems:
        fix = ("for the debian source add Debian's non-free component to the rig's apt sources, "
               "or choose a release the source has" if source == "debian"
               else "set rig_cuda_version / rig_cuda_extra_versions to releases the source has")
        module.fail_json(msg="; ".join(problems) + ". Nothing was changed.", fix=fix)
    module.exit_json(
        changed=False, toolkits=toolkits,
        packages=["%s=%s" % (t["package"], t["deb_version"]) for t in toolkits],
        pins=[{"package": t["package"], "version": t["deb_version"]} for t in toolkits])


def _alternative(module):
    """(current target, registered choices) of the `cuda` alternative, or (None, [])."""
    rc, out, _ = module.run_command(["update-alternatives", "--query", "cuda"],
                                    environ_update={"LANG": "C"})
    if rc != 0:
        return None, []
    current, choices = None, []
    for line in out.splitlines():
        if line.startswith("Value:"):
            current = line.split(":", 1)[1].strip()
        elif line.startswith("Alternative:"):
            choices.append(line.split(":", 1)[1].strip())
    return current, choices


def phase_default(module, params, releases):
    source = params["source"]
    release = releases[0]
    home = cuda.toolkit_home(source, release)
    nvcc = cuda.toolkit_nvcc(source, release)
    changed = False
    link = "/usr/local/cuda"
    how = "none"
    if source != "debian":
        current, choices = _alternative(module)
        if home in choices:
            how = "update-alternatives"
            if current != home:
                changed = True
                if not module.check_mode:
                    module.run_command(["update-alternatives", "--set", "cuda", home], check_rc=True)
        else:
            how = "symlink"
            if os.path.lexists(link) and not os.path.islink(link):
                module.fail_json(msg="%s is a real directory, not a link: rigctl does not replace "
                                 "it. Move it away to let rigctl point it at %s." % (link, home))
            if not os.path.islink(link) or os.readlink(link) != home:
                changed = True
                if not module.check_mode:
                    if os.path.islink(link):
                        os.unlink(link)
                    os.symlink(home, link)
    found = None if module.check_mode and changed else cuda.read_nvcc_version(nvcc)
    if not module.check_mode and found != release:
        module.fail_json(msg="the default toolkit's nvcc (%s) reports %s, not CUDA %s"
                         % (nvcc, found or "nothing (missing or broken)", release), changed=changed)
    module.exit_json(changed=changed, home=home, nvcc=nvcc, nvcc_version=found, default_via=how,
                     ccbin=cuda.toolkit_ccbin(source),
                     cuda_home="/usr/local/cuda" if source != "debian" else home)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            phase=dict(type="str", required=True, choices=["check", "plan", "default"]),
            version=dict(type="str", required=True),
            extra_versions=dict(type="list", elements="str", default=[]),
            source=dict(type="str", required=True, choices=list(cuda.SOURCES)),
            allow_minor_compat=dict(type="bool", default=False),
            planned_driver=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        releases = _releases(params)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    {"check": phase_check, "plan": phase_plan, "default": phase_default}[params["phase"]](
        module, params, releases)


if __name__ == "__main__":
    main()
