"""Secrets in inventories (rigctl.inventory.secrets): which names and values are secret,
masked in `inventory show` (table and --json) and in every `inventory check` message, and
the plain-text warning with the Ansible Vault fix."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rigctl import inventory as inv_mod
from rigctl.cli import cli
from rigctl.inventory import secrets
from rigctl.inventory.yamlpos import VaultValue

from .inventory_helpers import write

PLAIN = "hunter2-Plain"
LATER = "hunter2-Later"
SSH = "s3cr3t-ssh-Pass"
TOKEN = "ghp_abcdefghijklmnopqrstuvwxyz0123456789"
SHORT = "ab1"
LEAKS = (PLAIN, LATER, SSH, TOKEN, "alice:", "abcdefghijklmnop")


@pytest.mark.parametrize("name", [
    "ansible_become_password", "ansible_become_pass", "ansible_ssh_pass", "ansible_password",
    "ansible_ssh_password", "ansible_sudo_pass", "ansible_httpapi_password", "github_token",
    "hf_token", "my_api_key", "aws_secret_access_key", "vault_become_pass", "db_passwd",
    "ssh_private_key", "client_secret", "ANSIBLE_BECOME_PASSWORD", "api-key",
])
def test_secret_names(name):
    assert secrets.is_secret_name(name)


@pytest.mark.parametrize("name", [
    "ansible_user", "ansible_host", "ansible_port", "ansible_ssh_private_key_file",
    "ansible_ssh_common_args", "ansible_become_method", "ansible_vault_password_file",
    "rig_p2p_source", "rig_iommu_policy", "rig_driver_mirror_key_fingerprint",
    "rig_cuda_mirror_key_url", "bypass_cache", "token_url", "keyboard_layout",
])
def test_names_that_are_not_secrets(name):
    assert not secrets.is_secret_name(name)


def test_every_rig_variable_is_shown():
    from rigctl.inventory import schema

    assert [n for n in schema.NAMES if secrets.is_secret_name(n)] == []


@pytest.mark.parametrize(("name", "value", "shown"), [
    ("ansible_become_password", PLAIN, "***"),
    ("ansible_become_password", 1234, "***"),
    ("ansible_become_password", None, None),
    ("ansible_become_password", VaultValue("$ANSIBLE_VAULT;1.1;AES256\n61"), "<vault-encrypted>"),
    ("ansible_become_password", "{{ vault_become_pass }}", "{{ vault_become_pass }}"),
    ("ansible_become_password", "{{ 'inline' }}", "***"),
    ("rig_p2p_source", {"url": f"https://alice:{TOKEN}@github.com/o/r.git", "branch": "b"},
     {"url": "https://***@github.com/o/r.git", "branch": "b"}),
    ("rig_nccl_env", {"NCCL_DEBUG": "INFO", "my_token": "x"}, {"NCCL_DEBUG": "INFO", "my_token": "***"}),
    ("notes", f"token is {TOKEN}", "***"),
    ("deploy_key", "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----",
     "***"),
    ("ansible_user", "rig", "rig"),
    ("vault_things", ["a", "b"], ["***", "***"]),
])
def test_mask(name, value, shown):
    assert secrets.mask(value, name) == shown


@pytest.fixture
def inv_dir(tmp_path):
    write(tmp_path / "inv", {
        "hosts.yml": f"""\
            all:
              children:
                rigs:
                  hosts:
                    rig-a:
                      ansible_host: 192.0.2.10
                      ansible_become_password: {PLAIN}
                    rig-b:
                      ansible_host: 192.0.2.11
                      ansible_become_password: !vault |
                        $ANSIBLE_VAULT;1.1;AES256
                        6162636465
                      ansible_become_pass: {SHORT}
            """,
        "group_vars/rigs.yml": f"""\
            ansible_user: rig
            ansible_ssh_pass: "{SSH}"
            github_token: "{{{{ vault_github_token }}}}"
            rig_driver_flavor: p2p
            rig_driver_version: "535.261.03"
            rig_driver_mirror_url: "htps://alice:{TOKEN}@mirror.example/debian"
            rig_p2p_source:
              url: https://alice:{TOKEN}@github.com/o/open-gpu-kernel-modules.git
              branch: 535.261.03-p2p
              commit: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            """,
        "host_vars/rig-a.yml": f"ansible_become_password: {LATER}\n",
    })
    return str(tmp_path / "inv")


def _no_leak(text: str) -> None:
    for s in LEAKS:
        assert s not in text, s
    assert f"'{SHORT}'" not in text and f'"{SHORT}"' not in text and f" {SHORT}" not in text


def test_show_masks_every_secret_in_the_table_and_json(inv_dir):
    r = CliRunner().invoke(cli, ["inventory", "show", "-i", inv_dir, "--all-vars"])
    out = r.output
    _no_leak(out)
    assert "https://***@github.com/o/open-gpu-kernel-modules.git" in out
    line = next(x for x in out.splitlines() if x.strip().startswith("ansible_ssh_pass "))
    assert " *** " in line and "group_vars/rigs.yml:2" in line
    assert "<vault-encrypted>" in out
    assert "{{ vault_github_token }}" in out  # a reference to another variable holds nothing
    r = CliRunner().invoke(cli, ["inventory", "show", "-i", inv_dir, "--all-vars", "--json"])
    _no_leak(r.output)
    data = json.loads(r.stdout)
    a = data["hosts"]["rig-a"]["vars"]
    assert a["ansible_become_password"]["value"] == "***"
    assert a["ansible_become_password"]["masked"] is True
    assert a["ansible_user"]["value"] == "rig" and "masked" not in a["ansible_user"]
    assert a["rig_p2p_source"]["value"]["url"] == "https://***@github.com/o/open-gpu-kernel-modules.git"
    assert data["hosts"]["rig-b"]["vars"]["ansible_become_password"]["value"] == "<vault-encrypted>"


def test_check_warns_about_plain_text_secrets_with_the_vault_fix(inv_dir):
    r = CliRunner().invoke(cli, ["inventory", "check", "-i", inv_dir])
    out = r.output
    _no_leak(out)
    warned = [x for x in out.splitlines() if "in plain text" in x]
    where = {x.split(": warning", 1)[0].rsplit("/inv/", 1)[-1] + " " + x.split(": ")[3] for x in warned}
    assert {
        "hosts.yml:7 ansible_become_password",
        "hosts.yml:13 ansible_become_pass",
        "host_vars/rig-a.yml:1 ansible_become_password",
        "group_vars/rigs.yml:2 ansible_ssh_pass",
        "group_vars/rigs.yml:6 rig_driver_mirror_url",
        "group_vars/rigs.yml:8 rig_p2p_source.url",
    } <= where, warned
    assert all("ansible-vault encrypt_string --stdin-name" in x for x in warned)
    assert not [x for x in warned if "rig-b" in x and "ansible_become_password" in x]  # vaulted
    assert not [x for x in warned if "github_token" in x]  # a reference, not a value
    # the mirror URL error echoes no credential
    bad = [x for x in out.splitlines() if "rig_driver_mirror_url" in x and "warning" not in x]
    assert bad and "***@mirror.example" in bad[0], out
    assert r.exit_code == 2  # that error; the warnings alone do not change the exit status


def test_warnings_alone_keep_exit_status_zero_and_json_leaks_nothing(tmp_path):
    write(tmp_path, {"hosts.yml": f"""\
        all:
          children:
            rigs:
              hosts:
                rig-a: {{ansible_host: 192.0.2.10, ansible_become_password: {PLAIN}}}
        """})
    r = CliRunner().invoke(cli, ["inventory", "check", "-i", str(tmp_path / "hosts.yml"), "--json"])
    assert r.exit_code == 0, r.output
    _no_leak(r.output)
    problems = json.loads(r.stdout)["problems"]
    w = [p for p in problems if p["key"] == "ansible_become_password"]
    assert w and w[0]["severity"] == "warning" and w[0]["line"] == 5
    assert "ansible-vault encrypt_string" in w[0]["fix"]


def test_every_problem_message_is_scrubbed(inv_dir):
    inv = inv_mod.load([inv_dir], strict=False)
    for p in inv_mod.check(inv):
        _no_leak(f"{p.message} {p.fix}")


def test_scrubber_replaces_quoted_short_values_and_urls():
    scrub = secrets.Scrubber([SHORT, PLAIN])
    assert scrub(f"also set to '{SHORT}'; later {PLAIN!r} wins") == "also set to '***'; later '***' wins"
    assert scrub("ab1c stays") == "ab1c stays"
    assert scrub("got the number ab1 here") == "got the number *** here"
    assert scrub("fetch https://u:t@h/x") == "fetch https://***@h/x"


def test_a_range_of_hosts_shares_one_definition_one_warning_one_error(tmp_path):
    """The check and the secrets review walk the same written definitions
    (Inventory.written_defs): a value written once for `rig-[1:3]` is one definition, so
    one plain-text warning and one error, not one per host."""
    write(tmp_path, {"hosts.yml": f"""\
        all:
          children:
            rigs:
              hosts:
                rig-[1:3]: {{ansible_become_password: {PLAIN}, rig_gpu_count: lots}}
        """})
    inv = inv_mod.load([str(tmp_path / "hosts.yml")])
    assert len(inv.hosts) == 3
    assert len([d for d in inv.written_defs() if d.name == "ansible_become_password"]) == 1
    problems = inv_mod.check(inv)
    assert [p.key for p in problems if "in plain text" in p.message] == ["ansible_become_password"]
    assert [p.key for p in problems if p.severity == "error"] == ["rig_gpu_count"]
    for p in problems:
        _no_leak(f"{p.message} {p.fix}")
