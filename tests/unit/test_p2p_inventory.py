"""The inventory check's P2P rules (rigctl.inventory.p2pcheck): the user catalog
(rig_p2p_catalog) entries with file:line, `{catalog: NAME}` naming a built-in or user entry
of the right version, rig_p2p_registry_dwords against the NVIDIA base, and the kernel gate
on the target kernels of the last facts run (Ansible's fact cache, a temporary one here)."""

from __future__ import annotations

import json
import os
import textwrap
import time

import pytest

from rigctl.core import p2pregistry
from rigctl.inventory import check, load

HOSTS = "all:\n  children:\n    rigs:\n      hosts:\n        rig-a: {ansible_host: 192.0.2.10}\n"
COMMIT = "c0ffee" * 6 + "c0ff"


def problems(tmp_path, group_vars: str, files: dict | None = None):
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True, exist_ok=True)
    (inv / "hosts.yml").write_text(HOSTS)
    (inv / "group_vars" / "rigs.yml").write_text(textwrap.dedent(group_vars))
    for name, text in (files or {}).items():
        (inv / name).parent.mkdir(parents=True, exist_ok=True)
        (inv / name).write_text(textwrap.dedent(text))
    return [p for p in check(load([str(inv)])) if p.severity in ("error", "warning")]


@pytest.fixture(autouse=True)
def empty_fact_cache(tmp_path, monkeypatch):
    """A $RIGCTL_HOME of its own: the kept runs' fact caches are read from its runs/."""
    monkeypatch.setenv("RIGCTL_HOME", str(tmp_path / "home"))
    return tmp_path / "home" / "runs"


CATALOG = f"""\
    rig_p2p_catalog:
      mine-580.105.08:
        url: file:///srv/forks/aikitoria.git
        branch: 580.105.08-p2p
        commit: "{COMMIT}"
        driver_version: "580.105.08"
        gpus: [RTX 4090, RTX 5090]
    """


def test_user_catalog_entry_used_by_name(tmp_path):
    found = problems(tmp_path, """\
        rig_driver_flavor: p2p
        rig_driver_version: "580.105.08"
        rig_p2p_source: {catalog: mine-580.105.08}
        """, {"group_vars/all/p2p_catalog.yml": CATALOG})
    assert [p for p in found if p.severity == "error"] == [], [str(p) for p in found]


def test_user_catalog_entry_errors_with_file_and_line(tmp_path):
    bad = CATALOG.replace(f'commit: "{COMMIT}"', "commit: c0ffee").replace(
        "branch: 580.105.08-p2p", "branch: 580.105.08-p2p\n        flavor: p2p")
    found = problems(tmp_path, """\
        rig_driver_flavor: p2p
        rig_driver_version: "580.105.08"
        rig_p2p_source: {catalog: mine-580.105.08}
        """, {"group_vars/all/p2p_catalog.yml": bad})
    by_key = {p.key: p for p in found}
    commit = by_key["rig_p2p_catalog.mine-580.105.08.commit"]
    assert commit.severity == "error" and commit.file.endswith("p2p_catalog.yml")
    assert commit.line == 6 and "full 40-character commit id" in commit.message and commit.fix
    assert by_key["rig_p2p_catalog.mine-580.105.08.flavor"].line == 5
    # the rig naming it is told the entry cannot be used
    use = by_key["rig_p2p_source.catalog"]
    assert "has problems" in use.message and use.file.endswith("rigs.yml") and use.line == 3


def test_unknown_catalog_name_and_version_mismatch(tmp_path):
    found = problems(tmp_path, """\
        rig_driver_flavor: p2p
        rig_driver_version: "580.105.08"
        rig_p2p_source: {catalog: mine-580.105.8}
        """, {"group_vars/all/p2p_catalog.yml": CATALOG})
    p = next(p for p in found if p.key == "rig_p2p_source.catalog")
    assert "is not in the catalog" in p.message and "did you mean 'mine-580.105.08'" in p.fix
    found = problems(tmp_path, """\
        rig_driver_flavor: p2p
        rig_driver_version: "580.95.05"
        rig_p2p_source: {catalog: mine-580.105.08}
        """, {"group_vars/all/p2p_catalog.yml": CATALOG})
    p = next(p for p in found if p.key == "rig_p2p_source.catalog")
    assert "is for driver 580.105.08, but rig_driver_version is 580.95.05" in p.message


@pytest.mark.parametrize("base, dwords, severity, needle", [
    ("570.86.16", "{RMPcieP2PType: 1}", "error", "does not exist before NVIDIA 575"),
    ("580.105.08", "{RMForceP2PType: 2}", "warning", "means NVLink on this base"),
    ("570.86.16", "{RMForceP2PType: 1}", "warning", "means mailbox on this base"),
    ("570.86.16", "{RMForceP2PType: 7}", "error", "not a known value before 575"),
    ("580.105.08", '{RMForceP2PType: "1"}', "error", "must be a number"),
    ("580.105.08", "{rmforcep2ptype: 1}", "error", "not an NVIDIA registry key name"),
])
def test_registry_dwords_checked_against_the_base(tmp_path, base, dwords, severity, needle):
    found = problems(tmp_path, f"""\
        rig_driver_flavor: p2p
        rig_driver_version: "{base}"
        rig_p2p_source: {{url: /srv/fork.git, branch: {base}-p2p, commit: "{COMMIT}"}}
        rig_p2p_registry_dwords: {dwords}
        """)
    mine = [p for p in found if (p.key or "").startswith("rig_p2p_registry_dwords")]
    assert mine and mine[0].severity == severity and needle in mine[0].message, \
        [str(p) for p in found]
    assert mine[0].line == 4 and mine[0].fix


def test_registry_dwords_that_fit_the_base_pass_and_are_written():
    assert p2pregistry.problems("580.105.08", {"RMForceP2PType": 1, "RMPcieP2PType": 1}) == []
    assert p2pregistry.problems("570.86.16", {"RMForceP2PType": 2}) == []
    assert p2pregistry.modprobe_options({"RMPcieP2PType": 1, "RMForceP2PType": 1}) == \
        'options nvidia NVreg_RegistryDwords="RMForceP2PType=1;RMPcieP2PType=1"'
    assert p2pregistry.meaning("RMForceP2PType", 2, "570.86.16") == "BAR1"
    assert p2pregistry.meaning("RMForceP2PType", 2, "575.64.05") == "NVLink"


def _cache(runs, host, kernels, fact="rig_host", run="20261202-000000-provision-abc123"):
    """A kept run's fact cache entry, as ansible-runner writes it."""
    payload = {fact: {"kernel": {"targets": kernels}}}
    where = runs / run / "artifacts" / "run" / "fact_cache"
    where.mkdir(parents=True, exist_ok=True)
    (where / f"s1_{host}").write_text(json.dumps({"__payload__": json.dumps(payload)}))
    return where / f"s1_{host}"


@pytest.mark.parametrize("fact", ["rig_host", "rig"])
def test_kernel_gate_on_the_kernels_of_the_last_facts_run(tmp_path, empty_fact_cache, fact):
    _cache(empty_fact_cache, "rig-a", ["6.1.0-27-amd64", "6.15.2-amd64"], fact)
    found = problems(tmp_path, """\
        rig_driver_flavor: p2p
        rig_driver_version: "570.86.16"
        rig_p2p_source: {catalog: aikitoria-570.86.16}
        """)
    gate = [p for p in found if "target kernel" in p.message]
    assert len(gate) == 1, [str(p) for p in found]
    p = gate[0]
    assert p.severity == "warning" and p.key == "rig_driver_version" and p.line == 2
    assert "target kernel 6.15.2-amd64 on rig-a" in p.message
    assert "catalog entry aikitoria-570.86.16 (branch 570.86.16-p2p)" in p.message
    assert "Linux below 6.15" in p.message and "facts gathered at" in p.message
    assert "570.153.02 / 575.57.08 or newer" in p.fix and "rig_kernel_hold: true" in p.fix


def test_no_gate_without_facts_or_for_a_base_that_builds(tmp_path, empty_fact_cache):
    gv = """\
        rig_driver_flavor: p2p
        rig_driver_version: "570.86.16"
        rig_p2p_source: {catalog: aikitoria-570.86.16}
        """
    assert not [p for p in problems(tmp_path, gv) if "target kernel" in p.message]
    old = _cache(empty_fact_cache, "rig-a", ["6.15.0-1-amd64"], run="20261201-old")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    _cache(empty_fact_cache, "rig-a", ["6.14.0-1-amd64"])  # the newest run counts
    _cache(empty_fact_cache, "other-rig-a", ["6.15.0-1-amd64"], run="x")  # not this host
    assert not [p for p in problems(tmp_path, gv) if "target kernel" in p.message]


def test_kernel_gate_shows_the_pci_resize_break_for_p2p_and_stock(tmp_path, empty_fact_cache):
    """The third break (pci_resize_resource, Linux 6.12.97+) in the inventory check: a
    580.105.08 branch and Debian 13's stock 550.163.01 on trixie's 6.12.117."""
    _cache(empty_fact_cache, "rig-a", ["6.12.117+deb13-amd64"])
    found = problems(tmp_path, f"""\
        rig_driver_flavor: p2p
        rig_driver_version: "580.105.08"
        rig_p2p_source: {{url: "file:///srv/f.git", branch: 580.105.08-p2p, commit: "{COMMIT}"}}
        """)
    gate = [p for p in found if "target kernel" in p.message]
    assert len(gate) == 1, [str(p) for p in found]
    assert gate[0].severity == "warning" and gate[0].key == "rig_driver_version"
    assert "target kernel 6.12.117+deb13-amd64 on rig-a" in gate[0].message
    assert "too few arguments to function 'pci_resize_resource'" in gate[0].message
    assert "the role checks the real source against the real kernel headers" in gate[0].message
    assert "580.126.09 or newer" in gate[0].fix and "rig_kernel_hold: true" in gate[0].fix

    stock = [p for p in problems(tmp_path, """\
        rig_driver_flavor: open
        rig_driver_version: "550.163.01"
        rig_driver_source: debian
        """) if "target kernel" in p.message]
    assert len(stock) == 1 and stock[0].severity == "warning"
    assert "the stock open kernel module of NVIDIA 550.163.01 (debian packages)" in stock[0].message
    assert "#1272" in stock[0].message
    assert "driver base of NVIDIA 580.126.09 or newer" in stock[0].fix
    assert "rigctl p2p pin" not in stock[0].fix

    # the fixed base and a kernel before the change: nothing
    assert not [p for p in problems(tmp_path, """\
        rig_driver_flavor: open
        rig_driver_version: "580.126.09"
        rig_driver_source: cuda-repo
        """) if "target kernel" in p.message]
    _cache(empty_fact_cache, "rig-a", ["6.12.96+deb13-amd64"], run="20261203-000000-newer")
    assert not [p for p in problems(tmp_path, """\
        rig_driver_flavor: open
        rig_driver_version: "550.163.01"
        """) if "target kernel" in p.message]
