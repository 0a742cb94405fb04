"""SSH host keys on lab rigs: a changed key, an unknown key, an empty known_hosts, a
hostile ANSIBLE_HOST_KEY_CHECKING=False, an inventory with accept-new, and a hung rig.
Every command (facts, provision, verify) refuses the rig, exits non-zero, never logs in
there (the rig's sshd journal has no accepted login), never changes it (a power limit set
beforehand stays) and never writes known_hosts. One two-rig lab for all cases."""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest

from tests.integration.conftest import lab_session

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def hk(tmp_path_factory):
    with lab_session(tmp_path_factory, "hk", "--rigs", "2", "--profile", "4x3090") as lab:
        lab.known_hosts = lab.home / "labs" / lab.name / "known_hosts"
        lab.original = lab.known_hosts.read_text()
        lab.container = lambda i: f"rigctl-{lab.name}-rig-{i}"
        yield lab


def dexec(container: str, script: str) -> str:
    proc = subprocess.run(["docker", "exec", container, "sh", "-c", script],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def now(container: str) -> str:
    return dexec(container, "date +%s").strip()


def logins_since(container: str, since: str) -> int:
    out = dexec(container, f"journalctl -u ssh -o cat --since @{since} || true")
    return out.count("Accepted publickey")


def power_limit(container: str) -> str:
    return dexec(container, "nvidia-smi -i 0 --query-gpu=power.limit --format=csv,noheader").strip()


def fingerprints(text: str) -> set[str]:
    return set(re.findall(r"SHA256:[A-Za-z0-9+/]{43}", text))


def known_fingerprint(known_hosts, port: int) -> str:
    line = next(ln for ln in known_hosts.read_text().splitlines() if f":{port} " in ln)
    out = subprocess.run(["ssh-keygen", "-lf", "-"], input=line + "\n", capture_output=True,
                         text=True, check=True).stdout
    return out.split()[1]


def port_of(lab, i: int) -> int:
    text = (lab.home / "labs" / lab.name / "inventory.yml").read_text()
    return int(re.search(rf"lab-rig-{i}:.*?ansible_port: (\d+)", text, re.S).group(1))


def refuses_everywhere(lab, rig: int, expect: str, *, env=None, inventory=None, code=1):
    """facts, provision host and verify on lab-rig-RIG: all exit CODE with EXPECT in the
    output, no login on the rig, its power limit and known_hosts unchanged."""
    c = lab.container(rig)
    limit = power_limit(c)
    kh = lab.known_hosts.read_text()
    since = now(c)
    time.sleep(1)
    inv = inventory or lab.inventory
    outputs = []
    saved = dict(lab.rigctl.env)
    lab.rigctl.env.update(env or {})
    try:
        for args in (("facts", f"lab-rig-{rig}"), ("provision", "host", f"lab-rig-{rig}"),
                     ("verify", f"lab-rig-{rig}")):
            proc = lab.rigctl(*args, "-i", inv, timeout=300)
            out = proc.stdout + proc.stderr
            assert proc.returncode == code, f"rigctl {' '.join(args)} -> {proc.returncode}\n{out}"
            assert expect in out, out
            outputs.append(out)
    finally:
        lab.rigctl.env.clear()
        lab.rigctl.env.update(saved)
    assert logins_since(c, since) == 0
    assert power_limit(c) == limit
    assert lab.known_hosts.read_text() == kh
    return outputs


def test_hung_rig_is_unreachable_within_the_connect_timeout(hk):
    c = hk.container(1)
    subprocess.run(["docker", "pause", c], check=True, capture_output=True)
    try:
        start = time.monotonic()
        proc = hk.rigctl("facts", "lab-rig-1", "-i", hk.inventory, "--connect-timeout", "3")
        elapsed = time.monotonic() - start
    finally:
        subprocess.run(["docker", "unpause", c], check=True, capture_output=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "unreachable" in out and "no SSH answer within 3 s" in out, out
    assert elapsed < 15, f"{elapsed:.1f} s"


def test_empty_known_hosts_no_trust_on_first_use(hk):
    hk.known_hosts.write_text("")
    try:
        refuses_everywhere(hk, 1, "unknown host key")
        # an inventory saying accept-new: refused before anything is contacted
        inv = hk.home / "accept-new.yml"
        text = (hk.home / "labs" / hk.name / "inventory.yml").read_text()
        inv.write_text(text.replace("StrictHostKeyChecking=yes", "StrictHostKeyChecking=accept-new"))
        assert "accept-new" in inv.read_text()
        refuses_everywhere(hk, 1, "StrictHostKeyChecking=accept-new", inventory=str(inv), code=2)
        assert hk.known_hosts.read_text() == ""
    finally:
        hk.known_hosts.write_text(hk.original)


def test_unknown_key_refused_while_the_other_rig_proceeds(hk):
    port2 = port_of(hk, 2)
    hk.known_hosts.write_text(
        "".join(ln + "\n" for ln in hk.original.splitlines() if f":{port2} " not in ln))
    try:
        out = refuses_everywhere(hk, 2, "unknown host key")[0]
        assert f"ssh-keyscan -p {port2} 127.0.0.1" in out
        assert len(fingerprints(out)) == 1
        proc = hk.rigctl("facts", "-i", hk.inventory)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 1, out
        assert "== rig lab-rig-1" in out and "== rig lab-rig-2" not in out, out
    finally:
        hk.known_hosts.write_text(hk.original)


def test_changed_key_refused_even_with_a_hostile_environment(hk):
    c = hk.container(2)
    # a run with the original key leaves an SSH ControlMaster open to the rig (600 s)
    proc = hk.rigctl("facts", "lab-rig-2", "-i", hk.inventory)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dexec(c, "nvidia-smi -i 0 -pl 300 >/dev/null")  # provision would reset it to 350 W
    old = known_fingerprint(hk.known_hosts, port_of(hk, 2))
    dexec(c, "rm -f /etc/ssh/ssh_host_*_key* && ssh-keygen -A >/dev/null && systemctl restart ssh")
    outs = refuses_everywhere(hk, 2, "HOST KEY CHANGED")
    assert old in outs[0] and len(fingerprints(outs[0])) == 2, outs[0]
    assert power_limit(c) == "300.00 W"
    for env in ({"ANSIBLE_HOST_KEY_CHECKING": "False"},
                {"ANSIBLE_SSH_COMMON_ARGS": "-o StrictHostKeyChecking=no"}):
        refuses_everywhere(hk, 2, next(iter(env)), env=env, code=2)
    # the healthy rig still works with the same lab
    proc = hk.rigctl("facts", "lab-rig-1", "-i", hk.inventory)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert os.path.getsize(hk.known_hosts) == len(hk.original.encode())
    # the owner records the new key from a trusted path (the rig's own console): the next
    # run logs in afresh instead of riding the master opened under the old key
    port2 = port_of(hk, 2)
    new_key = " ".join(dexec(c, "cat /etc/ssh/ssh_host_ed25519_key.pub").split()[:2])
    hk.known_hosts.write_text("".join(
        (f"[127.0.0.1]:{port2} {new_key}" if f":{port2} " in ln else ln) + "\n"
        for ln in hk.original.splitlines()))
    try:
        since = now(c)
        time.sleep(1)
        proc = hk.rigctl("facts", "lab-rig-2", "-i", hk.inventory)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert logins_since(c, since) >= 1
    finally:
        hk.known_hosts.write_text(hk.original)
