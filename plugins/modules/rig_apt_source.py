#!/usr/bin/python
"""Ansible module: a signed apt repository with a pinned key, in one round trip
(rigctl.core.aptsource decides)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: rig_apt_source
short_description: Add an apt repository whose signing key must match a pinned fingerprint
description:
  - Downloads the repository's key file from O(key_url) (http, https or file URL) and refuses
    it, before apt trusts anything, unless it holds exactly one OpenPGP key with the pinned
    O(fingerprint) (computed from the key packets; gpg is not needed on the rig).
  - Installs the key as the source's own keyring (C(/etc/apt/keyrings/rigctl-NAME.asc)) and
    writes a deb822 source (C(/etc/apt/sources.list.d/rigctl-NAME.sources)) with C(Signed-By)
    that keyring: never apt's global trust.
  - When either file changed (or O(update=always)), runs C(apt-get update) for this source
    alone and checks that apt accepted its signature. A repository that is unsigned, signed
    by another key, unreachable or inconsistent is refused: both files are put back as they
    were and the task fails naming the reason; nothing was installed from it.
  - Check mode downloads and checks the key (read only) and reports what would change.
options:
  name: {description: file name stem (rigctl-NAME.*); default derived from O(url), type: str}
  url: {description: repository URL, type: str, required: true}
  key_url: {description: URL of the repository's key file, type: str}
  fingerprint: {description: the pinned key fingerprint (primary key or a subkey), type: str}
  suites:
    description: "Suites: of the source (C(/) for a flat repository like NVIDIA's)"
    type: str
    default: /
  components:
    description: "Components: (none for a flat repository)"
    type: list
    elements: str
    default: []
  state: {description: present or absent, type: str, choices: [present, absent], default: present}
  update:
    description: when to run the targeted apt-get update
    type: str
    choices: [changed, always, never]
    default: changed
  legacy_paths:
    description: files an older rigctl wrote for this repository, removed
    type: list
    elements: str
    default: []
  comment: {description: first-line comment of the source file, type: str}
"""

RETURN = r"""
name: {description: the source's name stem, returned: always, type: str}
sources_path: {description: the deb822 source file, returned: always, type: str}
keyring_path: {description: the keyring file, returned: always, type: str}
fingerprint: {description: the key's fingerprint, returned: when state=present, type: str}
updated: {description: whether apt-get update ran for this source, returned: always, type: bool}
"""

import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.rigctl.core import aptsource
from ansible.module_utils.urls import open_url


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def _fetch(url):
    if url.startswith("file://"):
        with open(url[len("file://"):], "rb") as handle:
            return handle.read()
    response = open_url(url, timeout=30, follow_redirects="safe")
    return response.read()


def _write(module, path, data, mode):
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".rigctl-")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, mode)
    module.atomic_move(tmp, path)


def _restore(module, path, old):
    if old is None:
        if os.path.exists(path):
            os.unlink(path)
    else:
        _write(module, path, old, 0o644)


def _update_one(module, sources_path):
    """apt-get update for this one source; returns (rc, combined output)."""
    parts = tempfile.mkdtemp(prefix="rigctl-apt-")
    try:
        shutil.copy(sources_path, os.path.join(parts, os.path.basename(sources_path)))
        argv = ["apt-get", "update", "-o", "Dir::Etc::sourcelist=/dev/null",
                "-o", "Dir::Etc::sourceparts=%s" % parts, "-o", "APT::Get::List-Cleanup=0"]
        rc, out, err = module.run_command(argv, environ_update={"LANG": "C", "LC_ALL": "C"})
        return rc, (out or "") + (err or "")
    finally:
        shutil.rmtree(parts, ignore_errors=True)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str"),
            url=dict(type="str", required=True),
            key_url=dict(type="str"),
            fingerprint=dict(type="str"),
            suites=dict(type="str", default="/"),
            components=dict(type="list", elements="str", default=[]),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            update=dict(type="str", choices=["changed", "always", "never"], default="changed"),
            legacy_paths=dict(type="list", elements="str", default=[]),
            comment=dict(type="str"),
        ),
        required_if=[("state", "present", ("key_url", "fingerprint"))],
        supports_check_mode=True,
    )
    p = module.params
    url = p["url"] if p["url"].endswith("/") or p["suites"] != "/" else p["url"] + "/"
    name = p["name"] or aptsource.source_name(url)
    sources_path, keyring_path, _ = aptsource.paths(name)
    result = dict(name=name, sources_path=sources_path, keyring_path=keyring_path, updated=False,
                  changed=False)
    legacy = [path for path in p["legacy_paths"] if os.path.lexists(path)]
    # Another rigctl source file for the same repository (an older rigctl named it
    # differently): two Signed-By keyrings for one URL make apt refuse every update.
    for other in sorted(os.listdir(aptsource.SOURCES_DIR)) if os.path.isdir(aptsource.SOURCES_DIR) else []:
        path = os.path.join(aptsource.SOURCES_DIR, other)
        if not other.startswith("rigctl-") or not other.endswith(".sources") or path == sources_path:
            continue
        text = (_read(path) or b"").decode("utf-8", "replace")
        if "URIs: %s\n" % url in text and text.startswith("# Managed by rigctl"):
            legacy.append(path)
            for line in text.splitlines():
                keyring = line.split(":", 1)[1].strip() if line.startswith("Signed-By:") else None
                if keyring and os.path.basename(keyring).startswith("rigctl-") and keyring != keyring_path:
                    legacy.append(keyring)

    if p["state"] == "absent":
        present = [path for path in (sources_path, keyring_path) if os.path.exists(path)] + legacy
        if present and not module.check_mode:
            for path in present:
                os.unlink(path)
        module.exit_json(changed=bool(present), removed=present, **result)

    try:
        key = _fetch(p["key_url"])
    except Exception as exc:  # noqa: BLE001 - any download error is reported the same way
        module.fail_json(
            msg="could not download the signing key of %s from %s: %s. Nothing was changed. "
            "Check the URL (a local mirror must serve the key file too)." % (url, p["key_url"], exc),
            **result)
    ok, problem = aptsource.check_key(key, p["fingerprint"], p["key_url"])
    if not ok:
        module.fail_json(
            msg="%s. Refused before apt trusts it; nothing was installed. Check the mirror, or pin "
            "the mirror's own key in the inventory if it is re-signed." % problem, **result)
    result["fingerprint"] = aptsource.normalize_fingerprint(p["fingerprint"])

    want_key = aptsource.armor(aptsource.dearmor(key))
    want_src = aptsource.sources_text(name, url, keyring_path, p["suites"], p["components"],
                                      p["comment"]).encode("utf-8")
    old_key, old_src = _read(keyring_path), _read(sources_path)
    changed = old_key != want_key or old_src != want_src or bool(legacy)
    result["changed"] = changed
    if module.check_mode:
        module.exit_json(**result)

    if old_key != want_key:
        _write(module, keyring_path, want_key, 0o644)
    if old_src != want_src:
        _write(module, sources_path, want_src, 0o644)
    if p["update"] == "always" or (p["update"] == "changed" and changed):
        rc, output = _update_one(module, sources_path)
        result["updated"] = True
        kind, text = aptsource.classify_apt_update(output)
        if rc != 0 or kind is not None:
            _restore(module, keyring_path, old_key)
            _restore(module, sources_path, old_src)
            module.fail_json(
                msg="apt refused the repository %s: %s. The source was %s; nothing was installed "
                "from it. Fix the repository (sign it with the key pinned for it), or pin the key "
                "it is really signed with. apt said: %s"
                % (url, text or "apt-get update failed (rc=%d)" % rc,
                   "removed again" if old_src is None else "put back as it was",
                   " | ".join(aptsource.apt_problem_lines(output)) or output.strip()[-400:]),
                reason=kind or "apt-error", **result)
    for path in legacy:
        if os.path.lexists(path):
            os.unlink(path)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
