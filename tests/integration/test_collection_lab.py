"""The BUILT collection, installed into a temp collections path, runs its playbooks against
a lab rig with plain `ansible-playbook` (no rigctl, no checkout on any Ansible path), host
key checking on: the modules find rigctl/core as the collection's module_utils."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rigctl.fleet import collection

pytestmark = [pytest.mark.lab, pytest.mark.slow]

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("coll-lab")
    tarball = collection.build(base / "dist")
    colls = base / "collections"
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "--force", "-p",
                    str(colls), str(tarball)], check=True, capture_output=True, cwd=base,
                   env=dict(os.environ, ANSIBLE_CONFIG=str(base / "none.cfg")), timeout=300)
    g = yaml.safe_load((Path(collection.__file__).resolve().parents[2] / "galaxy.yml").read_text())
    return types_ns(base=base, colls=colls, fqcn=f"{g['namespace']}.{g['name']}")


def types_ns(**kw):
    import types

    return types.SimpleNamespace(**kw)


def _playbook(installed, lab, playbook: str, *args: str, work: str = "work"):
    """Plain ansible-playbook from ``installed.base / work`` (also its HOME: ssh's control
    sockets live there, so a run in another ``work`` opens fresh connections)."""
    work = installed.base / work
    work.mkdir(exist_ok=True)
    cfg = work / "ansible.cfg"
    # Only what any user would set: host key checking on, pipelining; the lab inventory
    # already says StrictHostKeyChecking=yes with the lab's own known_hosts.
    cfg.write_text("[defaults]\nhost_key_checking = True\ncallback_result_format = json\n"
                   "[ssh_connection]\npipelining = True\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(cfg), ANSIBLE_COLLECTIONS_PATH=str(installed.colls),
               ANSIBLE_NOCOLOR="1", HOME=str(work), PATH=f"{BIN}{os.pathsep}{env['PATH']}")
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", lab.inventory, "--limit", "lab-rig-1",
                           "-v", f"{installed.fqcn}.{playbook}", *args],
                          capture_output=True, text=True, cwd=work, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


def _task_result(out: str, task: str, host: str = "lab-rig-1") -> dict:
    """The JSON result the default callback prints (-v, callback_result_format json) for
    ``host`` under the ``TASK [...task]`` header (a role task reads ``ns.name.role : task``)."""
    at = out.find(f"{task}] ***")
    assert at >= 0, out[-3000:]
    marker = f"ok: [{host}] => "
    start = out.find(marker, at)
    assert start >= 0, out[at:at + 3000]
    result, _ = json.JSONDecoder().raw_decode(out, start + len(marker))
    return result


def _recap(out: str, host: str = "lab-rig-1") -> dict[str, int]:
    line = next(ln for ln in out.splitlines() if ln.startswith(host) and "unreachable=" in ln)
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


def test_the_installed_collections_fleet_status_playbook_runs_on_a_lab_rig(installed, lab2):
    out = _playbook(installed, lab2, "fleet_status")
    status = _task_result(out, "Rig status")["ansible_facts"]["rig_status"]
    assert status["host"]["gpu_view"] == "simulated"
    assert len(status["host"]["gpus"]) == 4
    # No module_utils path names rigctl/core here: the module found it in the collection.
    recap = _recap(out)
    assert recap["ok"] == 1 and recap["failed"] == 0 and recap["unreachable"] == 0


def test_the_installed_collections_facts_playbook_runs_its_role_on_a_lab_rig(installed, lab2):
    out = _playbook(installed, lab2, "facts")
    facts = _task_result(out, f"{installed.fqcn}.rig_facts : Gather rig facts")["ansible_facts"]
    rig = facts.get("rig_host") or facts.get("rig")  # the fact is being renamed rig -> rig_host
    assert rig["gpu_view"] == "simulated" and rig["os"]["id"] == "debian"
    assert "rig_preflight" in facts


def test_an_unknown_host_key_stops_the_collection_run(installed, lab2, tmp_path):
    text = Path(lab2.inventory).read_text()
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    known = str(Path(lab2.inventory).parent / "known_hosts")
    assert known in text
    inv = tmp_path / "inventory.yml"
    inv.write_text(text.replace(known, str(empty)))
    lab = types_ns(inventory=str(inv))
    # A fresh HOME: a ControlPersist master from the runs above would carry the connection
    # without any host key check (rigctl itself keys its control paths by the accepted keys).
    with pytest.raises(AssertionError, match="Host key verification failed"):
        _playbook(installed, lab, "fleet_status", work="work-unknown-key")
