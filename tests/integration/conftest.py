"""Integration tests run against lab rigs: real systemd containers reached over SSH on
127.0.0.1 with host key checking on. They need a Docker engine (scripts/setup starts one)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import types
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def docker_ready() -> str | None:
    if shutil.which("docker") is None:
        return "docker CLI not installed (scripts/setup installs docker.io)"
    proc = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if proc.returncode != 0:
        return "no Docker engine running (scripts/setup starts one)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = docker_ready()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "lab" in item.keywords:
            item.add_marker(skip)


class Rigctl:
    """Runs the installed `rigctl` as a user would, with its own state home."""

    def __init__(self, home: Path):
        self.home = home
        self.env = dict(os.environ, RIGCTL_HOME=str(home), PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")

    def __call__(self, *args, check=False, timeout=900, cwd=None):
        proc = subprocess.run(
            [str(BIN / "rigctl"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd or self.home,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"rigctl {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def json(self, *args, **kw):
        proc = self(*args, **kw)
        try:
            return proc.returncode, json.loads(proc.stdout)
        except ValueError as exc:
            raise AssertionError(
                f"not JSON from rigctl {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
            ) from exc


@contextlib.contextmanager
def lab_session(tmp_path_factory, prefix: str, *up_args: str):
    """A lab of its own (own state home, unique name) for a group of tests: `rigctl lab up
    --name <prefix>-<random> UP_ARGS`, removed with `lab down` at the end."""
    reason = docker_ready()
    if reason:
        pytest.skip(reason)
    home = tmp_path_factory.mktemp(f"rigctl-home-{prefix}")
    rigctl = Rigctl(home)
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    rigctl("lab", "up", "--name", name, *up_args, check=True)
    inventory = home / "labs" / name / "inventory.yml"
    assert inventory.is_file()
    try:
        yield types.SimpleNamespace(name=name, inventory=str(inventory), rigctl=rigctl, home=home)
    finally:
        rigctl("lab", "down", "--name", name, check=True)


@pytest.fixture(scope="session")
def lab2(tmp_path_factory):
    """A two-rig lab (4x3090 profile) shared by the integration tests, removed at the end."""
    with lab_session(tmp_path_factory, "it", "--rigs", "2", "--profile", "4x3090") as lab:
        yield lab


def ansible_on_rig(lab, module: str, args: str, *extra: str, host: str = "lab-rig-1",
                   timeout: int = 900) -> subprocess.CompletedProcess:
    """One ad-hoc Ansible module run as root on a lab rig, through the project's ansible.cfg
    and the lab's own inventory (its known_hosts: host key checking on)."""
    env = dict(lab.rigctl.env, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    return subprocess.run(
        [str(BIN / "ansible"), "-i", str(lab.inventory), host, "-b", "-m", module, "-a", args,
         *extra],
        env=env, capture_output=True, text=True, timeout=timeout,
    )


def shell_on_rig(lab, command: str, host: str = "lab-rig-1") -> str:
    """stdout of a shell command run as root on a lab rig (asserting it succeeded)."""
    proc = ansible_on_rig(lab, "shell", command, host=host)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.split(">>", 1)[-1].strip()
