"""The kernel gate (rigctl.core.kernelgate): which target kernels an NVIDIA base cannot
build on, one base/kernel pair from each known range (and each edge of the series-aware
pci_resize_resource range), the refusal's wording, and the evidence matcher (kernel header
and module source snippets written for these tests, not kernel or NVIDIA code)."""

from __future__ import annotations

import io
import tarfile

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


# Every base below 580.126.09 also fails from 6.12.97 (the pci_resize_resource change).
@pytest.mark.parametrize("base, below, text", [
    ("550.54.15", "6.12.97", "Linux below 6.12.97"),
    ("550.127.08", "6.12.97", "Linux below 6.12.97"),
    ("565.77", "6.12.97", "Linux below 6.12.97"),
    ("570.86.10", "6.12.97", "Linux below 6.12.97"),
    ("570.86.16", "6.12.97", "Linux below 6.15 except 6.12.97 and later 6.12.x"),
    ("570.148.08", "6.12.97", "Linux below 6.15 except 6.12.97 and later 6.12.x"),
    ("575.51.02", "6.12.97", "Linux below 6.15 except 6.12.97 and later 6.12.x"),
    ("550.142", "6.12.97", "Linux below 6.18.40 except 6.12.97 and later 6.12.x"),
    ("550.163.01", "6.12.97", "Linux below 6.18.40 except 6.12.97 and later 6.12.x"),
    ("570.153.02", "6.12.97", "Linux below 6.18.40 except 6.12.97 and later 6.12.x"),
    ("575.57.08", "6.12.97", "Linux below 6.18.40 except 6.12.97 and later 6.12.x"),
    ("580.105.08", "6.12.97", "Linux below 6.18.40 except 6.12.97 and later 6.12.x"),
    ("580.126.08", "6.12.97", "Linux below 6.18.40 except 6.12.97 and later 6.12.x"),
    ("580.126.09", None, "no known kernel limit"),
    ("580.173.02", None, "no known kernel limit"),
    ("615.71.09", None, "no known kernel limit"),
])
def test_kernel_range_of_a_base(base, below, text):
    rng = kernelgate.kernel_range(base)
    assert rng["below"] == below
    assert rng["text"] == text


# The third break, edge by edge: stable 6.12 from .97, stable 6.18 from .40, mainline 6.19 on.
@pytest.mark.parametrize("kernel, fails", [
    ("6.12.96+deb13-amd64", False), ("6.12.97", True), ("6.12.100+deb13-amd64", True),
    ("6.12.117+deb13-amd64", True), ("6.13.0", False), ("6.17.9", False),
    ("6.18.39", False), ("6.18.40", True), ("6.18.55-amd64", True), ("6.19.0", True),
    ("6.19.3", True), ("7.0.0-14-generic", True), ("6.6.120", False), ("6.1.0-40-amd64", False),
])
def test_pci_resize_range_edges(kernel, fails):
    for base in ("580.105.08", "575.57.08", "550.163.01"):  # past the 6.13 and 6.15 breaks
        assert kernelgate.builds_on(base, kernel) is not fails, (base, kernel)
    hit = [b["name"] for b in kernelgate.breaks_hitting("580.105.08", kernel)]
    assert hit == (["pci_resize_resource"] if fails else [])
    # the fix and later: nothing known against it
    for base in ("580.126.09", "580.173.02"):
        assert kernelgate.builds_on(base, kernel)


def test_pci_resize_bases_affected_below_the_fix_and_unknown_from_590():
    assert not kernelgate.builds_on("580.126.08", "6.12.97")
    assert kernelgate.builds_on("580.126.09", "6.12.97")
    assert kernelgate.first_fixed_bases("6.12.100+deb13-amd64") == ["580.126.09"]
    assert kernelgate.first_fixed_bases("6.19.1") == ["580.126.09"]  # carries 6.13 and 6.15
    assert kernelgate.first_fixed_bases("6.15.2") == ["570.153.02", "575.57.08"]
    for base in ("590.48.01", "595.58.03", "615.71.09"):
        rng = kernelgate.kernel_range(base)
        assert rng["below"] is None and rng["not_known"] == ["pci_resize_resource"]
    assert kernelgate.kernel_range("580.126.09")["not_known"] == []
    assert kernelgate.kernel_range("570.86.16")["fails_on"] == [
        "6.12.97 and later 6.12.x", "6.15 and newer"]


def test_the_table_gate_leaves_the_evidence_break_to_the_files():
    assert kernelgate.EVIDENCE_BREAKS == ("pci_resize_resource",)
    skip = kernelgate.EVIDENCE_BREAKS
    assert kernelgate.builds_on("580.105.08", "6.12.117+deb13-amd64", skip=skip)
    assert kernelgate.refusal("580.105.08", ["6.12.117+deb13-amd64"], "x", skip=skip) is None
    # the breaks the files cannot show stay in the table gate
    assert not kernelgate.builds_on("570.86.16", "6.15.2", skip=skip)


def test_refusal_for_the_pci_resize_break():
    found = kernelgate.refusal("570.153.02", ["6.12.117+deb13-amd64", "6.12.90+deb13-amd64"],
                               "branch 570.153.02-p2p", host="rig-b")
    assert found["blocked"] == ["6.12.117+deb13-amd64"]
    msg, fix = found["message"], found["fix"]
    assert "target kernel 6.12.117+deb13-amd64 on rig-b" in msg
    assert "Linux below 6.18.40 except 6.12.97 and later 6.12.x only" in msg
    assert "too few arguments to function 'pci_resize_resource'" in msg and "#1272" in msg
    assert "580.126.09 or newer" in fix and "rig_kernel_hold: true" in fix


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
    assert ("NVIDIA 570.86.16, which builds on Linux below 6.15 except 6.12.97 and later "
            "6.12.x only") in msg
    assert "6.15.2-rigctl fails with `fatal error: os-interface.h" in msg and "#866" in msg
    assert "570.153.02 / 575.57.08 or newer" in fix
    assert "aikitoria 580.105.08-p2p" in fix and "rigctl p2p pin" in fix
    assert "rig_kernel_hold: true" in fix
    assert "apt-get purge linux-image-6.15.2-rigctl linux-headers-6.15.2-rigctl" in fix
    assert kernelgate.refusal("570.86.16", ["6.14.0"], "x") is None


def test_refusal_for_a_613_break():
    found = kernelgate.refusal("565.57.01", ["6.13.4-amd64"], "branch 565.57.01-p2p")
    assert "Linux below 6.12.97 only" in found["message"]
    assert "nv-kernel.o" in found["message"] and "#747" in found["message"]
    assert "550.142 / 570.86.15 or newer" in found["fix"]


def test_every_catalog_entry_carries_its_kernel_range():
    for entry in catalog.P2P_CATALOG.values():
        assert entry.kernels == kernelgate.kernel_range(entry.driver_version)
    assert catalog.P2P_CATALOG["aikitoria-570.86.16"].kernels["text"] == (
        "Linux below 6.15 except 6.12.97 and later 6.12.x")
    assert catalog.P2P_CATALOG["tinygrad-550.54.15"].kernels["below"] == "6.12.97"


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


# --- evidence: the matcher on snippets written for these tests --------------------------

HEADER_NEW = """
struct pci_dev;
void pci_release_resource(struct pci_dev *dev, int resno);
/* pci_resize_resource(dev, bar, size) used to take three */
int __must_check pci_resize_resource(struct pci_dev *dev, int i, int size,
\t\t\t\t     int exclude_bars);
int pci_select_bars(struct pci_dev *dev, unsigned long flags);
"""
HEADER_OLD = """
int __must_check pci_resize_resource(struct pci_dev *dev, int i, int size);
"""
# a kernel that keeps the old name with three arguments and adds a new one beside it
HEADER_WRAPPED = """
int __must_check __pci_resize_resource(struct pci_dev *dev, int i, int size, int excl);
static inline int pci_resize_resource(struct pci_dev *dev, int i, int size)
{ return __pci_resize_resource(dev, i, size, 0); }
"""

SRC_OLD = """
static int resize_bar1(struct pci_dev *pdev, int want)
{
    int r;
    /* r = pci_resize_resource(pdev, 1, want, 0); is for later kernels */
    r = pci_resize_resource(pdev, BAR_ONE,
                            want);
    return r;
}
"""
SRC_GUARDED = """
#if defined(NV_PCI_RESIZE_RESOURCE_HAS_EXCLUDE_BARS_ARG)
    r = pci_resize_resource(pdev, BAR_ONE, want, 0);
#else
    r = pci_resize_resource(pdev, BAR_ONE, want);
#endif
"""
SRC_FOUR = "int f(struct pci_dev *d) { return pci_resize_resource(d, 1, ilog2(SZ(8, 2)), 0); }\n"


@pytest.mark.parametrize("text, arity", [
    (HEADER_NEW, 4), (HEADER_OLD, 3), (HEADER_WRAPPED, 3), ("int pci_select_bars(void);", None),
])
def test_header_arity(text, arity):
    assert kernelgate.header_arity(text) == arity


def test_occurrences_tell_calls_from_declarations_and_skip_comments():
    assert kernelgate.occurrences(SRC_OLD) == [("call", 3, 6)]
    assert [k for k, _, _ in kernelgate.occurrences(HEADER_NEW)] == ["decl"]
    assert kernelgate.occurrences(SRC_FOUR) == [("call", 4, 1)]


def test_scan_source_needs_the_old_form_only_without_a_conftest_or_four_argument_call():
    old = kernelgate.scan_source([("nvidia/nv-pci.c", SRC_OLD), ("conftest.sh", "echo hi\n")])
    assert old["old_calls"] == ["nvidia/nv-pci.c:6"] and old["needs_old"]
    guarded = kernelgate.scan_source([("nvidia/nv-pci.c", SRC_GUARDED)])
    assert guarded["handled"] and not guarded["needs_old"]
    assert guarded["conftest"] == ["nvidia/nv-pci.c:2"] and guarded["new_calls"]
    # the conftest test alone (named in conftest.sh) counts as handling both forms
    conf = kernelgate.scan_source([("nvidia/nv-pci.c", SRC_OLD), (
        "conftest.sh", "        pci_resize_resource_has_exclude_bars_arg)\n")])
    assert conf["handled"] and not conf["needs_old"]
    none = kernelgate.scan_source([("nvidia/nv.c", "int main(void) { return 0; }\n")])
    assert none == {"old_calls": [], "new_calls": [], "conftest": [], "handled": False,
                    "needs_old": False}


HDR4 = {"arity": 4, "path": "/usr/src/linux-headers-6.12.117+deb13-common/include/linux/pci.h:1436"}
HDR3 = {"arity": 3, "path": "/usr/src/linux-headers-6.12.90+deb13-common/include/linux/pci.h:1421"}
NOHDR = {"arity": None, "path": None}
NEEDS_OLD = kernelgate.scan_source([("nvidia/nv-pci.c", SRC_OLD)])
HANDLED = kernelgate.scan_source([("nvidia/nv-pci.c", SRC_GUARDED)])


def test_evidence_decides_where_the_files_were_read():
    heads = {"6.12.117+deb13-amd64": HDR4, "6.12.90+deb13-amd64": HDR3}
    assert kernelgate.evidence_blocked("550.163.01", heads, NEEDS_OLD) == ["6.12.117+deb13-amd64"]
    # evidence beats the table: a source that handles both forms builds, whatever its base
    assert kernelgate.evidence_blocked("550.163.01", heads, HANDLED) == []
    # ... and a 590+ base (no fact recorded) without it is refused on the new headers
    assert kernelgate.evidence_blocked("590.48.01", heads, NEEDS_OLD) == ["6.12.117+deb13-amd64"]
    # headers with the old form build even inside the table's range (a distribution revert)
    assert kernelgate.evidence_blocked("550.163.01", {"6.12.117-x": HDR3}, NEEDS_OLD) == []


def test_evidence_falls_back_to_the_table_for_what_could_not_be_read():
    # no pci.h: the known ranges decide for an affected base
    heads = {"6.12.117+deb13-amd64": NOHDR, "6.12.90+deb13-amd64": NOHDR}
    assert kernelgate.evidence_blocked("550.163.01", heads, NEEDS_OLD) == ["6.12.117+deb13-amd64"]
    # no source: the table's base range, with the headers where they were read
    assert kernelgate.evidence_blocked("550.163.01", {"6.12.117+deb13-amd64": HDR4}, None) == [
        "6.12.117+deb13-amd64"]
    assert kernelgate.evidence_blocked("590.48.01", {"6.12.117+deb13-amd64": HDR4}, None) == []
    assert kernelgate.evidence_blocked("580.126.09", {"6.19.0": NOHDR}, None) == []


def test_evidence_refusal_names_kernel_package_error_fixes_and_what_changed():
    heads = {"6.12.117+deb13-amd64": HDR4}
    found = kernelgate.evidence_refusal(
        "550.163.01", ["6.12.117+deb13-amd64"], heads, NEEDS_OLD,
        "nvidia-open-kernel-dkms 550.163.01-2 (read from the package, not installed)",
        host="lab-rig-1", os_name="debian 13", flavor="open",
        changed=["the apt pin /etc/apt/preferences.d/rigctl-nvidia-driver written (or kept)"])
    msg, fix, done = found["message"], found["fix"], found["done"]
    assert msg.startswith("target kernel 6.12.117+deb13-amd64 on lab-rig-1: ")
    assert "exclude_bars (6.12.117+deb13-amd64 declares it at /usr/src/linux-headers-" in msg
    assert "nvidia-open-kernel-dkms 550.163.01-2 (read from the package, not installed) " \
           "(NVIDIA 550.163.01) calls it with three (nvidia/nv-pci.c:6)" in msg
    assert "`nv-pci.c: error: too few arguments to function 'pci_resize_resource'`" in msg
    assert "#1272" in msg and "6.12.97 and later 6.12.x, 6.18.40 and later 6.18.x, 6.19 and " \
        "newer" in msg
    assert "NVIDIA 580.126.09 or newer" in fix and "rig_kernel_hold: true" in fix
    assert "below 6.12.97" in fix and "apt-get purge linux-image-6.12.117+deb13-amd64" in fix
    assert "Debian 12" in fix
    assert "before any driver package or module was installed" in done
    assert "rigctl-nvidia-driver written (or kept)" in done and "headers were already" in done
    # p2p: the fix is a newer branch; no Debian 12 line off Debian 13
    p2p = kernelgate.evidence_refusal("590.48.01", ["6.19.2"], {"6.19.2": HDR4}, NEEDS_OLD,
                                      "the fork tree /var/lib/rigctl/nvidia-p2p/git",
                                      os_name="debian 12")
    assert "P2P branch cut from NVIDIA 580.126.09" in p2p["fix"] and "Debian 12" not in p2p["fix"]
    assert "no fact is recorded for NVIDIA 590.48.01's branch" in p2p["message"]
    assert "changed by this run before the check: nothing" in p2p["done"].lower()
    assert kernelgate.evidence_refusal("550.163.01", [], heads, NEEDS_OLD, "x") is None


def test_header_candidates_know_debians_split_packages():
    got = kernelgate.header_candidates("6.12.117+deb13-amd64", root="/r")
    assert got == [
        "/r/lib/modules/6.12.117+deb13-amd64/source/include/linux/pci.h",
        "/r/lib/modules/6.12.117+deb13-amd64/build/include/linux/pci.h",
        "/r/usr/src/linux-headers-6.12.117+deb13-amd64/include/linux/pci.h",
        "/r/usr/src/linux-headers-6.12.117+deb13-common/include/linux/pci.h"]


def test_files_read_from_a_tree_a_package_tarball_and_headers(tmp_path):
    common = tmp_path / "usr/src/linux-headers-6.12.117+deb13-common/include/linux"
    common.mkdir(parents=True)
    (common / "pci.h").write_text(HEADER_NEW)
    heads = kernelgate.read_headers(["6.12.117+deb13-amd64", "6.1.0-9-amd64"], root=str(tmp_path))
    assert heads["6.12.117+deb13-amd64"] == {"arity": 4, "path": str(common / "pci.h") + ":5"}
    assert heads["6.1.0-9-amd64"] == {"arity": None, "path": None}

    tree = tmp_path / "fork"
    (tree / "kernel-open/nvidia").mkdir(parents=True)
    (tree / "kernel-open/nvidia/nv-pci.c").write_text(SRC_OLD)
    (tree / "kernel-open/nvidia/other.c").write_text("int x;\n")
    (tree / "src").mkdir()
    (tree / "src/outside.c").write_text(SRC_FOUR)  # not what DKMS builds: not read
    files = list(kernelgate.tree_files(str(tree)))
    assert [p for p, _ in files] == ["kernel-open/nvidia/nv-pci.c"]

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in (("./usr/src/nvidia-current-open-550.163.01/nvidia/nv-pci.c", SRC_OLD),
                           ("./usr/src/nvidia-current-open-550.163.01/dkms.conf", SRC_OLD),
                           ("./usr/share/doc/x/readme.c", SRC_FOUR)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    got = list(kernelgate.tar_files(buf))
    assert [p for p, _ in got] == ["/usr/src/nvidia-current-open-550.163.01/nvidia/nv-pci.c"]
    assert kernelgate.scan_source(got)["needs_old"]
