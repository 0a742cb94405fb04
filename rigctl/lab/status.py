"""Reading labs: the status of a lab's rigs, the labs on this machine."""

from __future__ import annotations

from rigctl.errors import InputError
from rigctl.lab import docker
from rigctl.lab.fanout import _parallel, _raise_collected
from rigctl.lab.model import (
    DEFAULT_NAME,
    LAB_MIRROR_UNIT,
    LAB_MIRROR_URL,
    Rig,
    check_name,
    container_name,
    load_state,
    rig_index,
)
from rigctl.lab.ssh import ssh_probe
from rigctl.lab.state import _containers, _no_lab, discover
from rigctl.paths import labs_dir


def lab_status(name: str = DEFAULT_NAME, probe: bool = True) -> dict:
    """The lab's rigs: container state, port, profile, systemd state, SSH reachability."""
    check_name(name)
    docker.check_engine()
    state, containers = discover(name)
    if state is None:
        raise _no_lab(name)
    rows: list[dict] = []

    def one(r: Rig) -> None:
        c = containers.get(r.index)
        row = {
            "rig": r.name,
            "container": c["name"] if c else container_name(name, r.index),
            "state": c["state"] if c else "missing",
            "port": r.port,
            "profile": r.profile,
            "gpu_count": r.gpu_count,
            "systemd": None,
            "failed_units": [],
            "ssh": False,
            "mirror": None,
        }
        if c and c["state"] == "running" and probe:
            res = docker.exec_(c["name"], ["systemctl", "is-system-running"], timeout=20)
            row["systemd"] = res.stdout.strip() or "unknown"
            if row["systemd"] == "degraded":
                res = docker.exec_(c["name"], ["systemctl", "--failed", "--plain", "--no-legend"])
                row["failed_units"] = [ln.split()[0] for ln in res.stdout.splitlines() if ln.split()]
            row["ssh"] = ssh_probe(state, r, timeout=3)[0]
            if state.mirror_dir:
                res = docker.exec_(c["name"], ["systemctl", "is-active", LAB_MIRROR_UNIT], timeout=20)
                row["mirror"] = res.stdout.strip() or "unknown"
        rows.append(row)

    _raise_collected(_parallel(one, state.rigs, 16), f"lab status {name}")
    rows.sort(key=lambda row: rig_index(row["rig"]) or 0)
    return {
        "name": name,
        "image": state.image,
        "release": state.release,
        "network": state.network,
        "created": state.created,
        "inventory": str(state.inventory),
        "mirror_dir": state.mirror_dir or None,
        "mirror_url": LAB_MIRROR_URL if state.mirror_dir else None,
        "rigs": rows,
    }


def list_labs() -> list[dict]:
    """Labs on this machine: from the labs directory and from container labels."""
    found: dict[str, dict] = {}
    root = labs_dir()
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if d.is_dir():
                st = load_state(d.name)
                found[d.name] = {
                    "name": d.name,
                    "rigs": len(st.rigs) if st else 0,
                    "running": 0,
                    "inventory": str(d / "inventory.yml"),
                    "mirror_dir": (st.mirror_dir or None) if st else None,
                }
    try:
        containers = _containers()
    except InputError:
        containers = []  # no engine: list what the directory knows
    for c in containers:
        entry = found.setdefault(
            c["lab"],
            {
                "name": c["lab"],
                "rigs": 0,
                "running": 0,
                "inventory": None,
                "mirror_dir": c["mirror_dir"] or None,
            },
        )
        entry["running"] += c["state"] == "running"
        if entry["rigs"] == 0 and entry["inventory"] is None:
            entry["rigs"] = sum(1 for x in containers if x["lab"] == c["lab"])
    return [found[k] for k in sorted(found)]
