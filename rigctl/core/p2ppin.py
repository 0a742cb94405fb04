"""Pin a P2P fork branch: what ``rigctl p2p pin URL BRANCH`` does.

1. ``git ls-remote`` resolves the branch (and the fork's default branch) to commits.
2. The branch is fetched shallowly (depth 1) into a temporary repository, removed again
   whatever happens; its ``version.mk`` is read at that commit (never the branch name or
   the README, which are known to disagree with it).
3. The branch must carry the patch. The forks keep the patch on their release branches;
   their default branch (``main``) is stock NVIDIA (550.67 in both forks) and carries none.
   So a branch is refused as unpatched when it is the default branch, when it points at
   the default branch's commit, or when its tree is the default branch's tree (a copy
   under another name). Recognised by git, never by the branch's name.
4. A version the user names (``--version``) must be version.mk's.

Credentials in the URL (``https://user:TOKEN@host/...``) reach git only through
:func:`credurl.git_credential_env` (a credential helper reading its environment): no
command line, message or result carries them.

Stdlib only, Python 3.9 syntax.
"""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import tempfile

from . import credurl, driver, kernelgate

DEFAULT_BRANCHES = ("main", "master")


class PinRefused(Exception):
    """A branch that cannot be pinned: ``message`` and ``fix`` for the rig owner."""

    def __init__(self, message, fix):
        Exception.__init__(self, message)
        self.message = message
        self.fix = fix


def _git(args, env, cwd=None, git="git", timeout=900):
    full = dict(os.environ)
    for k in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        full.pop(k, None)
    full.update({"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"})
    full.update(env or {})
    try:
        proc = subprocess.run([git] + list(args), cwd=cwd, env=full, timeout=timeout,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise PinRefused("cannot run git: %s" % exc, "install git") from None
    except subprocess.TimeoutExpired:
        raise PinRefused("git %s took longer than %d s" % (args[0], timeout),
                         "check the URL and the network, or use a local mirror") from None
    return (proc.returncode, proc.stdout.decode("utf-8", "replace"),
            credurl.mask_text(proc.stderr.decode("utf-8", "replace")).strip())


def parse_ls_remote(text):
    """(heads {branch: commit}, default branch name or None) from ``git ls-remote
    --symref URL`` output."""
    heads, default = {}, None
    for line in text.splitlines():
        if line.startswith("ref: "):
            target, _, name = line[5:].partition("\t")
            if name.strip() == "HEAD" and target.startswith("refs/heads/"):
                default = target[len("refs/heads/"):]
            continue
        commit, _, ref = line.partition("\t")
        if ref.startswith("refs/heads/"):
            heads[ref[len("refs/heads/"):]] = commit.strip()
    if default is None:
        default = next((b for b in DEFAULT_BRANCHES if b in heads), None)
    return heads, default


def pin(url, branch, version=None, git="git"):
    """The pinned source: ``{"url" (without credentials), "branch", "commit",
    "driver_version", "kernels" (kernelgate.kernel_range), "default_branch"}``. Raises
    PinRefused."""
    problem = _url_problem(url)
    if problem:
        raise PinRefused(*problem)
    try:
        clean, user, password = credurl.split_credentials(url)
    except ValueError as exc:
        raise PinRefused(str(exc), "use an https:// URL with the token, or an SSH key") from None
    if clean.startswith("/"):
        clean = "file://" + clean
    env = credurl.git_credential_env(clean, user, password)
    rc, out, err = _git(["ls-remote", "--symref", clean, "HEAD", "refs/heads/*"], env, git=git)
    if rc != 0:
        raise PinRefused("cannot list the branches of %s: %s" % (clean, err or "rc=%d" % rc),
                         "check the URL (a local mirror works: file:///path/fork.git) and "
                         "your access to it")
    heads, default = parse_ls_remote(out)
    if branch not in heads:
        near = difflib.get_close_matches(branch, list(heads), n=3, cutoff=0.6)
        p2p = sorted(b for b in heads if "p2p" in b)[-5:]
        raise PinRefused("%s has no branch %r" % (clean, branch),
                         ("did you mean %s?" % ", ".join(near)) if near else
                         ("its P2P branches include %s" % ", ".join(p2p)) if p2p else
                         "`git ls-remote %s` lists its branches" % clean)
    commit = heads[branch]
    default_commit = heads.get(default) if default else None
    unpatched = ("%s's %s branch is stock NVIDIA: the forks carry the P2P patch on their "
                 "release branches (named after the driver version, like 580.105.08-p2p), "
                 "never on %s" % (clean, default or "default", default or "it"))
    fix = "pin a patched release branch: `rigctl p2p list` names the known ones"
    if branch == default or branch in DEFAULT_BRANCHES:
        raise PinRefused("branch %r is not patched for P2P: %s" % (branch, unpatched), fix)
    if default_commit and commit == default_commit:
        raise PinRefused("branch %r points at %s, the head of %s (commit %s), so it is not "
                         "patched for P2P: %s" % (branch, default, default, commit, unpatched),
                         fix)
    tmp = tempfile.mkdtemp(prefix="rigctl-p2p-pin-")
    try:
        work = os.path.join(tmp, "git")
        _check(_git(["init", "-q", "--bare", work], {}, git=git), "git init")
        rc, _, err = _git(["fetch", "-q", "--depth", "1", "--no-tags", clean,
                           "+refs/heads/%s:refs/rigctl/pin" % branch], env, cwd=work, git=git)
        if rc != 0:
            raise PinRefused("cannot fetch branch %s from %s: %s" % (branch, clean, err),
                             "check the URL and your access to it")
        _, fetched, _ = _git(["rev-parse", "--verify", "refs/rigctl/pin^{commit}"], {},
                             cwd=work, git=git)
        fetched = fetched.strip()
        if fetched != commit:
            raise PinRefused("branch %s moved while it was pinned (listed at %s, fetched %s)"
                             % (branch, commit, fetched), "run rigctl p2p pin again")
        rc, text, _ = _git(["show", "%s:version.mk" % commit], {}, cwd=work, git=git)
        if rc != 0:
            raise PinRefused("branch %s of %s (commit %s) has no version.mk: not an "
                             "open-gpu-kernel-modules tree" % (branch, clean, commit),
                             "pin a branch of a fork of NVIDIA's open-gpu-kernel-modules")
        try:
            found = driver.parse_version_mk(text)
        except ValueError as exc:
            raise PinRefused("branch %s (commit %s): %s" % (branch, commit, exc),
                             "pin a branch whose version.mk states NVIDIA_VERSION") from None
        if default_commit:
            # Only the commit object is needed for its tree id (servers that cannot filter
            # send the tree too; that is just slower).
            rc, _, err = _git(["fetch", "-q", "--depth", "1", "--no-tags", "--filter=tree:0",
                               clean, "+refs/heads/%s:refs/rigctl/default" % default],
                              env, cwd=work, git=git)
            if rc == 0:
                _, t1, _ = _git(["rev-parse", commit + "^{tree}"], {}, cwd=work, git=git)
                _, t2, _ = _git(["rev-parse", "refs/rigctl/default^{tree}"], {}, cwd=work,
                                git=git)
                if t1.strip() and t1.strip() == t2.strip():
                    raise PinRefused("branch %r (commit %s) has exactly the tree of %s, so it "
                                     "is not patched for P2P: %s" % (branch, commit, default,
                                                                    unpatched), fix)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if version is not None and version != found:
        raise PinRefused("branch %s (commit %s) is NVIDIA %s by its version.mk, not %s as "
                         "given" % (branch, commit, found, version),
                         "pin the branch of %s, or use --version %s (the userspace must be "
                         "exactly version.mk's version)" % (version, found))
    return {"url": clean, "branch": branch, "commit": commit, "driver_version": found,
            "kernels": kernelgate.kernel_range(found), "default_branch": default,
            "had_credentials": user is not None}


def _check(result, what):
    rc, _, err = result
    if rc != 0:
        raise PinRefused("%s failed: %s" % (what, err), "check git and the temporary directory")


def _url_problem(url):
    from .catalog import url_problem

    return url_problem(url)


def default_name(url, version):
    """``<fork owner>-<version>`` (``aikitoria-580.105.08``) for a fork URL."""
    path = url.rstrip("/").split("://", 1)[-1].split(":", 1)[-1]
    parts = [p for p in path.split("/") if p]
    owner = parts[-2] if len(parts) >= 2 else "fork"
    owner = "".join(c if c.isalnum() or c in "._-" else "-" for c in owner).strip("-.") or "fork"
    return "%s-%s" % (owner, version)
