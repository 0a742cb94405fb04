"""SSH to lab rigs: the controller's tools, the keys, ssh argv and probe, known_hosts."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from rigctl.errors import InputError, RigctlError
from rigctl.lab.model import (
    RIG_USER,
    Lab,
    Rig,
    host_pub_path,
    render_inventory,
    render_known_hosts,
    save_state,
    write_private,
)
from rigctl.lab.state import _require_lab


def _tool(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        raise InputError(
            f"{name} is not installed: lab rigs are reached over SSH",
            fix="`sudo apt-get install openssh-client`",
        )
    return exe


def _keygen(path: Path, comment: str) -> str:
    """Generate an ed25519 key pair at path (if missing); return the public key line."""
    pub = path.with_name(path.name + ".pub")
    if not (path.exists() and pub.exists()):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        for p in (path, pub):
            if p.exists():
                p.unlink()
        proc = subprocess.run(
            [_tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if proc.returncode != 0:
            raise RigctlError(f"ssh-keygen failed for {path}: {proc.stderr.strip()}")
    os.chmod(path, 0o600)
    return pub.read_text().strip()


def ssh_base_argv(lab: Lab, rig: Rig) -> list[str]:
    """ssh options for a rig: the lab key, its known_hosts, host key checking on."""
    return [
        _tool("ssh"),
        "-i",
        str(lab.key),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={lab.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        # only `lab up` writes the lab's known_hosts: ssh must not add keys to it
        "-o",
        "UpdateHostKeys=no",
        "-p",
        str(rig.port),
        f"{RIG_USER}@127.0.0.1",
    ]


def ssh_argv(name: str, rig: str | int, command: Sequence[str] = ()) -> list[str]:
    """The argv of `ssh` into a lab rig (what `rigctl lab ssh` execs)."""
    lab = _require_lab(name)
    r = lab.rig(rig)
    argv = ssh_base_argv(lab, r)
    # `--` before the destination: nothing after it is read as an ssh option.
    return [*argv[:-1], "--", argv[-1], *command]


def ssh_probe(lab: Lab, rig: Rig, timeout: float = 5) -> tuple[bool, str]:
    """(True, '') when `ssh rig true` works with the lab key and known_hosts."""
    base = ssh_base_argv(lab, rig)
    argv = [
        *base[:-1],
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={int(timeout)}",
        "-o",
        "LogLevel=ERROR",
        base[-1],
        "true",
    ]
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout + 10, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return False, "ssh timed out"
    if proc.returncode == 0:
        return True, ""
    return False, proc.stderr.strip() or f"ssh exited {proc.returncode}"


def write_lab_files(lab: Lab) -> None:
    """known_hosts, inventory.yml and lab.json for the lab as it is now."""
    entries = []
    for r in lab.rigs:
        pub = host_pub_path(lab.name, r.index)
        if pub.exists():
            entries.append((r.port, pub.read_text().strip()))
    write_private(lab.known_hosts, render_known_hosts(entries), 0o644)
    write_private(lab.inventory, render_inventory(lab), 0o644)
    save_state(lab)
