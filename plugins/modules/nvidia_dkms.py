#!/usr/bin/python
"""Ansible module: build and install an NVIDIA kernel module with DKMS for the target
kernels, safely (rigctl.core.driver)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: nvidia_dkms
short_description: Build and install an NVIDIA kernel module with DKMS, never half-done
description:
  - C(state=built) registers a source tree under its own DKMS name and builds it for every
    target kernel without installing it; a failed build unregisters it again, leaves the
    installed driver as it was and fails with the build log's relevant lines.
  - C(state=installed) also installs it for every target kernel, then (with
    C(expect_module)) moves away every other copy of the driver's modules under the
    kernel's updates/dkms and extra trees that depmod could prefer (kept under
    /var/lib/rigctl/removed-modules/KERNEL/), rebuilds an initramfs that still holds a
    removed or older NVIDIA module (C(update-initramfs -u -k KERNEL)), checks which module
    file each target kernel resolves (no stock module may shadow it) and that no initramfs
    holds a stale copy, and writes the provenance record (with the NVIDIA installer's
    record when the userspace came from it).
  - C(state=absent) removes every version registered under the name.
  - Nothing is rebuilt when DKMS already has the version built or installed for a kernel.
  - Runs depmod only for the target kernels (DKMS does), never loads a module.
options:
  name: {description: DKMS module name., type: str, required: true}
  version: {description: DKMS version (required unless state=absent)., type: str}
  source: {description: Tree to register (copied to /usr/src/NAME-VERSION without .git)., type: path}
  kernels: {description: Target kernels., type: list, elements: str, default: []}
  state:
    description: What to make true.
    type: str
    default: installed
    choices: [built, installed, absent]
  remove_other_versions:
    description: Remove other versions of NAME once this one is installed.
    type: bool
    default: false
  expect_module:
    description: Module name the target kernels must resolve to this build (shadowing check).
    type: str
  provenance: {description: Record to write once installed (build_time is added)., type: dict}
  source_commit:
    description:
      - With C(source) a git repository, register exactly this commit's tracked files
        (rigctl.core.gittree), never the work tree's other files. A registered tree that
        holds other files than the commit's is removed and registered again.
    type: str
"""

RETURN = r"""
built: {description: Kernels built in this run., returned: always, type: list}
installed: {description: Kernels installed in this run., returned: always, type: list}
resolved: {description: Per kernel, the module file it resolves., returned: when checked, type: dict}
"""

import os
import shutil
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.rigctl.core import driver, gittree, hostfacts, runfile

# Where stray copies of the driver's modules go (kept, never deleted: a rig owner can look).
REMOVED_DIR = "/var/lib/rigctl/removed-modules"


def dkms_states(name):
    rc, out, _ = hostfacts.run(["dkms", "status", "-m", name], timeout=120)
    states = {}
    for e in hostfacts.parse_dkms_status(out if rc == 0 else ""):
        if e["module"] == name:
            states.setdefault(e["version"], {})[e["kernel"]] = e["state"]
    return states


def own_module_files(name, version, kernel):
    """The files DKMS installs for NAME/VERSION under /lib/modules/KERNEL/updates/dkms:
    the built modules' names, with any compression DKMS may add on install."""
    built = f"/var/lib/dkms/{name}/{version}/{kernel}/{os.uname()[4]}/module"
    try:
        bases = {runfile.module_base(n) for n in os.listdir(built)} - {None}
    except OSError:
        bases = set()
    top = os.path.join("/lib/modules", kernel, "updates/dkms")
    return [os.path.join(top, b + ext) for b in bases for ext in (".ko", ".ko.xz", ".ko.zst", ".ko.gz")]


def remove_stray_copies(module, name, version, kernels, result):
    """Move away the driver module files under updates/dkms and extra that are not this
    build's (depmod could prefer them), then depmod those kernels."""
    for k in kernels:
        ours = own_module_files(name, version, k)
        if not ours:
            continue  # what DKMS built is unreadable: never guess which files are ours
        strays = runfile.stray_copies(runfile.module_copies(k), ours)
        if not strays:
            continue
        result["changed"] = True
        result.setdefault("removed_copies", {})[k] = strays
        if module.check_mode:
            continue
        top = os.path.join("/lib/modules", k)
        for path in strays:
            dest = os.path.join(REMOVED_DIR, k, os.path.relpath(path, top))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.move(path, dest)
        rc, out, err = module.run_command(["depmod", "-a", k])
        if rc != 0:
            module.fail_json(msg=f"depmod -a {k} failed after moving stray NVIDIA modules to "
                                 f"{REMOVED_DIR}: {(err or out).strip()}", **result)


def stale_initramfs(kernel):
    """NVIDIA modules the kernel's initramfs holds that are gone from disk or older than
    the copy on disk; None when there is no initramfs or no lsinitramfs to read it."""
    initrd = f"/boot/initrd.img-{kernel}"
    lsinit = shutil.which("lsinitramfs")
    if not os.path.isfile(initrd) or not lsinit:
        return None
    rc, out, _ = hostfacts.run([lsinit, initrd], timeout=300)
    if rc != 0:
        return None
    held = runfile.initramfs_modules(out, kernel)
    on_disk = {}
    for rel in held:
        try:
            on_disk[rel] = os.stat(os.path.join("/lib/modules", kernel, rel)).st_mtime
        except OSError:
            on_disk[rel] = None
    return runfile.stale_initramfs_modules(held, on_disk, os.stat(initrd).st_mtime)


def refresh_initramfs(module, kernels, result):
    """Rebuild the initramfs of every target kernel that still holds a stale NVIDIA module,
    then check again."""
    for k in kernels:
        stale = stale_initramfs(k)
        if not stale:
            continue
        result["changed"] = True
        result.setdefault("initramfs_rebuilt", {})[k] = stale
        if module.check_mode:
            continue
        tool = module.get_bin_path("update-initramfs")
        if not tool:
            module.fail_json(msg=f"the initramfs of {k} holds NVIDIA modules that are gone or "
                                 f"older on disk ({', '.join(stale)}) and update-initramfs is not "
                                 "installed to rebuild it", **result)
        rc, out, err = module.run_command([tool, "-u", "-k", k])
        still = stale_initramfs(k) if rc == 0 else stale
        if rc != 0 or still:
            module.fail_json(msg=f"update-initramfs -u -k {k} did not remove the stale NVIDIA "
                                 f"modules from /boot/initrd.img-{k} ({', '.join(still or stale)}): "
                                 f"{(err or out).strip()[-1500:]}", **result)


def main():
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "version": {"type": "str"},
            "source": {"type": "path"},
            "kernels": {"type": "list", "elements": "str", "default": []},
            "state": {"type": "str", "default": "installed",
                      "choices": ["built", "installed", "absent"]},
            "remove_other_versions": {"type": "bool", "default": False},
            "expect_module": {"type": "str"},
            "provenance": {"type": "dict"},
            "source_commit": {"type": "str"},
        },
        required_if=[("state", "built", ["version"]), ("state", "installed", ["version"])],
        supports_check_mode=True,
    )
    p = module.params
    name, version, state = p["name"], p["version"], p["state"]
    dkms = module.get_bin_path("dkms", required=state != "absent")
    result = {"changed": False, "built": [], "installed": [], "removed": []}

    def dk(args, what):
        rc, out, err = module.run_command([dkms] + args, environ_update={"LC_ALL": "C"})
        return rc, out, err

    states = dkms_states(name) if dkms else {}

    def remove_version(ver):
        result["changed"] = True
        result["removed"].append(ver)
        if module.check_mode:
            return
        dk(["remove", "-m", name, "-v", ver, "--all"], "remove")
        shutil.rmtree(f"/usr/src/{name}-{ver}", ignore_errors=True)
        shutil.rmtree(f"/var/lib/dkms/{name}/{ver}", ignore_errors=True)

    if state == "absent":
        for ver in sorted(states):
            remove_version(ver)
        for path in [d for d in os.listdir("/usr/src") if d.startswith(name + "-")]:
            if os.path.isfile(os.path.join("/usr/src", path, "dkms.conf")):
                result["changed"] = True
                if not module.check_mode:
                    shutil.rmtree(os.path.join("/usr/src", path), ignore_errors=True)
        if os.path.exists(driver.PROVENANCE_PATH) and name == driver.P2P_DKMS_NAME:
            result["changed"] = True
            if not module.check_mode:
                os.unlink(driver.PROVENANCE_PATH)
        module.exit_json(**result)

    kernels = p["kernels"]
    if not kernels:
        module.fail_json(msg="no target kernel to build for", **result)
    have = states.get(version, {})
    srcdir = f"/usr/src/{name}-{version}"
    registered = version in states or os.path.isfile(os.path.join(srcdir, "dkms.conf"))
    git = module.get_bin_path("git", required=True) if p["source_commit"] and p["source"] else None
    if registered and git and not gittree.matches_commit(
            srcdir, p["source"], p["source_commit"], git=git):
        # registered from a tree with other files than the commit's (an older rigctl
        # copied the cache's work tree). Not installed anywhere: register the exact tree
        # again (nothing to lose). Installed: the module in place stays; say how to redo it.
        if any(s == "installed" for s in have.values()):
            module.warn(f"{srcdir} holds files that are not in commit {p['source_commit']} "
                        "(registered by an older rigctl from the source cache's work tree); "
                        f"to rebuild it from exactly the commit: `dkms remove {name}/{version} "
                        "--all`, then provision again")
        else:
            if not module.check_mode:
                dk(["remove", "-m", name, "-v", version, "--all"], "remove")
                shutil.rmtree(srcdir, ignore_errors=True)
                shutil.rmtree(f"/var/lib/dkms/{name}/{version}", ignore_errors=True)
            result["reregistered"] = True
            states.pop(version, None)
            registered = False
            have = {}
    to_build = [k for k in kernels if have.get(k) not in ("built", "installed")]
    to_install = [k for k in kernels if have.get(k) != "installed"] if state == "installed" else []
    if module.check_mode:
        result.update(changed=bool(to_build or to_install or not registered),
                      built=to_build, installed=to_install)
        module.exit_json(**result)

    added_now = False
    if not registered:
        if not p["source"]:
            module.fail_json(msg=f"{name}/{version} is not registered with DKMS and no source "
                                 "was given", **result)
        shutil.rmtree(srcdir, ignore_errors=True)
        if git:
            try:
                gittree.export_commit(p["source"], p["source_commit"], srcdir, git=git)
            except gittree.ExportError as exc:
                module.fail_json(msg=f"cannot register {name}/{version}: {exc}", **result)
        else:
            shutil.copytree(p["source"], srcdir, symlinks=True,
                            ignore=shutil.ignore_patterns(".git"))
        if not os.path.isfile(os.path.join(srcdir, "dkms.conf")) or name == driver.P2P_DKMS_NAME:
            with open(os.path.join(srcdir, "dkms.conf"), "w") as fh:
                fh.write(driver.dkms_conf(name, version))
        rc, out, err = dk(["add", "-m", name, "-v", version], "add")
        if rc != 0 and "already added" not in (out + err):
            shutil.rmtree(srcdir, ignore_errors=True)
            module.fail_json(msg=f"dkms add {name}/{version} failed: {(err or out).strip()}",
                             **result)
        added_now = True
        result["changed"] = True

    build_time = None
    for k in to_build:
        started = time.time()
        rc, out, err = dk(["build", "-m", name, "-v", version, "-k", k], "build")
        if rc != 0:
            log_path = f"/var/lib/dkms/{name}/{version}/build/make.log"
            log = hostfacts.read(log_path) or (out + "\n" + err)
            keep = "/var/lib/rigctl/nvidia-p2p/last-failed-build.log"
            try:
                os.makedirs(os.path.dirname(keep), exist_ok=True)
                with open(keep, "w") as fh:
                    fh.write(log)
            except OSError:
                keep = log_path
            lines = driver.relevant_build_lines(log)
            if added_now or not any(s == "installed" for s in have.values()):
                # never installed: unregister it, the driver in place stays as it was
                dk(["remove", "-m", name, "-v", version, "--all"], "remove")
                shutil.rmtree(srcdir, ignore_errors=True)
            module.fail_json(
                msg="building {} {} for kernel {} failed; the driver in place was not touched. "
                    "Full log: {}. Relevant lines:\n{}".format(name, version, k, keep, "\n".join(lines)),
                build_log_lines=lines, build_log=keep, kernel=k, **result)
        result["built"].append(k)
        result["changed"] = True
        build_time = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        result.setdefault("build_seconds", {})[k] = round(time.time() - started, 1)

    for k in to_install:
        rc, out, err = dk(["install", "-m", name, "-v", version, "-k", k, "--force"], "install")
        if rc != 0:
            why = (err or out).strip()[-2000:]
            module.fail_json(msg=f"dkms install {name}/{version} for {k} failed: {why}", **result)
        result["installed"].append(k)
        result["changed"] = True

    if state == "installed" and p["remove_other_versions"]:
        for ver in sorted(states):
            if ver != version:
                remove_version(ver)

    if state == "installed" and p["expect_module"]:
        remove_stray_copies(module, name, version, kernels, result)
        refresh_initramfs(module, kernels, result)
        resolved, bad = {}, []
        target = hostfacts.modprobe_name()
        for k in kernels:
            info = hostfacts.resolve_module(k, target) or {"filename": None}
            resolved[k] = {key: info.get(key) for key in
                           ("filename", "version", "license", "location", "srcversion")}
            resolved[k].update(kernel=k, name=target)
            # the build as DKMS keeps it (Debian 13's DKMS keeps and installs .ko.xz)
            base = "/var/lib/dkms/{}/{}/{}/{}/module/{}.ko".format(
                name, version, k, os.uname()[4], p["expect_module"])
            want = next((base + ext for ext in ("", ".xz", ".zst", ".gz")
                         if os.path.exists(base + ext)), base)
            fn = info["filename"] or ""
            ok = target == p["expect_module"] and info.get("location") == "dkms"
            if ok and os.path.exists(want):
                built = hostfacts.modinfo(want) or {}
                ok = bool(info.get("srcversion")) and info["srcversion"] == built.get("srcversion")
            if not ok:
                bad.append("{} resolves {} ({})".format(k, fn or "nothing", target))
        result["resolved"] = resolved
        if bad:
            module.fail_json(msg=f"the module built by DKMS ({name}/{version}) is not the one the "
                                 f"target kernels load: {'; '.join(bad)}. Another module shadows "
                                 "it: remove the stock NVIDIA kernel module package or the "
                                 "modprobe redirect.", **result)

    if state == "installed" and p["provenance"] is not None:
        record = dict(p["provenance"])
        if record.get("source") == "runfile":
            # the userspace came from NVIDIA's installer (nvidia_runfile's record)
            record["runfile"] = runfile.read_record()
        old = driver.read_provenance() or {}
        same_build = old.get("dkms_version") == version and old.get("build_time")
        record["dkms_name"], record["dkms_version"] = name, version
        record["kernels"] = sorted(kernels)
        record["build_time"] = build_time or (old.get("build_time") if same_build else None) \
            or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if driver.write_provenance(record):
            result["changed"] = True
        result["provenance"] = record
    module.exit_json(**result)


if __name__ == "__main__":
    main()
