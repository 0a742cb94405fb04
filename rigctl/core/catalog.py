"""Known patched P2P sources of NVIDIA's open kernel modules: the ONE place they are listed.

A rig sets ``rig_p2p_source: {catalog: <name>}`` to use one of these, instead of spelling
out ``url``/``branch``/``commit``. Every entry is pinned to a full commit id; the branch
name is the exact driver version the module is built for, plus ``-p2p``, and the NVIDIA
userspace installed next to it must be that exact version.

Only branches whose full head commit id is known are listed (see docs/rig-facts.md in the
shared notes). Newer branches reported by the forks (tinygrad 570.124.06/570.133.20/
570.148.08, aikitoria 580.x, 595.x) are usable through ``url``/``branch``/``commit``.

Stdlib only, Python 3.9 syntax: this module is shipped to managed hosts as module_utils
(the ``nvidia_p2p_source`` module names the matching entry in its refusals) and imported
by the inventory checks (``rigctl.inventory.catalog`` re-exports it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

TINYGRAD_URL = "https://github.com/tinygrad/open-gpu-kernel-modules.git"
AIKITORIA_URL = "https://github.com/aikitoria/open-gpu-kernel-modules.git"

# GPU generations by their NVIDIA architecture names.
AMPERE, ADA, BLACKWELL = "Ampere", "Ada", "Blackwell"


@dataclass(frozen=True)
class P2PSource:
    name: str
    url: str
    branch: str
    commit: str
    driver_version: str
    generations: Tuple[str, ...] = (AMPERE, ADA)
    note: str = ""


P2P_CATALOG: Dict[str, P2PSource] = {
    s.name: s
    for s in (
        P2PSource(
            "tinygrad-550.54.15",
            TINYGRAD_URL,
            "550.54.15-p2p",
            "cc5890dbae6093c0c4dc66c456b69642548e111d",
            "550.54.15",
            (AMPERE, ADA),
            "branch head of 2024-05-16",
        ),
        P2PSource(
            "tinygrad-550.90.07",
            TINYGRAD_URL,
            "550.90.07-p2p",
            "38f547f039d49959f8ad7745798c372e7b2d09eb",
            "550.90.07",
            (AMPERE, ADA),
            "branch head of 2024-06-07",
        ),
        P2PSource(
            "tinygrad-565.57.01",
            TINYGRAD_URL,
            "565.57.01-p2p",
            "9e39420bc4cb50cd7f8033ac6dd5c5583fd07567",
            "565.57.01",
            (AMPERE, ADA),
            "branch head of 2024-12-17",
        ),
        P2PSource(
            "aikitoria-560.35.03",
            AIKITORIA_URL,
            "560.35.03-p2p",
            "2a5e88a620b5ef1ef6166c8e742b5cbd4f507482",
            "560.35.03",
            (AMPERE, ADA),
        ),
        P2PSource(
            "aikitoria-565.77",
            AIKITORIA_URL,
            "565.77-p2p",
            "b032e06c099478d527eaa578488fd6debf7b08a0",
            "565.77",
            (AMPERE, ADA),
        ),
        P2PSource(
            "aikitoria-570.86.16",
            AIKITORIA_URL,
            "570.86.16-p2p",
            "0e943687150e438f265b6fe2b0f6b8bae66050fe",
            "570.86.16",
            (AMPERE, ADA, BLACKWELL),
            "branch head of 2025-01-31; covers RTX 3090, 4090 and 5090",
        ),
    )
}


def entries_for_version(version: str) -> list:
    """Catalog entries built for exactly this driver version."""
    return [s for s in P2P_CATALOG.values() if s.driver_version == version]


def lookup(name: str) -> Optional[P2PSource]:
    return P2P_CATALOG.get(name)
