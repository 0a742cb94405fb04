"""`rigctl lab up --mirror-dir DIR`: every rig serves the controller's DIR itself, read-only,
at http://127.0.0.1:8600/ on its own loopback, and again after a reboot."""

from __future__ import annotations

import json
import shlex
import uuid

import pytest

from .conftest import lab_session

pytestmark = pytest.mark.lab

URL = "http://127.0.0.1:8600/"
TOKEN = f"rigctl-mirror-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def mirror_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("lab-mirror")
    (d / "hello.txt").write_text(TOKEN + "\n")
    (d / "sub").mkdir()
    (d / "sub" / "Packages").write_text("Package: x\n")
    return d


@pytest.fixture(scope="module")
def lab(tmp_path_factory, mirror_dir):
    with lab_session(tmp_path_factory, "it-mir", "--rigs", "1", "--mirror-dir", str(mirror_dir)) as session:
        yield session


def ssh(lab, *command: str):
    """Run a command on lab-rig-1 as the rig user (lab key, host key checked)."""
    return lab.rigctl("lab", "ssh", "--name", lab.name, "lab-rig-1", "--", shlex.join(command), timeout=120)


def fetch(lab, path: str):
    code = (
        "import sys, urllib.request\n"
        f"sys.stdout.write(urllib.request.urlopen({URL + path!r}, timeout=10).read().decode())\n"
    )
    return ssh(lab, "python3", "-c", code)


def test_the_rig_serves_the_directory_on_its_loopback(lab):
    proc = fetch(lab, "hello.txt")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == TOKEN
    proc = fetch(lab, "sub/Packages")
    assert proc.returncode == 0 and proc.stdout == "Package: x\n", proc.stderr
    listening = ssh(lab, "ss", "-Htln", "sport = :8600")
    assert listening.returncode == 0, listening.stderr
    addrs = [line.split()[3] for line in listening.stdout.splitlines() if line.split()]
    assert addrs == ["127.0.0.1:8600"]


def test_the_directory_is_live_and_read_only(lab, mirror_dir):
    (mirror_dir / "later.txt").write_text("added after lab up\n")
    proc = fetch(lab, "later.txt")
    assert proc.returncode == 0 and proc.stdout == "added after lab up\n", proc.stderr
    proc = ssh(lab, "sudo", "-n", "touch", "/srv/rigctl-mirror/written-by-rig")
    assert proc.returncode != 0
    assert "Read-only file system" in proc.stderr
    assert not (mirror_dir / "written-by-rig").exists()


def test_status_and_list_show_the_mirror(lab, mirror_dir):
    code, st = lab.rigctl.json("lab", "status", "--name", lab.name, "--json")
    assert code == 0, st
    assert st["mirror_dir"] == str(mirror_dir.resolve())
    assert st["mirror_url"] == URL
    assert [r["mirror"] for r in st["rigs"]] == ["active"]
    code, labs = lab.rigctl.json("lab", "list", "--json")
    assert code == 0
    assert [e["mirror_dir"] for e in labs if e["name"] == lab.name] == [str(mirror_dir.resolve())]


def test_another_mirror_dir_is_refused_and_lab_up_keeps_the_first(lab, mirror_dir, tmp_path):
    proc = lab.rigctl("lab", "up", "--name", lab.name, "--mirror-dir", str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert f"cannot serve {tmp_path} instead" in proc.stderr
    assert f"rigctl lab down --name {lab.name}" in proc.stderr
    # A repair without --mirror-dir keeps it (and re-enables the unit idempotently).
    proc = lab.rigctl("lab", "up", "--name", lab.name, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["mirror_dir"] == str(mirror_dir.resolve())
    assert fetch(lab, "hello.txt").stdout.strip() == TOKEN


def test_the_mirror_is_back_after_a_reboot(lab):
    enabled = ssh(lab, "systemctl", "is-enabled", "rigctl-lab-mirror.service")
    assert enabled.stdout.strip() == "enabled", enabled.stdout + enabled.stderr
    marker = ssh(lab, "sudo", "-n", "touch", "/run/rigctl-before-reboot")
    assert marker.returncode == 0, marker.stderr
    proc = lab.rigctl("lab", "restart", "--name", lab.name, "lab-rig-1")
    assert proc.returncode == 0, proc.stderr
    # A reboot: /run is a fresh tmpfs, and systemd started the unit at boot by itself.
    assert ssh(lab, "test", "-e", "/run/rigctl-before-reboot").returncode == 1
    proc = fetch(lab, "hello.txt")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == TOKEN
