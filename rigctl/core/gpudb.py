"""Facts about NVIDIA GPU models that the roles, the checks and the CLI share.

PCI device ids come from the PCI ID database and from real captures; VRAM is the
marketing size (nvidia-smi reports slightly less usable FB memory).
"""

from __future__ import annotations

import re

# Architecture generations, oldest first. P2P forks state which generations they support.
GENERATIONS = ("Turing", "Ampere", "Ada", "Hopper", "Blackwell")

# device id (lowercase hex, no 0x) -> (model name, generation, VRAM GiB)
MODELS = {
    "1e04": ("GeForce RTX 2080 Ti", "Turing", 11),
    "1e07": ("GeForce RTX 2080 Ti", "Turing", 11),
    "2204": ("GeForce RTX 3090", "Ampere", 24),
    "2203": ("GeForce RTX 3090 Ti", "Ampere", 24),
    "2206": ("GeForce RTX 3080", "Ampere", 10),
    "2216": ("GeForce RTX 3080 LHR", "Ampere", 10),
    "2208": ("GeForce RTX 3080 Ti", "Ampere", 12),
    "2230": ("RTX A6000", "Ampere", 48),
    "20b0": ("A100 SXM4 40GB", "Ampere", 40),
    "20b5": ("A100 SXM4 80GB", "Ampere", 80),
    "2684": ("GeForce RTX 4090", "Ada", 24),
    "2685": ("GeForce RTX 4090 D", "Ada", 24),
    "2702": ("GeForce RTX 4080 SUPER", "Ada", 16),
    "2704": ("GeForce RTX 4080", "Ada", 16),
    "26b1": ("RTX 6000 Ada Generation", "Ada", 48),
    "27b8": ("L4", "Ada", 24),
    "2330": ("H100 SXM5 80GB", "Hopper", 80),
    "2331": ("H100 PCIe", "Hopper", 80),
    "2335": ("H200", "Hopper", 141),
    "2b85": ("GeForce RTX 5090", "Blackwell", 32),
    "2b87": ("GeForce RTX 5090 D", "Blackwell", 32),
    "2c02": ("GeForce RTX 5080", "Blackwell", 16),
    "2bb5": ("RTX PRO 6000 Blackwell Server Edition", "Blackwell", 96),
}

# Compute modes: rig_compute_mode value -> (nvidia-smi -c number, what
# --query-gpu=compute_mode prints). The one table: the inventory schema takes its names as
# rig_compute_mode's choices, the GPU facts and the gpu_settings module read the rest.
COMPUTE_MODES = {
    "default": (0, "Default"),
    "exclusive_process": (3, "Exclusive_Process"),
    "prohibited": (2, "Prohibited"),
}

# Name fragments -> generation, for when only a marketing name is known (nvidia-smi).
_NAME_GENERATION = (
    ("RTX 50", "Blackwell"),
    ("RTX PRO", "Blackwell"),
    ("RTX 40", "Ada"),
    ("Ada Generation", "Ada"),
    ("L4", "Ada"),
    ("L40", "Ada"),
    ("RTX 30", "Ampere"),
    ("RTX A", "Ampere"),
    ("A100", "Ampere"),
    ("A10", "Ampere"),
    ("H100", "Hopper"),
    ("H200", "Hopper"),
    ("RTX 20", "Turing"),
)


def normalize_device_id(device_id: str) -> str:
    """'0x2204', '2204', '0x220410DE' (nvidia-smi pci.device_id) -> '2204'."""
    value = device_id.strip().lower()
    if value.startswith("0x"):
        value = value[2:]
    if len(value) == 8 and value.endswith("10de"):
        value = value[:4]
    return value


def model_for_device(device_id: str):
    """(name, generation, vram_gib) for a PCI device id, or None when unknown."""
    return MODELS.get(normalize_device_id(device_id))


def generation_for_name(name: str):
    for fragment, generation in _NAME_GENERATION:
        if fragment in name:
            return generation
    return None


# A PCI address as the tools print it: nvidia-smi '00000000:41:00.0' (8-digit domain),
# sysfs and lspci -D '0000:41:00.0' (a domain past 0xffff, e.g. Intel VMD, has 5 digits:
# '10000:01:00.0'), lspci '41:00.0' (domain 0 left out).
_BUS_ID_RE = re.compile(
    r"^(?:(?P<domain>[0-9a-f]{4,8}):)?(?P<bus>[0-9a-f]{2}):(?P<dev>[0-9a-f]{2})\.(?P<fn>[0-7])$"
)
_UUID_RE = re.compile(r"^gpu-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def normalize_bus_id(bus_id: str) -> str:
    """Any PCI address spelling -> 'dddd:bb:dd.f' lowercase, the way sysfs names it.

    nvidia-smi prints '00000000:01:00.0', sysfs '0000:01:00.0', lspci '01:00.0'. The
    domain keeps its value (multi-segment boards have domains 0001, 0002, ...; Intel VMD
    10000 and up): at least four digits, never cut. Raises ValueError for anything else.
    """
    match = _BUS_ID_RE.match(bus_id.strip().lower()) if isinstance(bus_id, str) else None
    if not match:
        raise ValueError("not a PCI bus id: %r" % (bus_id,))
    return "%04x:%s:%s.%s" % (int(match.group("domain") or "0", 16), match.group("bus"),
                              match.group("dev"), match.group("fn"))


def parse_gpu_selector(key):
    """A GPU selector (a key of rig_power_limit_overrides / rig_gpu_clock_lock_overrides)
    as (kind, normalized target), or None when it is none of the forms. The one parser:
    the inventory schema checks keys with it, the GPU facts match them with it.

    Kinds: ``index`` (int >= 0), ``bus_id`` (:func:`normalize_bus_id`), ``uuid`` (lower
    case, ``GPU-`` and 8-4-4-4-12 hex digits). ``3`` and ``"3"`` are the same target, and so
    are ``00000000:41:00.0``, ``0000:41:00.0`` and ``41:00.0``.
    """
    if isinstance(key, bool):
        return None
    if isinstance(key, int):
        return ("index", key) if key >= 0 else None
    if not isinstance(key, str):
        return None
    text = key.strip()
    if text.isdigit():
        return ("index", int(text))
    if _UUID_RE.match(text.lower()):
        return ("uuid", text.lower())
    try:
        return ("bus_id", normalize_bus_id(text))
    except ValueError:
        return None


def select_gpu(gpus, key):
    """The GPU of ``gpus`` (dicts with ``index``, ``bus_id``, ``uuid``) that a selector
    names (:func:`parse_gpu_selector`), or None."""
    selector = parse_gpu_selector(key)
    if selector is None:
        return None
    kind, target = selector
    for gpu in gpus:
        value = gpu.get(kind)
        if kind == "uuid":
            value = (value or "").lower()
        if value == target:
            return gpu
    return None
