"""Where things live: the shipped Ansible content and rigctl's state on the controller."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def ansible_dir() -> Path:
    """Directory holding ansible.cfg, playbooks/, roles/, plugins/.

    In an installed wheel it is rigctl/_ansible; in a checkout (editable install or
    running from the source tree) it is the top of the checkout.
    """
    shipped = PACKAGE_DIR / "_ansible"
    if (shipped / "playbooks").is_dir():
        return shipped
    return PACKAGE_DIR.parent


def playbook(name: str) -> Path:
    return ansible_dir() / "playbooks" / name


def module_utils_dir() -> Path:
    """The directory that contains the `rigctl` package: Ansible resolves
    `ansible.module_utils.rigctl.core.*` there and ships those files to the hosts."""
    return PACKAGE_DIR.parent


def state_home() -> Path:
    """Controller-side state: labs, kept run artifacts."""
    env = os.environ.get("RIGCTL_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return base / "rigctl"


def labs_dir() -> Path:
    return state_home() / "labs"


def runs_dir() -> Path:
    return state_home() / "runs"


def verify_records_dir() -> Path:
    """The last `rigctl verify` result per rig (rigctl.fleet.records)."""
    return state_home() / "verify"


def rollouts_dir() -> Path:
    """One record per fleet rollout, ``rollouts/<id>/`` (rigctl.fleet.records)."""
    return state_home() / "rollouts"
