"""Lab: simulated rigs (systemd containers reached over SSH on 127.0.0.1).

The API the CLI, the Molecule scenarios and the tests use::

    from rigctl.lab import lab_up, lab_down, inventory_path
    lab = lab_up("mylab", rigs=2, profile="4x3090")   # -> Lab (rigs, ports, inventory)
    inventory_path("mylab")                            # labs/mylab/inventory.yml
    lab_status("mylab")                                # dict, as `lab status --json`
    lab_restart("mylab", "lab-rig-1")                  # a reboot: /run is wiped
    ssh_argv("mylab", "lab-rig-1", ["uname", "-a"])    # argv for subprocess
    lab_down("mylab")                                  # removes everything it made

    # A controller directory (a local apt repository, say) served inside every rig:
    lab_up("mylab", mirror_dir="/path/to/repo")        # -> http://127.0.0.1:8600/ in the rigs
    LAB_MIRROR_URL                                     # "http://127.0.0.1:8600/"

Errors: rigctl.errors.InputError (bad input, no Docker engine: exit 2) and RigctlError
(a rig did not come up: exit 1).
"""

from __future__ import annotations

from rigctl.lab.container import create_argv
from rigctl.lab.lab import DEFAULT_TIMEOUT, lab_down, lab_restart, lab_up
from rigctl.lab.model import (
    DEFAULT_NAME,
    DEFAULT_PORT_BASE,
    LAB_MIRROR_MOUNT,
    LAB_MIRROR_PORT,
    LAB_MIRROR_UNIT,
    LAB_MIRROR_URL,
    Lab,
    Rig,
    check_mirror_dir,
    container_name,
    inventory_path,
    key_path,
    known_hosts_path,
    lab_dir,
    load_state,
    network_name,
)
from rigctl.lab.ssh import ssh_argv, ssh_probe
from rigctl.lab.state import discover
from rigctl.lab.status import lab_status, list_labs

__all__ = [
    "DEFAULT_NAME",
    "DEFAULT_PORT_BASE",
    "DEFAULT_TIMEOUT",
    "LAB_MIRROR_MOUNT",
    "LAB_MIRROR_PORT",
    "LAB_MIRROR_UNIT",
    "LAB_MIRROR_URL",
    "Lab",
    "Rig",
    "check_mirror_dir",
    "container_name",
    "create_argv",
    "discover",
    "inventory_path",
    "key_path",
    "known_hosts_path",
    "lab_dir",
    "lab_down",
    "lab_restart",
    "lab_status",
    "lab_up",
    "list_labs",
    "load_state",
    "network_name",
    "ssh_argv",
    "ssh_probe",
]
