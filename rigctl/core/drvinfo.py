"""NVIDIA driver version parsers: ``/proc/driver/nvidia/version`` and ``modinfo nvidia``.

Standard library only, Python 3.9 syntax (shipped to managed hosts as module_utils).
Pure functions: text in, JSON-serializable dicts/lists out; input that is clearly not the
expected format raises ``ValueError``. Shared text helpers are in :mod:`.parsers`.
"""

from __future__ import annotations

import re

from .parsers import _lines

__all__ = [
    "parse_proc_driver_version",
    "parse_modinfo",
]

# --- /proc/driver/nvidia/version ------------------------------------------------------

_NVRM_RE = re.compile(
    r"^NVRM version:\s*(?P<head>.*?Kernel Module(?:\s+for\s+(?P<arch1>\S+))?)\s+"
    r"(?P<version>\d+\.\d+(?:\.\d+)?)\s*(?P<rest>.*)$"
)


def parse_proc_driver_version(text: str) -> dict:
    """``/proc/driver/nvidia/version``.

    Open module:  ``NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05
    Release Build  (builder@host)  <date>``; proprietary: ``NVRM version: NVIDIA UNIX x86_64
    Kernel Module  550.54.14  <date>``. Returns ``version``, ``flavor`` ("open" or
    "proprietary"), ``arch``, ``build`` (the rest of the line), ``gcc`` (the GCC line's
    value, or None) and ``raw`` (the NVRM line). A missing final newline is fine.
    """
    nvrm = None
    gcc = None
    for line in _lines(text):
        line = line.strip()
        if line.startswith("NVRM version:") and nvrm is None:
            nvrm = line
        elif line.startswith("GCC version:") and gcc is None:
            gcc = line.split(":", 1)[1].strip() or None
    if nvrm is None:
        raise ValueError(
            "not /proc/driver/nvidia/version output: no 'NVRM version:' line "
            "(is the nvidia kernel module loaded?)"
        )
    match = _NVRM_RE.match(nvrm)
    if not match:
        raise ValueError("cannot find a driver version in the NVRM line: %r" % nvrm)
    head = match.group("head")
    arch = match.group("arch1")
    if not arch:
        arch_match = re.search(r"\b(x86_64|aarch64|ppc64le|arm64)\b", head)
        arch = arch_match.group(1) if arch_match else None
    return {
        "version": match.group("version"),
        "flavor": "open" if "Open Kernel Module" in head else "proprietary",
        "arch": arch,
        "build": re.sub(r"\s{2,}", "  ", match.group("rest").strip()) or None,
        "gcc": gcc,
        "raw": nvrm,
    }


# --- modinfo --------------------------------------------------------------------------

_MODINFO_LIST_KEYS = ("alias", "firmware", "parm", "softdep", "import_ns")


def parse_modinfo(text: str) -> dict:
    """``modinfo nvidia`` (or ``modinfo -k KERNEL nvidia``).

    Returns ``filename``, ``version``, ``license``, ``flavor`` ("open" for ``Dual MIT/GPL``,
    "proprietary" for ``NVIDIA``, else None), ``vermagic``, ``srcversion``, ``depends``
    (list), ``location`` ("dkms" under ``/updates/dkms/``, "updates" elsewhere under
    ``/updates/``, "kernel" under ``/kernel/``, else "other"), ``params`` (name ->
    description), ``firmware`` (list), ``name``, ``signer`` and ``fields`` (every other
    single-valued key, as printed).
    """
    fields: dict = {}
    lists: dict = {key: [] for key in _MODINFO_LIST_KEYS}
    params: dict = {}
    last_param = None
    seen = False
    for line in _lines(text):
        if not line.strip():
            continue
        if line[:1] in (" ", "\t"):
            # continuation of a multi-line parm description (or of a signature)
            if last_param is not None:
                params[last_param] = (params[last_param] + " " + line.strip()).strip()
            continue
        match = re.match(r"^([A-Za-z0-9_.-]+):\s*(.*)$", line)
        if not match:
            continue
        key, value = match.group(1), match.group(2).strip()
        seen = True
        last_param = None
        if key == "parm":
            name, _, desc = value.partition(":")
            name = name.strip()
            if name:
                params[name] = desc.strip()
                last_param = name
            lists["parm"].append(value)
        elif key in lists:
            lists[key].append(value)
        elif key not in fields:
            fields[key] = value
    if not seen or not any(k in fields for k in ("filename", "version", "license", "vermagic")):
        raise ValueError(
            "not modinfo output: no 'filename:', 'version:' or 'license:' line "
            "(modinfo prints 'ERROR: Module nvidia not found' when the module is missing)"
        )
    license_ = fields.get("license")
    if license_ == "Dual MIT/GPL":
        flavor = "open"
    elif license_ == "NVIDIA":
        flavor = "proprietary"
    else:
        flavor = None
    filename = fields.get("filename")
    if not filename:
        location = None
    elif "/updates/dkms/" in filename:
        location = "dkms"
    elif "/updates/" in filename:
        location = "updates"
    elif "/kernel/" in filename:
        location = "kernel"
    else:
        location = "other"
    depends_raw = fields.get("depends", "")
    depends = [d.strip() for d in depends_raw.split(",") if d.strip()]
    vermagic = fields.get("vermagic")
    return {
        "filename": filename,
        "version": fields.get("version"),
        "license": license_,
        "flavor": flavor,
        "vermagic": vermagic.strip() if vermagic else None,
        "srcversion": fields.get("srcversion"),
        "depends": depends,
        "location": location,
        "name": fields.get("name"),
        "signer": fields.get("signer"),
        "firmware": lists["firmware"],
        "params": params,
        "fields": fields,
    }
