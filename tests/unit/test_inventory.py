"""The inventory loader, the check and `rigctl inventory check|show`: every problem type
in its own small inventory, precedence, limit patterns, the Python API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from rigctl import inventory as inv_mod
from rigctl.cli import cli, main
from rigctl.errors import InputError, InputProblems

from .inventory_helpers import REPO, lab_inventory, write

P2P_OK = """\
    rig_driver_flavor: p2p
    rig_driver_version: "570.86.16"
    rig_p2p_source:
      url: https://github.com/aikitoria/open-gpu-kernel-modules.git
      branch: 570.86.16-p2p
      commit: 0e943687150e438f265b6fe2b0f6b8bae66050fe
"""


def one_rig(host_vars: str = "", group_vars: str = "") -> str:
    """hosts.yml with one rig 'rig-a' in group 'rigs' (vars indented for the host)."""
    hv = textwrap.indent(textwrap.dedent(host_vars), " " * 10) if host_vars else ""
    gv = textwrap.indent(textwrap.dedent(group_vars), " " * 8) if group_vars else ""
    text = "all:\n  children:\n    rigs:\n      hosts:\n        rig-a:\n"
    text += "          ansible_host: 192.0.2.10\n" + hv
    if gv:
        text += "      vars:\n" + gv
    return text


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RIGCTL_INVENTORY", raising=False)
    return tmp_path


def check(*args: str):
    """Run `rigctl inventory check ARGS` in-process: (exit code, stdout, stderr)."""
    r = CliRunner().invoke(cli, ["inventory", "check", *args])
    return r.exit_code, r.stdout, r.stderr


def check_text(text: str, name: str = "hosts.yml"):
    Path(name).write_text(textwrap.dedent(text))
    return check("-i", name)


def refused(text: str, name: str = "hosts.yml") -> str:
    """The output of `rigctl inventory check` of ``text``, which must exit 2 (errors)."""
    rc, out, _ = check_text(text, name)
    assert rc == 2, out
    return out


def accepted(text: str, name: str = "hosts.yml") -> str:
    """The output of `rigctl inventory check` of ``text``, which must exit 0."""
    rc, out, _ = check_text(text, name)
    assert rc == 0, out
    return out


def line_of(text: str, needle: str) -> int:
    for i, line in enumerate(textwrap.dedent(text).splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in text")


# --- the example inventory and the happy path --------------------------------------------


def test_example_inventory_passes():
    r = CliRunner().invoke(cli, ["inventory", "check", "-i", str(REPO / "inventory/example")])
    assert r.exit_code == 0, r.output
    assert "ok, 3 rigs" in r.stdout
    assert "error" not in r.output


def test_example_resolves_group_and_host_vars():
    inv = inv_mod.load([str(REPO / "inventory/example")])
    assert inv.hosts == ["rig-epyc-1", "rig-epyc-2", "rig-tr-1"]
    assert inv.rig_hosts == inv.hosts
    epyc1 = inv.host_vars("rig-epyc-1")
    assert epyc1["rig_driver_flavor"] == "p2p"
    assert epyc1["rig_gpu_count"] == 6
    assert epyc1["rig_power_limit_overrides"] == {"0000:41:00.0": 250}
    assert inv.host_vars("rig-epyc-2")["rig_power_limit_overrides"] == {}  # the default
    assert inv.host_vars("rig-epyc-2")["ansible_port"] == 2222
    tr = inv.host_vars("rig-tr-1")
    assert tr["rig_driver_source"] == "mirror" and tr["rig_gpu_count"] == 4
    assert tr["rig_p2p_source"] is None


def test_valid_inventory_exit_0_and_summary(in_tmp):
    out = accepted(one_rig(group_vars=P2P_OK))
    assert "ok, 1 rig (rig-a)" in out


# --- YAML and structure problems ------------------------------------------------------------


def test_yaml_syntax_error_has_file_line_column(in_tmp):
    text = "all:\n  children:\n    rigs:\n      hosts:\n        rig-a:\n\t  x: 1\n"
    Path("hosts.yml").write_text(text)
    rc, out, _ = check("-i", "hosts.yml")
    assert rc == 2
    assert "hosts.yml:6:1: YAML syntax error:" in out
    assert "tabs" in out
    assert "no group 'rigs'" not in out  # no cascade from the unreadable file


def test_load_raises_input_problems_for_unparsable_file(in_tmp):
    Path("hosts.yml").write_text("all:\n  hosts: [\n")
    with pytest.raises(InputProblems) as exc:
        inv_mod.load(["hosts.yml"])
    assert exc.value.exit_code == 2
    assert "hosts.yml:" in str(exc.value.problems[0])
    # not strict: kept as problems, check() returns them
    inv = inv_mod.load(["hosts.yml"], strict=False)
    assert any("YAML syntax error" in p.message for p in inv_mod.check(inv))


def test_top_level_not_a_mapping(in_tmp):
    out = refused("- rig-a\n- rig-b\n")
    assert "hosts.yml:1: not an Ansible YAML inventory" in out


def test_unknown_section_key_suggests_hosts(in_tmp):
    text = """\
    all:
      children:
        rigs:
          host:
            rig-a:
    """
    out = refused(text)
    assert "hosts.yml:4: group 'rigs': host: unknown key 'host'" in out
    assert "did you mean 'hosts'?" in out


def test_rig_variable_directly_under_group_says_vars(in_tmp):
    text = """\
    all:
      children:
        rigs:
          hosts:
            rig-a:
          rig_gpu_count: 4
    """
    out = refused(text)
    assert "hosts.yml:6: group 'rigs': rig_gpu_count: unknown key" in out
    assert "go under `vars:`" in out


def test_hosts_as_a_list(in_tmp):
    text = """\
    all:
      children:
        rigs:
          hosts:
            - rig-a
    """
    out = refused(text)
    assert "hosts.yml:5: group 'rigs': hosts: 'hosts' of group 'rigs' must be a mapping" in out


def test_plugin_config_is_not_a_static_inventory(in_tmp):
    out = refused("plugin: constructed\n")
    assert "dynamic inventory plugin" in out


def test_ini_inventory_is_refused_with_conversion_hint(in_tmp):
    Path("hosts.ini").write_text("[rigs]\nrig-a ansible_host=192.0.2.1\n")
    rc, out, _ = check("-i", "hosts.ini")
    assert rc == 2
    assert "rigctl reads only YAML inventories" in out
    assert "ansible-inventory -i hosts.ini --list --yaml --export" in out


def test_missing_inventory_path(in_tmp):
    rc, out, _ = check("-i", "nope/hosts.yml")
    assert rc == 2
    assert "inventory not found: nope/hosts.yml" in out
    assert "RIGCTL_INVENTORY" in out  # the fix


def test_default_inventory_path_is_used(in_tmp):
    rc, out, _ = check()
    assert rc == 2
    assert "inventory not found: inventory/hosts.yml" in out
    Path("inventory").mkdir()
    Path("inventory/hosts.yml").write_text(one_rig())
    assert check()[0] == 0


def test_inventory_env_variable(in_tmp, monkeypatch):
    Path("mine.yml").write_text(one_rig())
    monkeypatch.setenv("RIGCTL_INVENTORY", "mine.yml")
    rc, out, _ = check()
    assert rc == 0, out


def test_no_rigs_group(in_tmp):
    out = refused("all:\n  hosts:\n    rig-a:\n")
    assert "hosts.yml: no group 'rigs'" in out


def test_empty_rigs_group(in_tmp):
    text = """\
    all:
      children:
        rigs:
          children:
            epyc:
        other:
          hosts:
            jump:
    """
    out = refused(text)
    assert "hosts.yml:3: group 'rigs': has no host" in out


def test_duplicate_host_in_one_mapping(in_tmp):
    text = """\
    all:
      children:
        rigs:
          hosts:
            rig-a:
              ansible_host: 192.0.2.1
            rig-b:
              ansible_host: 192.0.2.2
            rig-a:
              ansible_host: 192.0.2.3
    """
    out = refused(text)
    assert "hosts.yml:9: host 'rig-a': defined twice in the hosts of group 'rigs' (first at " \
           "line 5)" in out


def test_two_names_for_one_address(in_tmp):
    text = """\
    all:
      children:
        rigs:
          hosts:
            rig-a: {ansible_host: 192.0.2.1}
            rig-b: {ansible_host: 192.0.2.1, ansible_port: 22}
            rig-c: {ansible_host: 192.0.2.1, ansible_port: 2222}
    """
    out = refused(text)
    assert "hosts.yml:6: host 'rig-b': ansible_host: same address as host 'rig-a' " \
           "(192.0.2.1 port 22)" in out
    assert "rig-c" not in out  # another port: another machine (lab rigs do this)


def test_duplicate_key_in_vars_and_nested_values(in_tmp):
    text = one_rig(host_vars="""\
        rig_gpu_count: 4
        rig_nccl_env:
          NCCL_P2P_LEVEL: SYS
          NCCL_P2P_LEVEL: NVL
        rig_gpu_count: 6
        """)
    out = refused(text)
    assert f"hosts.yml:{line_of(text, 'rig_gpu_count: 6')}: host 'rig-a': rig_gpu_count: " \
           "variable written twice in the same mapping" in out
    assert f"hosts.yml:{line_of(text, 'NCCL_P2P_LEVEL: NVL')}: host 'rig-a': rig_nccl_env: " \
           "key 'NCCL_P2P_LEVEL' is written twice" in out


def test_group_cycle_is_an_error(in_tmp):
    text = """\
    all:
      children:
        rigs:
          hosts:
            rig-a:
          children:
            a:
              children:
                rigs:
    """
    out = refused(text)
    assert "groups form a loop" in out


# --- rig variables: names, types, ranges, choices, formats ------------------------------------


def test_unknown_rig_variable_with_suggestion_exact_line(in_tmp):
    text = one_rig(host_vars="rig_power_limt: 300\n")
    out = refused(text)
    n = line_of(text, "rig_power_limt")
    assert f"hosts.yml:{n}: host 'rig-a': rig_power_limt: unknown rig variable; did you " \
           "mean 'rig_power_limit_w'?" in out.splitlines()


def test_unknown_rig_variable_in_group_vars_file(in_tmp):
    write(in_tmp, {"inv/hosts.yml": one_rig(),
                   "inv/group_vars/rigs.yml": "rig_driver_flavour: p2p\n"})
    rc, out, _ = check("-i", "inv")
    assert rc == 2
    assert "inv/group_vars/rigs.yml:1: group 'rigs': rig_driver_flavour: unknown rig " \
           "variable; did you mean 'rig_driver_flavor'?" in out


def test_near_miss_without_prefix_is_a_warning(in_tmp):
    out = accepted(one_rig(host_vars="power_limit_w: 300\n"))
    assert "warning: host 'rig-a': power_limit_w: not a rig variable" in out
    assert "did you mean 'rig_power_limit_w'?" in out


@pytest.mark.parametrize(
    "var, expected",
    [
        ('rig_power_limit_w: "300"', "expected an integer, got the string '300'; write it "
                                     "without quotes: rig_power_limit_w: 300"),
        ('rig_persistence_mode: "yes"', "expected true or false, got the string 'yes'; write "
                                        "rig_persistence_mode: true (no quotes)"),
        ("rig_driver_version: 565.77", "expected a string, got the number 565.77; quote it: "
                                       'rig_driver_version: "565.77"'),
        ("rig_cuda_version: 12.10", "(YAML reads unquoted 12.10 as the number 12.1); quote "
                                    'it: rig_cuda_version: "12.10"'),
        ("rig_iommu_policy: off", "got the boolean false (YAML reads unquoted off as a "
                                  'boolean); quote it: rig_iommu_policy: "off"'),
        ("rig_gpu_count: 4.0", "expected an integer, got the number 4.0; use a whole number"),
        ("rig_persistence_mode:", "expected true or false, got an empty value (null); give a "
                                  "value, or remove the line to get the default (true)"),
        ("rig_nccl_env: [NCCL_P2P_LEVEL]", "expected a mapping, got a list"),
    ],
)
def test_wrong_types(in_tmp, var, expected):
    text = one_rig(host_vars=var + "\n")
    out = refused(text)
    name = var.split(":")[0]
    assert f"hosts.yml:{line_of(text, name)}: host 'rig-a': {name}: " in out
    assert expected in out


@pytest.mark.parametrize(
    "var, expected",
    [
        ("rig_power_limit_w: 50", "50 is below the minimum 100; use a value from 100 to 800"),
        ("rig_power_limit_w: 900", "900 is above the maximum 800"),
        ("rig_gpu_count: 0", "0 is below the minimum 1"),
        ("rig_gpu_count: 17", "17 is above the maximum 16"),
        ("rig_min_free_disk_gib: 0", "0 is below the minimum 1"),
        ("rig_power_limit_overrides: {0: 99}", "99 is below the minimum 100"),
        ("rig_gpu_clock_lock_mhz: {min: 1695, max: 210}", "min 1695 MHz is above max 210 MHz"),
        ("rig_gpu_clock_lock_mhz: {min: 210}", "a clock lock needs min and max (missing: max)"),
        ("rig_gpu_clock_lock_mhz: {min: 50, max: 1695}", "50 is below the minimum 100"),
        ("rig_gpu_clock_lock_mhz: {min: 210, max: 5000}", "5000 is above the maximum 4000"),
        ("rig_gpu_clock_lock_mhz: {min: 210, max: 1695, boost: 1}", "unknown key 'boost'"),
        ("rig_gpu_clock_lock_overrides: {0: {min: 900, max: 800}}",
         "min 900 MHz is above max 800 MHz"),
        ("rig_compute_mode: exclusive", "'exclusive' is not a valid value; did you mean "
         "'exclusive_process'?"),
    ],
)
def test_out_of_range(in_tmp, var, expected):
    out = refused(one_rig(host_vars=var + "\n"))
    assert expected in out


@pytest.mark.parametrize(
    "var, expected",
    [
        ("rig_driver_flavor: p3p", "rig_driver_flavor: 'p3p' is not a valid value; did you "
                                   "mean 'p2p'? (one of: open, p2p)"),
        ("rig_iommu_policy: pt", "use one of: check, passthrough, off"),
        ("rig_reboot_policy: always", "'always' is not a valid value"),
        ("rig_driver_source: nvidia", "use one of: cuda-repo, debian, mirror"),
        ("rig_hw_check_policy: strict", "use one of: enforce, warn"),
    ],
)
def test_not_in_choices(in_tmp, var, expected):
    out = refused(one_rig(host_vars=var + "\n"))
    assert expected in out


@pytest.mark.parametrize(
    "var, expected",
    [
        ('rig_driver_version: "570"', "'570' is not in the expected format"),
        ('rig_driver_version: "570.86.16.1"', "is not in the expected format"),
        ('rig_driver_version: "470.82.00"', "has no open kernel modules"),
        ('rig_cuda_version: "12"', "major.minor"),
        ('rig_nccl_version: "3.1.1"', "like 2.26.2 or 2.26.2-1"),
        ("rig_driver_mirror_url: mirror.example.com/x", "an http://, https:// or file:// URL"),
        ("rig_nccl_socket_ifname: eth0 eth1", "interface names or prefixes"),
        ("rig_lab_profile: '4 x 3090'", "a profile name like 4x3090"),
    ],
)
def test_bad_formats(in_tmp, var, expected):
    out = refused(one_rig(host_vars=var + "\n"))
    assert expected in out


def test_abbreviated_commit_is_refused(in_tmp):
    text = one_rig(group_vars=P2P_OK.replace("0e943687150e438f265b6fe2b0f6b8bae66050fe",
                                             "0e94368"))
    out = refused(text)
    n = line_of(text, "commit: 0e94368")
    assert f"hosts.yml:{n}: group 'rigs': rig_p2p_source.commit: abbreviated commit id " \
           "'0e94368'" in out
    assert "git rev-parse 0e94368" in out


def test_p2p_source_shape(in_tmp):
    text = one_rig(group_vars="""\
        rig_driver_flavor: p2p
        rig_driver_version: "570.86.16"
        rig_p2p_source:
          catalog: aikitoria-570.86.16
          url: https://example.com/x.git
          brnch: x
        """)
    out = refused(text)
    assert "rig_p2p_source.brnch: unknown key 'brnch' in rig_p2p_source" in out
    assert "did you mean 'branch'?" in out


def test_p2p_catalog_with_mirror_url(in_tmp):
    """A catalog entry may be fetched from a local mirror; branch and commit stay pinned."""
    rc, out, _ = check_text(one_rig(group_vars="""\
        rig_driver_flavor: p2p
        rig_driver_version: "570.86.16"
        rig_p2p_source:
          catalog: aikitoria-570.86.16
          url: file:///srv/mirrors/open-gpu-kernel-modules.git
        """))
    assert rc == 0, out
    rc, out, _ = check_text(one_rig(group_vars="""\
        rig_driver_flavor: p2p
        rig_driver_version: "570.86.16"
        rig_p2p_source:
          catalog: aikitoria-570.86.16
          url: file:///srv/mirrors/open-gpu-kernel-modules.git
          commit: 0e943687150e438f265b6fe2b0f6b8bae66050fe
        """))
    assert rc == 2
    assert "commit cannot be combined with catalog" in out


def test_p2p_source_unknown_catalog_and_bad_url(in_tmp):
    rc, out, _ = check_text(one_rig(host_vars="""\
        rig_p2p_source: {catalog: tinygrad-565.57}
        """))
    assert rc == 2
    assert "did you mean 'tinygrad-565.57.01'?" in out
    rc, out, _ = check_text(one_rig(host_vars="""\
        rig_p2p_source: {url: "github.com/x", branch: 570.86.16-p2p}
        """))
    assert rc == 2
    assert "'github.com/x' is not a git URL or path" in out


def test_p2p_url_without_commit_is_refused(in_tmp):
    gv = "\n".join(line for line in P2P_OK.splitlines() if "commit" not in line) + "\n"
    out = refused(one_rig(group_vars=gv))
    assert "group 'rigs': rig_p2p_source.commit: no commit: third-party kernel source must be pinned" in out


def test_unquoted_bus_id_key(in_tmp):
    text = one_rig(host_vars="""\
        rig_power_limit_overrides:
          0000:41:00.0: 250
        """)
    out = refused(text)
    assert f"hosts.yml:{line_of(text, '0000:41')}: host 'rig-a': " \
           "rig_power_limit_overrides['0000:41:00.0']: the key 0000:41:00.0 is read by YAML " \
           "1.1 as the base-60 number 2460.0" in out
    assert 'quote it: "0000:41:00.0": 250' in out


def test_override_selectors(in_tmp):
    text = one_rig(host_vars="""\
        rig_power_limit_overrides:
          0: 250
          "00000000:41:00.0": 260
          "GPU-5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d": 270
          "c1:00.0": 280
        """)
    accepted(text)
    text = one_rig(host_vars="""\
        rig_power_limit_overrides:
          gpu0: 250
        """)
    out = refused(text)
    assert "'gpu0' is not a GPU index, PCI bus id or UUID" in out


def test_duplicate_override_targets(in_tmp):
    text = one_rig(host_vars="""\
        rig_power_limit_overrides:
          0: 250
          "0": 260
          "0000:41:00.0": 250
          "00000000:41:00.0": 250
        """)
    out = refused(text)
    n = line_of(text, '"0": 260')
    assert f"hosts.yml:{n}: host 'rig-a': " \
           "rig_power_limit_overrides['0']: '0' and 0 name the same GPU" in out
    assert "'00000000:41:00.0' and '0000:41:00.0' name the same GPU" in out


def test_nccl_env_keys(in_tmp):
    text = one_rig(host_vars="""\
        rig_nccl_env:
          nccl_p2p_level: SYS
          P2P_DISABLE: 1
          NCCL_DEBUG: INFO
        """)
    out = refused(text)
    assert "rig_nccl_env['nccl_p2p_level']: 'nccl_p2p_level' is not an NCCL variable (keys " \
           "must start with NCCL_); NCCL variables are upper case: NCCL_P2P_LEVEL" in out
    assert "did you mean NCCL_P2P_DISABLE?" in out
    assert "NCCL_DEBUG" not in out


def test_jinja_values_are_notes_not_errors(in_tmp):
    text = one_rig(host_vars="""\
        rig_power_limit_w: "{{ 250 + 25 }}"
        rig_gpu_count: "{{ groups['rigs'] | length }}"
        """)
    out = accepted(text)
    assert f"hosts.yml:{line_of(text, 'rig_power_limit_w')}: note: host 'rig-a': " \
           "rig_power_limit_w: the value uses Jinja" in out
    assert "2 notes" in out


def test_vault_values_parse_and_are_not_checked(in_tmp):
    text = one_rig(host_vars="""\
        ansible_become_password: !vault |
          $ANSIBLE_VAULT;1.1;AES256
          6162636465
        rig_cuda_mirror_url: !vault |
          $ANSIBLE_VAULT;1.1;AES256
          6162636465
        """)
    out = accepted(text)
    assert "rig_cuda_mirror_url: the value uses !vault-encrypted" in out


def test_removed_variable_warns_names_the_replacements_and_is_ignored(in_tmp):
    text = one_rig(host_vars="""\
        rig_apt_mirror_url: http://mirror.example.com/ubuntu/
        """)
    out = accepted(text)
    assert f"hosts.yml:{line_of(text, 'rig_apt_mirror_url')}:" in out
    assert "rig_apt_mirror_url is no longer a rig variable and is ignored" in out
    assert "rig_cuda_mirror_url" in out and "rig_nccl_mirror_url" in out
    assert "unknown rig variable" not in out


# --- rules between variables ----------------------------------------------------------------


def test_p2p_needs_source_and_version(in_tmp):
    text = one_rig(group_vars="rig_driver_flavor: p2p\n")
    out = refused(text)
    n = line_of(text, "rig_driver_flavor")
    assert f"hosts.yml:{n}: host 'rig-a': rig_driver_version: required because " \
           "rig_driver_flavor is 'p2p'" in out
    assert f"hosts.yml:{n}: host 'rig-a': rig_p2p_source: required because " \
           "rig_driver_flavor is 'p2p'" in out
    assert "aikitoria-570.86.16" in out  # the fix lists the catalog


def test_p2p_branch_version_must_match_driver_version(in_tmp):
    write(in_tmp, {
        "inv/hosts.yml": one_rig(),
        "inv/group_vars/rigs.yml": P2P_OK.replace('"570.86.16"', '"570.86.15"'),
    })
    rc, out, _ = check("-i", "inv")
    assert rc == 2
    assert "inv/group_vars/rigs.yml:5: host 'rig-a': rig_p2p_source.branch: branch " \
           "'570.86.16-p2p' is for driver 570.86.16, but rig_driver_version is 570.86.15 " \
           "(inv/group_vars/rigs.yml:2)" in out


def test_p2p_catalog_version_must_match(in_tmp):
    text = one_rig(group_vars="""\
        rig_driver_flavor: p2p
        rig_driver_version: "565.57.01"
        rig_p2p_source: {catalog: aikitoria-570.86.16}
        """)
    out = refused(text)
    assert "catalog entry 'aikitoria-570.86.16' is for driver 570.86.16, but " \
           "rig_driver_version is 565.57.01" in out
    assert "(tinygrad-565.57.01)" in out  # the entry that would match
    ok = one_rig(group_vars="""\
        rig_driver_flavor: p2p
        rig_driver_version: "565.57.01"
        rig_p2p_source: {catalog: tinygrad-565.57.01}
        """)
    accepted(ok)


def test_p2p_source_on_open_rig_is_a_warning(in_tmp):
    text = one_rig(host_vars="rig_p2p_source: {catalog: tinygrad-565.57.01}\n")
    out = accepted(text)
    assert "warning: host 'rig-a': rig_p2p_source: ignored: rig_driver_flavor is 'open' " \
           "(the default)" in out


def test_mirror_source_needs_url(in_tmp):
    text = one_rig(host_vars="rig_driver_source: mirror\nrig_cuda_source: mirror\n")
    out = refused(text)
    assert "rig_driver_mirror_url: required because rig_driver_source is 'mirror'" in out
    assert "rig_cuda_mirror_url: required because rig_cuda_source is 'mirror'" in out


def test_override_index_beyond_gpu_count(in_tmp):
    write(in_tmp, {
        "inv/hosts.yml": one_rig(group_vars="rig_gpu_count: 4\n"),
        "inv/host_vars/rig-a.yml": "rig_power_limit_overrides:\n  3: 250\n  4: 250\n",
    })
    rc, out, _ = check("-i", "inv")
    assert rc == 2
    assert "inv/host_vars/rig-a.yml:3: host 'rig-a': rig_power_limit_overrides[4]: GPU index 4 " \
           "does not exist on a rig with rig_gpu_count 4" in out
    assert "overrides[3]" not in out


def test_clock_override_index_beyond_gpu_count(in_tmp):
    write(in_tmp, {
        "inv/hosts.yml": one_rig(group_vars="rig_gpu_count: 4\n"),
        "inv/host_vars/rig-a.yml": "rig_gpu_clock_lock_overrides:\n  4: {min: 210, max: 1500}\n",
    })
    rc, out, _ = check("-i", "inv")
    assert rc == 2
    assert "rig_gpu_clock_lock_overrides[4]: GPU index 4 does not exist on a rig with " \
           "rig_gpu_count 4" in out


def test_nccl_socket_ifname_in_two_places(in_tmp):
    text = one_rig(host_vars="""\
        rig_nccl_socket_ifname: eno1
        rig_nccl_env: {NCCL_SOCKET_IFNAME: eno2}
        """)
    out = refused(text)
    assert "NCCL_SOCKET_IFNAME is set here and in rig_nccl_socket_ifname" in out


def test_cuda_needs_new_enough_driver(in_tmp):
    text = one_rig(host_vars='rig_driver_version: "520.61.05"\nrig_cuda_version: "12.4"\n')
    out = refused(text)
    assert ("rig_cuda_version: CUDA 12.4 needs NVIDIA driver 550.54.14 or newer (any CUDA 12.x "
            "needs at least 525.60.13); rig_driver_version is 520.61.05") in out
    assert "set rig_cuda_version to a release this driver supports (11.8 or older)" in out


def test_cuda_newer_than_the_driver_needs_minor_version_compat(in_tmp):
    text = one_rig(host_vars='rig_driver_version: "535.261.03"\nrig_cuda_version: "12.8"\n')
    out = refused(text)
    assert ("CUDA 12.8 ships with driver 570.26; the installed driver 535.261.03 supports CUDA "
            "up to 12.2") in out
    assert "rig_cuda_minor_version_compat: true" in out
    accepted(one_rig(host_vars='rig_driver_version: "535.261.03"\nrig_cuda_version: "12.8"\n'
                     "rig_cuda_minor_version_compat: true\n"))


def test_cuda_extra_versions_checked_against_the_driver_and_the_source(in_tmp):
    text = one_rig(host_vars='rig_driver_version: "570.86.16"\nrig_cuda_version: "12.8"\n'
                   'rig_cuda_extra_versions: ["13.0", "12.8"]\nrig_cuda_source: debian\n')
    out = refused(text)
    assert "rig_cuda_extra_versions: CUDA 13.0 needs NVIDIA driver 580.65.06 or newer" in out
    assert "12.8 is rig_cuda_version already" in out
    assert "the debian source ships one CUDA toolkit" in out


def test_nccl_mirror_needs_its_url(in_tmp):
    out = refused(one_rig(host_vars="rig_nccl_source: mirror\n"))
    assert "rig_nccl_mirror_url: required because rig_nccl_source is 'mirror'" in out


def test_lab_profile_on_a_real_address_is_a_warning(in_tmp, monkeypatch):
    out = accepted(one_rig(host_vars="rig_lab_profile: 4x3090\n"))
    assert "warning: host 'rig-a': rig_lab_profile: set, but it is for simulated lab rigs" in out
    rc, out, _ = check("-i", str(lab_inventory(in_tmp / "home", monkeypatch)))
    assert rc == 0, out
    assert "warning:" not in out


def test_cross_rules_use_resolved_values_per_host(in_tmp):
    """A group sets flavor p2p; one host overrides back to open: only the p2p host errs."""
    text = """\
    all:
      children:
        rigs:
          hosts:
            rig-a: {ansible_host: 192.0.2.1}
            rig-b: {ansible_host: 192.0.2.2, rig_driver_flavor: open}
          vars:
            rig_driver_flavor: p2p
    """
    out = refused(text)
    assert "host 'rig-a': rig_p2p_source: required" in out
    assert "rig-b" not in out


# --- warnings --------------------------------------------------------------------------------


def test_group_vars_file_for_unknown_group(in_tmp):
    write(in_tmp, {
        "inv/hosts.yml": """\
            all:
              children:
                rigs:
                  children:
                    epyc:
                      hosts:
                        rig-a:
            """,
        "inv/group_vars/epic.yml": "rig_gpu_count: 6\n",
        "inv/host_vars/rig-b.yml": "rig_gpu_count: 6\n",
    })
    rc, out, _ = check("-i", "inv")
    assert rc == 0, out
    assert "inv/group_vars/epic.yml: warning: the inventory has no group 'epic'; Ansible " \
           "ignores this file; did you mean 'epyc'? rename the file" in out
    assert "inv/host_vars/rig-b.yml: warning: the inventory has no host 'rig-b'" in out


def test_shadowed_group_vars_file(in_tmp):
    write(in_tmp, {
        "inv/hosts.yml": one_rig(),
        "inv/group_vars/rigs/main.yml": "rig_gpu_count: 6\n",
        "inv/group_vars/rigs.yml": "rig_gpu_count: 4\n",
    })
    rc, out, _ = check("-i", "inv")
    assert rc == 0
    assert "inv/group_vars/rigs.yml: warning: Ansible ignores this file because " \
           "inv/group_vars/rigs is read for 'rigs' instead" in out
    assert inv_mod.load(["inv"]).host_vars("rig-a")["rig_gpu_count"] == 6


def test_variable_set_twice_for_one_host(in_tmp):
    text = """\
    all:
      children:
        rigs:
          hosts:
            rig-a: {ansible_host: 192.0.2.1, rig_gpu_count: 4}
        epyc:
          hosts:
            rig-a: {rig_gpu_count: 6}
    """
    out = accepted(text)
    assert "hosts.yml:8: warning: host 'rig-a': rig_gpu_count: also set at hosts.yml:5 to 4; " \
           "this later value (6) wins" in out


def test_host_outside_rigs_with_rig_vars(in_tmp):
    text = one_rig() + "    storage:\n      hosts:\n        nas: {rig_gpu_count: 2}\n"
    out = accepted(text)
    assert "hosts.yml:9: warning: host 'nas': rig_gpu_count: the host is not in group " \
           "'rigs'" in out


# --- every problem at once, JSON -------------------------------------------------------------


def test_every_problem_is_reported_in_one_run(in_tmp):
    write(in_tmp, {
        "inv/hosts.yml": """\
            all:
              children:
                rigs:
                  hosts:
                    rig-a:
                      ansible_host: 192.0.2.1
                      rig_power_limt: 300
                    rig-b:
                      ansible_host: 192.0.2.2
                      rig_gpu_count: many
            """,
        "inv/group_vars/rigs.yml": "rig_driver_flavor: p2p\n",
        "inv/broken.yml": "all: [\n",
    })
    rc, out, _ = check("-i", "inv")
    assert rc == 2
    assert "inv/broken.yml:" in out and "YAML syntax error" in out
    assert "rig_power_limt: unknown rig variable" in out
    assert "host 'rig-b': rig_gpu_count: expected an integer, got the string 'many'" in out
    assert "host 'rig-a': rig_p2p_source: required" in out
    assert "host 'rig-b': rig_p2p_source: required" in out


def test_json_output(in_tmp):
    Path("hosts.yml").write_text(one_rig(host_vars="rig_power_limt: 300\n"))
    rc, out, _ = check("-i", "hosts.yml", "--json")
    assert rc == 2
    data = json.loads(out)
    assert data["ok"] is False
    assert data["hosts"] == ["rig-a"]
    (p,) = data["problems"]
    assert {"file", "line", "host", "group", "key", "severity", "message", "fix"} <= set(p)
    assert p == {**p, "file": "hosts.yml", "line": 7, "host": "rig-a", "group": None,
                 "key": "rig_power_limt", "severity": "error",
                 "message": "unknown rig variable", "fix": "did you mean 'rig_power_limit_w'?"}
    rc, out, _ = check("-i", str(REPO / "inventory/example"), "--json")
    assert rc == 0 and json.loads(out)["ok"] is True


def test_exit_codes_through_main_and_subprocess(in_tmp):
    Path("hosts.yml").write_text(one_rig(host_vars="rig_power_limt: 300\n"))
    with pytest.raises(SystemExit) as exc:
        main(["inventory", "check", "-i", "hosts.yml"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["inventory", "check", "-i", str(REPO / "inventory/example")])
    assert exc.value.code == 0
    rigctl = Path(sys.executable).parent / "rigctl"
    cmd = [str(rigctl)] if rigctl.exists() else [sys.executable, "-m", "rigctl"]
    r = subprocess.run([*cmd, "inventory", "check", "-i", "hosts.yml"], capture_output=True,
                       text=True)
    assert r.returncode == 2
    assert "did you mean 'rig_power_limit_w'?" in r.stdout


def test_check_does_not_import_ansible(in_tmp):
    Path("hosts.yml").write_text(one_rig(group_vars=P2P_OK))
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from rigctl.cli import cli\n"
        "r = CliRunner().invoke(cli, ['inventory', 'check', '-i', 'hosts.yml'])\n"
        "r2 = CliRunner().invoke(cli, ['inventory', 'show', '-i', 'hosts.yml'])\n"
        "assert r.exit_code == 0 and r2.exit_code == 0, r.output + r2.output\n"
        "bad = [m for m in sys.modules if m == 'ansible' or m.startswith('ansible.')]\n"
        "assert not bad, bad[:5]\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# --- show --------------------------------------------------------------------------------------


def test_show_values_and_sources(in_tmp):
    write(in_tmp, {
        "inv/hosts.yml": one_rig(host_vars="rig_gpu_count: 4\n"),
        "inv/group_vars/rigs.yml": "rig_power_limit_w: 275\n",
    })
    r = CliRunner().invoke(cli, ["inventory", "show", "-i", "inv", "rig-a"])
    assert r.exit_code == 0, r.output
    lines = {line.split()[0]: line for line in r.stdout.splitlines()[1:] if line.strip()}
    assert "275" in lines["rig_power_limit_w"]
    assert "inv/group_vars/rigs.yml:1 (group 'rigs')" in lines["rig_power_limit_w"]
    assert "inv/hosts.yml:7 (host 'rig-a')" in lines["rig_gpu_count"]
    assert lines["rig_driver_flavor"].split()[1:] == ["open", "default"]
    r = CliRunner().invoke(cli, ["inventory", "show", "-i", "inv", "--json"])
    data = json.loads(r.stdout)["hosts"]["rig-a"]
    assert data["vars"]["rig_power_limit_w"] == {
        "value": 275, "source": "inv/group_vars/rigs.yml:1", "scope": "group 'rigs'"}
    assert data["vars"]["rig_reboot_policy"] == {"value": "never", "source": "default",
                                                 "scope": None}
    assert data["groups"] == ["rigs"]


def test_show_unknown_host(in_tmp):
    Path("hosts.yml").write_text(one_rig())
    r = CliRunner().invoke(cli, ["inventory", "show", "-i", "hosts.yml", "rig-a", "rig-z"])
    assert r.exit_code == 2
    assert "unknown host: rig-z" in r.stderr
    assert "known hosts: rig-a" in r.stderr


# --- precedence --------------------------------------------------------------------------------

PRECEDENCE_FILES = {
    "inv/hosts.yml": """\
        all:
          vars: {v_all: all-inline, v_order: all-inline, v_gv_all: all-inline}
          children:
            rigs:
              vars: {v_order: rigs-inline, v_depth: rigs-inline, v_gv_all: rigs-inline}
              children:
                beta:
                  hosts:
                    h1: {v_host: host-inline, v_hv: host-inline}
                    h2:
                  vars: {v_depth: beta-inline, v_alpha: beta-inline}
                alpha:
                  hosts:
                    h1:
                  vars: {v_alpha: alpha-inline, v_gvfile: alpha-inline}
                prio:
                  hosts: {h2: }
                  vars: {ansible_group_priority: 5, v_prio: prio}
                aaa:
                  hosts: {h2: }
                  vars: {v_prio: aaa}
        """,
    "inv/group_vars/all.yml": "v_gv_all: gv-all\n",
    "inv/group_vars/alpha.yml": "v_gvfile: gv-alpha\n",
    "inv/group_vars/rigs/10-a.yml": "v_dir: a\nv_depth2: gv-rigs\n",
    "inv/group_vars/rigs/20-b.yml": "v_dir: b\n",
    "inv/group_vars/beta.yaml": "v_depth2: gv-beta\n",
    "inv/host_vars/h1.yml": "v_hv: host-vars-file\n",
}


def test_precedence(in_tmp):
    write(in_tmp, PRECEDENCE_FILES)
    inv = inv_mod.load(["inv/hosts.yml"])
    h1 = inv.host_vars("h1")
    assert h1["v_all"] == "all-inline"
    assert h1["v_order"] == "rigs-inline"  # child group beats all
    assert h1["v_depth"] == "beta-inline"  # deeper group beats parent
    assert h1["v_alpha"] == "beta-inline"  # same depth: alphabetical, later (beta) wins
    assert h1["v_gv_all"] == "gv-all"  # Ansible: group_vars/all beats any inline group vars
    assert h1["v_gvfile"] == "gv-alpha"  # group_vars file beats the same group's inline vars
    assert h1["v_dir"] == "b"  # files of a group_vars dir in sorted order
    assert h1["v_depth2"] == "gv-beta"
    assert h1["v_host"] == "host-inline"
    assert h1["v_hv"] == "host-vars-file"  # host_vars file beats host inline
    h2 = inv.host_vars("h2")
    assert h2["v_prio"] == "prio"  # ansible_group_priority 5 sorts prio after aaa
    assert "ansible_group_priority" not in h2
    res = inv.resolved("h1")
    assert res["v_hv"].where == "inv/host_vars/h1.yml:1"
    assert res["v_alpha"].describe() == "inv/hosts.yml:11 (group 'beta')"
    assert res["rig_driver_flavor"].layer == "default"


def test_host_patterns_ranges_and_ports(in_tmp):
    Path("hosts.yml").write_text(textwrap.dedent("""\
        all:
          children:
            rigs:
              hosts:
                "rig-[1:3]":
                  rig_gpu_count: 4
                "node[a:b]-[01:02]:2222":
                "[2001:db8::1]:2022":
        """))
    inv = inv_mod.load(["hosts.yml"])
    assert inv.hosts == ["rig-1", "rig-2", "rig-3", "nodea-01", "nodea-02", "nodeb-01",
                         "nodeb-02", "2001:db8::1"]
    assert inv.host_vars("rig-2")["rig_gpu_count"] == 4
    assert inv.host_vars("nodeb-01")["ansible_port"] == 2222
    assert inv.host_vars("2001:db8::1")["ansible_port"] == 2022
    assert inv_mod.check(inv) == []


def test_directory_inventory_reads_every_yaml_file(in_tmp):
    write(in_tmp, {
        "inv/10-rigs.yml": one_rig(),
        "inv/20-more.yaml": "rigs:\n  hosts:\n    rig-b: {ansible_host: 192.0.2.20}\n",
        "inv/sub/more.yml": "all:\n  children:\n    rigs:\n      hosts:\n        rig-c:\n",
        "inv/README.md": "# not an inventory\n",
        "inv/hosts.yml~": "garbage: [\n",
        "inv/group_vars/rigs.yml": "rig_gpu_count: 2\n",
    })
    inv = inv_mod.load(["inv"])
    assert inv.hosts == ["rig-a", "rig-b", "rig-c"]
    assert inv.host_vars("rig-c")["rig_gpu_count"] == 2
    assert [p for p in inv_mod.check(inv) if p.severity == "error"] == []


# --- limit patterns ----------------------------------------------------------------------------

LIMIT_INV = """\
all:
  children:
    rigs:
      children:
        epyc:
          hosts:
            rig-epyc-1: {ansible_host: 192.0.2.1}
            rig-epyc-2: {ansible_host: 192.0.2.2}
        desktop:
          hosts:
            rig-tr-1: {ansible_host: 192.0.2.3}
        lab:
          hosts:
            rig-epyc-2:
    tools:
      hosts:
        jump: {ansible_host: 192.0.2.9}
"""


@pytest.fixture
def limit_inv(in_tmp):
    Path("hosts.yml").write_text(LIMIT_INV)
    return inv_mod.load(["hosts.yml"])


@pytest.mark.parametrize(
    "limit, expected",
    [
        (None, ["rig-epyc-1", "rig-epyc-2", "rig-tr-1"]),
        ("", ["rig-epyc-1", "rig-epyc-2", "rig-tr-1"]),
        ("all", ["rig-epyc-1", "rig-epyc-2", "rig-tr-1"]),
        ("rig-tr-1", ["rig-tr-1"]),
        ("epyc", ["rig-epyc-1", "rig-epyc-2"]),
        ("rig-tr-1,rig-epyc-1", ["rig-epyc-1", "rig-tr-1"]),
        ("desktop:epyc", ["rig-epyc-1", "rig-epyc-2", "rig-tr-1"]),
        ("rig-epyc-*", ["rig-epyc-1", "rig-epyc-2"]),
        ("*-1", ["rig-epyc-1", "rig-tr-1"]),
        ("rigs:!epyc", ["rig-tr-1"]),
        ("rigs,!rig-epyc-2", ["rig-epyc-1", "rig-tr-1"]),
        ("!desktop", ["rig-epyc-1", "rig-epyc-2"]),
        ("epyc:&lab", ["rig-epyc-2"]),
        ("rigs:&lab:!rig-epyc-1", ["rig-epyc-2"]),
        ("~rig-(tr|epyc)-1", ["rig-epyc-1", "rig-tr-1"]),
        ("ep*", ["rig-epyc-1", "rig-epyc-2"]),  # a wildcard matching a group
    ],
)
def test_select(limit_inv, limit, expected):
    assert limit_inv.select(limit) == expected


def test_select_other_groups_and_all_hosts(limit_inv):
    assert limit_inv.select("jump", group=None) == ["jump"]
    assert limit_inv.select(None, group=None) == ["rig-epyc-1", "rig-epyc-2", "rig-tr-1", "jump"]
    with pytest.raises(InputError) as exc:
        limit_inv.select("jump")
    assert "selects no host of group 'rigs'" in exc.value.message
    assert "jump is not in it" in exc.value.message


@pytest.mark.parametrize("limit", ["rig-epyc-3", "rigs:!rig-tr-2", "epyc:&labs", "nomatch*"])
def test_select_unknown_name(limit_inv, limit):
    with pytest.raises(InputError) as exc:
        limit_inv.select(limit)
    assert exc.value.exit_code == 2
    assert "unknown host or group" in exc.value.message
    assert "known hosts: rig-epyc-1, rig-epyc-2, rig-tr-1, jump" in exc.value.fix


def test_select_suggests_close_name(limit_inv):
    with pytest.raises(InputError) as exc:
        limit_inv.select("rig-epyc1")
    assert "did you mean 'rig-epyc-1'?" in exc.value.fix


# --- require_valid -----------------------------------------------------------------------------


def test_require_valid_returns_hosts_and_prints_warnings(in_tmp, capsys):
    Path("hosts.yml").write_text(one_rig(host_vars="power_limit_w: 300\n") +
                                 "        rig-b: {ansible_host: 192.0.2.11}\n")
    inv, hosts = inv_mod.require_valid(["hosts.yml"], limit="rig-b")
    assert hosts == ["rig-b"]
    assert inv.hosts == ["rig-a", "rig-b"]
    err = capsys.readouterr().err
    assert "warning: host 'rig-a': power_limit_w: not a rig variable" in err


def test_require_valid_raises_with_every_error(in_tmp):
    Path("hosts.yml").write_text(one_rig(host_vars="rig_power_limt: 300\nrig_gpu_count: x\n"))
    with pytest.raises(InputProblems) as exc:
        inv_mod.require_valid(["hosts.yml"])
    assert exc.value.exit_code == 2
    assert len(exc.value.problems) == 2
    text = exc.value.render()
    assert "has 2 errors" in text
    assert "hosts.yml:7: host 'rig-a': rig_power_limt: unknown rig variable" in text
    assert "hosts.yml:8: host 'rig-a': rig_gpu_count: expected an integer" in text


def test_require_valid_missing_inventory(in_tmp):
    with pytest.raises(InputProblems) as exc:
        inv_mod.require_valid(["missing.yml"])
    assert "inventory not found: missing.yml" in exc.value.render()


def test_require_valid_unknown_limit(in_tmp):
    Path("hosts.yml").write_text(one_rig())
    with pytest.raises(InputError) as exc:
        inv_mod.require_valid(["hosts.yml"], limit="rig-x")
    assert "unknown host or group 'rig-x'" in exc.value.message


def test_problem_str_format():
    p = inv_mod.Problem(file="inventory/hosts.yml", line=14, host="rig-a",
                        key="rig_power_limt", message="unknown rig variable",
                        fix="did you mean 'rig_power_limit_w'?")
    assert str(p) == ("inventory/hosts.yml:14: host 'rig-a': rig_power_limt: unknown rig "
                      "variable; did you mean 'rig_power_limit_w'?")
    w = inv_mod.Problem(file="a.yml", line=None, group="epyc", message="m", severity="warning")
    assert str(w) == "a.yml: warning: group 'epyc': m"


def test_inventory_paths_are_as_given(in_tmp):
    os.makedirs("deep/inv")
    Path("deep/inv/hosts.yml").write_text(one_rig(host_vars="rig_gpu_count: 99\n"))
    rc, out, _ = check("-i", "deep/inv")
    assert rc == 2
    assert out.startswith("deep/inv/hosts.yml:7: host 'rig-a': rig_gpu_count:")
