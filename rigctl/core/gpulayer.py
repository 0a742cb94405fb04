"""Which GPU layer a host has: the real one, or the simulated GPU layer of a lab rig.

The one decision. Every reader of GPUs (sysfs, nvidia-smi, lspci, the IOMMU groups of the
GPU layer) asks :func:`layer` which tool and which sysfs root to use; nothing else looks
for the marker (:data:`constants.SIMGPU_PROFILE`). Runs on the managed host: standard
library only, Python 3.9 syntax.
"""

from __future__ import annotations

import json
import os

from . import constants
from .probe import PROBE_BINARY_PATH

# The kernel log since boot, as the health checks read it (Xid and AER lines).
KERNEL_LOG_ARGV = ["journalctl", "-k", "-b", "--no-pager", "-o", "short-iso"]


def _under(root, path):
    return os.path.join(root, path.lstrip("/"))


def simulation(root="/"):
    """The simulated GPU layer's description (the ``simulation`` fact) when this host is a
    lab rig, else None: ``profile`` (its name), ``profile_path``, ``sysfs_root``,
    ``nvidia_smi``."""
    profile_path = _under(root, constants.SIMGPU_PROFILE)
    if not os.path.isfile(profile_path):
        return None
    try:
        with open(profile_path) as handle:
            profile = json.load(handle)
        name = profile.get("name") if isinstance(profile, dict) else None
    except (OSError, ValueError):
        name = None
    return {
        "profile": name,
        "profile_path": constants.SIMGPU_PROFILE,
        "sysfs_root": constants.SIMGPU_SYSFS_ROOT,
        "nvidia_smi": constants.SIMGPU_TOOL,
    }


def layer(root="/"):
    """What a GPU reader on this host reads. ``simulated`` (bool), ``simulation`` (see
    :func:`simulation`), ``sys_root`` (the sysfs tree of the GPUs and of their IOMMU groups,
    under ``root``: the simulated one on a lab rig), ``nvidia_smi`` (the program to run as
    nvidia-smi), ``lspci`` (the argv of ``lspci -vv -D -nn`` or the simulated layer's view
    of it), ``kernel_log`` (the argv printing the kernel log since boot: ``journalctl -k -b
    --no-pager -o short-iso``, or the simulated layer's kernel messages in that format),
    ``probe`` (the argv of the rig probe: :data:`rigctl.core.probe.PROBE_BINARY_PATH`, or the
    simulated layer's modelled probe; options such as ``--size-mib`` go after it),
    ``simgpu_tool`` (the simulated layer's own tool, None on a real rig)."""
    sim = simulation(root)
    if sim:
        return {
            "simulated": True,
            "simulation": sim,
            "sys_root": _under(root, constants.SIMGPU_SYSFS_ROOT),
            "nvidia_smi": constants.SIMGPU_TOOL,
            "lspci": [constants.SIMGPU_TOOL, "lspci"],
            "kernel_log": [constants.SIMGPU_TOOL, "kernel-log"],
            "probe": [constants.SIMGPU_TOOL, "probe"],
            "simgpu_tool": constants.SIMGPU_TOOL,
        }
    return {
        "simulated": False,
        "simulation": None,
        "sys_root": os.path.join(root, "sys"),
        "nvidia_smi": "nvidia-smi",
        "lspci": ["lspci", "-vv", "-D", "-nn"],
        "kernel_log": list(KERNEL_LOG_ARGV),
        "probe": [PROBE_BINARY_PATH],
        "simgpu_tool": None,
    }


def gpu_view(gpu_layer, gpus):
    """``simulated``, ``real`` (GPUs on PCI) or ``none``: what every reader reports."""
    if gpu_layer["simulated"]:
        return "simulated"
    return "real" if gpus else "none"
