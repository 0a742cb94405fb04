"""The inventory check's pull mode rules (rig_pull_*): the value rules from the schema
(commit, URL, paths, interval) and the rules between them (rigctl.inventory.validate
`pull_mode_rules`). The lab test is tests/integration/test_pull.py."""

from __future__ import annotations

import textwrap

import pytest

from rigctl.inventory import check, load

HOSTS = "all:\n  children:\n    rigs:\n      hosts:\n        rig-a: {ansible_host: 192.0.2.10}\n"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def problems(tmp_path, group_vars: str):
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True, exist_ok=True)
    (inv / "hosts.yml").write_text(HOSTS)
    (inv / "group_vars" / "rigs.yml").write_text(textwrap.dedent(group_vars))
    return [p for p in check(load([str(inv)])) if p.severity == "error"]


def test_a_complete_pull_setting_passes(tmp_path):
    assert problems(tmp_path, f"""\
        rig_pull_enabled: true
        rig_pull_repo_url: ssh://git@git.example/rigs/inventory.git
        rig_pull_known_hosts: "git.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK"
        rig_pull_ssh_key_file: /etc/rigctl/pull_deploy_key
        rig_pull_commit: "{COMMIT}"
        rig_pull_playbook: site/local.yml
        rig_pull_inventory: inventory/prod
        rig_pull_interval: 30min
        """) == []


def test_pull_settings_without_pull_mode_are_not_required(tmp_path):
    assert problems(tmp_path, "rig_pull_enabled: false\n") == []


@pytest.mark.parametrize("settings, key, needle", [
    ("rig_pull_repo_url: file:///srv/inv.git\n", "rig_pull_commit", "required because rig_pull_enabled"),
    (f'rig_pull_commit: "{COMMIT}"\n', "rig_pull_repo_url", "required because rig_pull_enabled"),
    (f'rig_pull_repo_url: file:///srv/inv.git\nrig_pull_commit: "{COMMIT[:12]}"\n', "rig_pull_commit",
     "40-character"),
    (f'rig_pull_repo_url: https://deploy:tok3n@git.example/inv.git\nrig_pull_commit: "{COMMIT}"\n',
     "rig_pull_repo_url", "credentials"),
    (f'rig_pull_repo_url: git@git.example:rigs/inv.git\nrig_pull_commit: "{COMMIT}"\n',
     "rig_pull_known_hosts", "host keys"),
    (f'rig_pull_repo_url: ssh://git@git.example/rigs/inv.git\nrig_pull_commit: "{COMMIT}"\n',
     "rig_pull_known_hosts", "host keys"),
    (f'rig_pull_repo_url: file:///srv/inv.git\nrig_pull_commit: "{COMMIT}"\n'
     "rig_pull_playbook: ../outside.yml\n", "rig_pull_playbook", "relative path"),
    (f'rig_pull_repo_url: file:///srv/inv.git\nrig_pull_commit: "{COMMIT}"\n'
     "rig_pull_interval: hourly\n", "rig_pull_interval", "30min"),
])
def test_pull_mode_problems_name_the_variable_and_the_fix(tmp_path, settings, key, needle):
    found = problems(tmp_path, "rig_pull_enabled: true\n" + settings)
    assert len(found) == 1, [str(p) for p in found]
    text = str(found[0])
    assert key in text and needle in text, text
    assert "tok3n" not in text


@pytest.mark.parametrize("url, ssh", [
    ("ssh://git@git.example/rigs/inv.git", True),
    ("git@git.example:rigs/inv.git", True),
    ("https://git.example/rigs/inv.git", False),
    ("file:///srv/inv.git", False),
    ("/srv/inv.git", False),
    (None, False),
])
def test_ssh_git_urls_are_told_apart_in_one_place(url, ssh):
    # validate.pull_mode_rules (known hosts required) and formats.git_url_problem share it
    from rigctl.inventory.formats import git_url_problem, is_ssh_git_url

    assert is_ssh_git_url(url) is ssh
    if ssh:
        assert git_url_problem(url) is None
