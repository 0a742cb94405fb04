"""The kernel gate (rigctl.core.kernelgate): which target kernels an NVIDIA base cannot
build on, one base/kernel pair from each known range, and the refusal's wording."""

from __future__ import annotations

import pytest

from rigctl.core import catalog, kernelgate


@pytest.mark.parametrize("release, version", [
    ("6.15.2-amd64", (6, 15, 2)),
    ("6.12.38+deb13-amd64", (6, 12, 38)),
    ("6.1.0-27-amd64", (6, 1, 0)),
    ("6.13", (6, 13, 0)),
    ("vmlinuz", None),
])
def test_kernel_release_parsed(release, version):
    assert kernelgate.kernel_version(release) == version


# One pair per range: (base, the first kernel it fails on, the last kernel it builds on).
@pytest.mark.parametrize("base, fails, builds", [
    ("550.54.15", "6.13.0-1-amd64", "6.12.38+deb13-amd64"),
    ("550.90.07", "6.14.3", "6.12.0"),
    ("560.35.03", "6.13.2", "6.12.9"),
    ("565.57.01", "6.15.1", "6.12.9"),
    ("565.77", "6.13.0", "6.12.0"),
    ("570.86.16", "6.15.0-rigctl", "6.14.11"),
    ("570.148.08", "6.15.2-amd64", "6.14.0"),
    ("575.51.02", "6.16.0", "6.14.8"),
])
def test_bases_refused_on_the_kernels_they_do_not_build_on(base, fails, builds):
    assert not kernelgate.builds_on(base, fails)
    assert kernelgate.builds_on(base, builds)
    assert kernelgate.blocked_kernels(base, [builds, fails]) == [fails]


@pytest.mark.parametrize("base, below", [
    ("550.54.15", "6.13"), ("550.127.08", "6.13"), ("565.77", "6.13"),
    ("570.86.10", "6.13"), ("570.86.16", "6.15"), ("570.148.08", "6.15"),
    ("575.51.02", "6.15"), ("550.142", None), ("550.163.01", None), ("570.153.02", None),
    ("575.57.08", None), ("580.105.08", None), ("615.71.09", None),
])
def test_kernel_range_of_a_base(base, below):
    rng = kernelgate.kernel_range(base)
    assert rng["below"] == below
    assert rng["text"] == (f"Linux below {below}" if below else "no known kernel limit")


def test_fixed_bases_build_on_new_kernels():
    for base in ("550.142", "570.86.15", "570.153.02", "575.57.08", "580.105.08"):
        assert kernelgate.builds_on(base, "6.13.1"), base
    for base in ("570.153.02", "575.57.08", "580.105.08", "610.57.04"):
        assert kernelgate.builds_on(base, "6.16.2"), base
    # an unparsable release is nothing known against
    assert kernelgate.builds_on("550.54.15", "custom-kernel")


def test_refusal_names_kernel_branch_and_both_fixes():
    found = kernelgate.refusal("570.86.16", ["6.1.0-27-amd64", "6.15.2-rigctl"],
                               "catalog entry aikitoria-570.86.16 (branch 570.86.16-p2p)",
                               host="rig-a", suggestions=["aikitoria 580.105.08-p2p"])
    assert found["blocked"] == ["6.15.2-rigctl"]
    msg, fix = found["message"], found["fix"]
    assert "target kernel 6.15.2-rigctl on rig-a" in msg
    assert "aikitoria-570.86.16 (branch 570.86.16-p2p)" in msg
    assert "NVIDIA 570.86.16, which builds on Linux below 6.15 only" in msg
    assert "os-interface.h" in msg and "#866" in msg
    assert "570.153.02 / 575.57.08 or newer" in fix
    assert "aikitoria 580.105.08-p2p" in fix and "rigctl p2p pin" in fix
    assert "rig_kernel_hold: true" in fix
    assert "apt-get purge linux-image-6.15.2-rigctl linux-headers-6.15.2-rigctl" in fix
    assert kernelgate.refusal("570.86.16", ["6.14.0"], "x") is None


def test_refusal_for_a_613_break():
    found = kernelgate.refusal("565.57.01", ["6.13.4-amd64"], "branch 565.57.01-p2p")
    assert "Linux below 6.13" in found["message"]
    assert "nv-kernel.o" in found["message"] and "#747" in found["message"]
    assert "550.142 / 570.86.15 or newer" in found["fix"]


def test_every_catalog_entry_carries_its_kernel_range():
    for entry in catalog.P2P_CATALOG.values():
        assert entry.kernels == kernelgate.kernel_range(entry.driver_version)
    assert catalog.P2P_CATALOG["aikitoria-570.86.16"].kernels["below"] == "6.15"
    assert catalog.P2P_CATALOG["tinygrad-550.54.15"].kernels["below"] == "6.13"


def test_branches_suggested_for_a_new_kernel_build_there():
    names = catalog.branches_building_on("6.15.2", gpus=("RTX 5090",))
    assert names and all(kernelgate.builds_on(n.split()[1].split("-")[0], "6.15.2")
                         for n in names)
    assert "aikitoria 580.105.08-p2p" in names
    assert "aikitoria 570.124.04-p2p" not in catalog.branches_building_on("6.15.2")


@pytest.mark.parametrize("release, flavour", [
    ("6.1.0-27-amd64", "amd64"),
    ("6.12.38+deb13-amd64", "amd64"),
    ("6.1.0-27-rt-amd64", "rt-amd64"),
    ("6.8.0-45-generic", "generic"),
    ("6.8.0-1015-aws", "aws"),
    ("6.15.2", None),
])
def test_kernel_flavour(release, flavour):
    assert kernelgate.kernel_flavour(release) == flavour


def test_metas_held_are_those_of_the_running_kernel_or_else_the_targets():
    installed = ["linux-image-amd64", "linux-headers-amd64", "linux-image-rt-amd64", "bash"]
    assert kernelgate.installed_metas("6.1.0-27-amd64", ["6.1.0-27-amd64", "6.1.0-27-rt-amd64"],
                                      installed) == ["linux-image-amd64", "linux-headers-amd64"]
    # a container runs its host's kernel, which is no target: the targets' flavours count
    assert kernelgate.installed_metas("6.18.44-host", ["6.1.0-27-amd64", "6.1.0-27-rt-amd64"],
                                      installed) == ["linux-image-amd64", "linux-headers-amd64",
                                                     "linux-image-rt-amd64"]
    assert kernelgate.installed_metas("6.15.2", ["6.15.2"], installed) == []


def test_refusal_suggests_the_same_line_and_the_newest_branch():
    assert catalog.suggested_branches("570.86.16", ["6.1.0-27-amd64", "6.15.2"]) == [
        "aikitoria 570.153.02-p2p", "aikitoria 615.71.09-p2p"]
    assert catalog.suggested_branches("565.77", ["6.13.1"]) == ["aikitoria 615.71.09-p2p"]
