#!/usr/bin/python
"""Ansible module: fetch a patched P2P source at its pinned commit and check it before
anything on the host's driver changes (rigctl.core.driver)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: nvidia_p2p_source
short_description: Fetch and check a patched NVIDIA open kernel module source
description:
  - Asks the fork (or its local mirror) where the branch points; refuses when it is not
    the pinned commit (the branch moved) or the commit does not exist.
  - Fetches the branch into a cache repository on the host, reads the tree's own
    C(version.mk) and refuses when it differs from the userspace version, naming both
    versions and the catalog entry that would match.
  - Checks the commit out and refuses when the checked-out commit id differs from the pin.
  - Touches nothing but its cache directory; the driver is untouched when it fails.
options:
  source:
    description:
      - rig_p2p_source as the inventory gives it, C(catalog) (optionally with C(url), a
        local mirror of the catalog's fork) or C(url), C(branch), C(commit).
      - Catalog names are resolved on the host from rigctl.core.catalog, the one list.
    type: dict
    required: true
  userspace_version:
    description: The NVIDIA userspace version (rig_driver_version).
    type: str
    required: true
  dest: {description: Cache directory., type: path, default: /var/lib/rigctl/nvidia-p2p}
"""

RETURN = r"""
src: {description: The checked-out tree., returned: success, type: str}
version: {description: NVIDIA_VERSION of the tree's version.mk., returned: success, type: str}
commit: {description: The checked-out commit id., returned: success, type: str}
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.rigctl.core import driver


def main():
    module = AnsibleModule(
        argument_spec={
            "source": {"type": "dict", "required": True},
            "userspace_version": {"type": "str", "required": True},
            "dest": {"type": "path", "default": "/var/lib/rigctl/nvidia-p2p"},
        },
        supports_check_mode=True,
    )
    p = module.params
    try:
        resolved = driver.resolve_p2p_source(p["source"])
    except ValueError as exc:
        module.fail_json(msg=f"{exc}; nothing was changed")
    url, branch, commit = resolved["url"], resolved["branch"], resolved["commit"]
    source = {"url": url, "branch": branch, "commit": commit}
    git = module.get_bin_path("git", required=True)
    env = {"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}

    def run(args, cwd=None, check=True):
        rc, out, err = module.run_command([git] + args, cwd=cwd, environ_update=env)
        if check and rc != 0:
            module.fail_json(msg="git {} failed: {}".format(" ".join(args), (err or out).strip()),
                             **source)
        return rc, out.strip(), err.strip()

    # 1. Fetch the branch into the cache (the only thing this module writes), then check
    # the pin against it: the commit must exist, and the branch must still point at it.
    repo = os.path.join(p["dest"], "git")
    changed = False
    if module.check_mode:
        # read only: ask the remote where the branch points
        _, out, _ = run(["ls-remote", "--heads", url, "refs/heads/" + branch])
        heads = [line.split()[0] for line in out.splitlines() if line.strip()]
        if heads != [commit]:
            module.fail_json(msg="branch {} of {} points at {}, not the pinned commit {}: "
                                 "refused".format(branch, url, heads[0] if heads else "nothing",
                                              commit), **source)
        if not os.path.isdir(os.path.join(repo, ".git")):
            module.exit_json(changed=True, msg=f"would fetch {url} {branch}",
                             version=p["userspace_version"], **source)
    else:
        if not os.path.isdir(os.path.join(repo, ".git")):
            os.makedirs(repo, exist_ok=True)
            run(["init", "-q", repo])
        ref = "refs/rigctl/" + branch
        _, before, _ = run(["rev-parse", "--verify", "--quiet", ref], cwd=repo, check=False)
        rc, out, err = run(["fetch", "-q", "--no-tags", url, f"+refs/heads/{branch}:{ref}"],
                           cwd=repo, check=False)
        if rc != 0:
            why = (err or out).strip()
            module.fail_json(msg=f"cannot fetch branch {branch} from {url}: {why}. Refused; "
                                 "nothing was changed", **source)
        _, head_now, _ = run(["rev-parse", "--verify", "--quiet", ref], cwd=repo)
        changed = before != head_now
        rc, out, _ = run(["rev-parse", "--verify", "--quiet", commit + "^{commit}"], cwd=repo,
                         check=False)
        if rc != 0 or out != commit:
            module.fail_json(msg=f"commit {commit} does not exist in {url} (branch {branch} "
                                 f"points at {head_now}): wrong commit, refused; nothing was "
                                 "built or changed. Pin a commit of the branch in "
                                 "rig_p2p_source.commit.", branch_head=head_now, **source)
        if head_now != commit:
            module.fail_json(
                msg=f"branch {branch} of {url} moved: it points at {head_now}, but the pinned "
                    f"commit is {commit}. Refused (a moved branch is never built); nothing was "
                    "changed. Review the new commits, then pin the new head in "
                    "rig_p2p_source.commit, or point url at a mirror that keeps the pinned "
                    "commit.",
                branch_head=head_now, **source)

    # 2. The tree's own version, read from the pinned commit before anything is built.
    rc, text, err = run(["show", f"{commit}:version.mk"], cwd=repo, check=False)
    if rc != 0:
        module.fail_json(msg=f"{url} at {commit} has no version.mk: not an open-gpu-kernel-modules "
                             "tree; refused, nothing was changed", **source)
    try:
        version = driver.parse_version_mk(text)
    except ValueError as exc:
        module.fail_json(msg=f"{url} at {commit}: {exc}; refused", **source)
    if version != p["userspace_version"]:
        module.fail_json(msg=driver.version_mismatch_message(version, p["userspace_version"],
                                                             source),
                         source_version=version, userspace_version=p["userspace_version"],
                         **source)

    # 3. Check it out and prove the checked-out tree is the pinned commit.
    rc, head, _ = run(["rev-parse", "HEAD"], cwd=repo, check=False)
    rc2, dirty, _ = run(["status", "--porcelain", "--untracked-files=no"], cwd=repo, check=False)
    if rc != 0 or head != commit or dirty:
        if module.check_mode:
            module.exit_json(changed=True, msg=f"would check out {commit}", version=version,
                             **source)
        run(["-c", "advice.detachedHead=false", "checkout", "-q", "--force", "--detach", commit],
            cwd=repo)
        changed = True
        _, head, _ = run(["rev-parse", "HEAD"], cwd=repo)
    if head != commit:
        module.fail_json(msg=f"checked-out commit {head} is not the pinned {commit}: refused",
                         **source)
    module.exit_json(changed=changed, src=repo, version=version, commit=head, url=url,
                     branch=branch, catalog=resolved["catalog"],
                     generations=resolved["generations"])


if __name__ == "__main__":
    main()
