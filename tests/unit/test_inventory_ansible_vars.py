"""Ansible's connection variables (rigctl/inventory/ansible_vars.py) and the structure rules
of Ansible's YAML inventory: what must still pass, read the way Ansible reads it. The
malformed cases are the corpus of tests/unit/test_inventory_corpus.py."""

from __future__ import annotations

import shutil
import textwrap

import pytest

from rigctl import inventory as inv_mod
from rigctl.inventory import ansible_vars, schema
from rigctl.inventory.hostpatterns import expand_host_pattern

from .inventory_helpers import EXAMPLE, ansible_list, assert_same_as_ansible, lab_inventory

GOOD = """\
    all:
      vars:
        ansible_user: rig
        ansible_become: "yes"               # Ansible's boolean words are booleans to it
        ansible_become_method: sudo
        ansible_python_interpreter: auto_silent
        ansible_ssh_common_args: -o ServerAliveInterval=30
      children:
        rigs:
          hosts:
            rig-a:
              ansible_host: 192.0.2.10
              ansible_port: "2222"          # a quoted whole number is a port to Ansible
            rig_b.lab:                      # '_' and '.' in a name used as the address
            rig-c:
              ansible_host: 2001:db8::10
              ansible_ssh_port: 22
              ansible_become_user: root
              ansible_connection: ssh
            rig-d:
              ansible_host: "{{ inventory_hostname }}.lab.example"   # Jinja: not checked
              ansible_user: "{{ lookup('env', 'RIG_USER') }}"
              ansible_become_method: community.general.doas         # a plugin's full name
              ansible_ssh_pipelining: true
              ansible_ssh_private_key_file: ~/.ssh/id_ed25519
            rig-[01:03]:                    # ranges: the names are the addresses
              ansible_port: 22
            node-[a:b][1:2]:
            gpu-[:1]:
            rig-e:2200:
              ansible_host: 192.0.2.40
        lab:
          hosts: rig-a                       # a string is one host (Ansible's rule)
    """


def test_good_connection_variables_pass_and_agree_with_ansible(tmp_path):
    (tmp_path / "hosts.yml").write_text(textwrap.dedent(GOOD))
    inv = inv_mod.load([str(tmp_path / "hosts.yml")])
    problems = inv_mod.check(inv)
    assert [p for p in problems if p.severity != "note"] == [], problems
    theirs, data = ansible_list([str(tmp_path / "hosts.yml")], tmp_path)
    assert sorted(inv.hosts) == sorted(theirs)
    assert "rig-02" in inv.hosts and "node-b2" in inv.hosts and "gpu-0" in inv.hosts
    assert inv.host_vars("rig-e")["ansible_port"] == 2200
    assert data["lab"]["hosts"] == ["rig-a"]
    assert_same_as_ansible([str(tmp_path / "hosts.yml")], tmp_path)


def test_the_lab_and_example_inventories_still_pass(tmp_path, monkeypatch):
    inv_dir = tmp_path / "example"
    shutil.copytree(EXAMPLE, inv_dir)
    assert inv_mod.check(inv_mod.load([str(inv_dir)])) == []
    lab = lab_inventory(tmp_path / "home", monkeypatch)
    problems = inv_mod.check(inv_mod.load([str(lab)]))
    assert [p for p in problems if p.severity == "error"] == []


@pytest.mark.parametrize("pattern, names", [
    ("rig-[1:3]", ["rig-1", "rig-2", "rig-3"]),
    ("rig-[01:10:3]", ["rig-01", "rig-04", "rig-07", "rig-10"]),
    ("rig-[0:2]", ["rig-0", "rig-1", "rig-2"]),
    ("[:1]x", ["0x", "1x"]),
    ("n[a:c:2]", ["na", "nc"]),
    ("n[A:B]-[1:2]", ["nA-1", "nA-2", "nB-1", "nB-2"]),
])
def test_ranges_expand_like_ansible(pattern, names):
    assert expand_host_pattern(pattern) == (names, None)


@pytest.mark.parametrize("pattern", ["rig-[1:]", "rig-[01:5]", "rig-[1:4:0]", "rig-[a:3]",
                                     "rig-[3:1]", "rig-[c:a]", "rig-[1:3", "rig-[1]",
                                     "rig-[aa:bb]", "rig-[1:2:x]"])
def test_bad_ranges_are_refused(pattern):
    with pytest.raises(ValueError):
        expand_host_pattern(pattern)


@pytest.mark.parametrize("value", ["192.0.2.10", "rig-a", "rig_a.lab.example", "2001:db8::1",
                                   "fe80::1%eth0", "localhost", "10.0.0.255"])
def test_addresses_accepted(value):
    assert ansible_vars.address_problem(value) is None


@pytest.mark.parametrize("value, says", [
    ("", "empty"), (" ", "empty"), ("a b", "spaces"), ("ssh://rig-a", "URL"),
    ("root@rig-a", "user"), ("[2001:db8::1]", "brackets"), ("rig-a:22", "port"),
    ("192.0.2.256", "IPv4"), ("1.2.3", "IPv4"), ("2001:db8:::1", "IPv6"),
    ("rig-a-", "host name"), ("rig/a", "host name"), ("-rig", "host name"),
])
def test_addresses_refused(value, says):
    found = ansible_vars.address_problem(value)
    assert found and says in found[0], found


def test_a_user_name_with_a_trailing_newline_is_refused():
    """A `|` block scalar ends in a newline that a pattern's `$` lets through."""
    check = ansible_vars.get("ansible_user").check
    assert check("rig") is None
    assert "is not a user name" in check("rig\n")[0]


def test_conversions_are_the_ones_ansible_makes():
    port = ansible_vars.get("ansible_port")
    become = ansible_vars.get("ansible_become")
    assert ansible_vars.as_ansible_reads(port, "2222") == 2222
    assert ansible_vars.as_ansible_reads(port, "22x") == "22x"
    assert ansible_vars.as_ansible_reads(become, "Yes") is True
    assert ansible_vars.as_ansible_reads(become, "off") is False
    assert ansible_vars.as_ansible_reads(become, "sudo") == "sudo"
    rig_field = schema.get("rig_power_limit_w")
    assert ansible_vars.as_ansible_reads(rig_field, "300") == "300"  # rig variables: strict


def test_aliases_share_the_rules_under_their_own_name():
    alias = ansible_vars.get("ansible_ssh_user")
    assert alias.name == "ansible_ssh_user" and alias.check is ansible_vars.get("ansible_user").check
    assert set(ansible_vars.ALIASES) <= set(ansible_vars.NAMES)
    assert not set(ansible_vars.NAMES) & set(schema.NAMES)
    # the SSH host key variables have a rule of their own
    assert ansible_vars.get("ansible_host_key_checking") is None


def test_misspelled_connection_variable_is_a_warning(tmp_path):
    (tmp_path / "hosts.yml").write_text(
        "all:\n  children:\n    rigs:\n      hosts:\n        rig-a:\n"
        "          ansible_hostt: 192.0.2.10\n          ansible_network_os: none\n")
    problems = inv_mod.check(inv_mod.load([str(tmp_path / "hosts.yml")]))
    found = [p for p in problems if p.key == "ansible_hostt"]
    assert [(p.severity, p.line, p.fix) for p in found] == [
        ("warning", 6, "did you mean 'ansible_host'?")]
    assert not [p for p in problems if p.key == "ansible_network_os"]


def test_a_password_of_the_wrong_type_is_refused_without_showing_it(tmp_path):
    (tmp_path / "hosts.yml").write_text(
        "all:\n  children:\n    rigs:\n      hosts:\n        rig-a:\n"
        "          ansible_host: 192.0.2.10\n          ansible_become_password: 0123\n"
        "          ansible_ssh_pass: [hunter2]\n")
    problems = inv_mod.check(inv_mod.load([str(tmp_path / "hosts.yml")]))
    errors = [p for p in problems if p.severity == "error"]
    assert [(p.key, p.line) for p in errors] == [("ansible_become_password", 7),
                                                 ("ansible_ssh_pass", 8)]
    text = "\n".join(str(p) for p in problems)
    assert "0123" not in text and "83" not in text and "hunter2" not in text
    assert all("not shown" in p.message and "ansible-vault" in p.fix for p in errors)
