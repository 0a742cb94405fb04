"""Pin a P2P fork branch: what ``rigctl p2p pin URL BRANCH`` does.

1. ``git ls-remote`` resolves the branch (and the fork's default branch) to commits.
2. The branch is fetched shallowly (depth 1) into a temporary repository, removed again
   whatever happens; its ``version.mk`` is read at that commit (never the branch name or
   the README, which are known to disagree with it). A version the user names
   (``--version``) must be version.mk's.
3. The branch must carry the patch, judged by content: NVIDIA's stock release of the same
   version (the tag named by the version, like ``570.86.16``, in NVIDIA's repository or
   the mirror given as ``upstream`` / ``RIGCTL_P2P_UPSTREAM``) is fetched shallowly, trees
   only, into the same temporary repository. The same tree: refused, it is stock NVIDIA.
   Different: the files that differ are the patch's footprint, returned as evidence; a
   footprint outside the kernel modules' sources (``kernel-open/``, ``src/``) carries no
   patch either and is refused.
4. When the upstream cannot be reached or has no such tag, the content is not verified
   (``verified_by: topology`` and a ``warning``) and the fork's layout decides instead:
   the forks keep the patch on their release branches, their default branch (``main``) is
   stock NVIDIA (550.67 in both forks), so the default branch, a branch at its commit and
   a branch with its tree are refused.

Credentials in a URL (``https://user:TOKEN@host/...``) reach git only through
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

# NVIDIA's own repository of the open kernel modules: one tag per release, named by the
# version (``570.86.16``). The stock tree a fork branch is compared with comes from there,
# or from the mirror the environment variable names (``--upstream`` beats both).
UPSTREAM_URL = "https://github.com/NVIDIA/open-gpu-kernel-modules.git"
UPSTREAM_ENV = "RIGCTL_P2P_UPSTREAM"
# Where the kernel modules' sources live in NVIDIA's tree: a patch changes files there.
SOURCE_DIRS = ("kernel-open/", "src/")
# How long the upstream may take to answer ``ls-remote`` (a blackholed network must not
# hang a pin; the fork itself already answered).
UPSTREAM_LIST_TIMEOUT = 60


def default_upstream():
    """The upstream URL when none is given: RIGCTL_P2P_UPSTREAM, else NVIDIA's."""
    return os.environ.get(UPSTREAM_ENV) or UPSTREAM_URL


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


def _clean_url(url, what):
    """(clean URL, env for git) of a fork or upstream URL; raises PinRefused."""
    problem = _url_problem(url)
    if problem and what == "fork":
        raise PinRefused(*problem)
    if problem:
        raise PinRefused("%s: %s" % (what, problem[0]),
                         "give NVIDIA's repository (%s) or a mirror of it, like "
                         "file:///srv/mirrors/open-gpu-kernel-modules.git" % UPSTREAM_URL)
    try:
        clean, user, password = credurl.split_credentials(url)
    except ValueError as exc:
        raise PinRefused(str(exc), "use an https:// URL with the token, or an SSH key") from None
    if clean.startswith("/"):
        clean = "file://" + clean
    return clean, credurl.git_credential_env(clean, user, password), user is not None


def pin(url, branch, version=None, upstream=None, git="git"):
    """The pinned source: ``{"url" (without credentials), "branch", "commit",
    "driver_version", "kernels" (kernelgate.kernel_range), "default_branch",
    "verified_by" ("content" or "topology"), "stock" (the comparison with NVIDIA's
    release: upstream, tag, footprint, or why it could not be made), "warning" (None when
    verified by content)}``. ``upstream``: NVIDIA's repository or a mirror of it (default
    :func:`default_upstream`). Raises PinRefused."""
    clean, env, had_credentials = _clean_url(url, "fork")
    up_clean, up_env, _ = _clean_url(upstream or default_upstream(), "--upstream")
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
    fix = "pin a patched release branch: `rigctl p2p list` names the known ones"
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
        if version is not None and version != found:
            raise PinRefused("branch %s (commit %s) is NVIDIA %s by its version.mk, not %s as "
                             "given" % (branch, commit, found, version),
                             "pin the branch of %s, or use --version %s (the userspace must "
                             "be exactly version.mk's version)" % (version, found))
        stock = compare_with_stock(work, commit, found, up_clean, up_env, git=git)
        if stock["verified"]:
            _judge_by_content(branch, commit, found, stock, fix)
            warning = None
        else:
            try:
                _judge_by_topology(work, clean, env, branch, commit, heads, default, fix, git)
            except PinRefused as exc:
                raise PinRefused("%s (judged by the fork's layout only: %s)"
                                 % (exc.message, stock["reason"]), exc.fix) from None
            warning = ("the patch was not verified by content: %s. Judged only by the branch's "
                       "place in the fork (not its default branch, not at its commit, not "
                       "its tree). Verify with --upstream pointing at a mirror of %s that has "
                       "the tag %s" % (stock["reason"], UPSTREAM_URL, found))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"url": clean, "branch": branch, "commit": commit, "driver_version": found,
            "kernels": kernelgate.kernel_range(found), "default_branch": default,
            "verified_by": "content" if stock["verified"] else "topology", "stock": stock,
            "warning": warning, "had_credentials": had_credentials}


def compare_with_stock(work, commit, version, upstream, env, git="git"):
    """Compare ``commit`` (fetched into the repository ``work``) with NVIDIA's release
    ``version``: the tag of that name fetched shallowly, trees only, from ``upstream``.
    ``{"upstream", "tag", "verified", "identical", "footprint" ([{"change": A|M|D|T,
    "path"}], sorted by path), "reason" (why it could not be verified, else None)}``."""
    out = {"upstream": upstream, "tag": version, "verified": False, "identical": None,
           "footprint": [], "reason": None}
    ref = "refs/tags/%s" % version
    try:
        rc, listed, err = _git(["ls-remote", upstream, ref], env, git=git,
                               timeout=UPSTREAM_LIST_TIMEOUT)
    except PinRefused as exc:  # a timeout: unreachable, like any other failure to answer
        rc, listed, err = 1, "", exc.message
    if rc != 0:
        out["reason"] = "the upstream %s could not be reached (%s)" % (
            upstream, ((err or "").strip().splitlines() or ["rc=%d" % rc])[-1])
        return out
    if not any(line.split("\t")[-1].strip() == ref for line in listed.splitlines()):
        out["reason"] = "the upstream %s has no tag %s (NVIDIA's stock release of that " \
                        "version)" % (upstream, version)
        return out
    # Trees only (--filter=blob:none): the comparison reads tree entries, never file
    # contents. A server that cannot filter sends the blobs too (slower, same result).
    rc, _, err = _git(["fetch", "-q", "--depth", "1", "--no-tags", "--filter=blob:none",
                       upstream, "+%s:refs/rigctl/stock" % ref], env, cwd=work, git=git)
    if rc != 0:
        out["reason"] = "fetching tag %s from %s failed (%s)" % (
            version, upstream, (err.splitlines() or ["rc=%d" % rc])[-1])
        return out
    _, t_fork, _ = _git(["rev-parse", commit + "^{tree}"], {}, cwd=work, git=git)
    rc, t_stock, err = _git(["rev-parse", "refs/rigctl/stock^{tree}"], {}, cwd=work, git=git)
    if rc != 0 or not t_stock.strip():
        out["reason"] = "tag %s of %s names no tree (%s)" % (version, upstream, err)
        return out
    out["verified"] = True
    out["identical"] = t_fork.strip() == t_stock.strip()
    if not out["identical"]:
        rc, diff, err = _git(["diff-tree", "-r", "-z", "--no-renames", "--name-status",
                              "refs/rigctl/stock^{tree}", commit + "^{tree}"], {}, cwd=work,
                             git=git)
        if rc != 0:
            out.update(verified=False, reason="comparing with tag %s failed (%s)" % (
                version, err))
            return out
        out["footprint"] = parse_name_status(diff)
    return out


def parse_name_status(text):
    """``git diff-tree -r -z --name-status`` output as [{"change", "path"}], sorted."""
    fields = [f for f in text.split("\0") if f]
    rows = [{"change": fields[i][:1], "path": fields[i + 1]}
            for i in range(0, len(fields) - 1, 2)]
    return sorted(rows, key=lambda r: r["path"])


def _judge_by_content(branch, commit, version, stock, fix):
    where = "tag %s of %s" % (stock["tag"], stock["upstream"])
    if stock["identical"]:
        raise PinRefused("branch %r (commit %s) is stock NVIDIA %s, carries no patch: its tree "
                         "is exactly %s" % (branch, commit, version, where), fix)
    paths = [r["path"] for r in stock["footprint"]]
    if not any(p.startswith(SOURCE_DIRS) for p in paths):
        raise PinRefused("branch %r (commit %s) is stock NVIDIA %s in its kernel module "
                         "sources, carries no patch: it differs from %s only in %s, nothing "
                         "under %s" % (branch, commit, version, where, ", ".join(paths[:10])
                                       + (" and %d more" % (len(paths) - 10)
                                          if len(paths) > 10 else ""),
                                       " or ".join(SOURCE_DIRS)), fix)


def _judge_by_topology(work, clean, env, branch, commit, heads, default, fix, git):
    """The fallback when the content cannot be compared: the forks' layout (the patch on
    release branches, the default branch stock)."""
    default_commit = heads.get(default) if default else None
    unpatched = ("%s's %s branch is stock NVIDIA: the forks carry the P2P patch on their "
                 "release branches (named after the driver version, like 580.105.08-p2p), "
                 "never on %s" % (clean, default or "default", default or "it"))
    if branch == default or branch in DEFAULT_BRANCHES:
        raise PinRefused("branch %r is not patched for P2P: %s" % (branch, unpatched), fix)
    if default_commit and commit == default_commit:
        raise PinRefused("branch %r points at %s, the head of %s (commit %s), so it is not "
                         "patched for P2P: %s" % (branch, default, default, commit, unpatched),
                         fix)
    if not default_commit:
        return
    # Only the commit object is needed for its tree id (servers that cannot filter send
    # the tree too; that is just slower).
    rc, _, _ = _git(["fetch", "-q", "--depth", "1", "--no-tags", "--filter=tree:0", clean,
                     "+refs/heads/%s:refs/rigctl/default" % default], env, cwd=work, git=git)
    if rc == 0:
        _, t1, _ = _git(["rev-parse", commit + "^{tree}"], {}, cwd=work, git=git)
        _, t2, _ = _git(["rev-parse", "refs/rigctl/default^{tree}"], {}, cwd=work, git=git)
        if t1.strip() and t1.strip() == t2.strip():
            raise PinRefused("branch %r (commit %s) has exactly the tree of %s, so it is not "
                             "patched for P2P: %s" % (branch, commit, default, unpatched), fix)


def footprint_text(stock, limit=None):
    """``N files (M kernel-open/x.c, A src/y.h, ...)``: the footprint in one line."""
    rows = stock.get("footprint") or []
    shown = rows if limit is None else rows[:limit]
    text = ", ".join("%s %s" % (r["change"], r["path"]) for r in shown)
    if len(rows) > len(shown):
        text += ", and %d more" % (len(rows) - len(shown))
    return "%d file%s (%s)" % (len(rows), "" if len(rows) == 1 else "s", text)


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
