"""What exists now: a lab's containers (found by label), its recorded state, its ports."""

from __future__ import annotations

from rigctl.errors import InputError
from rigctl.lab import docker, profiles
from rigctl.lab.model import (
    DEFAULT_NAME,
    LABEL_LAB,
    LABEL_MIRROR_DIR,
    LABEL_PORT,
    LABEL_PROFILE,
    LABEL_RIG,
    Lab,
    Rig,
    check_name,
    load_state,
    network_name,
    rig_index,
)
from rigctl.paths import labs_dir


def _containers(name: str | None = None) -> list[dict]:
    """Lab containers (of one lab, or of every lab) as dicts, from their labels."""
    flt = f"{LABEL_LAB}={name}" if name else LABEL_LAB
    fmt = "\t".join(
        [
            "{{.ID}}",
            "{{.Names}}",
            "{{.State}}",
            "{{.Image}}",
            f'{{{{.Label "{LABEL_LAB}"}}}}',
            f'{{{{.Label "{LABEL_RIG}"}}}}',
            f'{{{{.Label "{LABEL_PORT}"}}}}',
            f'{{{{.Label "{LABEL_PROFILE}"}}}}',
            f'{{{{.Label "{LABEL_MIRROR_DIR}"}}}}',
        ]
    )
    rows = []
    for line in docker.lines(["ps", "-a", "--no-trunc", "--filter", f"label={flt}", "--format", fmt]):
        f = line.split("\t")
        if len(f) < 8:
            continue
        rows.append(
            {
                "id": f[0],
                "name": f[1],
                "state": f[2],
                "image": f[3],
                "lab": f[4],
                "index": rig_index(f[5]) if f[5] else None,
                "port": int(f[6]) if f[6].isdigit() else None,
                "profile": f[7],
                "mirror_dir": f[8] if len(f) > 8 else "",
            }
        )
    return rows


def _taken_ports(exclude_lab: str) -> set[int]:
    """Ports other labs on this machine hold (running or not)."""
    taken: set[int] = set()
    for c in _containers():
        if c["lab"] != exclude_lab and c["port"]:
            taken.add(c["port"])
    root = labs_dir()
    if root.is_dir():
        for d in root.iterdir():
            if d.name == exclude_lab or not d.is_dir():
                continue
            other = load_state(d.name)
            if other:
                taken.update(r.port for r in other.rigs)
    return taken


def discover(name: str) -> tuple[Lab | None, dict[int, dict]]:
    """The lab's recorded state (or None) and its containers by rig index."""
    state = load_state(name)
    containers = {}
    for c in _containers(name):
        if c["index"] is not None:
            containers[c["index"]] = c
    if state is None and containers:
        # lab.json lost: rebuild what we can from the labels.
        state = Lab(name=name, network=network_name(name))
        for i, c in sorted(containers.items()):
            if c["port"]:
                prof = c["profile"] or profiles.DEFAULT_PROFILE
                state.rigs.append(Rig(i, c["port"], prof, 0, c["name"], c["id"]))
                state.image = state.image or c["image"]
                state.mirror_dir = state.mirror_dir or c["mirror_dir"]
    return state, containers


def _no_lab(name: str) -> InputError:
    return InputError(
        f"no lab named {name!r} on this machine",
        fix="start it with `rigctl lab up"
        + ("" if name == DEFAULT_NAME else f" --name {name}")
        + "` (labs: `rigctl lab list`)",
    )


def _require_lab(name: str) -> Lab:
    check_name(name)
    lab = load_state(name)
    if lab is None:
        raise _no_lab(name)
    return lab
