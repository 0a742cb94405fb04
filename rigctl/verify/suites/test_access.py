"""Can rigctl reach this rig the way the playbooks do, and act as root there?"""

from rigctl.verify.checks import expect


def test_ssh_login_as_inventory_user(host, rig_vars):
    user = rig_vars.get("ansible_user")
    found = host.user().name
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
    args = " ".join(
        str(rig_vars.get(k) or "") for k in ("ansible_ssh_common_args", "ansible_ssh_extra_args")
    ).replace(" ", "")
    disabled = any(
        marker in args for marker in ("StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null")
    ) or rig_vars.get("ansible_host_key_checking") in (False, "false", "False")
    expect(
        not disabled,
        "SSH host keys are checked for this rig",
        expected="StrictHostKeyChecking on, a real known_hosts file",
        found=args or "(no extra ssh args)",
        fix="record the rig's host key in known_hosts (ssh-keyscan, then compare the "
        "fingerprint with the console) and drop StrictHostKeyChecking=no",
    )
