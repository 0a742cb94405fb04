"""What the inventory tests share: writing an inventory tree, Ansible's own reading of an
inventory (`ansible-inventory --list`) and the comparison with rigctl's, and the inventory
`rigctl lab up` writes (its own renderer, not a copy of its text)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rigctl import inventory as inv_mod

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "inventory" / "example"
ANSIBLE_INVENTORY = Path(sys.executable).parent / "ansible-inventory"


def write(root: Path, files: dict[str, str]) -> None:
    """Write ``{relative path: text}`` under root (texts are dedented)."""
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))


def ansible_list(sources: list[str], cwd: Path) -> tuple[dict, dict]:
    """`ansible-inventory --list` with an empty config: ({host: hostvars}, the whole JSON)."""
    if not ANSIBLE_INVENTORY.exists():
        pytest.skip("ansible-inventory is not installed next to this Python")
    cfg = cwd / "empty-ansible.cfg"
    cfg.write_text("")
    env = dict(os.environ, ANSIBLE_CONFIG=str(cfg), ANSIBLE_HOME=str(cwd / ".ansible"),
               ANSIBLE_LOCAL_TEMP=str(cwd / ".ansible" / "tmp"), ANSIBLE_NOCOLOR="1")
    cmd = [str(ANSIBLE_INVENTORY), "--list"]
    for s in sources:
        cmd += ["-i", s]
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    hostvars = data["_meta"]["hostvars"]
    hosts = set(hostvars)
    for group, gd in data.items():
        if group != "_meta":
            hosts.update(gd.get("hosts", []))
    return {h: hostvars.get(h, {}) for h in hosts}, data


def assert_same_as_ansible(sources: list[str], cwd: Path) -> None:
    """rigctl's loader finds the hosts and the winning values Ansible finds."""
    theirs, _ = ansible_list(sources, cwd)
    old = os.getcwd()
    os.chdir(cwd)
    try:
        inv = inv_mod.load(sources)
    finally:
        os.chdir(old)
    assert set(inv.hosts) == set(theirs)
    for h in inv.hosts:
        mine = {k: d.value for k, d in inv.resolved(h).items() if d.layer != "default"}
        assert mine == theirs[h], h


def lab_inventory(home: Path, monkeypatch, profile: str = "4x3090", gpus: int = 4,
                  rigs: int = 2) -> Path:
    """The inventory file of a lab of ``rigs`` rigs, written by the lab's own renderer with
    $RIGCTL_HOME at ``home`` (its key and known_hosts files exist, as after `lab up`)."""
    from rigctl.lab.model import Lab, Rig, render_inventory

    monkeypatch.setenv("RIGCTL_HOME", str(home))
    lab = Lab(name="invtest", rigs=[Rig(i, 22200 + i, profile, gpus) for i in range(1, rigs + 1)])
    lab.dir.mkdir(parents=True, exist_ok=True)
    lab.key.write_text("not a key\n")
    lab.known_hosts.write_text("")
    lab.inventory.write_text(render_inventory(lab))
    return lab.inventory
