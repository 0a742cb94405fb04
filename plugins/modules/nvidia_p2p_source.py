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
  - Checks the commit out, removes every other file from the work tree (modified,
    untracked and ignored ones, with C(git checkout --force) and C(git clean -ffdx)) and
    refuses when the checked-out commit id differs from the pin.
  - Everything is checked in a temporary repository (removed afterwards) before the cache
    directory is written; a refusal leaves the cache as it was. The refusal message says
    exactly what changed on the host before it (the packages that installing git added,
    from C(packages_before)), or that nothing did.
  - Credentials in the URL (C(https://user:token@host/...)) never reach a command line,
    git's config, the cache or the result; git gets them from a credential helper that
    reads its environment, and the URL is returned and recorded without them.
options:
  source:
    description:
      - rig_p2p_source as the inventory gives it, C(catalog) (optionally with C(url), a
        local mirror of the catalog's fork) or C(url), C(branch), C(commit).
      - Catalog names are resolved on the host from rigctl.core.catalog, the one list,
        then from C(catalog) (the user catalog).
    type: dict
    required: true
  catalog:
    description:
      - rig_p2p_catalog, the user catalog (named entries that C(rigctl p2p pin) writes),
        validated like the built-in one.
    type: dict
  userspace_version:
    description: The NVIDIA userspace version (rig_driver_version).
    type: str
    required: true
  dest: {description: Cache directory., type: path, default: /var/lib/rigctl/nvidia-p2p}
  packages_before:
    description:
      - C(dpkg-query -W -f '${db:Status-Abbrev} ${binary:Package}\n') lines from before
        git was installed for this check; a refusal lists the packages added since.
    type: list
    elements: str
  lists_refreshed:
    description: Whether installing git refreshed apt's package lists (said in a refusal).
    type: bool
    default: false
"""

RETURN = r"""
src: {description: The checked-out tree., returned: success, type: str}
version: {description: NVIDIA_VERSION of the tree's version.mk., returned: success, type: str}
commit: {description: The checked-out commit id., returned: success, type: str}
"""

import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.rigctl.core import credurl, driver


def main():
    module = AnsibleModule(
        argument_spec={
            "source": {"type": "dict", "required": True},
            "catalog": {"type": "dict"},
            "userspace_version": {"type": "str", "required": True},
            "dest": {"type": "path", "default": "/var/lib/rigctl/nvidia-p2p"},
            "packages_before": {"type": "list", "elements": "str"},
            "lists_refreshed": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    p = module.params
    # Never in a result, a message or the invocation Ansible logs: Ansible replaces these
    # strings by ******** everywhere in what the module returns.
    module.no_log_values.update(driver.p2p_source_secrets(p["source"], p["catalog"]))

    def changes():
        """What changed on the host before a refusal (the packages installing git added
        since packages_before), or that nothing did: the sentence."""
        now = None
        if p["packages_before"] is not None:
            _, out, _ = module.run_command(driver.DPKG_QUERY, environ_update={"LC_ALL": "C"})
            now = out.splitlines()
        return driver.p2p_check_changes(p["packages_before"], now, p["lists_refreshed"])

    # The role installs git before this module runs: even these input refusals say what
    # that changed.
    try:
        username, password = driver.p2p_source_credentials(p["source"])
    except ValueError as exc:
        module.fail_json(msg=f"{exc}. {changes()}")
    try:
        resolved = driver.resolve_p2p_source(p["source"], p["catalog"])
    except ValueError as exc:
        module.fail_json(msg=f"{exc}. {changes()}")
    url, branch, commit = resolved["url"], resolved["branch"], resolved["commit"]
    source = {"url": url, "branch": branch, "commit": commit}

    cache = os.path.join(p["dest"], "git")
    cache_written = []  # set once the checked source goes into the cache

    def refuse(msg, **extra):
        said = changes()
        if cache_written:
            said = ("The source cache %s was written (the fork was checked); the driver was "
                    "not touched. %s" % (cache, said.replace("Nothing was changed",
                                                             "Nothing else was changed")))
        module.fail_json(msg=msg.rstrip(". ") + ". " + said, **dict(source, **extra))

    git = module.get_bin_path("git")
    if not git:
        if module.check_mode:
            module.exit_json(changed=True, msg=f"would install git, then fetch {url} {branch} "
                                               "and check it", **source)
        refuse("git is not installed on the host, so the patched source cannot be fetched; "
               "install git (the role does) and run again")
    # GIT_OPTIONAL_LOCKS=0: `git status` only reads (it would otherwise refresh and write
    # the cache's index), so a run whose source is already in place changes nothing there.
    env = {"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"}

    def run(args, cwd=None, check=True, extra_env=None):
        rc, out, err = module.run_command([git] + args, cwd=cwd,
                                          environ_update=dict(env, **(extra_env or {})))
        if check and rc != 0:
            refuse("git {} failed: {}".format(" ".join(args), (err or out).strip()))
        return rc, out.strip(), err.strip()

    have_cache = os.path.isdir(os.path.join(cache, ".git"))
    ref = "refs/rigctl/" + branch
    # 1. Fetch the branch into a temporary repository (reusing the cache's objects, read
    # only) and check the pin there: the commit must exist, the branch must still point at
    # it, the tree's own version.mk must be the userspace version. The cache is written
    # only once all of that holds; the temporary repository is removed in every case.
    tmp = tempfile.mkdtemp(prefix="rigctl-p2p-check-", dir="/var/tmp")
    try:
        work = os.path.join(tmp, "git")
        run(["init", "-q", work])
        if have_cache:
            with open(os.path.join(work, ".git", "objects", "info", "alternates"), "w") as fh:
                fh.write(os.path.join(cache, ".git", "objects") + "\n")
        rc, out, err = run(["fetch", "-q", "--no-tags", url, f"+refs/heads/{branch}:{ref}"],
                           cwd=work, check=False,
                           extra_env=credurl.git_credential_env(url, username, password))
        if rc != 0:
            refuse(f"cannot fetch branch {branch} from {url}: {(err or out).strip()}. Refused")
        _, head_now, _ = run(["rev-parse", "--verify", "--quiet", ref], cwd=work)
        rc, out, _ = run(["rev-parse", "--verify", "--quiet", commit + "^{commit}"], cwd=work,
                         check=False)
        if rc != 0 or out != commit:
            refuse(f"commit {commit} does not exist in {url} (branch {branch} points at "
                   f"{head_now}): wrong commit, refused; nothing was built. Pin a commit of the "
                   "branch in rig_p2p_source.commit", branch_head=head_now)
        if head_now != commit:
            refuse(f"branch {branch} of {url} moved: it points at {head_now}, but the pinned "
                   f"commit is {commit}. Refused (a moved branch is never built). Review the new "
                   "commits, then pin the new head in rig_p2p_source.commit, or point url at a "
                   "mirror that keeps the pinned commit", branch_head=head_now)
        # 2. The tree's own version, read from the pinned commit before anything is built.
        rc, text, err = run(["show", f"{commit}:version.mk"], cwd=work, check=False)
        if rc != 0:
            refuse(f"{url} at {commit} has no version.mk: not an open-gpu-kernel-modules tree; "
                   "refused")
        try:
            version = driver.parse_version_mk(text)
        except ValueError as exc:
            refuse(f"{url} at {commit}: {exc}; refused")
        if version != p["userspace_version"]:
            msg = driver.version_mismatch_message(version, p["userspace_version"], source)
            refuse(msg.replace(" Nothing was changed.", ""), source_version=version,
                   userspace_version=p["userspace_version"])

        # 3. Checked: bring the branch into the cache (a move the first time, a local
        # fetch later) unless this is check mode.
        if not module.check_mode:
            cache_written.append(True)
        if not have_cache:
            if module.check_mode:
                module.exit_json(changed=True, msg=f"would fetch {url} {branch} into {cache}",
                                 version=version, **source)
            os.makedirs(p["dest"], exist_ok=True)
            if os.path.isdir(cache) and not os.path.islink(cache):
                shutil.rmtree(cache)  # a leftover that is no repository: ours to replace
            elif os.path.lexists(cache):
                os.unlink(cache)
            shutil.move(work, cache)
            changed = True
        else:
            _, before, _ = run(["rev-parse", "--verify", "--quiet", ref], cwd=cache,
                               check=False)
            changed = before != commit
            if changed and module.check_mode:
                module.exit_json(changed=True, msg=f"would fetch {url} {branch} into {cache}",
                                 version=version, **source)
            if changed:
                run(["fetch", "-q", "--no-tags", work, f"+{ref}:{ref}"], cwd=cache)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # 4. Check it out and prove the checked-out tree is the pinned commit, with nothing
    # else in the work tree: modified, untracked and ignored files are removed (DKMS gets
    # exactly the commit's tracked files; nvidia_dkms exports them with rigctl.core.gittree).
    rc, head, _ = run(["rev-parse", "HEAD"], cwd=cache, check=False)
    rc2, dirty, _ = run(["status", "--porcelain", "--ignored", "--untracked-files=all"],
                        cwd=cache, check=False)
    if rc != 0 or head != commit or dirty or rc2 != 0:
        if module.check_mode:
            module.exit_json(changed=True, msg=f"would check out {commit} and clean the work "
                                               "tree", version=version, **source)
        run(["-c", "advice.detachedHead=false", "checkout", "-q", "--force", "--detach", commit],
            cwd=cache)
        run(["clean", "-q", "-ffdx"], cwd=cache)
        changed = True
        _, head, _ = run(["rev-parse", "HEAD"], cwd=cache)
        _, dirty, _ = run(["status", "--porcelain", "--ignored", "--untracked-files=all"],
                          cwd=cache)
        if dirty:
            module.fail_json(msg=f"the source cache {cache} still has files that are not in "
                                 f"commit {commit} after a clean: {dirty.splitlines()[:5]}",
                             **source)
    if head != commit:
        module.fail_json(msg=f"checked-out commit {head} is not the pinned {commit}: refused",
                         **source)
    module.exit_json(changed=changed, src=cache, version=version, commit=head, url=url,
                     branch=branch, catalog=resolved["catalog"],
                     generations=resolved["generations"])


if __name__ == "__main__":
    main()
