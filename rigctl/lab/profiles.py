"""The lab's view of the simulated GPU layer (rigctl.simgpu.install).

Lab rigs get the simulator files of a *profile* (``4x3090``, ``2x4090``, ...). This module
is the one place the lab talks to rigctl.simgpu, so the lab code and its tests only depend
on three functions: :func:`known_profiles`, :func:`gpu_count` and :func:`profile_files`.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from rigctl.errors import InputError, RigctlError

DEFAULT_PROFILE = "4x3090"
SIMGPU_MODULE = "rigctl.simgpu.install"


def _simgpu():
    try:
        return importlib.import_module(SIMGPU_MODULE)
    except ImportError as exc:
        raise RigctlError(
            f"the simulated GPU layer ({SIMGPU_MODULE}) cannot be imported: {exc}",
            fix="reinstall rigctl (`pip install --force-reinstall rigctl`)",
        ) from exc


def known_profiles() -> list[str]:
    return sorted(_simgpu().list_profiles())


def check_profile(name: str) -> str:
    known = known_profiles()
    if name not in known:
        raise InputError(
            f"unknown lab profile {name!r}",
            fix="use one of: " + ", ".join(known),
        )
    return name


def load(name: str) -> Any:
    return _simgpu().load_profile(name)


def gpu_count(name: str) -> int:
    """Number of simulated GPUs of a profile."""
    data = load(name)
    if isinstance(data, dict):
        gpus = data.get("gpus")
        if isinstance(gpus, list):
            return len(gpus)
        for key in ("gpu_count", "count"):
            if isinstance(data.get(key), int):
                return int(data[key])
    m = re.match(r"^(\d+)x", name)
    if m:
        return int(m.group(1))
    raise RigctlError(f"cannot tell how many GPUs lab profile {name!r} has")


def profile_files(name: str) -> list[tuple[str, bytes, int]]:
    """(absolute path in the rig, content, mode) of every simulator file for a profile."""
    files = _simgpu().files_for_profile(name)
    result = []
    for path, content, mode in files:
        if not str(path).startswith("/"):
            raise RigctlError(f"simulated GPU layer gave a relative path: {path!r}")
        if isinstance(content, str):
            content = content.encode()
        result.append((str(path), bytes(content), int(mode)))
    return result
