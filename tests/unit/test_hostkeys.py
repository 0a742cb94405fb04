"""SSH host keys (rigctl.hostkeys): the strict-checking rule in every spelling, the gate
with real ssh -G / ssh-keygen and a stand-in ssh-keyscan (no network), and the pinned
Ansible environment. Nothing here contacts a host or writes outside tmp_path."""

from __future__ import annotations

import os
import stat
import subprocess
import textwrap
from pathlib import Path

import pytest

from rigctl import hostkeys
from rigctl.errors import InputError

REFUSED_ARGS = [
    "-o StrictHostKeyChecking=no",
    "-o StrictHostKeyChecking=No",
    "-o StrictHostKeyChecking=off",
    "-o StrictHostKeyChecking=false",
    "-o StrictHostKeyChecking=accept-new",
    "-o StrictHostKeyChecking=ACCEPT-NEW",
    "-o StrictHostKeyChecking=ask",
    "-oStrictHostKeyChecking=no",
    "-o 'StrictHostKeyChecking no'",
    '-o "StrictHostKeyChecking accept-new"',
    "-o StrictHostKeyChecking no",
    "-o StrictHostKeyChecking = no",
    "-o StrictHostKeyChecking= no",
    "-o stricthostkeychecking=accept-new",
    "-o ProxyJump=bastion -o StrictHostKeyChecking=no",
    "-o StrictHostKeyChecking=yes -o UserKnownHostsFile=/dev/null",
    "-o UpdateHostKeys=yes",
]
STRICT_ARGS = [
    "",
    "-o StrictHostKeyChecking=yes",
    "-o StrictHostKeyChecking=YES",
    "-o StrictHostKeyChecking yes",
    "-o 'StrictHostKeyChecking=true' -o UserKnownHostsFile=/tmp/kh",
    "-o ProxyJump=bastion",
    "-o UpdateHostKeys=no -o ServerAliveInterval=15",
]
ARG_VARS = ["ansible_ssh_common_args", "ansible_ssh_extra_args", "ansible_ssh_args",
            "ansible_sftp_extra_args", "ansible_scp_extra_args"]


@pytest.mark.parametrize("var", ARG_VARS)
@pytest.mark.parametrize("args", REFUSED_ARGS)
def test_rule_refuses_every_spelling_in_every_ssh_args_variable(var, args):
    problems = hostkeys.strict_checking_problems({var: args}, {})
    assert len(problems) == 1, problems
    p = problems[0]
    assert p.key == var and p.source == "inventory"
    assert p.fix


@pytest.mark.parametrize("var", ARG_VARS)
@pytest.mark.parametrize("args", STRICT_ARGS)
def test_rule_accepts_strict_checking(var, args):
    assert hostkeys.strict_checking_problems({var: args}, {}) == []


@pytest.mark.parametrize("var", ["ansible_host_key_checking", "ansible_ssh_host_key_checking"])
@pytest.mark.parametrize("value", [False, 0, "false", "False", "no", "off", "0", "n", "maybe"])
def test_rule_refuses_host_key_checking_off(var, value):
    problems = hostkeys.strict_checking_problems({var: value}, {})
    assert [p.key for p in problems] == [var]
    assert "turns host key checking off" in problems[0].message


@pytest.mark.parametrize("value", [True, 1, "true", "True", "yes", "on", "1"])
def test_rule_accepts_host_key_checking_on(value):
    assert hostkeys.strict_checking_problems({"ansible_host_key_checking": value}, {}) == []


@pytest.mark.parametrize("key,value", [
    ("ANSIBLE_HOST_KEY_CHECKING", "False"),
    ("ANSIBLE_HOST_KEY_CHECKING", "no"),
    ("ANSIBLE_SSH_HOST_KEY_CHECKING", "0"),
    ("ANSIBLE_SSH_COMMON_ARGS", "-o StrictHostKeyChecking=accept-new"),
    ("ANSIBLE_SSH_EXTRA_ARGS", "-o StrictHostKeyChecking no"),
    ("ANSIBLE_SSH_ARGS", "-oStrictHostKeyChecking=off"),
    ("ANSIBLE_TRANSPORT", "paramiko"),
])
def test_rule_refuses_the_environment(key, value):
    problems = hostkeys.strict_checking_problems({}, {key: value})
    assert [(p.key, p.source) for p in problems] == [(key, "environment")]
    assert problems[0].fix.startswith(f"unset {key}")


def test_rule_refuses_paramiko_and_accepts_a_clean_host():
    assert [p.key for p in hostkeys.strict_checking_problems(
        {"ansible_connection": "paramiko"}, {})] == ["ansible_connection"]
    assert hostkeys.strict_checking_problems(
        {"ansible_host": "10.0.0.5", "ansible_connection": "ssh"},
        {"ANSIBLE_HOST_KEY_CHECKING": "True"}) == []


def test_ssh_options_parses_every_form():
    assert hostkeys.ssh_options("-o A=1 -oB=2 -o 'C 3' -o D 4 -o E = 5 -i key -o F=") == [
        ("a", "1"), ("b", "2"), ("c", "3"), ("d", "4"), ("e", "5"), ("f", ""),
    ]


def test_inventory_check_refuses_with_file_and_line(tmp_path, monkeypatch):
    from rigctl import inventory

    monkeypatch.delenv("ANSIBLE_HOST_KEY_CHECKING", raising=False)
    inv_file = tmp_path / "hosts.yml"
    inv_file.write_text(textwrap.dedent("""\
        all:
          children:
            rigs:
              hosts:
                rig-a: {ansible_host: 127.0.0.1}
                rig-b:
                  ansible_host: 127.0.0.2
                  ansible_host_key_checking: false
              vars:
                ansible_ssh_common_args: -o StrictHostKeyChecking=accept-new
        """))
    problems = [p for p in inventory.check(inventory.load([str(inv_file)]))
                if p.key in ("ansible_ssh_common_args", "ansible_host_key_checking")]
    got = sorted((p.key, p.line, p.host, p.group, p.severity) for p in problems)
    assert got == [
        ("ansible_host_key_checking", 8, "rig-b", None, "error"),
        ("ansible_ssh_common_args", 10, None, "rigs", "error"),
    ]
    monkeypatch.setenv("ANSIBLE_HOST_KEY_CHECKING", "False")
    inv_file.write_text("all:\n  children:\n    rigs:\n      hosts:\n        rig-a: {}\n")
    env_problems = [p for p in inventory.check(inventory.load([str(inv_file)]))
                    if p.key == "ANSIBLE_HOST_KEY_CHECKING"]
    assert len(env_problems) == 1 and env_problems[0].file is None
    assert "set in the environment" in env_problems[0].message


def test_cli_inventory_check_exits_2_for_accept_new(tmp_path):
    import sys

    inv_file = tmp_path / "hosts.yml"
    inv_file.write_text(
        "all:\n  children:\n    rigs:\n      hosts:\n        rig-a:\n"
        "          ansible_ssh_extra_args: -o 'StrictHostKeyChecking accept-new'\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    res = subprocess.run([sys.executable, "-m", "rigctl", "inventory", "check", "-i",
                          str(inv_file)], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "StrictHostKeyChecking=accept-new" in res.stdout + res.stderr


# --- the gate, with real ssh -G and ssh-keygen and a stand-in ssh-keyscan ---------------


def _keypair(path: Path) -> tuple[str, str]:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                   check=True, capture_output=True)
    ktype, blob = path.with_suffix(".pub").read_text().split()[:2]
    return ktype, blob


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A stand-in ssh-keyscan first on PATH: prints $FAKE_KEYSCAN_OUT, or only the
    'connection refused' line when it is empty. Returns helpers."""
    for tool in ("ssh", "ssh-keygen"):
        if not shutil_which(tool):
            pytest.skip(f"{tool} is not installed")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    scan = bindir / "ssh-keyscan"
    scan.write_text(textwrap.dedent("""\
        #!/bin/sh
        echo "$@" >> "$FAKE_KEYSCAN_LOG"
        if [ -n "$FAKE_KEYSCAN_OUT" ]; then
            echo "# 127.0.0.1:22555 SSH-2.0-OpenSSH_9.2" >&2
            printf '%s\\n' "$FAKE_KEYSCAN_OUT"
        else
            echo "connect (\\`127.0.0.1'): Connection refused" >&2
        fi
        """))
    scan.chmod(scan.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_KEYSCAN_LOG", str(tmp_path / "scan.log"))
    kh = tmp_path / "known_hosts"
    rig = _keypair(tmp_path / "rig_key")
    other = _keypair(tmp_path / "other_key")

    def offer(key):
        monkeypatch.setenv("FAKE_KEYSCAN_OUT", f"[127.0.0.1]:22555 {key[0]} {key[1]}" if key else "")

    def hv(**extra):
        return {"ansible_host": "127.0.0.1", "ansible_port": 22555, "ansible_user": "rig",
                "ansible_ssh_common_args": f"-o UserKnownHostsFile={kh} "
                "-o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes", **extra}

    def check(host_vars=None, **kw):
        return hostkeys.check_host("rig-x", host_vars or hv(), timeout=2,
                                   ssh_args=hostkeys.pinned_ssh_args(""), environ={}, **kw)

    import types

    return types.SimpleNamespace(kh=kh, rig=rig, other=other, offer=offer, hv=hv, check=check,
                                 log=tmp_path / "scan.log", tmp=tmp_path)


def shutil_which(tool):
    import shutil

    return shutil.which(tool)


def test_gate_passes_the_known_key(fake):
    fake.kh.write_text(f"[127.0.0.1]:22555 {fake.rig[0]} {fake.rig[1]}\n")
    fake.offer(fake.rig)
    c = fake.check()
    assert (c.outcome, c.reason) == ("ok", "ok"), c.message
    assert c.known == c.offered == [hostkeys.fingerprint(*fake.rig)]
    # only the known key's type was scanned: one connection
    assert "-t ed25519" in fake.log.read_text()


def test_gate_refuses_a_changed_key_naming_both_fingerprints(fake):
    before = f"[127.0.0.1]:22555 {fake.rig[0]} {fake.rig[1]}\n"
    fake.kh.write_text(before)
    fake.offer(fake.other)
    c = fake.check()
    assert (c.outcome, c.reason) == ("refused", "changed_key")
    assert "HOST KEY CHANGED" in c.message
    assert hostkeys.fingerprint(*fake.rig) in c.message
    assert hostkeys.fingerprint(*fake.other) in c.message
    assert "ssh-keygen -R '[127.0.0.1]:22555'" in c.message
    assert fake.kh.read_text() == before  # never written


@pytest.mark.parametrize("content", ["", "# nothing\n", "[127.0.0.1]:22999 ssh-ed25519 AAAA\n"])
def test_gate_refuses_an_unknown_key_no_trust_on_first_use(fake, content):
    fake.kh.write_text(content)
    fake.offer(fake.rig)
    c = fake.check()
    assert (c.outcome, c.reason) == ("refused", "unknown_key")
    assert hostkeys.fingerprint(*fake.rig) in c.message
    assert "ssh-keyscan -p 22555 127.0.0.1" in c.message and "Pointing it at real rigs" in c.message
    assert fake.kh.read_text() == content


def test_gate_refuses_a_revoked_key(fake):
    fake.kh.write_text(f"[127.0.0.1]:22555 {fake.other[0]} {fake.other[1]}\n"
                       f"@revoked [127.0.0.1]:22555 {fake.rig[0]} {fake.rig[1]}\n")
    fake.offer(fake.rig)
    assert fake.check().reason == "revoked_key"


def test_gate_finds_hashed_entries(fake):
    fake.kh.write_text(f"[127.0.0.1]:22555 {fake.rig[0]} {fake.rig[1]}\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(fake.kh)], check=True, capture_output=True)
    assert fake.kh.read_text().startswith("|1|")
    fake.offer(fake.rig)
    assert fake.check().outcome == "ok"


def test_gate_reports_an_unreachable_rig(fake):
    fake.kh.write_text(f"[127.0.0.1]:22555 {fake.rig[0]} {fake.rig[1]}\n")
    fake.offer(None)
    c = fake.check()
    assert (c.outcome, c.reason) == ("unreachable", "unreachable")
    assert "Connection refused" in c.message and "--connect-timeout" in c.message


def test_gate_refuses_non_strict_effective_ssh_config(fake):
    cfg = fake.tmp / "ssh_config"
    cfg.write_text("Host *\n  StrictHostKeyChecking accept-new\n")
    fake.kh.write_text(f"[127.0.0.1]:22555 {fake.rig[0]} {fake.rig[1]}\n")
    fake.offer(fake.rig)
    # an inventory ssh_args replacing rigctl's pinned ones, plus an ssh config saying
    # accept-new: ssh -G shows what ssh would really do
    hv = fake.hv(ansible_ssh_args="-o ControlMaster=no",
                 ansible_ssh_common_args=f"-F {cfg} -o UserKnownHostsFile={fake.kh}")
    c = fake.check(hv)
    assert (c.outcome, c.reason) == ("refused", "policy")
    assert "StrictHostKeyChecking=accept-new" in c.message
    # with rigctl's pinned options first, the same config file cannot turn it off
    hv.pop("ansible_ssh_args")
    assert fake.check(hv).outcome == "ok"


def test_gate_policy_and_local_connections(fake):
    c = fake.check(fake.hv(ansible_ssh_extra_args="-o StrictHostKeyChecking=no"))
    assert (c.outcome, c.reason) == ("refused", "policy")
    c = fake.check({"ansible_connection": "local"})
    assert (c.outcome, c.reason) == ("ok", "not_ssh")


def test_check_hosts_in_parallel_and_the_control_digest(fake, monkeypatch):
    monkeypatch.setenv("HOME", str(fake.tmp))

    class Inv:
        def host_vars(self, name):
            return fake.hv()

    fake.kh.write_text(f"[127.0.0.1]:22555 {fake.rig[0]} {fake.rig[1]}\n")
    fake.offer(fake.rig)
    checks = hostkeys.check_hosts(Inv(), ["a", "b", "c"], timeout=2, environ={})
    assert [c.host for c in checks] == ["a", "b", "c"] and all(c.ok for c in checks)
    d1 = hostkeys.control_digest(checks)
    fake.kh.write_text(f"[127.0.0.1]:22555 {fake.other[0]} {fake.other[1]}\n")
    fake.offer(fake.other)
    d2 = hostkeys.control_digest(hostkeys.check_hosts(Inv(), ["a", "b", "c"], timeout=2,
                                                      environ={}))
    assert d1 != d2 and len(d1) == 12
    assert hostkeys.control_path_dir(d1).endswith(f"/.ansible/cp/rk-{d1}")


def test_fingerprint_matches_ssh_keygen(fake):
    out = subprocess.run(["ssh-keygen", "-lf", str(fake.tmp / "rig_key.pub")],
                         capture_output=True, text=True, check=True).stdout
    assert hostkeys.fingerprint(*fake.rig).split()[1] == out.split()[1]


# --- the environment every Ansible process gets ----------------------------------------


def test_ansible_env_pins_host_key_checking_over_a_hostile_caller(monkeypatch, tmp_path):
    from rigctl.runner import ansible_env

    monkeypatch.setenv("HOME", str(tmp_path))  # ~/.ansible/cp: this test's own
    monkeypatch.setenv("ANSIBLE_HOST_KEY_CHECKING", "False")
    monkeypatch.setenv("ANSIBLE_SSH_ARGS", "-o StrictHostKeyChecking=no")
    monkeypatch.setenv("ANSIBLE_SSH_CONTROL_PATH_DIR", "/tmp/elsewhere")
    monkeypatch.setenv(hostkeys.TIMEOUT_ENV, "4")
    env = ansible_env("abc123")
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == env["ANSIBLE_SSH_HOST_KEY_CHECKING"] == "True"
    assert env["ANSIBLE_SSH_ARGS"].startswith(
        "-o StrictHostKeyChecking=yes -o UpdateHostKeys=no -o CheckHostIP=no")
    assert "ControlPersist=600s" in env["ANSIBLE_SSH_ARGS"]  # ansible.cfg's own ssh_args kept
    assert env["ANSIBLE_SSH_CONTROL_PATH_DIR"].endswith("rk-abc123")
    assert env["ANSIBLE_TIMEOUT"] == "4"

    # what ansible-runner really hands to ansible-playbook: our values over the caller's
    from ansible_runner.config.runner import RunnerConfig

    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "p.yml").write_text("- hosts: all\n  tasks: []\n")
    rc = RunnerConfig(private_data_dir=str(tmp_path), playbook="p.yml", envvars=env)
    rc.prepare()
    assert rc.env["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    assert rc.env["ANSIBLE_SSH_ARGS"] == env["ANSIBLE_SSH_ARGS"]
    assert rc.env["ANSIBLE_SSH_CONTROL_PATH_DIR"] == env["ANSIBLE_SSH_CONTROL_PATH_DIR"]


def test_the_shipped_ansible_cfg_pins_strict_checking_first():
    from rigctl import paths

    args = hostkeys.config_ssh_args(paths.ansible_dir() / "ansible.cfg")
    assert args == hostkeys.pinned_ssh_args(args)
    import configparser

    raw = configparser.RawConfigParser()
    raw.read(paths.ansible_dir() / "ansible.cfg")
    assert raw.get("ssh_connection", "ssh_args").startswith("-o StrictHostKeyChecking=yes")
    assert raw.getboolean("defaults", "host_key_checking") is True


@pytest.mark.parametrize("value", ["0", "abc", "601", "-3"])
def test_connect_timeout_refuses_bad_values(monkeypatch, value):
    monkeypatch.setenv(hostkeys.TIMEOUT_ENV, value)
    with pytest.raises(InputError, match=hostkeys.TIMEOUT_ENV):
        hostkeys.connect_timeout()


def test_connect_timeout_default_env_and_option(monkeypatch):
    import click

    monkeypatch.delenv(hostkeys.TIMEOUT_ENV, raising=False)
    assert hostkeys.connect_timeout() == 10
    monkeypatch.setenv(hostkeys.TIMEOUT_ENV, "25")
    assert hostkeys.connect_timeout() == 25
    with click.Context(click.Command("x")) as ctx:
        hostkeys.set_connect_timeout(ctx, 3)
        assert hostkeys.connect_timeout() == 3
