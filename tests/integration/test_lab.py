"""`rigctl lab` against a real Docker engine: systemd containers reached over SSH.

Needs a Docker engine, and either the lab image already built or root with debootstrap
(the first run builds it, ~1 min). Every lab here has a unique name `t-lab-<random>`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from rigctl.errors import InputError
from rigctl.lab import docker as lab_docker
from rigctl.lab import image as lab_image
from rigctl.lab.model import DEFAULT_RELEASE, LABEL_LAB, default_mirror

pytestmark = pytest.mark.lab

PROFILES = ["4x3090", "2x4090"]
MODEL = {"4x3090": "3090", "2x4090": "4090"}


def _engine_problem() -> str | None:
    try:
        lab_docker.check_engine()
    except InputError as exc:
        return exc.message
    tag = lab_image.image_tag(DEFAULT_RELEASE, default_mirror())
    if not lab_docker.image_exists(tag):
        try:
            lab_image.check_build_prerequisites()
        except InputError as exc:
            return f"lab image {tag} is not built and cannot be built here: {exc.message}"
    return None


_PROBLEM = (
    _engine_problem()
    if shutil.which("docker") or os.environ.get("RIGCTL_DOCKER")
    else "the docker CLI is not installed"
)
if _PROBLEM:
    pytest.skip(f"no usable Docker engine for lab tests: {_PROBLEM}", allow_module_level=True)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("rigctl-home")
    mp.setenv("RIGCTL_HOME", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="module")
def lab(home):
    from rigctl.lab import lab_down, lab_up

    name = f"t-lab-{secrets.token_hex(3)}"
    try:
        yield lab_up(name, profiles_per_rig=PROFILES)
    finally:
        lab_down(name)


def ssh(lab, rig, *cmd, known_hosts=None, check=True, extra=()):
    """ssh as Ansible will: the lab key, its known_hosts, host key checking on."""
    argv = [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts or lab.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "ConnectTimeout=10",
        *extra,
        "-i",
        str(lab.key),
        "-p",
        str(rig.port),
        "rig@127.0.0.1",
        *cmd,
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def docker_out(*args):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout.strip()


def test_inventory_describes_the_rigs(lab):
    data = yaml.safe_load(lab.inventory.read_text())
    group = data["all"]["children"]["rigs"]["children"]["lab"]
    assert list(group["hosts"]) == ["lab-rig-1", "lab-rig-2"]
    for rig, prof in zip(lab.rigs, PROFILES, strict=True):
        hv = group["hosts"][rig.name]
        assert hv == {
            "ansible_host": "127.0.0.1",
            "ansible_port": rig.port,
            "rig_lab_profile": prof,
            "rig_gpu_count": int(prof.split("x")[0]),
        }
    assert group["vars"]["ansible_user"] == "rig"
    assert group["vars"]["ansible_ssh_private_key_file"] == str(lab.key)
    assert "StrictHostKeyChecking=yes" in group["vars"]["ansible_ssh_common_args"]
    lines = lab.known_hosts.read_text().splitlines()
    assert [ln.split()[0] for ln in lines] == [f"[127.0.0.1]:{r.port}" for r in lab.rigs]


def test_ansible_reaches_the_rigs_with_the_inventory(lab, tmp_path):
    ansible = os.path.join(os.path.dirname(sys.executable), "ansible")
    if not os.path.exists(ansible):
        pytest.skip("ansible is not installed next to this Python")
    env = {
        **os.environ,
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path),
        "ANSIBLE_NOCOLOR": "1",
    }
    proc = subprocess.run(
        [ansible, "-i", str(lab.inventory), "rigs", "-m", "ping"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(lab.rigs)


def test_sshd_is_published_on_loopback_only(lab):
    for rig in lab.rigs:
        ports = docker_out("port", rig.container, "22")
        assert ports.splitlines() == [f"127.0.0.1:{rig.port}"]
        labels = json.loads(docker_out("inspect", "--format", "{{json .Config.Labels}}", rig.container))
        assert labels[LABEL_LAB] == lab.name
        assert docker_out("inspect", "--format", "{{.Config.Hostname}}", rig.container) == rig.name


def test_each_rig_boots_systemd_and_accepts_the_lab_key(lab):
    for rig in lab.rigs:
        assert ssh(lab, rig, "systemctl", "is-system-running").stdout.strip() == "running"
        assert ssh(lab, rig, "hostname").stdout.strip() == rig.name


def test_rig_user_has_passwordless_sudo(lab):
    for rig in lab.rigs:
        assert ssh(lab, rig, "sudo", "-n", "id", "-u").stdout.strip() == "0"


def test_sshd_allows_keys_only(lab):
    rig = lab.rigs[0]
    conf = ssh(lab, rig, "sudo", "-n", "/usr/sbin/sshd", "-T").stdout.splitlines()
    for line in (
        "permitrootlogin no",
        "passwordauthentication no",
        "kbdinteractiveauthentication no",
        "pubkeyauthentication yes",
    ):
        assert line in conf
    proc = ssh(
        lab,
        rig,
        "true",
        check=False,
        extra=(
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
        ),
    )
    assert proc.returncode != 0 and "Permission denied (publickey)" in proc.stderr


def test_rigs_have_their_own_host_key_and_machine_id(lab):
    ids = {ssh(lab, r, "cat", "/etc/machine-id").stdout.strip() for r in lab.rigs}
    assert len(ids) == len(lab.rigs) and "" not in ids
    keys = {ln.split()[2] for ln in lab.known_hosts.read_text().splitlines()}
    assert len(keys) == len(lab.rigs)


def test_simulated_gpus_match_the_profile(lab):
    for rig, prof in zip(lab.rigs, PROFILES, strict=True):
        out = ssh(
            lab, rig, "/usr/local/bin/nvidia-smi", "--query-gpu=name", "--format=csv,noheader"
        ).stdout.splitlines()
        assert len(out) == rig.gpu_count == int(prof.split("x")[0])
        assert all(MODEL[prof] in line for line in out), out


def test_apt_sources_include_non_free(lab):
    out = ssh(lab, lab.rigs[0], "cat", "/etc/apt/sources.list.d/debian.sources").stdout
    assert "Components: main contrib non-free non-free-firmware" in out


def test_tampered_known_hosts_is_refused(lab, tmp_path):
    r1, r2 = lab.rigs
    lines = lab.known_hosts.read_text().splitlines()
    key2 = lines[1].split(None, 1)[1]
    tampered = tmp_path / "known_hosts"
    tampered.write_text(f"[127.0.0.1]:{r1.port} {key2}\n")  # rig 2's key for rig 1
    proc = ssh(lab, r1, "true", known_hosts=tampered, check=False)
    assert proc.returncode != 0
    assert "Host key verification failed" in proc.stderr
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    proc = ssh(lab, r1, "true", known_hosts=empty, check=False)
    assert proc.returncode != 0 and "Host key verification failed" in proc.stderr


def test_status_reports_every_rig(lab, capsys):
    from rigctl.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["lab", "status", "--name", lab.name, "--json"])
    assert exc.value.code == 0
    st = json.loads(capsys.readouterr().out)
    assert [r["rig"] for r in st["rigs"]] == ["lab-rig-1", "lab-rig-2"]
    for row, prof in zip(st["rigs"], PROFILES, strict=True):
        assert row["state"] == "running" and row["ssh"] is True
        assert row["systemd"] == "running" and row["profile"] == prof


def test_lab_ssh_command(lab, home):
    rigctl = os.path.join(os.path.dirname(sys.executable), "rigctl")
    proc = subprocess.run(
        [rigctl, "lab", "ssh", "--name", lab.name, "lab-rig-2", "--", "echo", "hello from", "$(hostname)"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "RIGCTL_HOME": str(home)},
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "hello from lab-rig-2"


def test_restart_wipes_run_like_a_reboot(lab):
    from rigctl.lab import lab_restart

    rig = lab.rigs[0]
    ssh(lab, rig, "sudo", "-n", "touch", "/run/rigctl-test-marker", "/var/tmp/rigctl-kept")
    state, _ = lab_restart(lab.name, rig.name)
    assert state == "running"
    assert ssh(lab, rig, "test", "-e", "/run/rigctl-test-marker", check=False).returncode == 1
    assert ssh(lab, rig, "test", "-e", "/var/tmp/rigctl-kept", check=False).returncode == 0


def test_systemctl_reboot_brings_the_rig_back(lab):
    from rigctl.lab import ssh_probe

    rig = lab.rigs[1]
    before = docker_out("inspect", "--format", "{{.State.StartedAt}}", rig.container)
    ssh(lab, rig, "sudo", "-n", "systemctl", "reboot", check=False)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        started = docker_out("inspect", "--format", "{{.State.StartedAt}}", rig.container)
        if started != before and ssh_probe(lab, rig)[0]:
            break
        time.sleep(1)
    else:
        pytest.fail(f"{rig.name} did not come back after systemctl reboot")
    assert ssh(lab, rig, "systemctl", "is-system-running", "--wait").stdout.strip() == "running"


def test_lab_up_again_keeps_the_rigs(lab):
    from rigctl.lab import lab_up

    ids = {r.name: docker_out("inspect", "--format", "{{.Id}}", r.container) for r in lab.rigs}
    rig = lab.rigs[0]
    ssh(lab, rig, "sudo -n sh -c 'echo broken > /usr/local/bin/nvidia-smi'")
    again = lab_up(lab.name)
    # The simulator is copied again at every `lab up` (an upgraded rigctl updates it).
    assert ssh(lab, rig, "/usr/local/bin/nvidia-smi", "-L").stdout.count("GPU ") == rig.gpu_count
    assert [(r.name, r.port, r.profile) for r in again.rigs] == [
        (r.name, r.port, r.profile) for r in lab.rigs
    ]
    assert {r.name: r.container_id for r in again.rigs} == ids


def test_lab_up_cannot_shrink_a_lab(lab):
    from rigctl.lab import lab_up

    with pytest.raises(InputError, match="has 2 rigs; --rigs 1 would drop lab-rig-2") as exc:
        lab_up(lab.name, rigs=1)
    assert exc.value.exit_code == 2 and "lab down" in exc.value.fix


def test_lab_up_recreates_a_rig_removed_by_hand(lab):
    from rigctl.lab import lab_up

    rig = lab.rigs[1]
    subprocess.run(["docker", "rm", "-f", rig.container], check=True, capture_output=True)
    again = lab_up(lab.name)
    assert again.rigs[1].port == rig.port
    # Same host key: the known_hosts written at the start still works.
    assert ssh(lab, again.rigs[1], "hostname").stdout.strip() == rig.name


def test_a_second_lab_reuses_the_image(home):
    from rigctl.lab import lab_down, lab_up

    name = f"t-lab-{secrets.token_hex(3)}"
    t0 = time.monotonic()
    try:
        second = lab_up(name, rigs=1, profile="2x4090")
        took = time.monotonic() - t0
        assert second.image == lab_image.image_tag(DEFAULT_RELEASE, default_mirror())
        assert took < 60, f"lab up of 1 rig took {took:.0f} s: the image was not reused?"
    finally:
        lab_down(name)


def test_a_port_taken_after_the_check_is_skipped(home, monkeypatch):
    """Another process grabs the port between the free-port check and `docker start`."""
    import socket

    from rigctl.lab import lab_down, lab_up, model

    name = f"t-lab-{secrets.token_hex(3)}"
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        port = squatter.getsockname()[1]
        monkeypatch.setattr(model, "port_is_free", lambda p: True)  # the check is fooled
        try:
            up = lab_up(name, rigs=1, port_base=port)
            assert up.rigs[0].port != port
            assert ssh(up, up.rigs[0], "hostname").stdout.strip() == "lab-rig-1"
            assert f"[127.0.0.1]:{up.rigs[0].port} " in up.known_hosts.read_text()
        finally:
            lab_down(name)


def _leftovers(name: str) -> list[str]:
    found = docker_out("ps", "-a", "--filter", f"label={LABEL_LAB}={name}", "--format", "{{.Names}}").split()
    found += docker_out(
        "network", "ls", "--filter", f"label={LABEL_LAB}={name}", "--format", "{{.Name}}"
    ).split()
    return found


def test_lab_down_removes_everything_even_half_created(home):
    from rigctl.lab import lab_dir, lab_down, lab_up

    name = f"t-lab-{secrets.token_hex(3)}"
    up = lab_up(name, rigs=2)
    # Half-created states: the lab dir lost, and a container removed by hand.
    subprocess.run(["docker", "rm", "-f", up.rigs[0].container], check=True, capture_output=True)
    shutil.rmtree(lab_dir(name))
    removed = lab_down(name)
    assert removed["containers"] == [up.rigs[1].container]
    assert _leftovers(name) == []
    assert not lab_dir(name).exists()
    assert lab_docker.image_exists(up.image), "lab down must keep the shared image"
    # And once more: nothing left, nothing fails.
    assert lab_down(name) == {"containers": [], "networks": [], "dir": None, "images": []}


def test_lab_down_of_the_main_lab(lab):
    from rigctl.lab import lab_dir, lab_down

    removed = lab_down(lab.name)
    assert len(removed["containers"]) == 2
    assert _leftovers(lab.name) == []
    assert not lab_dir(lab.name).exists()
