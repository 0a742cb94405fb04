"""`rigctl fleet status`: one row per rig from one read-only Ansible run.

The run: the SSH host key gate (rigctl.hostkeys) on every rig first, then
playbooks/fleet_status.yml on the rigs that passed, in check mode, one task per rig (the
rig_status module), with forks sized to the fleet; pipelining and ControlPersist come from
ansible.cfg, and the control sockets are keyed by the host keys the gate accepted. A rig
the gate stopped or Ansible could not reach is one row saying so. The last verify result
and the last rollout come from the records under $RIGCTL_HOME (rigctl.fleet.records).
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from typing import Any

from rigctl.fleet import records

MAX_FORKS = 50
COLUMNS = ["rig", "reachable", "driver", "gpus", "power limits", "cuda", "nccl", "reboot",
           "last verify", "last rollout"]

_TOOLKIT_PKG = re.compile(r"^cuda-toolkit-(\d+)-(\d+)$")
_DEB_UPSTREAM = re.compile(r"^(?:\d+:)?(\d+)\.(\d+)")


@dataclass
class RigStatus:
    name: str
    address: str
    reachable: str  # yes | unreachable | refused | failed
    problem: str = ""
    facts: dict | None = None  # hostfacts.gather()
    driver_record: dict | None = None
    last_verify: dict | None = None
    last_rollout: dict | None = None
    data: dict = field(default_factory=dict)  # the derived fields (as_dict)


def forks_for(n_hosts: int) -> int:
    """One fork per rig up to MAX_FORKS: a read-only single-task play is cheap per fork."""
    return max(1, min(n_hosts, MAX_FORKS))


@contextlib.contextmanager
def _env(**values: str):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --- what a rig's facts say ---------------------------------------------------------------


def toolkits(packages: list[dict] | None) -> list[dict]:
    """Installed CUDA toolkits from the rig's package list: NVIDIA's ``cuda-toolkit-X-Y``
    (release X.Y) and Debian's ``nvidia-cuda-toolkit`` (release from its version,
    ``11.8.89~11.8.0-5~deb12u1`` -> 11.8), sorted by release."""
    out = []
    for p in packages or ():
        m = _TOOLKIT_PKG.match(p.get("name") or "")
        if m:
            out.append({"release": f"{m.group(1)}.{m.group(2)}", "package": p["name"],
                        "version": p.get("version"), "source": "nvidia"})
            continue
        if p.get("name") == "nvidia-cuda-toolkit":
            m = _DEB_UPSTREAM.match(p.get("version") or "")
            if m:
                out.append({"release": f"{m.group(1)}.{m.group(2)}", "package": p["name"],
                            "version": p.get("version"), "source": "debian"})
    return sorted(out, key=lambda t: tuple(int(x) for x in t["release"].split(".")))


def nccl(packages: list[dict] | None) -> dict | None:
    """The installed NCCL (``libnccl2``): {"nccl", "release", "cuda", "version"} or None."""
    from rigctl.core import cuda

    for p in packages or ():
        if p.get("name") == "libnccl2":
            parsed = cuda.parse_nccl_deb_version(p.get("version")) or {}
            return {"version": p.get("version"), **parsed}
    return None


def driver_summary(facts: dict, record: dict | None) -> dict:
    """The driver in one place: what is loaded, what each target kernel would load
    (flavor, version, location), and rigctl's driver record (the P2P fork, branch and
    commit when the module is the patched one)."""
    drv = facts.get("driver") or {}
    loaded = drv.get("loaded") or None
    if loaded and loaded.get("error"):
        loaded = None
    targets = (facts.get("kernel") or {}).get("targets") or []
    modules = drv.get("modules") or {}
    installed = []
    for kernel in targets or sorted(modules):
        mod = modules.get(kernel)
        if mod and mod.get("version"):
            entry = {"flavor": mod.get("flavor"), "version": mod.get("version")}
            if entry not in installed:
                installed.append(entry)
    out = {
        "loaded": ({"flavor": loaded.get("flavor"), "version": loaded.get("version")}
                   if loaded and loaded.get("version") else None),
        "installed": installed,
        "modules": {k: {f: m.get(f) for f in ("version", "flavor", "location", "filename", "module")}
                    for k, m in modules.items()},
        "record": None,
    }
    if record:
        out["record"] = {k: record.get(k) for k in ("flavor", "version", "source", "fork", "branch",
                                                       "commit", "catalog", "build_time")
                         if record.get(k) is not None}
    return out


def driver_text(d: dict) -> str:
    def one(e):
        return f"{e.get('flavor') or '?'} {e.get('version')}"

    if d["installed"]:
        text = ", ".join(one(e) for e in d["installed"])
    elif d["loaded"]:
        text = one(d["loaded"])
    else:
        return "none"
    rec = d.get("record") or {}
    if rec.get("flavor") == "p2p" and rec.get("commit"):
        fork = re.sub(r"\.git$", "", str(rec.get("fork") or "").rstrip("/")).rsplit("/", 1)[-1]
        text += f" [{fork or 'fork'}@{str(rec['commit'])[:12]}]"
    if d["loaded"] and d["installed"] and d["loaded"] not in d["installed"]:
        text += f" (loaded {one(d['loaded'])})"
    return text


def _short_name(name: str) -> str:
    return re.sub(r"^NVIDIA (GeForce )?", "", name or "?")


def gpus_summary(facts: dict) -> dict:
    gpus = facts.get("gpus") or []
    view = facts.get("gpu_view") or "none"
    models: dict[str, int] = {}
    for g in gpus:
        models[_short_name(g.get("name"))] = models.get(_short_name(g.get("name")), 0) + 1
    profile = (facts.get("simulation") or {}).get("profile")
    return {
        "view": view,
        "simulated": view == "simulated",
        "simulation_profile": profile if view == "simulated" else None,
        "count": len(gpus),
        "models": models,
        "power_limits_w": [(g.get("power") or {}).get("current_w") for g in gpus],
        "list": [{"index": g.get("index"), "bus_id": g.get("bus_id"), "name": g.get("name"),
                  "power_limit_w": (g.get("power") or {}).get("current_w"),
                  "simulated": bool(g.get("simulated"))} for g in gpus],
    }


def gpus_text(g: dict) -> str:
    if not g["count"]:
        return "none"
    text = ", ".join(f"{n}x {m}" for m, n in g["models"].items())
    return f"{text} simulated" if g["simulated"] else text


def _watts(w) -> str:
    return f"{int(w)}" if float(w).is_integer() else f"{w:g}"


def power_text(limits: list) -> str:
    known = [w for w in limits if w is not None]
    if not known:
        return "-"
    groups: list[tuple[Any, int]] = []
    for w in known:
        if groups and groups[-1][0] == w:
            groups[-1] = (w, groups[-1][1] + 1)
        else:
            groups.append((w, 1))
    if len(groups) == 1:
        return f"{_watts(groups[0][0])} W" + (f" x{groups[0][1]}" if groups[0][1] > 1 else "")
    return "/".join(_watts(w) for w in known) + " W"


def reboot_summary(facts: dict) -> dict:
    r = facts.get("reboot") or {}
    return {"required": bool(r.get("required")), "reasons": list(r.get("reasons") or []),
            "since": r.get("since")}


def verify_text(v: dict | None) -> str:
    if not v:
        return "-"
    sim = " (simulated)" if v.get("gpu_view") == "simulated" and v.get("result") == "ok" else ""
    return f"{v.get('result')}{sim} {records.age(v.get('time'))}"


def rollout_text(r: dict | None) -> str:
    if not r:
        return "-"
    result = (r.get("rig") or {}).get("result") or r.get("state") or "?"
    return f"{r['id']} {result}"


def summarize(rig: RigStatus) -> dict:
    """The JSON shape of one rig (also what the table shows)."""
    data: dict[str, Any] = {"name": rig.name, "address": rig.address, "reachable": rig.reachable,
                            "problem": rig.problem or None,
                            "last_verify": rig.last_verify, "last_rollout": rig.last_rollout}
    if rig.facts is not None:
        f = rig.facts
        pk = (f.get("driver") or {}).get("packages")
        data.update({
            "os": (f.get("os") or {}).get("pretty_name"),
            "kernel": (f.get("kernel") or {}).get("running"),
            "driver": driver_summary(f, rig.driver_record),
            "gpus": gpus_summary(f),
            "cuda": toolkits(pk),
            "nccl": nccl(pk),
            "reboot": reboot_summary(f),
        })
    return data


def row(data: dict) -> list[str]:
    name = data["name"]
    if data["reachable"] != "yes":
        return [name, data["reachable"].upper()] + ["-"] * 6 + [
            verify_text(data["last_verify"]), rollout_text(data["last_rollout"])]
    g = data["gpus"]
    n = data["nccl"]
    return [
        name,
        "yes",
        driver_text(data["driver"]),
        gpus_text(g),
        power_text(g["power_limits_w"]),
        ", ".join(t["release"] + (" (debian)" if t["source"] == "debian" else "")
                  for t in data["cuda"]) or "-",
        (f"{n.get('nccl') or n['version']}" + (f" (cuda{n['cuda']})" if n.get("cuda") else "")) if n
        else "-",
        "NEEDED" if data["reboot"]["required"] else "no",
        verify_text(data["last_verify"]),
        rollout_text(data["last_rollout"]),
    ]


# --- the run ------------------------------------------------------------------------------


def collect(paths: list[str], inv, selected: list[str], *, verbose: int = 0):
    """Gather every selected rig's status: (list of RigStatus in ``selected`` order, the
    RunResult of the Ansible run)."""
    from rigctl.cli import _run

    with _env(ANSIBLE_FORKS=str(forks_for(len(selected)))):
        # --check: read only even if the play ever grows a task that could change something
        result = _run.run("fleet_status.yml", paths, selected, check=True, verbose=verbose,
                          title="fleet status", kind="fleet-status", quiet=True, summary=False,
                          inv=inv)
    problems: dict[str, tuple[str, str]] = {}
    for f in result.failures:
        if f.host in problems:
            continue
        outcome = "unreachable" if f.unreachable else (
            "refused" if f.task == "SSH host key check" else "failed")
        problems[f.host] = (outcome, f.message.strip().splitlines()[0] if f.message.strip() else "")
    rigs = []
    for host in selected:
        addr = records.address(host, inv.host_vars(host))
        status = (result.host_facts.get(host) or {}).get("rig_status")
        if isinstance(status, dict) and isinstance(status.get("host"), dict):
            rig = RigStatus(host, addr, "yes", facts=status["host"],
                            driver_record=status.get("driver_record"))
        else:
            outcome, message = problems.get(host, ("failed", "no status came back"))
            rig = RigStatus(host, addr, outcome, problem=message)
        rig.last_verify = records.last_verify(host, addr)
        rig.last_rollout = records.last_rollout(host, addr)
        rig.data = summarize(rig)
        rigs.append(rig)
    return rigs, result
