"""What goes into a lab rig for its simulated GPUs: a pure list of files.

:func:`files_for_profile` returns ``(absolute path in the container, content, mode)`` for
the simulator (``/usr/local/bin/nvidia-smi`` and ``/usr/local/bin/rigctl-simgpu``: one
runnable file, a zip archive of the :mod:`rigctl.simgpu.tool` package built by
:func:`simulator_script`), the
profile (``/etc/rigctl-simgpu/profile.json``: also the marker that makes every reader say
"simulated"), the lab's ``nvidia-persistenced.service`` (which runs the simulator: the
real daemon needs a driver) and a sysfs-shaped tree of the simulated PCI devices under
``/var/lib/rigctl-simgpu/sys/bus/pci/devices/<bdf>/`` (GPUs and the bridges above them, with
AER counters; plus ``kernel/iommu_groups`` for profiles with a simulated IOMMU). The lab writes them into the
container (tar stream through ``docker cp``); nothing here touches a container.
"""

from __future__ import annotations

import functools
import io
import json
import zipfile
from pathlib import Path
from typing import Any

from rigctl.core import constants
from rigctl.simgpu import list_profiles, load_profile
from rigctl.simgpu.tool import sysfs as tool_sysfs

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
# The simulator package. `python3 SIMULATOR_SOURCE` runs it from a checkout (its
# __main__.py); rigs get it as one file, simulator_script().
SIMULATOR_SOURCE = Path(__file__).resolve().parent / "tool"
# The package's name inside the archive (its modules import each other relatively).
ARCHIVE_PACKAGE = "rigctl_simgpu"
SHEBANG = b"#!/usr/bin/python3\n"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def _archive_member(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


@functools.lru_cache(maxsize=1)
def simulator_script() -> bytes:
    """The simulator as installed (both names): a zipapp, ``#!/usr/bin/python3`` then a zip
    archive holding ``__main__.py`` and the package as ``rigctl_simgpu/``. Standard library
    only; the same bytes for the same sources (fixed member dates and order)."""
    buf = io.BytesIO()
    buf.write(SHEBANG)
    with zipfile.ZipFile(buf, "w") as zf:
        _archive_member(zf, "__main__.py", (SIMULATOR_SOURCE / "__main__.py").read_bytes())
        for source in sorted(SIMULATOR_SOURCE.glob("*.py")):
            _archive_member(zf, f"{ARCHIVE_PACKAGE}/{source.name}", source.read_bytes())
    return buf.getvalue()


def profile_json(profile: str | dict[str, Any]) -> bytes:
    """The profile file written to the rig (optional fields filled in)."""
    data = _resolve(profile)
    return (json.dumps(data, indent=2, sort_keys=False) + "\n").encode()


def _resolve(profile: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(profile, dict):
        from rigctl.simgpu import validate_profile
        from rigctl.simgpu.tool.profile import apply_defaults

        validate_profile(profile, str(profile.get("name", "?")))
        return apply_defaults(profile)
    return load_profile(profile)


def sysfs_files(profile: str | dict[str, Any]) -> list[tuple[str, bytes, int]]:
    """The simulated ``/sys/bus/pci/devices/<bdf>/`` files of every GPU and of the bridges
    above them, under ``constants.SIMGPU_SYSFS_ROOT`` (:mod:`rigctl.simgpu.tool.sysfs`).
    ``max_link_*`` are what the device itself supports (like real sysfs: the device's
    LnkCap), ``current_link_*`` what the link trained at; ``aer_dev_*`` count the profile's
    AER faults; bridges have ``secondary_bus_number``/``subordinate_bus_number``."""
    data = _resolve(profile)
    files = tool_sysfs.sysfs_files(data, constants.SIMGPU_SYSFS_ROOT)
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


# What systemd-tmpfiles does at every boot of a lab rig: /run is a tmpfs, so the state
# directory and the world-writable (sticky) load flag directory are made again (the
# simulated probe, like the real one, runs as any user); the AER counters, which the kernel
# starts from zero at boot, go back to the profile's (run-time faults are gone).
TMPFILES_PATH = "/usr/lib/tmpfiles.d/rigctl-simgpu.conf"


def _tmpfiles_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def tmpfiles_text(profile: str | dict[str, Any]) -> str:
    data = _resolve(profile)
    lines = [
        "# rigctl lab rig: runtime state of the SIMULATED GPU layer (lost at reboot, like the driver's)",
        f"d {constants.SIMGPU_STATE_DIR} 0755 root root -",
        f"d {constants.SIMGPU_STATE_DIR}/load 1777 root root -",
    ]
    for path, content, _mode in tool_sysfs.sysfs_files(data, constants.SIMGPU_SYSFS_ROOT):
        if path.rsplit("/", 1)[1].startswith("aer_"):
            lines.append(f"f+ {path} 0444 root root - {_tmpfiles_escape(content.decode())}")
    return "\n".join(lines) + "\n"


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
        (TMPFILES_PATH, tmpfiles_text(data).encode(), 0o644),
    ]
    files.extend(sysfs_files(data))
    return files
