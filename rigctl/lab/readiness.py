"""Waiting for rigs: systemd booted, SSH login, the lab mirror answering."""

from __future__ import annotations

import time

from rigctl.errors import RigctlError
from rigctl.lab import docker
from rigctl.lab.model import (
    LAB_MIRROR_UNIT,
    LAB_MIRROR_URL,
    RIG_USER,
    Lab,
    Rig,
    container_name,
)
from rigctl.lab.ssh import ssh_probe


def _wait_rig(lab: Lab, rig: Rig, deadline: float) -> tuple[str, list[str]]:
    """Wait for systemd to finish booting and for SSH to let us in.

    Returns (systemd state, failed units); raises RigctlError naming the rig on timeout.
    """
    cname = rig.container
    state, err = "", ""
    while True:
        res = docker.exec_(cname, ["systemctl", "is-system-running"], timeout=20)
        state = res.stdout.strip()
        if state in ("running", "degraded"):
            break
        err = (res.stderr or "").strip()
        if time.monotonic() > deadline:
            fix = f"look at `docker logs {cname}` and `docker exec {cname} systemctl list-jobs`"
            logs = docker.run(["logs", "--tail", "200", cname], check=False)
            jour = docker.exec_(cname, ["journalctl", "-b", "--no-pager", "-n", "300"])
            if "Too many open files" in logs.stdout + logs.stderr + jour.stdout:
                fix = (
                    "the machine ran out of inotify instances: raise "
                    "fs.inotify.max_user_instances (`sudo sysctl -w "
                    "fs.inotify.max_user_instances=1024`), then `lab up` again"
                )
            raise RigctlError(
                f"{rig.name} ({cname}): systemd did not finish booting (state {state or err or 'unknown'!r})",
                fix=fix,
            )
        time.sleep(0.5)
    failed: list[str] = []
    if state == "degraded":
        res = docker.exec_(cname, ["systemctl", "--failed", "--plain", "--no-legend"])
        failed = [ln.split()[0] for ln in res.stdout.splitlines() if ln.split()]
    while True:
        ok, why = ssh_probe(lab, rig)
        if ok:
            return state, failed
        if "host key" in why.lower() or "identification has changed" in why.lower():
            raise RigctlError(
                f"{rig.name}: SSH host key verification failed on 127.0.0.1:{rig.port}: {why}",
                fix=f"something else answers on that port, or the rig lost its key: "
                f"`rigctl lab down --name {lab.name}` then `lab up`",
            )
        if time.monotonic() > deadline:
            raise RigctlError(
                f"{rig.name}: no SSH login on 127.0.0.1:{rig.port} as {RIG_USER}: {why}",
                fix=f"check `docker exec {cname} systemctl status ssh` and "
                f"`rigctl lab status --name {lab.name}`",
            )
        time.sleep(0.5)


_MIRROR_PROBE = (
    "import sys, urllib.request\n"
    "try:\n"
    f"    urllib.request.urlopen({LAB_MIRROR_URL!r}, timeout=3).read(1)\n"
    "except Exception as exc:\n"
    "    sys.exit(str(exc))\n"
)


def _wait_mirror(lab: Lab, rig: Rig, deadline: float) -> None:
    """Wait until the rig's mirror unit answers at LAB_MIRROR_URL (from inside the rig)."""
    cname = rig.container or container_name(lab.name, rig.index)
    deadline = max(deadline, time.monotonic() + 20)
    while True:
        res = docker.exec_(cname, ["/usr/bin/python3", "-c", _MIRROR_PROBE], timeout=20)
        if res.returncode == 0:
            return
        if time.monotonic() > deadline:
            why = (res.stderr or res.stdout).strip().splitlines()
            raise RigctlError(
                f"{rig.name}: the lab mirror does not answer at {LAB_MIRROR_URL} inside the rig"
                + (f": {why[-1]}" if why else ""),
                fix=f"look at `docker exec {cname} systemctl status {LAB_MIRROR_UNIT}` and "
                f"`docker exec {cname} journalctl -u {LAB_MIRROR_UNIT}`",
            )
        time.sleep(0.3)


def _start_mirror(lab: Lab, rig: Rig, deadline: float) -> None:
    """Enable and start the rig's mirror unit (idempotent), then wait until it answers."""
    cname = rig.container or container_name(lab.name, rig.index)
    res = docker.exec_(cname, ["systemctl", "enable", "--now", LAB_MIRROR_UNIT], timeout=60)
    if res.returncode != 0:
        raise RigctlError(
            f"{rig.name}: cannot start {LAB_MIRROR_UNIT}: {(res.stderr or res.stdout).strip()}",
            fix=f"look at `docker exec {cname} journalctl -u {LAB_MIRROR_UNIT}`",
        )
    _wait_mirror(lab, rig, deadline)
