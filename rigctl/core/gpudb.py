"""Facts about NVIDIA GPU models that the roles, the checks and the CLI share.

PCI device ids come from the PCI ID database and from real captures; VRAM is the
marketing size (nvidia-smi reports slightly less usable FB memory).
"""

from __future__ import annotations

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


def normalize_bus_id(bus_id: str) -> str:
    """Any PCI address spelling -> 'dddd:bb:dd.f' lowercase.

    nvidia-smi prints '00000000:01:00.0', sysfs '0000:01:00.0', lspci '01:00.0'.
    """
    value = bus_id.strip().lower()
    parts = value.split(":")
    if len(parts) == 2:
        parts = ["0000"] + parts
    if len(parts) != 3 or "." not in parts[2]:
        raise ValueError("not a PCI bus id: %r" % bus_id)
    domain = parts[0][-4:].rjust(4, "0")
    return "%s:%s:%s" % (domain, parts[1].rjust(2, "0"), parts[2])
