"""Rules of the P2P verdict's rig variables (rig_p2p_pair_floors): the pair keys are read by
the one reader in rigctl.core.p2pverdict."""

from __future__ import annotations

from typing import Any

from rigctl.core import p2pverdict


def p2p_pair_floors_problem(value: Any) -> tuple[str, str] | None:
    """Every key of rig_p2p_pair_floors names two GPUs (p2pverdict's pair key)."""
    if not isinstance(value, dict):
        return None
    for key in value:
        problem = p2pverdict.pair_key_problem(key)
        if problem:
            return (problem, 'write the pair like "0-1" (GPU indexes) or '
                    '"0000:01:00.0-0000:21:00.0" (bus ids, quoted)')
    return None


def p2p_floor_problem(value: Any) -> tuple[str, str] | None:
    """A pair floor is one of min_link_fraction or min_gbps."""
    if not isinstance(value, dict):
        return None
    given = [k for k in ("min_link_fraction", "min_gbps") if k in value]
    if len(given) != 1:
        return ("a pair floor needs exactly one of min_link_fraction and min_gbps (found: %s)"
                % (", ".join(given) or "neither"), "write it like {min_gbps: 12.0}")
    return None
