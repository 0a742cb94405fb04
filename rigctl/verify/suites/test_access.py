"""Can rigctl reach this rig the way the playbooks do, and act as root there?"""

import pytest

from rigctl.verify.checks import expect


@pytest.fixture(autouse=True)
def _over_ssh(rig_vars):
    """`rigctl verify --local` reads this machine directly: no SSH login to check."""
    if rig_vars.get("ansible_connection") == "local":
        pytest.skip("rigctl verify --local: this machine is read directly, without SSH or sudo")


def test_ssh_login_as_inventory_user(host, rig_vars):
    user = rig_vars.get("ansible_user")
    # With ansible_become in the inventory every command runs through sudo: the login
    # account is then sudo's SUDO_USER, not the root the command runs as.
    found = host.run('printf %s "${SUDO_USER:-$(id -un)}"').stdout.strip()
    expect(
        user is None or found == user,
        "SSH logs in as the inventory's ansible_user",
        expected=user,
        found=found,
        fix="set ansible_user to the account whose key is authorized on the rig",
    )


def test_become_gives_root(host):
    with host.sudo():
        cmd = host.run("id -u")
    expect(
        cmd.rc == 0 and cmd.stdout.strip() == "0",
        "privilege escalation (sudo) gives root without a prompt",
        expected="uid 0",
        found=f"rc={cmd.rc} stdout={cmd.stdout.strip()!r} stderr={cmd.stderr.strip()[:200]!r}",
        fix="give the SSH user passwordless sudo on the rig (e.g. /etc/sudoers.d/rigctl)",
    )


def test_host_key_checking_on(rig_vars):
    import os

    from rigctl.hostkeys import strict_checking_problems

    problems = strict_checking_problems(rig_vars, os.environ)
    expect(
        not problems,
        "SSH host keys are checked for this rig",
        expected="StrictHostKeyChecking=yes, a real known_hosts file, host_key_checking on",
        found="; ".join(str(p) for p in problems) or "strict checking",
        fix=problems[0].fix if problems else "",
    )
