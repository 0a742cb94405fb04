"""Bring labs up and down: simulated rigs as systemd containers reached over SSH.

A lab named NAME is:

- a Docker network ``rigctl-NAME`` and containers ``rigctl-NAME-rig-<i>`` (hostname
  ``lab-rig-<i>``), all labelled ``io.rigctl.lab=NAME``; each publishes sshd on
  ``127.0.0.1:<port>`` only;
- a directory ``labs/NAME/`` (see :func:`rigctl.paths.labs_dir`) holding the lab's client
  key, the rigs' host keys (generated here, never trusted on first use), ``known_hosts``,
  ``inventory.yml`` and ``lab.json``.

Everything is found again by its label, so :func:`lab_down` cleans up a half-created lab
and :func:`lab_up` repairs one (containers removed by hand are recreated).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Sequence

from rigctl.errors import InputError, RigctlError
from rigctl.lab import docker, image, profiles
from rigctl.lab.checks import _resolve_mirror_dir, _resolve_profiles, check_inotify
from rigctl.lab.container import _create_rig, _ensure_network, _refresh_rig, create_argv
from rigctl.lab.fanout import Log, _parallel, _raise_collected, _stderr
from rigctl.lab.model import (
    DEFAULT_NAME,
    DEFAULT_PORT_BASE,
    DEFAULT_RELEASE,
    LAB_MIRROR_URL,
    LABEL_LAB,
    Lab,
    Rig,
    allocate_ports,
    check_mirror,
    check_mirror_dir,
    check_name,
    check_port_base,
    check_release,
    check_rigs,
    container_name,
    default_mirror,
    host_key_path,
    lab_dir,
    load_state,
    network_name,
    now_iso,
    port_is_free,
    rig_name,
)
from rigctl.lab.readiness import _start_mirror, _wait_mirror, _wait_rig
from rigctl.lab.ssh import _keygen, _tool, ssh_argv, ssh_probe, write_lab_files
from rigctl.lab.state import _containers, _require_lab, _taken_ports, discover
from rigctl.lab.status import lab_status, list_labs
from rigctl.paths import labs_dir

__all__ = [
    "DEFAULT_TIMEOUT",
    "create_argv",
    "discover",
    "lab_down",
    "lab_restart",
    "lab_status",
    "lab_up",
    "list_labs",
    "ssh_argv",
    "ssh_probe",
    "write_lab_files",
]

DEFAULT_TIMEOUT = 180.0


def lab_up(
    name: str = DEFAULT_NAME,
    rigs: int | None = None,
    profile: str | None = None,
    profiles_per_rig: Sequence[str] | None = None,
    release: str | None = None,
    mirror: str | None = None,
    port_base: int = DEFAULT_PORT_BASE,
    timeout: float = DEFAULT_TIMEOUT,
    log: Log = _stderr,
    mirror_dir: str | os.PathLike | None = None,
) -> Lab:
    """Create or repair the lab `name` with `rigs` rigs and wait until all are reachable.

    Idempotent: running rigs are kept, stopped ones started, missing ones created.
    `profile` applies to every rig, `profiles_per_rig` gives one per rig; without either,
    existing rigs keep theirs and new ones get the default (4x3090). Raises InputError
    (exit 2) for bad input before anything is touched.

    `mirror` is the Debian archive the image is built from. `mirror_dir` is a directory on
    this machine that every rig serves itself at LAB_MIRROR_URL (bind-mounted read-only at
    LAB_MIRROR_MOUNT, HTTP on the rig's loopback by LAB_MIRROR_UNIT, enabled for reboots).
    It is fixed when the lab is created: None keeps the lab's, a different one is refused.
    """
    t0 = time.monotonic()
    check_name(name)
    check_port_base(port_base)
    if rigs is not None:
        check_rigs(rigs)
    if release is not None:
        check_release(release)
    mirror = check_mirror(mirror) if mirror else None
    if mirror_dir is not None:
        mirror_dir = check_mirror_dir(mirror_dir)
    if profile and profiles_per_rig:
        raise InputError(
            "give either --profile or --profiles, not both",
            fix="`--profiles P1,P2,...` sets one profile per rig",
        )
    for p in sorted({*(profiles_per_rig or ()), *([profile] if profile else [])}):
        profiles.check_profile(p.strip())
    _tool("ssh")
    _tool("ssh-keygen")
    docker.check_engine()

    state, containers = discover(name)
    existing_profiles = {r.index: r.profile for r in state.rigs} if state else {}
    for i, c in containers.items():
        existing_profiles.setdefault(i, c["profile"] or profiles.DEFAULT_PROFILE)
    n, wanted = _resolve_profiles(existing_profiles, rigs, profile, profiles_per_rig)
    beyond = sorted(i for i in existing_profiles if i > n)
    if beyond:
        have = max(existing_profiles)
        raise InputError(
            f"lab {name!r} has {have} rigs; --rigs {n} would drop " + ", ".join(rig_name(i) for i in beyond),
            fix=f"`rigctl lab down --name {name}` first, then `rigctl lab up --name {name} "
            f"--rigs {n}` (a lab only grows in place)",
        )
    if state and state.rigs and release and release != state.release:
        raise InputError(
            f"lab {name!r} runs Debian {state.release}, not {release}",
            fix=f"`rigctl lab down --name {name}` first to change the release",
        )

    lab = state or Lab(name=name)
    lab.mirror_dir = _resolve_mirror_dir(name, lab, containers, mirror_dir)
    if not lab.rigs:
        lab.release = release or DEFAULT_RELEASE
        lab.mirror = check_mirror(mirror or default_mirror())
    elif mirror and mirror != lab.mirror:
        log(
            f"note: lab {name!r} was built from {lab.mirror}; keeping it "
            "(`lab down` first to change the mirror)"
        )
    lab.created = lab.created or now_iso()
    lab.network = network_name(name)

    # The plan: which rigs are kept (refreshed), which are (re)created. A container whose
    # host key is gone on this side cannot be trusted over SSH: it is recreated.
    keep: dict[int, dict] = {}
    recreate: list[dict] = []
    for i in range(1, n + 1):
        c = containers.get(i)
        if c is None:
            continue
        if host_key_path(name, i).exists() and c["port"]:
            keep[i] = c
        else:
            recreate.append(c)
    new = n - len(keep)
    stopped = sum(1 for c in keep.values() if c["state"] != "running")
    running = sum(1 for c in _containers() if c["state"] == "running")
    check_inotify(new + stopped, running)  # last input check: nothing touched before it

    # Image: the one the lab already uses if it is still there, else the current recipe.
    if not (lab.image and docker.image_exists(lab.image)):
        lab.image = image.ensure_image(lab.release, lab.mirror, log)

    lab_dir(name).mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(lab_dir(name), 0o700)
    client_pub = _keygen(lab.key, f"rigctl-lab-{name}")
    _ensure_network(name)
    for c in recreate:
        log(f"  {rig_name(c['index'])}: its host key is gone; recreating the container")
        docker.run(["rm", "-f", c["id"]], check=False)

    by_index = {r.index: r for r in lab.rigs}
    lock = threading.Lock()
    others = _taken_ports(name)
    taken = others | {r.port for r in lab.rigs} | {c["port"] for c in keep.values()}

    def alloc() -> int:
        with lock:
            port = allocate_ports(1, port_base, taken)[0]
            taken.add(port)
            return port

    to_create: list[Rig] = []
    to_refresh: list[tuple[Rig, dict]] = []
    for i in range(1, n + 1):
        gpu_count = profiles.gpu_count(wanted[i])
        rig = by_index.get(i)
        if i in keep:
            c = keep[i]
            rig = Rig(i, c["port"], wanted[i], gpu_count)
            to_refresh.append((rig, c))
        else:
            if rig is None or rig.port in others or not port_is_free(rig.port):
                port = alloc()
            else:
                port = rig.port
            rig = Rig(i, port, wanted[i], gpu_count)
            to_create.append(rig)
        _keygen(host_key_path(name, i), f"{rig_name(i)}.{name}.rigctl-lab")
        by_index[i] = rig
    lab.rigs = [by_index[i] for i in sorted(by_index)]

    if to_create:
        log(f"starting {len(to_create)} rig(s) of lab {name!r} ({lab.image})")
    errors = _parallel(lambda r: _create_rig(lab, r, client_pub, alloc), to_create, 8)
    errors += _parallel(
        lambda rc: _refresh_rig(lab, rc[0], rc[1], existing_profiles[rc[0].index], client_pub, log),
        to_refresh,
        8,
    )
    write_lab_files(lab)  # before waiting: `lab down`/`status` work even if a rig hangs
    _raise_collected(errors, f"lab up {name}")

    log(f"waiting for {n} rig(s): systemd and SSH (timeout {timeout:.0f} s)")
    deadline = time.monotonic() + timeout
    results: dict[int, tuple[str, list[str]]] = {}

    def wait(r: Rig) -> None:
        results[r.index] = _wait_rig(lab, r, deadline)

    errors = _parallel(wait, lab.rigs, 32)
    _raise_collected(errors, f"lab up {name}")
    if lab.mirror_dir:
        log(f"serving {lab.mirror_dir} in every rig at {LAB_MIRROR_URL}")
        errors = _parallel(lambda r: _start_mirror(lab, r, deadline), lab.rigs, 32)
        _raise_collected(errors, f"lab up {name}")
    for r in lab.rigs:
        st, failed = results[r.index]
        if st == "degraded":
            log(f"  {r.name}: systemd degraded, failed units: {', '.join(failed) or '?'}")
    write_lab_files(lab)
    log(f"lab {name!r}: {n} rig(s) up in {time.monotonic() - t0:.0f} s")
    return lab


# --- restart, down -------------------------------------------------------------------


def lab_restart(
    name: str, rig: str | int, timeout: float = DEFAULT_TIMEOUT, log: Log = _stderr
) -> tuple[str, list[str]]:
    """Restart one rig's container (a reboot: /run is wiped) and wait until it is back
    (and, with a mirror directory, until the rig serves it again)."""
    lab = _require_lab(name)
    r = lab.rig(rig)
    if lab.mirror_dir and not os.path.isdir(lab.mirror_dir):
        raise InputError(
            f"lab {name!r} serves the mirror directory {lab.mirror_dir}, which is gone",
            fix=f"recreate {lab.mirror_dir} before restarting a rig, or `rigctl lab down --name {name}`",
        )
    docker.check_engine()
    log(f"restarting {r.name} ({r.container})")
    docker.run(
        ["restart", "-t", "20", r.container or container_name(name, r.index)],
        what=f"restarting {r.name}",
        timeout=120,
    )
    deadline = time.monotonic() + timeout
    result = _wait_rig(lab, r, deadline)
    if lab.mirror_dir:
        _wait_mirror(lab, r, deadline)  # the unit is enabled: it comes back by itself
    return result


def lab_down(name: str = DEFAULT_NAME, purge_image: bool = False, log: Log = _stderr) -> dict:
    """Remove every container, network and file of the lab, and nothing else.

    With purge_image the lab image is removed too (unless another lab still uses it).
    Works on half-created labs: containers and networks are found by their label.
    """
    check_name(name)
    docker.check_engine()
    state = load_state(name)
    containers = _containers(name)
    images = {c["image"] for c in containers}
    if state and state.image:
        images.add(state.image)
    removed: dict = {"containers": [], "networks": [], "dir": None, "images": []}
    if containers:
        ids = [c["id"] for c in containers]
        docker.run(["rm", "-f", "-v", *ids], what="removing lab containers", timeout=300)
        removed["containers"] = sorted(c["name"] for c in containers)
    nets = docker.lines(["network", "ls", "--filter", f"label={LABEL_LAB}={name}", "--format", "{{.Name}}"])
    for net in nets:
        docker.run(["network", "rm", net], what=f"removing network {net}")
    removed["networks"] = nets
    d = lab_dir(name)
    if d.is_dir() and d.resolve().parent == labs_dir().resolve():
        shutil.rmtree(d)
        removed["dir"] = str(d)
    if purge_image:
        if not images:
            images = {image.image_tag(DEFAULT_RELEASE, default_mirror())}
        for tag in sorted(images):
            try:
                if image.remove_image(tag):
                    removed["images"].append(tag)
            except RigctlError as exc:
                log(f"note: image kept: {exc.message}")
    what = []
    if removed["containers"]:
        what.append(f"{len(removed['containers'])} container(s)")
    if nets:
        what.append("network " + ", ".join(nets))
    if removed["dir"]:
        what.append(f"directory {removed['dir']}")
    what.extend(f"image {t}" for t in removed["images"])
    if what:
        log(f"lab {name!r} removed: " + "; ".join(what))
    else:
        log(f"lab {name!r}: nothing to remove")
    if not purge_image and (removed["containers"] or removed["dir"]):
        log("  (the lab image is kept for the next `lab up`; `--purge-image` removes it)")
    return removed
