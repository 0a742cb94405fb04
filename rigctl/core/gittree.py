"""Exactly one commit's tracked files out of a git repository, nothing else.

The patched P2P source is registered with DKMS from the source cache
(``/var/lib/rigctl/nvidia-p2p/git``); a copy of that work tree would carry whatever else is
in it (untracked or ignored files: a stray patch, old build outputs). ``export_commit``
writes the commit's tree through a temporary index (``git read-tree`` +
``git checkout-index``), so neither the work tree nor the cache's own index matters, and
then checks the result against ``git ls-tree``.

Stdlib only, Python 3.9 syntax: shipped to managed hosts.
"""

from __future__ import annotations

import os
import subprocess
import tempfile


class ExportError(Exception):
    """The commit could not be exported, or the result is not exactly its tree."""


def _git(git, repo, args, env, timeout=600):
    try:
        proc = subprocess.run(
            [git, "-C", repo] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExportError("git %s: %s" % (" ".join(args), exc)) from None
    if proc.returncode != 0:
        raise ExportError("git %s failed: %s" % (
            " ".join(args), proc.stderr.decode("utf-8", "replace").strip()))
    return proc.stdout


def tracked_paths(repo, commit, git="git", env=None):
    """The paths of ``commit``'s files and symlinks (submodules left out), sorted."""
    out = _git(git, repo, ["ls-tree", "-r", "-z", "--full-tree", commit], _env(env))
    paths = []
    for entry in out.split(b"\0"):
        if not entry:
            continue
        meta, _, path = entry.partition(b"\t")
        if meta.split(b" ")[0] == b"160000":  # a submodule: no files of its own here
            continue
        paths.append(os.fsdecode(path))
    return sorted(paths)


def tree_paths(root, ignore=()):
    """Every file and symlink under ``root``, relative, sorted (``ignore``: relative paths)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = name if rel == "." else os.path.join(rel, name)
            if path not in ignore:
                found.append(path)
    return sorted(found)


def _env(env):
    full = dict(os.environ)
    full.update(env or {})
    full.setdefault("LC_ALL", "C")
    full.pop("GIT_INDEX_FILE", None)
    full.pop("GIT_DIR", None)
    full.pop("GIT_WORK_TREE", None)
    return full


def export_commit(repo, commit, dest, git="git", env=None):
    """Write exactly ``commit``'s tracked files from ``repo`` into ``dest`` (created; it
    must not exist yet) and return their paths. Raises ExportError when git fails or the
    written tree is not exactly the commit's (then ``dest`` is removed again)."""
    if os.path.lexists(dest):
        raise ExportError("%s exists already" % dest)
    fd, index = tempfile.mkstemp(prefix="rigctl-export-index-")
    os.close(fd)
    os.unlink(index)  # git wants to create the index file itself
    run_env = _env(env)
    run_env["GIT_INDEX_FILE"] = index
    try:
        os.makedirs(dest, 0o755)
        _git(git, repo, ["read-tree", commit], run_env)
        _git(git, repo, ["checkout-index", "--all", "--force",
                         "--prefix=" + os.path.join(os.path.abspath(dest), "")], run_env)
        want = tracked_paths(repo, commit, git, env)
        have = tree_paths(dest)
        if have != want:
            extra = sorted(set(have) - set(want))[:5]
            missing = sorted(set(want) - set(have))[:5]
            raise ExportError("the exported tree is not exactly commit %s (extra: %s; missing: %s)"
                              % (commit, ", ".join(extra) or "none", ", ".join(missing) or "none"))
        return want
    except BaseException:
        import shutil

        shutil.rmtree(dest, ignore_errors=True)
        raise
    finally:
        if os.path.exists(index):
            os.unlink(index)
        if os.path.exists(index + ".lock"):
            os.unlink(index + ".lock")


def matches_commit(root, repo, commit, git="git", env=None, extra=("dkms.conf",)):
    """Whether the tree at ``root`` holds exactly ``commit``'s file paths (plus ``extra``,
    files rigctl adds, like DKMS's dkms.conf). Compares paths, not contents."""
    try:
        want = set(tracked_paths(repo, commit, git, env))
    except ExportError:
        return False
    have = set(tree_paths(root))
    return have - set(extra) == want - set(extra)
