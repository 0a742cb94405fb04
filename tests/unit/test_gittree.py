"""rigctl.core.gittree: the DKMS source tree is exactly the pinned commit's tracked files,
whatever else is in the source cache's work tree (untracked, ignored, modified, staged)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from rigctl.core import gittree

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")

ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent",
}


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, env=dict(os.environ, **ENV)).stdout.strip()


@pytest.fixture
def cache(tmp_path):
    """A source cache like /var/lib/rigctl/nvidia-p2p/git, checked out at the pin, then
    dirtied in every way a work tree can be."""
    repo = tmp_path / "git"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "version.mk").write_text("NVIDIA_VERSION = 535.261.03\n")
    (repo / "kernel-open").mkdir()
    (repo / "kernel-open" / "nv.c").write_text("int nv;\n")
    (repo / ".gitignore").write_text("*.o\n")
    os.symlink("kernel-open/nv.c", repo / "link.c")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "pinned")
    pinned = git(repo, "rev-parse", "HEAD")
    (repo / "kernel-open" / "later.c").write_text("int later;\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "later")
    git(repo, "tag", "later")
    git(repo, "checkout", "-q", "--detach", pinned)
    # the dirt: untracked, ignored, a modified tracked file, a staged new file
    (repo / "kernel-open" / "stray.c").write_text("#error untracked\n")
    (repo / "kernel-open" / "old.o").write_text("stale object\n")
    (repo / "kernel-open" / "nv.c").write_text("int modified;\n")
    (repo / "staged.c").write_text("int staged;\n")
    git(repo, "add", "staged.c")
    return repo, pinned


def test_export_is_exactly_the_commits_tracked_files(cache, tmp_path):
    repo, pinned = cache
    dest = tmp_path / "usr-src" / "nvidia-p2p-535.261.03-abc"
    got = gittree.export_commit(str(repo), pinned, str(dest), env=ENV)
    assert got == [".gitignore", "kernel-open/nv.c", "link.c", "version.mk"]
    assert gittree.tree_paths(str(dest)) == got
    assert (dest / "kernel-open" / "nv.c").read_text() == "int nv;\n"  # the commit's content
    assert os.readlink(dest / "link.c") == "kernel-open/nv.c"
    assert not (dest / ".git").exists()
    # the cache's own index and work tree are as they were
    assert "staged.c" in git(repo, "diff", "--cached", "--name-only")
    assert (repo / "kernel-open" / "stray.c").exists()


def test_export_of_another_commit_of_the_cache(cache, tmp_path):
    repo, _ = cache
    later = git(repo, "rev-parse", "later^{commit}")
    got = gittree.export_commit(str(repo), later, str(tmp_path / "out"), env=ENV)
    assert "kernel-open/later.c" in got


def test_export_refuses_an_existing_destination_and_cleans_up_on_failure(cache, tmp_path):
    repo, pinned = cache
    (tmp_path / "there").mkdir()
    with pytest.raises(gittree.ExportError, match="exists already"):
        gittree.export_commit(str(repo), pinned, str(tmp_path / "there"), env=ENV)
    with pytest.raises(gittree.ExportError, match="read-tree"):
        gittree.export_commit(str(repo), "0" * 40, str(tmp_path / "bad"), env=ENV)
    assert not (tmp_path / "bad").exists()


def test_matches_commit_sees_an_untracked_file(cache, tmp_path):
    repo, pinned = cache
    dest = tmp_path / "src"
    gittree.export_commit(str(repo), pinned, str(dest), env=ENV)
    (dest / "dkms.conf").write_text("PACKAGE_NAME=nvidia-p2p\n")  # what rigctl adds
    assert gittree.matches_commit(str(dest), str(repo), pinned, env=ENV)
    (dest / "kernel-open" / "stray.c").write_text("#error\n")
    assert not gittree.matches_commit(str(dest), str(repo), pinned, env=ENV)
    # a plain copy of the dirty work tree (what the cache used to give DKMS) does not match
    copy = tmp_path / "copy"
    shutil.copytree(repo, copy, symlinks=True, ignore=shutil.ignore_patterns(".git"))
    assert not gittree.matches_commit(str(copy), str(repo), pinned, env=ENV)
