"""/etc/nccl.conf from what a rig really is (rigctl.core.nccl): the P2P decision on text built
here and on real `nvidia-smi topo` captures, the settings merge, render/parse, interfaces."""

from __future__ import annotations

import pytest

from rigctl.core import nccl, p2pbench, smitopo

# --- nvidia-smi text builders ---------------------------------------------------------


def p2p_text(n, cell):
    """`nvidia-smi topo -p2p r` as the driver prints it (spaced layout, with legend);
    ``cell(i, j)`` gives the status of GPUi -> GPUj."""
    names = [f"GPU{i}" for i in range(n)]
    lines = ["        " + "    ".join(names)]
    for i in range(n):
        cells = ["X" if i == j else cell(i, j) for j in range(n)]
        lines.append(f" GPU{i}   " + "       ".join(cells))
    lines += ["", "Legend:", "", "  X    = Self", "  OK   = Status Ok", "  CNS  = Chipset not supported",
              "  NS   = Not supported"]
    return "\n".join(lines) + "\n"


def topo_text(n, path):
    """`nvidia-smi topo -m` (tabbed layout with affinity columns); ``path(i, j)`` gives the
    link type between GPUi and GPUj."""
    names = [f"GPU{i}" for i in range(n)]
    lines = ["\t" + "\t".join(names) + "\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID"]
    for i in range(n):
        cells = [" X " if i == j else path(min(i, j), max(i, j)) for j in range(n)]
        lines.append(f"GPU{i}\t" + "\t".join(cells) + "\t0-31\t0\t\tN/A")
    lines += ["", "Legend:", "", "  X    = Self"]
    return "\n".join(lines) + "\n"


def matrix(n, ok_pairs, bad="NS"):
    ok = {frozenset(p) for p in ok_pairs}
    return smitopo.parse_topo_p2p(p2p_text(n, lambda i, j: "OK" if frozenset((i, j)) in ok else bad))


def all_pairs(n):
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


# A 6-GPU PCIe tree: GPU0/1 behind one switch (PIX), GPU2 under the same switch tree (PXB),
# GPU3 on another root port of socket 0 (PHB), GPU4/5 on their own switch on socket 1 (SYS).
SIX = {
    (0, 1): "PIX", (0, 2): "PXB", (1, 2): "PXB",
    (0, 3): "PHB", (1, 3): "PHB", (2, 3): "PHB",
    (4, 5): "PIX",
}


def six_links():
    return smitopo.parse_topo_matrix(topo_text(6, lambda i, j: SIX.get((i, j), "SYS")))["links"]


PIX_PAIRS = [(0, 1), (4, 5)]
PXB_PAIRS = PIX_PAIRS + [(0, 2), (1, 2)]
PHB_PAIRS = PXB_PAIRS + [(0, 3), (1, 3), (2, 3)]


# --- p2p_decision on built text --------------------------------------------------------


def test_all_pairs_ok_lets_nccl_use_p2p_everywhere():
    got = nccl.p2p_decision(matrix(4, all_pairs(4)), flavor="p2p")
    assert (got["key"], got["value"], got["state"]) == ("NCCL_P2P_LEVEL", "SYS", "all")
    assert (got["pairs_ok"], got["pairs_total"]) == (6, 6)
    assert "all 6 GPU pairs" in got["reason"] and "(driver flavor p2p)" in got["reason"]


@pytest.mark.parametrize("bad", ["NS", "CNS", "GNS", "TNS"])
def test_no_pair_ok_disables_p2p(bad):
    got = nccl.p2p_decision(matrix(3, [], bad=bad))
    assert (got["key"], got["value"], got["state"]) == ("NCCL_P2P_DISABLE", "1", "none")
    assert (got["pairs_ok"], got["pairs_total"]) == (0, 3)
    assert f"topo -p2p r: {bad})" in got["reason"]
    assert "driver flavor" not in got["reason"]


def test_no_pair_ok_reason_lists_every_status_seen():
    text = p2p_text(3, lambda i, j: "CNS" if 2 in (i, j) else "NS")
    got = nccl.p2p_decision(smitopo.parse_topo_p2p(text))
    assert got["key"] == "NCCL_P2P_DISABLE" and got["state"] == "none"
    assert "(nvidia-smi topo -p2p r: CNS/NS)" in got["reason"]


def test_a_pair_ok_in_one_direction_only_does_not_count():
    text = p2p_text(2, lambda i, j: "OK" if (i, j) == (0, 1) else "NS")
    got = nccl.p2p_decision(smitopo.parse_topo_p2p(text))
    assert got["state"] == "none" and got["key"] == "NCCL_P2P_DISABLE"


@pytest.mark.parametrize("ok_pairs,level,covered", [
    (PIX_PAIRS, "PIX", 2),
    (PXB_PAIRS, "PXB", 4),
    (PHB_PAIRS, "PHB", 7),
])
def test_partial_p2p_gets_the_widest_level_covering_only_working_pairs(ok_pairs, level, covered):
    got = nccl.p2p_decision(matrix(6, ok_pairs), six_links())
    assert (got["key"], got["value"], got["state"]) == ("NCCL_P2P_LEVEL", level, "partial")
    assert (got["pairs_ok"], got["pairs_total"]) == (len(ok_pairs), 15)
    assert f"the {covered} pairs within {level} paths all work" in got["reason"]
    assert f"only {len(ok_pairs)} of 15 GPU pairs" in got["reason"]


def test_partial_with_a_broken_close_pair_disables_p2p():
    # Everything works but one PIX pair: every level would cover the broken pair.
    ok_pairs = [p for p in all_pairs(6) if p != (0, 1)]
    got = nccl.p2p_decision(matrix(6, ok_pairs), six_links())
    assert (got["key"], got["value"], got["state"]) == ("NCCL_P2P_DISABLE", "1", "partial")
    assert "14 of 15" in got["reason"] and "no PCIe path level covers only working pairs" in got["reason"]


@pytest.mark.parametrize("links", [None, {}])
def test_partial_without_topology_disables_p2p(links):
    got = nccl.p2p_decision(matrix(6, PXB_PAIRS), links)
    assert (got["key"], got["value"], got["state"]) == ("NCCL_P2P_DISABLE", "1", "partial")
    assert (got["pairs_ok"], got["pairs_total"]) == (4, 15)


def test_missing_link_counts_as_the_farthest_path():
    # The broken pair (0, 2) is absent from the topology: treated as SYS, outside every level.
    links = {"GPU0": {"GPU1": "PIX"}, "GPU1": {"GPU0": "PIX", "GPU2": "PXB"}, "GPU2": {"GPU1": "PXB"}}
    got = nccl.p2p_decision(matrix(3, [(0, 1), (1, 2)]), links)
    assert (got["key"], got["value"]) == ("NCCL_P2P_LEVEL", "PHB")
    assert "the 2 pairs within PHB paths" in got["reason"]


def test_nvlink_pairs_are_closer_than_any_pcie_path():
    def links(other):
        text = topo_text(3, lambda i, j: "NV4" if (i, j) == (0, 1) else other)
        return smitopo.parse_topo_matrix(text)["links"]

    # GPU0-GPU1 over NVLink (working), the rest PIX and broken: no level avoids the PIX pairs.
    got = nccl.p2p_decision(matrix(3, [(0, 1)]), links("PIX"))
    assert got["key"] == "NCCL_P2P_DISABLE" and got["state"] == "partial"
    # ... but when the broken pairs are SYS, every PCIe level holds the NVLink pair only.
    got = nccl.p2p_decision(matrix(3, [(0, 1)]), links("SYS"))
    assert (got["key"], got["value"]) == ("NCCL_P2P_LEVEL", "PHB")


def test_single_gpu_needs_no_p2p_setting():
    got = nccl.p2p_decision(matrix(1, []))
    assert got["key"] is None and got["value"] is None
    assert got["state"] == "single" and got["pairs_total"] == 0
    assert "one GPU" in got["reason"]


def test_driver_not_answering_disables_p2p_and_says_why():
    error = "nvidia-smi topo -p2p r: NVIDIA-SMI has failed because it couldn't communicate with the driver"
    got = nccl.p2p_decision(None, None, "open", error)
    assert (got["key"], got["value"], got["state"]) == ("NCCL_P2P_DISABLE", "1", "unknown")
    assert error in got["reason"]
    assert "rigctl provision" in got["reason"]


def test_driver_not_answering_without_an_error_text():
    got = nccl.p2p_decision(None)
    assert got["state"] == "unknown" and "nvidia-smi did not answer" in got["reason"]


# --- p2p_decision on real captures ----------------------------------------------------


def test_h100x8_capture_all_ok(captures):
    got = nccl.p2p_decision(smitopo.parse_topo_p2p(captures.read("topo-p2p-r__h100x8__1.txt")))
    assert (got["key"], got["value"], got["state"]) == ("NCCL_P2P_LEVEL", "SYS", "all")
    assert (got["pairs_ok"], got["pairs_total"]) == (28, 28)


def test_l4x2_capture_chipset_not_supported(captures):
    got = nccl.p2p_decision(smitopo.parse_topo_p2p(captures.read("topo-p2p-r__l4x2__1.txt")))
    assert (got["key"], got["value"], got["state"]) == ("NCCL_P2P_DISABLE", "1", "none")
    assert (got["pairs_ok"], got["pairs_total"]) == (0, 1)
    assert "(nvidia-smi topo -p2p r: CNS)" in got["reason"]


@pytest.mark.parametrize("name", ["topo-p2p-rw__rtx5070-5060tix4__1.txt",
                                  "topo-p2p-rw__rtx5070-5060tix4__2.txt"])
def test_rtx5070_5060ti_capture_all_ok(captures, name):
    p2p = smitopo.parse_topo_p2p(captures.read(name))
    links = smitopo.parse_topo_matrix(captures.read("topo-m__rtx5070-5060tix4__1.txt"))["links"]
    got = nccl.p2p_decision(p2p, links, "p2p")
    assert (got["key"], got["value"], got["state"]) == ("NCCL_P2P_LEVEL", "SYS", "all")
    assert (got["pairs_ok"], got["pairs_total"]) == (10, 10)


def test_rtx5070_5060ti_topology_with_the_5070_left_out(captures):
    # The same rig's p2pBandwidthLatencyTest shows the 5070 (GPU0) cannot reach its peers.
    # Every pair is PHB there, so no level keeps GPU0's pairs out: P2P disabled.
    links = smitopo.parse_topo_matrix(captures.read("topo-m__rtx5070-5060tix4__1.txt"))["links"]
    got = nccl.p2p_decision(matrix(5, [p for p in all_pairs(5) if 0 not in p]), links)
    assert (got["key"], got["value"], got["state"]) == ("NCCL_P2P_DISABLE", "1", "partial")
    assert (got["pairs_ok"], got["pairs_total"]) == (6, 10)


def test_rtx4090x2_topology_without_p2p(captures):
    links = smitopo.parse_topo_matrix(captures.read("topo-m__rtx4090x2__1.txt"))["links"]
    got = nccl.p2p_decision(matrix(2, []), links)
    assert got["key"] == "NCCL_P2P_DISABLE" and got["state"] == "none"


def test_h200_nvlink_mesh_with_one_broken_pair(captures):
    links = smitopo.parse_topo_matrix(captures.read("topo-m__h200x8-nics__1.txt"))["links"]
    got = nccl.p2p_decision(matrix(8, [p for p in all_pairs(8) if p != (3, 7)]), links)
    # Every pair is NV18: any level covers the broken pair too.
    assert (got["key"], got["value"], got["state"]) == ("NCCL_P2P_DISABLE", "1", "partial")
    assert (got["pairs_ok"], got["pairs_total"]) == (27, 28)


def rtxpro_pairs(links, kinds):
    return [(i, j) for i, j in all_pairs(8) if links[f"GPU{i}"][f"GPU{j}"] in kinds]


def test_rtxpro6000x8_p2p_within_each_socket(captures):
    # PIX and NODE pairs (same socket) work, SYS pairs (across sockets) do not. NCCL's PHB
    # level means "same NUMA node", which is exactly the working set.
    links = smitopo.parse_topo_matrix(captures.read("topo-m__rtxpro6000x8__1.txt"))["links"]
    ok_pairs = rtxpro_pairs(links, {"PIX", "NODE"})
    assert len(ok_pairs) == 12
    got = nccl.p2p_decision(matrix(8, ok_pairs), links)
    assert (got["key"], got["value"], got["state"]) == ("NCCL_P2P_LEVEL", "PHB", "partial")
    assert (got["pairs_ok"], got["pairs_total"]) == (12, 28)


def test_rtxpro6000x8_broken_pix_pair(captures):
    links = smitopo.parse_topo_matrix(captures.read("topo-m__rtxpro6000x8__1.txt"))["links"]
    ok_pairs = [p for p in all_pairs(8) if p != (0, 1)]
    got = nccl.p2p_decision(matrix(8, ok_pairs), links)
    assert got["key"] == "NCCL_P2P_DISABLE" and got["state"] == "partial"


def test_rtxpro6000x8_only_pix_pairs_work(captures):
    links = smitopo.parse_topo_matrix(captures.read("topo-m__rtxpro6000x8__1.txt"))["links"]
    ok_pairs = rtxpro_pairs(links, {"PIX"})
    assert len(ok_pairs) == 4
    got = nccl.p2p_decision(matrix(8, ok_pairs), links)
    assert (got["key"], got["state"]) == ("NCCL_P2P_LEVEL", "partial")
    # PXB reaches the PIX pairs and nothing else on this rig; PHB would reach the NODE pairs.
    assert got["value"] == "PXB"


# --- settings --------------------------------------------------------------------------

ALL = nccl.p2p_decision(matrix(2, [(0, 1)]))
NONE = nccl.p2p_decision(matrix(2, []))
SINGLE = nccl.p2p_decision(matrix(1, []))


def keys(entries):
    return [e["key"] for e in entries]


def test_settings_defaults_from_the_rig():
    got = nccl.settings(ALL)
    assert keys(got) == ["NCCL_P2P_LEVEL", "NCCL_IB_DISABLE"]
    p2p, ib = got
    assert p2p == {"key": "NCCL_P2P_LEVEL", "value": "SYS", "reason": ALL["reason"], "source": "rig"}
    assert ib["value"] == "1" and ib["source"] == "rig"
    assert "/sys/class/infiniband is empty" in ib["reason"]


def test_settings_p2p_disabled_rig():
    got = nccl.settings(NONE, ib=["mlx5_0"])
    assert [(e["key"], e["value"], e["source"]) for e in got] == [("NCCL_P2P_DISABLE", "1", "rig")]


def test_inventory_p2p_key_replaces_rigctls_choice():
    got = nccl.settings(ALL, overrides={"NCCL_P2P_DISABLE": True})
    assert keys(got) == ["NCCL_P2P_DISABLE", "NCCL_IB_DISABLE"]
    entry = got[0]
    assert entry["value"] == "1" and entry["source"] == "inventory"
    assert entry["reason"].startswith("set in the inventory (rig_nccl_env); rigctl would write "
                                      "NCCL_P2P_LEVEL=SYS: ")
    assert ALL["reason"] in entry["reason"]


def test_inventory_p2p_keys_come_as_one_group_in_a_fixed_order():
    overrides = {"NCCL_P2P_DISABLE": 0, "NCCL_DEBUG": "WARN", "NCCL_P2P_LEVEL": "PHB"}
    got = nccl.settings(NONE, overrides=overrides)
    assert keys(got) == ["NCCL_P2P_LEVEL", "NCCL_P2P_DISABLE", "NCCL_IB_DISABLE", "NCCL_DEBUG"]
    assert [e["value"] for e in got[:2]] == ["PHB", "0"]
    assert all("rigctl would write NCCL_P2P_DISABLE=1" in e["reason"] for e in got[:2])


def test_inventory_p2p_key_on_a_single_gpu_rig():
    assert keys(nccl.settings(SINGLE)) == ["NCCL_IB_DISABLE"]
    got = nccl.settings(SINGLE, overrides={"NCCL_P2P_LEVEL": "SYS"})
    assert keys(got) == ["NCCL_P2P_LEVEL", "NCCL_IB_DISABLE"]
    assert got[0]["reason"] == "set in the inventory (rig_nccl_env); one GPU: no peer-to-peer traffic"


def test_ib_disable_not_written_when_the_rig_has_ib_devices():
    assert "NCCL_IB_DISABLE" not in keys(nccl.settings(ALL, ib=["mlx5_0", "mlx5_1"]))


@pytest.mark.parametrize("ib,listed", [(["mlx5_0", "mlx5_1"], "mlx5_0, mlx5_1"), ([], "none")])
def test_inventory_ib_disable_wins(ib, listed):
    got = nccl.settings(ALL, ib=ib, overrides={"NCCL_IB_DISABLE": False})
    entries = [e for e in got if e["key"] == "NCCL_IB_DISABLE"]
    assert len(entries) == 1
    assert entries[0]["value"] == "0" and entries[0]["source"] == "inventory"
    assert entries[0]["reason"].endswith("InfiniBand devices here: " + listed)


def test_socket_ifname_line():
    got = nccl.settings(ALL, socket_ifname="=eno1")
    assert keys(got) == ["NCCL_P2P_LEVEL", "NCCL_IB_DISABLE", "NCCL_SOCKET_IFNAME"]
    assert got[-1]["value"] == "=eno1" and got[-1]["source"] == "inventory"
    assert "rig_nccl_socket_ifname" in got[-1]["reason"]


def test_other_inventory_keys_sorted_at_the_end_with_rendered_values():
    overrides = {"NCCL_DEBUG": "WARN", "NCCL_BUFFSIZE": 8388608, "NCCL_CUMEM_ENABLE": False,
                 "NCCL_ALGO": "Ring", "NCCL_NVLS_ENABLE": True}
    got = nccl.settings(ALL, socket_ifname="eno", overrides=overrides)
    assert [(e["key"], e["value"]) for e in got[3:]] == [
        ("NCCL_ALGO", "Ring"), ("NCCL_BUFFSIZE", "8388608"), ("NCCL_CUMEM_ENABLE", "0"),
        ("NCCL_DEBUG", "WARN"), ("NCCL_NVLS_ENABLE", "1")]
    assert keys(got[:3]) == ["NCCL_P2P_LEVEL", "NCCL_IB_DISABLE", "NCCL_SOCKET_IFNAME"]
    assert all(e["source"] == "inventory" and e["reason"] == "set in the inventory (rig_nccl_env)"
               for e in got[3:])


def test_settings_leaves_the_callers_overrides_alone():
    overrides = {"NCCL_P2P_LEVEL": "PHB", "NCCL_IB_DISABLE": 1, "NCCL_DEBUG": "INFO"}
    nccl.settings(ALL, overrides=overrides)
    assert overrides == {"NCCL_P2P_LEVEL": "PHB", "NCCL_IB_DISABLE": 1, "NCCL_DEBUG": "INFO"}


def test_every_key_once():
    got = nccl.settings(NONE, ib=[], socket_ifname="eno",
                        overrides={"NCCL_P2P_LEVEL": "PIX", "NCCL_IB_DISABLE": 1, "NCCL_DEBUG": "INFO"})
    assert len(keys(got)) == len(set(keys(got)))


# --- render / parse_conf / undocumented_lines --------------------------------------------


def sample_entries():
    overrides = {"NCCL_DEBUG": "WARN", "NCCL_BUFFSIZE": 4194304}
    return nccl.settings(ALL, socket_ifname="=eno1", overrides=overrides)


def test_render_layout():
    text = nccl.render(sample_entries())
    assert text.startswith(nccl.HEADER)
    assert text.endswith("NCCL_DEBUG=WARN\n")
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith("#"):
            assert lines[i - 1].startswith("# ") and lines[i - 2] == ""


def test_render_parse_round_trip():
    entries = sample_entries()
    assert nccl.parse_conf(nccl.render(entries)) == {e["key"]: e["value"] for e in entries}


def test_render_keeps_a_multiline_reason_on_one_comment_line():
    text = nccl.render([{"key": "NCCL_DEBUG", "value": "INFO", "reason": "first line\n  second   line\n"}])
    assert "\n# first line second line\nNCCL_DEBUG=INFO\n" in text
    assert nccl.undocumented_lines(text) == []


def test_rendered_text_is_fully_documented():
    assert nccl.undocumented_lines(nccl.render(sample_entries())) == []
    assert nccl.undocumented_lines(nccl.render([])) == []


def test_undocumented_lines_finds_a_hand_added_setting():
    text = nccl.render(sample_entries()) + "\nNCCL_P2P_LEVEL=PHB\n"
    assert nccl.undocumented_lines(text) == ["NCCL_P2P_LEVEL=PHB"]


def test_undocumented_lines_one_comment_documents_one_line():
    text = "# why\nNCCL_DEBUG=INFO\nNCCL_DEBUG_SUBSYS=ALL\n"
    assert nccl.undocumented_lines(text) == ["NCCL_DEBUG_SUBSYS=ALL"]
    assert nccl.undocumented_lines("  # why\n  NCCL_DEBUG=INFO\n") == []
    assert nccl.undocumented_lines("") == [] and nccl.undocumented_lines(None) == []


def test_parse_conf_skips_comments_and_blanks_and_strips():
    text = "# a comment\n\n  NCCL_DEBUG = INFO  \n# NCCL_P2P_LEVEL=SYS\nNCCL_SOCKET_IFNAME==eno1\n"
    assert nccl.parse_conf(text) == {"NCCL_DEBUG": "INFO", "NCCL_SOCKET_IFNAME": "=eno1"}
    assert nccl.parse_conf("") == {} and nccl.parse_conf(None) == {}


def test_parse_conf_refuses_a_line_without_equals():
    with pytest.raises(ValueError, match="without '='"):
        nccl.parse_conf("# ok\nNCCL_DEBUG INFO\n")


def test_parse_conf_duplicate_key_reads_as_nccl_does():
    assert nccl.parse_conf("NCCL_P2P_LEVEL=PHB\nNCCL_P2P_LEVEL=SYS\n") == {"NCCL_P2P_LEVEL": "PHB"}


# --- NCCL_SOCKET_IFNAME ----------------------------------------------------------------

IFACES = ["docker0", "eno1", "eno1np0", "eno2", "enp65s0f0", "eth0", "eth1", "eth10", "lo"]


@pytest.mark.parametrize("spec,chosen", [
    ("eno", ["eno1", "eno1np0", "eno2"]),
    ("eth", ["eth0", "eth1", "eth10"]),
    ("eno,enp", ["eno1", "eno1np0", "eno2", "enp65s0f0"]),
    ("=eno1", ["eno1"]),
    ("=eth1", ["eth1"]),
    ("^docker,lo", ["eno1", "eno1np0", "eno2", "enp65s0f0", "eth0", "eth1", "eth10"]),
    ("^eth,eno", ["docker0", "enp65s0f0", "lo"]),
    ("^=eth1", ["docker0", "eno1", "eno1np0", "eno2", "enp65s0f0", "eth0", "eth10", "lo"]),
    ("ib", []),
    ("=eno", []),
    ("", IFACES),
    (None, IFACES),
])
def test_ifname_matches(spec, chosen):
    assert nccl.ifname_matches(spec, IFACES) == chosen


def test_ifname_matches_keeps_the_interface_order():
    assert nccl.ifname_matches("eth,eno", ["eth1", "eno1", "eth0"]) == ["eth1", "eno1", "eth0"]


@pytest.mark.parametrize("spec,interfaces,chosen", [
    ("=eth0,eth1", IFACES, ["eth0", "eth1"]),
    ("=eno1,eth", IFACES, ["eno1"]),
    # NCCL finds nothing here, so nccl_setup's "selects none of this rig's interfaces" warning is missed.
    ("=eno1,eth", ["eno1np0", "eth0", "lo"], []),
])
def test_ifname_matches_exact_applies_to_the_whole_list(spec, interfaces, chosen):
    assert nccl.ifname_matches(spec, interfaces) == chosen


# --- /sys readers ----------------------------------------------------------------------


def test_ib_devices(tmp_path):
    for name in ("mlx5_1", "mlx5_0"):
        (tmp_path / "sys/class/infiniband" / name).mkdir(parents=True)
    assert nccl.ib_devices(str(tmp_path)) == ["mlx5_0", "mlx5_1"]


def test_ib_devices_none(tmp_path):
    assert nccl.ib_devices(str(tmp_path)) == []
    (tmp_path / "sys/class/infiniband").mkdir(parents=True)
    assert nccl.ib_devices(str(tmp_path)) == []


def test_net_interfaces(tmp_path):
    net = tmp_path / "sys/class/net"
    net.mkdir(parents=True)
    for name in ("lo", "eno1", "enp65s0f0"):
        (net / name).mkdir()
    assert nccl.net_interfaces(str(tmp_path)) == ["eno1", "enp65s0f0", "lo"]
    assert nccl.ifname_matches("^lo", nccl.net_interfaces(str(tmp_path))) == ["eno1", "enp65s0f0"]


def test_net_interfaces_missing(tmp_path):
    assert nccl.net_interfaces(str(tmp_path)) == []


def test_sys_readers_feed_settings(tmp_path):
    (tmp_path / "sys/class/infiniband/mlx5_0").mkdir(parents=True)
    got = nccl.settings(ALL, ib=nccl.ib_devices(str(tmp_path)))
    assert "NCCL_IB_DISABLE" not in keys(got)


# --- the rig probe's verdict decides, topo is the fallback ------------------------------

from rigctl.core import p2pverdict  # noqa: E402


def capture_verdict(captures, name, n, gen=3, width=4):
    parsed = p2pbench.parse_p2p_bandwidth_latency_test(captures.read(name))
    measured = p2pverdict.from_p2p_bandwidth_test(parsed)
    links = {str(i): {"gen": gen, "width": width} for i in range(n)}
    return p2pverdict.judge(measured, links, source="p2pBandwidthLatencyTest")


def test_rtx5070_5060ti_topo_says_ok_but_the_copies_show_gpu0_without_p2p(captures):
    # The shared capture: topo -p2p rw says OK between all 5 GPUs, the bandwidth test on the
    # same host shows the 5070 (GPU0) cannot reach its peers. The verdict decides: P2P off
    # for GPU0's pairs, and since every pair is PHB no level keeps them out: disabled.
    p2p = smitopo.parse_topo_p2p(captures.read("topo-p2p-rw__rtx5070-5060tix4__1.txt"))
    links = smitopo.parse_topo_matrix(captures.read("topo-m__rtx5070-5060tix4__1.txt"))["links"]
    verdict = capture_verdict(captures, "p2pBandwidthLatencyTest__rtx5070-5060tix4__1.txt", 5)
    got = nccl.p2p_decision(p2p, links, "p2p", verdict=verdict)
    assert (got["key"], got["value"], got["state"], got["evidence"]) == (
        "NCCL_P2P_DISABLE", "1", "partial", "probe")
    assert (got["pairs_ok"], got["pairs_total"]) == (6, 10)
    assert sorted(got["bad_pairs"]) == [["GPU0", f"GPU{i}"] for i in range(1, 5)]
    assert "rig probe: 0-1 no-peer, 0-2 no-peer, 0-3 no-peer, 0-4 no-peer" in got["reason"]
    assert ("Evidence: the rig probe's copies between every GPU pair (p2pBandwidthLatencyTest)"
            in got["reason"])
    assert "topo -p2p r disagrees on 4 pair(s) and is overruled" in got["reason"]
    conf = nccl.parse_conf(nccl.render(nccl.settings(got)))
    assert nccl.allowed_pairs(conf, links, p2p["devices"]) == []
    # the same rig judged by topo alone would have let NCCL use every pair
    fallback = nccl.p2p_decision(p2p, links, "p2p", no_probe_reason="no rig probe at /x")
    assert fallback["evidence"] == "topo" and fallback["value"] == "SYS"
    assert "nvidia-smi topo -p2p r alone: the rig probe has not measured the pairs (no rig probe at /x)" \
        in fallback["reason"]


def test_rtx5070_5060ti_with_gpu0_on_its_own_switch_keeps_p2p_for_the_others(captures):
    # Were the 5060 Tis behind one switch (PIX) and GPU0 elsewhere, PIX keeps GPU0 out.
    p2p = smitopo.parse_topo_p2p(captures.read("topo-p2p-rw__rtx5070-5060tix4__1.txt"))
    links = smitopo.parse_topo_matrix(topo_text(5, lambda i, j: "PHB" if i == 0 else "PIX"))["links"]
    verdict = capture_verdict(captures, "p2pBandwidthLatencyTest__rtx5070-5060tix4__1.txt", 5)
    got = nccl.p2p_decision(p2p, links, verdict=verdict)
    assert (got["key"], got["value"]) == ("NCCL_P2P_LEVEL", "PXB")
    allowed = nccl.allowed_pairs({"NCCL_P2P_LEVEL": got["value"]}, links, p2p["devices"])
    assert allowed and not any("GPU0" in pair for pair in allowed)


def test_rtx4090x2_early_driver_one_slow_direction_is_not_a_p2p_pair(captures):
    p2p = matrix(2, [(0, 1)])  # topo says OK
    verdict = capture_verdict(captures, "p2pBandwidthLatencyTest__rtx4090x2__1.txt", 2, 4, 16)
    got = nccl.p2p_decision(p2p, None, verdict=verdict)
    assert (got["key"], got["state"]) == ("NCCL_P2P_DISABLE", "none")
    assert "rig probe: 0-1 no-gain" in got["reason"]


def test_probe_verdict_all_pairs_p2p_and_simulated_says_so():
    m = [p2pverdict._measurement(a, b, mode="p2p", gbps=25.0, staged_gbps=11.0, data_ok=True)
         for a in range(2) for b in range(2) if a != b]
    verdict = p2pverdict.judge(m, {"0": {"gen": 4, "width": 16}, "1": {"gen": 4, "width": 16}},
                               source="rigctl-probe and rigctl-probe --no-p2p", simulated=True)
    got = nccl.p2p_decision(matrix(2, []), None, verdict=verdict)  # topo says NS: overruled
    assert (got["key"], got["value"], got["evidence"]) == ("NCCL_P2P_LEVEL", "SYS", "probe")
    assert "(rigctl-probe and rigctl-probe --no-p2p, simulated GPUs)" in got["reason"]


@pytest.mark.parametrize("conf,allowed", [
    ({"NCCL_P2P_DISABLE": "1"}, []),
    ({"NCCL_P2P_LEVEL": "SYS"}, "all"),
    ({"NCCL_P2P_LEVEL": "PIX"}, [["GPU0", "GPU1"], ["GPU4", "GPU5"]]),
    ({"NCCL_P2P_LEVEL": "3"}, "phb"),
    ({"NCCL_P2P_LEVEL": "7"}, "all"),
    ({"NCCL_P2P_LEVEL": "0"}, []),
    ({"NCCL_P2P_LEVEL": "LOC"}, []),
    ({}, None),
    ({"NCCL_P2P_DISABLE": "0", "NCCL_P2P_LEVEL": "PXB"}, "pxb"),
])
def test_allowed_pairs_reads_the_file_as_nccl_does(conf, allowed):
    devices = [f"GPU{i}" for i in range(6)]
    expect = {"all": [[f"GPU{a}", f"GPU{b}"] for a, b in all_pairs(6)],
              "phb": [[f"GPU{a}", f"GPU{b}"] for a, b in sorted(PHB_PAIRS)],
              "pxb": [[f"GPU{a}", f"GPU{b}"] for a, b in sorted(PXB_PAIRS)]}
    expect = expect[allowed] if isinstance(allowed, str) else allowed
    got = nccl.allowed_pairs(conf, six_links(), devices)
    assert (sorted(got) if got is not None else None) == (sorted(expect) if expect is not None else None)


def _boot(root, boot_id="b-1"):
    (root / "proc/sys/kernel/random").mkdir(parents=True, exist_ok=True)
    (root / "proc/sys/kernel/random/boot_id").write_text(boot_id + "\n")
    (root / "proc/1").mkdir(parents=True, exist_ok=True)
    (root / "proc/1/stat").write_text("1 (systemd) S " + " ".join(["0"] * 18) + " 4242 0 0\n")


def test_read_evidence_uses_this_boots_record_only(tmp_path):
    _boot(tmp_path)
    from rigctl.core import reboot

    record = {"schema": 1, "available": True, "boot": reboot.boot_token(str(tmp_path)), "gpus": [],
              "probe": {"pairs": []}}
    path = tmp_path / p2pverdict.EVIDENCE_PATH.lstrip("/")
    p2pverdict.write_evidence(record, str(path))
    got, how = nccl.read_evidence(str(tmp_path), run=False)
    assert got == record and how == "recorded this boot"
    _boot(tmp_path, "b-2")  # rebooted: the record no longer describes the rig
    got, how = nccl.read_evidence(str(tmp_path), run=False)
    assert got is None and how == "no probe result recorded this boot"
