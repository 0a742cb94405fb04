"""`rigctl p2p pin|list` against a local mirror of a stand-in fork that the test builds
(tests/fixtures/fake_p2p_fork.sh, FAKE_P2P_TREE=minimal) in a temporary directory: a
patched branch is pinned from its own version.mk; `main` (stock), a branch with main's
tree and a version.mk mismatch are refused (exit 2, fix named); credentials in the URL
never reach git's argv or the output; the user catalog written with --write is used and
validated like the built-in one."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rigctl.core import catalog, driver, p2ppin
from rigctl.inventory import check as inventory_check
from rigctl.inventory import load

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "fake_p2p_fork.sh"
VERSION = "535.261.03"

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


@pytest.fixture(autouse=True)
def no_upstream(monkeypatch):
    """`p2p pin` compares the branch with NVIDIA's release from the upstream repository
    (tests/unit/test_p2ppin.py tests that against local mirrors). Here the upstream is a
    path that does not exist, so nothing goes to github: the topology rule decides."""
    monkeypatch.setenv("RIGCTL_P2P_UPSTREAM", "file:///nonexistent/upstream.git")


@pytest.fixture(scope="module")
def fork(tmp_path_factory):
    dest = tmp_path_factory.mktemp("p2p-fork") / "fork.git"
    proc = subprocess.run(["sh", str(FIXTURE), VERSION, str(dest)], capture_output=True,
                          text=True, env=dict(os.environ, FAKE_P2P_TREE="minimal"),
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = dict(line.split("=", 1) for line in proc.stdout.split())
    return out


def rigctl(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "rigctl", *args], capture_output=True,
                          text=True, env=env or dict(os.environ), cwd=cwd, timeout=300)


def test_patched_branch_pinned_from_its_version_mk(fork, tmp_path):
    proc = rigctl("p2p", "pin", fork["url"], f"{VERSION}-p2p", "--json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["commit"] == fork["p2p"]
    assert got["driver_version"] == VERSION and got["branch"] == f"{VERSION}-p2p"
    # 535 is before 550.142 (6.13) and 580.126.09 (pci_resize_resource, 6.12.97 in 6.12.x)
    assert got["kernels"]["below"] == "6.12.97"
    text = rigctl("p2p", "pin", fork["url"], f"{VERSION}-p2p").stdout
    assert f'rig_driver_version: "{VERSION}"' in text
    assert f'  commit: "{fork["p2p"]}"' in text and f"  url: {fork['url']}" in text
    # the printed mapping is a valid rig_p2p_source for the inventory check
    mapping = yaml.safe_load(text)
    assert driver.resolve_p2p_source(mapping["rig_p2p_source"])["commit"] == fork["p2p"]
    # the temporary repository is gone
    assert not [p for p in os.listdir(os.environ.get("TMPDIR", "/tmp"))
                if p.startswith("rigctl-p2p-pin-")]


@pytest.mark.parametrize("branch, needle", [
    ("main", "branch 'main' is not patched for P2P"),
    (f"{VERSION}-nopatch", "has exactly the tree of main, so it is not patched for P2P"),
])
def test_unpatched_branches_refused(fork, branch, needle):
    proc = rigctl("p2p", "pin", fork["url"], branch)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert needle in proc.stderr
    assert "stock NVIDIA" in proc.stderr and "fix: pin a patched release branch" in proc.stderr
    assert proc.stdout == ""


def test_version_mk_mismatch_refused(fork):
    proc = rigctl("p2p", "pin", fork["url"], f"{VERSION}-p2p-otherversion", "--version", VERSION)
    assert proc.returncode == 2
    assert (f"is NVIDIA 535.261.05 by its version.mk, not {VERSION} as given") in proc.stderr
    assert "--version 535.261.05" in proc.stderr
    # without --version the branch pins as what its version.mk says, whatever its name
    got = json.loads(rigctl("p2p", "pin", fork["url"], f"{VERSION}-p2p-otherversion",
                            "--json").stdout)
    assert got["driver_version"] == "535.261.05" and got["commit"] == fork["otherversion"]


def test_missing_branch_and_bad_url_refused(fork):
    proc = rigctl("p2p", "pin", fork["url"], f"{VERSION}-p2q")
    assert proc.returncode == 2 and f"has no branch '{VERSION}-p2q'" in proc.stderr
    assert f"did you mean {VERSION}-p2p" in proc.stderr
    proc = rigctl("p2p", "pin", "ftp://example.invalid/fork.git", "x-p2p")
    assert proc.returncode == 2 and "is not a git URL" in proc.stderr


def test_credentials_never_reach_argv_or_output(fork, tmp_path):
    # a git wrapper that records its argv and environment, then runs the real git
    log = tmp_path / "argv.log"
    wrapper = tmp_path / "bin" / "git"
    wrapper.parent.mkdir()
    wrapper.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> {log}\nexec {shutil.which('git')} \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}")
    token = "ghp_SECRETTOKEN1234567890abcdef"
    # nothing listens on port 9: git fails, the message must still be masked
    proc = rigctl("p2p", "pin", f"https://rigctl:{token}@127.0.0.1:9/fork.git",
                  f"{VERSION}-p2p", env=env)
    assert proc.returncode == 2
    assert token not in proc.stdout + proc.stderr
    assert "https://127.0.0.1:9/fork.git" in proc.stderr
    assert log.read_text() and token not in log.read_text()


def test_write_user_catalog_then_use_it(fork, tmp_path):
    inv = tmp_path / "inv"
    (inv / "group_vars" / "all").mkdir(parents=True)
    (inv / "hosts.yml").write_text(
        "all:\n  children:\n    rigs:\n      hosts:\n"
        "        rig-a: {ansible_host: 192.0.2.10}\n")
    out = inv / "group_vars" / "all" / "p2p_catalog.yml"
    proc = rigctl("p2p", "pin", fork["url"], f"{VERSION}-p2p", "--write", str(out),
                  "--name", "stand-in-535", "--gpus", "RTX 3090, RTX 4090")
    assert proc.returncode == 0, proc.stderr
    assert f"added entry stand-in-535 in {out}" in proc.stdout
    assert "rig_p2p_source: {catalog: stand-in-535}" in proc.stdout
    entry = yaml.safe_load(out.read_text())["rig_p2p_catalog"]["stand-in-535"]
    assert entry["commit"] == fork["p2p"] and entry["driver_version"] == VERSION
    assert entry["gpus"] == ["RTX 3090", "RTX 4090"]
    # again: replaced, not duplicated
    proc = rigctl("p2p", "pin", fork["url"], f"{VERSION}-p2p", "--write", str(out),
                  "--name", "stand-in-535")
    assert "replaced entry stand-in-535" in proc.stdout
    # usable as {catalog: NAME}, checked by the inventory check
    (inv / "group_vars" / "rigs.yml").write_text(
        f'rig_driver_flavor: p2p\nrig_driver_version: "{VERSION}"\n'
        "rig_p2p_source: {catalog: stand-in-535}\n")
    problems = [p for p in inventory_check(load([str(inv)])) if p.severity == "error"]
    assert problems == [], [str(p) for p in problems]
    user = yaml.safe_load(out.read_text())["rig_p2p_catalog"]
    resolved = driver.resolve_p2p_source({"catalog": "stand-in-535"}, user)
    assert resolved["commit"] == fork["p2p"] and resolved["catalog"] == "stand-in-535"
    # listed with its claims and where it is written
    got = json.loads(rigctl("p2p", "list", "-i", str(inv), "--json").stdout)
    mine = [e for e in got["entries"] if e["name"] == "stand-in-535"]
    assert mine and mine[0]["origin"] == "inventory" and mine[0]["where"].startswith(str(out))
    assert mine[0]["generations"] == ["Ampere", "Ada"]
    # a file that holds other variables is not rewritten
    other = inv / "group_vars" / "rigs.yml"
    before = other.read_text()
    proc = rigctl("p2p", "pin", fork["url"], f"{VERSION}-p2p", "--write", str(other))
    assert proc.returncode == 2 and "holds other variables" in proc.stderr
    assert other.read_text() == before


def test_default_entry_name():
    assert p2ppin.default_name(catalog.AIKITORIA_URL, "580.105.08") == "aikitoria-580.105.08"
    assert p2ppin.default_name("git@github.com:me/open-gpu-kernel-modules.git", "1.2.3") \
        == "me-1.2.3"


def test_list_shows_claims_bases_and_kernels():
    proc = rigctl("p2p", "list", "--no-inventory")
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("aikitoria-570.86.16"))
    assert row.split()[1:6] == ["570.86.16", "RTX", "4090", "Linux", "below"]
    assert "6.15" in row and "built-in" in row
    assert "580.105.08-p2p" in proc.stdout and "rigctl p2p pin URL BRANCH" in proc.stdout
    assert "--disable-custom-all-reduce" in proc.stdout
    got = json.loads(rigctl("p2p", "list", "--no-inventory", "--json").stdout)
    entry = next(e for e in got["entries"] if e["name"] == "aikitoria-570.86.16")
    assert entry["gpus"] == ["RTX 4090"] and entry["generations"] == ["Ada"]
    assert entry["kernel_below"] == "6.12.97" and entry["base"] == "570.86.16"
    later = {b["branch"]: b for b in got["unpinned_branches"]}
    assert later["580.105.08-p2p"]["gpus"] == ["RTX 4090", "RTX 5090"]
    assert later["570.133.20-p2p"]["kernels"] == "Linux below 6.15 except 6.12.97 and later 6.12.x"
    assert rigctl("p2p", "pin", "--help").returncode == 0
