"""What goes into a lab rig for its simulated GPUs: a pure list of files.

:func:`files_for_profile` returns ``(absolute path in the container, content, mode)`` for
the simulator (``/usr/local/bin/nvidia-smi`` and ``/usr/local/bin/rigctl-simgpu``), the
profile (``/etc/rigctl-simgpu/profile.json``: also the marker that makes every reader say
"simulated"), the lab's ``nvidia-persistenced.service`` (which runs the simulator: the
real daemon needs a driver) and a sysfs-shaped tree of the simulated PCI devices under
``/var/lib/rigctl-simgpu/sys/bus/pci/devices/<bdf>/`` (plus ``kernel/iommu_groups`` for
profiles with a simulated IOMMU). The lab writes them into the
container (tar stream through ``docker cp``); nothing here touches a container.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rigctl.core import constants
from rigctl.simgpu import list_profiles, load_profile
from rigctl.simgpu.nvidia_smi import sysfs_bdf

__all__ = [
    "NVIDIA_SMI_PATH",
    "SIMULATOR_SOURCE",
    "files_for_profile",
    "list_profiles",
    "load_profile",
    "profile_json",
    "simulator_script",
    "sysfs_files",
]

# Ahead of /usr/bin on PATH: shadows a real nvidia-smi that a role may have installed.
NVIDIA_SMI_PATH = "/usr/local/bin/nvidia-smi"
SIMULATOR_SOURCE = Path(__file__).resolve().parent / "nvidia_smi.py"

_SYSFS_SPEED = {1: "2.5", 2: "5.0", 3: "8.0", 4: "16.0", 5: "32.0", 6: "64.0"}


def simulator_script() -> bytes:
    """The simulator script, as installed (both names)."""
    return SIMULATOR_SOURCE.read_bytes()


def profile_json(profile: str | dict[str, Any]) -> bytes:
    """The profile file written to the rig (optional fields filled in)."""
    data = _resolve(profile)
    return (json.dumps(data, indent=2, sort_keys=False) + "\n").encode()


def _resolve(profile: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(profile, dict):
        from rigctl.simgpu import validate_profile
        from rigctl.simgpu.nvidia_smi import apply_defaults

        validate_profile(profile, str(profile.get("name", "?")))
        return apply_defaults(profile)
    return load_profile(profile)


def _link_speed(gen: int) -> bytes:
    return f"{_SYSFS_SPEED[int(gen)]} GT/s PCIe\n".encode()


def sysfs_files(profile: str | dict[str, Any]) -> list[tuple[str, bytes, int]]:
    """The simulated ``/sys/bus/pci/devices/<bdf>/`` files of every GPU, under
    ``constants.SIMGPU_SYSFS_ROOT``. ``max_link_*`` are what the card itself supports
    (like real sysfs: the device's LnkCap), ``current_link_*`` what the link trained at."""
    data = _resolve(profile)
    files = []
    for gpu in data["gpus"]:
        base = f"{constants.SIMGPU_SYSFS_ROOT}/bus/pci/devices/{sysfs_bdf(gpu['bus_id'])}"
        subsystem = gpu["subsystem_id"][2:].lower()
        entries = {
            "vendor": f"0x{constants.NVIDIA_PCI_VENDOR}\n",
            "device": f"0x{gpu['pci_device_id'][2:].lower()}\n",
            "class": "0x030000\n",
            "subsystem_vendor": f"0x{subsystem[4:]}\n",
            "subsystem_device": f"0x{subsystem[:4]}\n",
            "current_link_speed": _link_speed(gpu["link_gen_current"]).decode(),
            "current_link_width": f"{gpu['link_width_current']}\n",
            "max_link_speed": _link_speed(gpu["device_gen_max"]).decode(),
            "max_link_width": f"{gpu['device_width_max']}\n",
            "numa_node": f"{gpu['numa_node']}\n",
        }
        for name, content in entries.items():
            files.append((f"{base}/{name}", content.encode(), 0o444))
    # Simulated IOMMU: one group per GPU, typed like the kernel's (identity in passthrough,
    # DMA-FQ when translating). No groups directory at all means the IOMMU is off.
    group_type = {"passthrough": "identity\n", "translated": "DMA-FQ\n"}.get(data.get("iommu", "off"))
    if group_type:
        for gpu in data["gpus"]:
            files.append(
                (f"{constants.SIMGPU_SYSFS_ROOT}/kernel/iommu_groups/{gpu['index'] + 10}/type",
                 group_type.encode(), 0o444)
            )
    return files


# The lab's stand-in for the unit the nvidia-persistenced package installs (same name and
# place): with no driver the real daemon cannot run, so the unit asks the simulator to do
# what the daemon does to the driver (persistence mode on for every GPU while it runs).
# Like the package's unit it is installed but not enabled; the gpu_tuning role enables it.
PERSISTENCED_UNIT_PATH = "/usr/lib/systemd/system/nvidia-persistenced.service"
PERSISTENCED_UNIT = f"""# rigctl lab rig: SIMULATED nvidia-persistenced (no GPU, no driver in this container).
# Stands in for the unit of the nvidia-persistenced package, under the same name.
[Unit]
Description=NVIDIA Persistence Daemon (rigctl simulated GPUs)
Documentation=man:nvidia-persistenced(1)

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={constants.SIMGPU_TOOL} persistenced start
ExecStop={constants.SIMGPU_TOOL} persistenced stop

[Install]
WantedBy=multi-user.target
"""


def files_for_profile(profile: str | dict[str, Any]) -> list[tuple[str, bytes, int]]:
    """Every file of the simulated GPU layer for a profile (name or profile dict):
    ``(absolute destination path, content, mode)``."""
    data = _resolve(profile)
    script = simulator_script()
    files = [
        (NVIDIA_SMI_PATH, script, 0o755),
        (constants.SIMGPU_TOOL, script, 0o755),
        (constants.SIMGPU_PROFILE, profile_json(data), 0o644),
        (PERSISTENCED_UNIT_PATH, PERSISTENCED_UNIT.encode(), 0o644),
    ]
    files.extend(sysfs_files(data))
    return files
