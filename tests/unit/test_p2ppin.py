"""`rigctl p2p pin` judges a branch by its content: the pinned commit's tree against NVIDIA's
stock release of the same version (version.mk), the tag of that name fetched shallowly
from the upstream (--upstream, or RIGCTL_P2P_UPSTREAM). Local git mirrors the test builds
in a temporary directory (no network, no NVIDIA code): an upstream with tags 550.67,
580.105.08 and 580.95.05 (small stock trees), and a fork whose branches are the stock
550.67 (main), a tag's tree plus a patch commit (580.105.08-p2p), a tag's tree under a
release-like name (580.105.08-stock: passes the topology rule, refused by content), a
README-only change, a version.mk mismatch, and a version the upstream has no tag of (the
fallback to the topology rule, with the warning)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rigctl.core import p2ppin

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

BASE, V, W, NOTAG = "550.67", "580.105.08", "580.95.05", "615.71.09"
PATCHED = ["kernel-open/nvidia/nv-p2p.c", "src/nvidia/src/kernel/gpu/bif/kernel_bif.c"]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "rigctl tests", "GIT_AUTHOR_EMAIL": "tests@rigctl.invalid",
    "GIT_COMMITTER_NAME": "rigctl tests", "GIT_COMMITTER_EMAIL": "tests@rigctl.invalid",
    "GIT_AUTHOR_DATE": "2025-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2025-01-01T00:00:00Z",
    "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C",
}


def _git(cwd, *args):
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, **GIT_ENV), timeout=60)
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


def _stock_tree(work: Path, version: str):
    """A small stand-in of NVIDIA's tree at VERSION (layout only, no NVIDIA code)."""
    for p in list(work.iterdir()):
        if p.name != ".git":
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    files = {
        "version.mk": f"NVIDIA_VERSION = {version}\n",
        "README.md": f"# NVIDIA Linux Open GPU Kernel Module Source {version} (test stand-in)\n",
        "kernel-open/nvidia/nv.c": f"/* stand-in of nv.c {version} */\n",
        "kernel-open/nvidia/nv-p2p.c": f"/* stand-in of nv-p2p.c {version} */\n",
        "src/nvidia/src/kernel/gpu/bif/kernel_bif.c": f"/* stand-in {version} */\n",
    }
    for rel, text in files.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(text)


@pytest.fixture(scope="module")
def mirrors(tmp_path_factory):
    root = tmp_path_factory.mktemp("p2ppin")
    work = root / "work"
    work.mkdir()
    _git(work, "init", "-q", "-b", "main")
    commits = {}
    # NVIDIA's releases: one commit per version, tagged by the version (annotated, as
    # NVIDIA's are).
    for version in (BASE, W, V, NOTAG):
        _git(work, "checkout", "-q", "--orphan", f"stock-{version}")
        _stock_tree(work, version)
        _git(work, "add", "-A")
        _git(work, "commit", "-q", "-m", f"{version}")
        if version != NOTAG:
            _git(work, "tag", "-a", "-m", version, version)
        commits[f"stock-{version}"] = _git(work, "rev-parse", "HEAD")
    upstream = root / "upstream.git"
    _git(root, "init", "-q", "--bare", str(upstream))
    _git(work, "push", "-q", str(upstream), *(f"refs/tags/{v}" for v in (BASE, W, V)))

    def branch(name, base, change=None, message="patch"):
        _git(work, "checkout", "-q", "-B", name, commits[f"stock-{base}"])
        if change:
            for rel, text in change.items():
                (work / rel).write_text(text)
            _git(work, "commit", "-q", "-am", message)
        commits[name] = _git(work, "rev-parse", "HEAD")

    patch = {p: "/* stand-in of the P2P patch (no NVIDIA code) */\n" for p in PATCHED}
    branch("main", BASE)  # the forks' main: stock NVIDIA 550.67
    branch(f"{V}-p2p", V, patch)
    branch(f"{V}-stock", V)  # stock 580.105.08 under a release-like name
    branch(f"{V}-readme", V, {"README.md": "# P2P fork (test stand-in)\n"}, "readme")
    branch(f"{V}-p2p-otherversion", W, patch)  # version.mk says 580.95.05
    branch(f"{NOTAG}-p2p", NOTAG, patch)  # the upstream has no tag 615.71.09
    _git(work, "checkout", "-q", "main")
    fork = root / "fork.git"
    _git(root, "clone", "-q", "--bare", str(work), str(fork))
    return {"fork": f"file://{fork}", "upstream": f"file://{upstream}", "commits": commits,
            "root": root}


def rigctl(*args, upstream=None, env_upstream=None):
    env = dict(os.environ)
    env.pop(p2ppin.UPSTREAM_ENV, None)
    # never NVIDIA's github repository from a test: the environment always names a mirror
    env[p2ppin.UPSTREAM_ENV] = env_upstream or "file:///nonexistent/upstream.git"
    argv = [sys.executable, "-m", "rigctl", "p2p", "pin", *args]
    if upstream:
        argv += ["--upstream", upstream]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)


def test_patched_branch_pinned_with_its_footprint(mirrors, tmp_path):
    proc = rigctl(mirrors["fork"], f"{V}-p2p", "--json", upstream=mirrors["upstream"])
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr
    got = json.loads(proc.stdout)
    assert got["commit"] == mirrors["commits"][f"{V}-p2p"] and got["driver_version"] == V
    assert got["verified_by"] == "content" and got["warning"] is None
    assert got["stock"]["tag"] == V and got["stock"]["upstream"] == mirrors["upstream"]
    assert got["stock"]["footprint"] == [{"change": "M", "path": p} for p in PATCHED]
    # the text form names the files as evidence, and stays a valid mapping
    text = rigctl(mirrors["fork"], f"{V}-p2p", upstream=mirrors["upstream"]).stdout
    assert f"# patch footprint against stock NVIDIA {V} (tag {V} of {mirrors['upstream']}): " \
           "2 file(s) differ" in text
    for p in PATCHED:
        assert f"#   M {p}" in text
    assert yaml.safe_load(text)["rig_p2p_source"]["commit"] == mirrors["commits"][f"{V}-p2p"]
    assert not [p for p in os.listdir(os.environ.get("TMPDIR", "/tmp"))
                if p.startswith("rigctl-p2p-pin-")]


def test_footprint_recorded_in_the_catalog_note(mirrors, tmp_path):
    out = tmp_path / "group_vars" / "all" / "p2p_catalog.yml"
    proc = rigctl(mirrors["fork"], f"{V}-p2p", "--write", str(out), "--name", "fork-580",
                  upstream=mirrors["upstream"])
    assert proc.returncode == 0, proc.stderr
    note = yaml.safe_load(out.read_text())["rig_p2p_catalog"]["fork-580"]["note"]
    assert f"differs from stock NVIDIA {V} (tag {V} of {mirrors['upstream']}) in 2 files" in note
    assert all(f"M {p}" in note for p in PATCHED), note


@pytest.mark.parametrize("branch, version", [(f"{V}-stock", V), ("main", BASE)])
def test_stock_trees_refused_by_content(mirrors, branch, version):
    proc = rigctl(mirrors["fork"], branch, upstream=mirrors["upstream"])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert (f"branch '{branch}' (commit {mirrors['commits'][branch]}) is stock NVIDIA "
            f"{version}, carries no patch: its tree is exactly tag {version} of "
            f"{mirrors['upstream']}") in proc.stderr
    assert "fix: pin a patched release branch" in proc.stderr and proc.stdout == ""


def test_the_topology_rule_alone_would_have_passed_the_stock_branch(mirrors):
    """What judging by content adds: 580.105.08-stock is neither main nor at its commit."""
    proc = rigctl(mirrors["fork"], f"{V}-stock", "--json")  # upstream unreachable
    assert proc.returncode == 0, proc.stderr
    assert "warning: the patch was not verified by content" in proc.stderr
    assert json.loads(proc.stdout)["verified_by"] == "topology"


def test_a_change_outside_the_module_sources_is_no_patch(mirrors):
    proc = rigctl(mirrors["fork"], f"{V}-readme", upstream=mirrors["upstream"])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert (f"is stock NVIDIA {V} in its kernel module sources, carries no patch: it differs "
            f"from tag {V} of {mirrors['upstream']} only in README.md") in proc.stderr


def test_version_mk_mismatch_refused_and_compared_with_its_own_version(mirrors):
    proc = rigctl(mirrors["fork"], f"{V}-p2p-otherversion", "--version", V,
                  upstream=mirrors["upstream"])
    assert proc.returncode == 2
    assert f"is NVIDIA {W} by its version.mk, not {V} as given" in proc.stderr
    # without --version it is compared with the stock release its version.mk names
    got = json.loads(rigctl(mirrors["fork"], f"{V}-p2p-otherversion", "--json",
                            upstream=mirrors["upstream"]).stdout)
    assert got["driver_version"] == W and got["stock"]["tag"] == W
    assert [r["path"] for r in got["stock"]["footprint"]] == PATCHED


def test_missing_tag_falls_back_to_the_topology_rule_with_a_warning(mirrors, tmp_path):
    proc = rigctl(mirrors["fork"], f"{NOTAG}-p2p", "--json", upstream=mirrors["upstream"])
    assert proc.returncode == 0, proc.stderr
    assert (f"warning: the patch was not verified by content: the upstream "
            f"{mirrors['upstream']} has no tag {NOTAG}") in proc.stderr
    got = json.loads(proc.stdout)
    assert got["verified_by"] == "topology" and got["stock"]["verified"] is False
    assert got["commit"] == mirrors["commits"][f"{NOTAG}-p2p"]
    text = rigctl(mirrors["fork"], f"{NOTAG}-p2p", upstream=mirrors["upstream"]).stdout
    assert "# NOT verified by content" in text
    out = tmp_path / "cat.yml"
    assert rigctl(mirrors["fork"], f"{NOTAG}-p2p", "--write", str(out), "--name", "fork-615",
                  upstream=mirrors["upstream"]).returncode == 0
    note = yaml.safe_load(out.read_text())["rig_p2p_catalog"]["fork-615"]["note"]
    assert "the patch was NOT verified by content" in note and f"no tag {NOTAG}" in note


def test_unreachable_upstream_falls_back_and_the_topology_rule_still_refuses(mirrors):
    gone = f"file://{mirrors['root']}/no-such-upstream.git"
    proc = rigctl(mirrors["fork"], f"{V}-p2p", upstream=gone)
    assert proc.returncode == 0, proc.stderr
    assert f"warning: the patch was not verified by content: the upstream {gone} could not " \
           "be reached" in proc.stderr
    proc = rigctl(mirrors["fork"], "main", upstream=gone)
    assert proc.returncode == 2
    assert "branch 'main' is not patched for P2P" in proc.stderr
    assert f"(judged by the fork's layout only: the upstream {gone} could not be reached" \
        in proc.stderr


def test_upstream_from_the_environment_and_overridden_by_the_option(mirrors):
    got = json.loads(rigctl(mirrors["fork"], f"{V}-p2p", "--json",
                            env_upstream=mirrors["upstream"]).stdout)
    assert got["verified_by"] == "content" and got["stock"]["upstream"] == mirrors["upstream"]
    gone = f"file://{mirrors['root']}/gone.git"
    got = json.loads(rigctl(mirrors["fork"], f"{V}-p2p", "--json", upstream=gone,
                            env_upstream=mirrors["upstream"]).stdout)
    assert got["verified_by"] == "topology" and got["stock"]["upstream"] == gone


def test_bad_upstream_url_is_bad_input(mirrors):
    proc = rigctl(mirrors["fork"], f"{V}-p2p", upstream="ftp://example.invalid/x.git")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "--upstream: 'ftp://example.invalid/x.git' is not a git URL" in proc.stderr
    assert "fix: give NVIDIA's repository" in proc.stderr


def test_default_upstream_is_nvidias_unless_the_environment_names_one(monkeypatch):
    monkeypatch.delenv(p2ppin.UPSTREAM_ENV, raising=False)
    assert p2ppin.default_upstream() == "https://github.com/NVIDIA/open-gpu-kernel-modules.git"
    monkeypatch.setenv(p2ppin.UPSTREAM_ENV, "file:///srv/mirrors/ogkm.git")
    assert p2ppin.default_upstream() == "file:///srv/mirrors/ogkm.git"


def test_name_status_parsing():
    text = "M\0kernel-open/a.c\0A\0src/b.c\0D\0README.md\0"
    assert p2ppin.parse_name_status(text) == [
        {"change": "D", "path": "README.md"}, {"change": "M", "path": "kernel-open/a.c"},
        {"change": "A", "path": "src/b.c"}]
    assert p2ppin.footprint_text({"footprint": p2ppin.parse_name_status(text)}, limit=2) == \
        "3 files (D README.md, M kernel-open/a.c, and 1 more)"
