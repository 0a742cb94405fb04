#!/usr/bin/python
"""Ansible module: the NVIDIA driver userspace from NVIDIA's .run installer, without its
kernel modules (rigctl.core.runfile)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: nvidia_runfile
short_description: Install NVIDIA's driver userspace from its .run installer, never half-checked
description:
  - C(state=present) makes the userspace of exactly C(version) installed by NVIDIA's
    installer at C(url) (http, https or file), whose file must have exactly C(sha256).
    When rigctl's record and the installed C(nvidia-installer --version) already say so,
    nothing is downloaded or run.
  - Otherwise, before any change, installed distribution packages of the NVIDIA driver
    are refused (they conflict), the file is downloaded into a temporary directory, its
    sha256 checked, and its own C(--version) compared with C(version); any mismatch is
    refused with nothing changed. Then an installed other version is removed with its own
    C(nvidia-uninstall --silent), the installer runs with C(--silent) and the
    no-kernel-modules option it documents, and the result is checked and recorded in
    C(/var/lib/rigctl/nvidia-runfile.json).
  - C(state=absent) runs C(nvidia-uninstall --silent) when an installation is there.
options:
  url: {description: The installer's URL (http, https, file)., type: str}
  sha256: {description: The file's sha256 (64 hex digits)., type: str}
  version: {description: The driver version the installer must be., type: str}
  state: {description: What to make true., type: str, default: present, choices: [present, absent]}
  timeout: {description: Seconds for the download., type: int, default: 900}
  host: {description: The rig's inventory name (for messages)., type: str}
  packages_before:
    description:
      - C(dpkg-query -W -f '${db:Status-Abbrev} ${binary:Package}\n') lines from before this
        run's earlier steps (installing git for the patched source); a refusal names the
        packages added since, so "Nothing was changed" is said only when it is true.
    type: list
    elements: str
  lists_refreshed:
    description: Whether an earlier step refreshed apt's lists (said in a refusal).
    type: bool
    default: false
  source_cache:
    description: The patched source cache when an earlier step of this run wrote it (said in a refusal).
    type: str
"""

RETURN = r"""
record: {description: What rigctl recorded about the installation., returned: state=present, type: dict}
uninstalled: {description: The version removed with its own uninstaller., returned: when one was, type: str}
"""

import os
import shutil
import subprocess
import tempfile
import urllib.request

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.rigctl.core import credurl, runfile


def run(argv, timeout=1800):
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout,
                              env=dict(os.environ, LC_ALL="C"))
        return proc.returncode, proc.stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)


def installed_version():
    if not os.path.exists(runfile.INSTALLER):
        return None
    rc, out = run([runfile.INSTALLER, "--version"], timeout=60)
    return runfile.parse_installer_version(out) if rc == 0 else None


def installed_packages():
    """Names of the installed (or held) packages, from dpkg."""
    rc, out = run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev} ${binary:Package}\n"], timeout=120)
    names = []
    for line in out.splitlines() if rc == 0 else []:
        parts = line.split()
        if len(parts) == 2 and parts[0][1:2] == "i":
            names.append(parts[1].split(":", 1)[0])
    return names


def download(url, dest, timeout):
    clean, user, password = credurl.split_credentials(url)
    req = urllib.request.Request(clean)
    if user:
        import base64
        token = base64.b64encode(("%s:%s" % (user, password or "")).encode()).decode()
        req.add_header("Authorization", "Basic " + token)
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(dest, "wb") as fh:
        shutil.copyfileobj(resp, fh, 1 << 20)
    return clean


def main():
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str"},
            "sha256": {"type": "str", "no_log": False},
            "version": {"type": "str"},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
            "timeout": {"type": "int", "default": 900},
            "host": {"type": "str"},
            "packages_before": {"type": "list", "elements": "str"},
            "lists_refreshed": {"type": "bool", "default": False},
            "source_cache": {"type": "str"},
        },
        required_if=[("state", "present", ["url", "sha256", "version"])],
        supports_check_mode=True,
    )
    p = module.params
    result = {"changed": False}
    have = installed_version()

    def changes():
        """What this run changed before a refusal (never the driver): the sentence."""
        now = None
        if p["packages_before"] is not None:
            _, out = run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev} ${binary:Package}\n"],
                         timeout=120)
            now = out.splitlines()
        return runfile.changes_before(p["packages_before"], now, p["lists_refreshed"],
                                      p["source_cache"])

    if p["state"] == "absent":
        if os.path.exists(runfile.UNINSTALLER):
            result.update(changed=True, uninstalled=have)
            if not module.check_mode:
                rc, out = run(runfile.uninstall_argv())
                if rc != 0:
                    module.fail_json(msg="nvidia-uninstall --silent failed (exit %d): %s\n%s"
                                     % (rc, out.strip()[-1500:], runfile.tail(runfile.UNINSTALL_LOG)),
                                     **result)
                if os.path.exists(runfile.UNINSTALLER):
                    module.fail_json(msg="nvidia-uninstall --silent returned but %s is still "
                                     "there; see %s" % (runfile.UNINSTALLER, runfile.UNINSTALL_LOG),
                                     **result)
        if os.path.exists(runfile.RECORD_PATH):
            result["changed"] = True
            if not module.check_mode:
                runfile.remove_record()
        module.exit_json(**result)

    version, sha = p["version"], (p["sha256"] or "").strip()
    try:
        clean_url = credurl.split_credentials(p["url"])[0]
    except ValueError as exc:
        module.fail_json(msg="rig_driver_runfile_url: %s. %s" % (exc, changes()))
    if not runfile.is_sha256(sha):
        module.fail_json(msg="rig_driver_runfile_sha256 must be the file's sha256 (64 hex "
                         "digits, `sha256sum FILE`). " + changes())
    # Distribution driver packages conflict even when the installation is in place (apt
    # may have pulled one in since): checked on every run, before anything else.
    conflicts = runfile.conflicting_packages(installed_packages())
    if conflicts:
        module.fail_json(msg=runfile.conflict_message(
            p["host"] or os.uname()[1], conflicts, version, changes()),
            conflicting_packages=conflicts, **result)
    record = runfile.read_record()
    if runfile.up_to_date(record, version, sha, have):
        result["record"] = record
        module.exit_json(**result)

    work = tempfile.mkdtemp(prefix="rigctl-runfile-", dir="/var/tmp")
    try:
        path = os.path.join(work, runfile.file_name(clean_url))
        try:
            download(p["url"], path, p["timeout"])
        except Exception as exc:  # noqa: BLE001 - any download failure is one refusal
            module.fail_json(msg="cannot download the NVIDIA installer from %s: %s. %s"
                             % (clean_url, credurl.mask_text(str(exc)), changes()), **result)
        found = runfile.sha256_file(path)
        if found != sha.lower():
            module.fail_json(msg=runfile.sha_mismatch_message(clean_url, found, sha, changes()),
                             **result)
        os.chmod(path, 0o700)
        rc, out = run(["sh", path, "--version"], timeout=300)
        got = runfile.parse_installer_version(out) if rc == 0 else None
        if got != version:
            module.fail_json(msg=runfile.version_mismatch_message(clean_url, got, version,
                                                                  changes()),
                             installer_answer=out.strip()[-500:], **result)
        rc, helptext = run(["sh", path, "--advanced-options"], timeout=300)
        try:
            argv = runfile.install_argv(path, helptext)
        except ValueError as exc:
            module.fail_json(msg="%s: %s; rigctl installs the userspace only (the kernel "
                             "module is built by DKMS). %s" % (clean_url, exc, changes()),
                             **result)
        result["changed"] = True
        if have and have != version:
            result["uninstalled"] = have
        if module.check_mode:
            module.exit_json(**result)
        if os.path.exists(runfile.UNINSTALLER) and have != version:
            # another version: removed by its own uninstaller before the new one goes in
            rc, out = run(runfile.uninstall_argv())
            if rc != 0:
                module.fail_json(msg="removing the installed NVIDIA userspace %s with "
                                 "nvidia-uninstall --silent failed (exit %d); nothing new was "
                                 "installed: %s\n%s" % (have, rc, out.strip()[-1500:],
                                                         runfile.tail(runfile.UNINSTALL_LOG)),
                                 **result)
            result["uninstalled"] = have
        rc, out = run(argv)
        if rc != 0:
            module.fail_json(msg="NVIDIA's installer %s failed (exit %d): %s\nLast lines of %s:\n%s"
                             % (runfile.file_name(clean_url), rc, out.strip()[-1500:],
                                runfile.INSTALL_LOG, runfile.tail(runfile.INSTALL_LOG)), **result)
        now = installed_version()
        if now != version:
            module.fail_json(msg="NVIDIA's installer finished, but nvidia-installer --version now "
                             "says %s, not %s; see %s" % (now or "nothing", version,
                                                          runfile.INSTALL_LOG), **result)
        rec = runfile.make_record(clean_url, sha, version, argv, result.get("uninstalled"))
        runfile.write_record(rec)
        result["record"] = rec
    finally:
        shutil.rmtree(work, ignore_errors=True)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
