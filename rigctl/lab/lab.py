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
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rigctl.core.constants import SIMGPU_DIR, SIMGPU_STATE_DIR, SIMGPU_SYSFS_ROOT
from rigctl.errors import InputError, RigctlError
from rigctl.lab import docker, image, profiles
from rigctl.lab.model import (
    DEFAULT_NAME,
    DEFAULT_PORT_BASE,
    DEFAULT_RELEASE,
    INOTIFY_PER_RIG,
    LAB_MIRROR_MOUNT,
    LAB_MIRROR_UNIT,
    LAB_MIRROR_UNIT_PATH,
    LAB_MIRROR_URL,
    LABEL_LAB,
    LABEL_MIRROR_DIR,
    LABEL_PORT,
    LABEL_PROFILE,
    LABEL_RIG,
    RIG_UID,
    RIG_USER,
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
    host_pub_path,
    inotify_error,
    inotify_shortfall,
    lab_dir,
    load_state,
    mirror_unit_text,
    network_name,
    now_iso,
    port_is_free,
    render_inventory,
    render_known_hosts,
    rig_index,
    rig_name,
    save_state,
    tar_stream,
    write_private,
)
from rigctl.paths import labs_dir

Log = Callable[[str], None]

DEFAULT_TIMEOUT = 180.0
SIMGPU_WIPE = (SIMGPU_DIR, SIMGPU_SYSFS_ROOT, SIMGPU_STATE_DIR)
_PORT_ERRORS = ("port is already allocated", "address already in use")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- tools on the controller ---------------------------------------------------------


def _tool(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        raise InputError(
            f"{name} is not installed: lab rigs are reached over SSH",
            fix="`sudo apt-get install openssh-client`",
        )
    return exe


def _keygen(path: Path, comment: str) -> str:
    """Generate an ed25519 key pair at path (if missing); return the public key line."""
    pub = path.with_name(path.name + ".pub")
    if not (path.exists() and pub.exists()):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        for p in (path, pub):
            if p.exists():
                p.unlink()
        proc = subprocess.run(
            [_tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if proc.returncode != 0:
            raise RigctlError(f"ssh-keygen failed for {path}: {proc.stderr.strip()}")
    os.chmod(path, 0o600)
    return pub.read_text().strip()


def ssh_base_argv(lab: Lab, rig: Rig) -> list[str]:
    """ssh options for a rig: the lab key, its known_hosts, host key checking on."""
    return [
        _tool("ssh"),
        "-i",
        str(lab.key),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={lab.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        # only `lab up` writes the lab's known_hosts: ssh must not add keys to it
        "-o",
        "UpdateHostKeys=no",
        "-p",
        str(rig.port),
        f"{RIG_USER}@127.0.0.1",
    ]


def ssh_argv(name: str, rig: str | int, command: Sequence[str] = ()) -> list[str]:
    """The argv of `ssh` into a lab rig (what `rigctl lab ssh` execs)."""
    lab = _require_lab(name)
    r = lab.rig(rig)
    argv = ssh_base_argv(lab, r)
    # `--` before the destination: nothing after it is read as an ssh option.
    return [*argv[:-1], "--", argv[-1], *command]


def ssh_probe(lab: Lab, rig: Rig, timeout: float = 5) -> tuple[bool, str]:
    """(True, '') when `ssh rig true` works with the lab key and known_hosts."""
    base = ssh_base_argv(lab, rig)
    argv = [
        *base[:-1],
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={int(timeout)}",
        "-o",
        "LogLevel=ERROR",
        base[-1],
        "true",
    ]
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout + 10, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return False, "ssh timed out"
    if proc.returncode == 0:
        return True, ""
    return False, proc.stderr.strip() or f"ssh exited {proc.returncode}"


# --- what exists now -----------------------------------------------------------------


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


# --- lab up ------------------------------------------------------------------------


def _inotify_limit() -> int | None:
    try:
        return int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    except (OSError, ValueError):
        return None


def _inotify_used_by_root() -> int | None:
    """inotify instances held by root's processes (containers run as root), or None
    when this user cannot see them."""
    if os.geteuid() != 0:
        return None
    used = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            status = (proc / "status").read_text()
            uid = next(ln.split()[1] for ln in status.splitlines() if ln.startswith("Uid:"))
            if uid != "0":
                continue
            for fd in (proc / "fd").iterdir():
                try:
                    if os.readlink(fd) == "anon_inode:inotify":
                        used += 1
                except OSError:
                    continue
        except (OSError, StopIteration):
            continue
    return used


def check_inotify(new_rigs: int, running_rigs: int) -> None:
    """InputError (before anything is started) when the rigs would run out of inotify
    instances: systemd then hangs at boot or restarts in a loop."""
    limit = _inotify_limit()
    if limit is None or new_rigs <= 0:
        return
    used = _inotify_used_by_root()
    if used is None:
        used = INOTIFY_PER_RIG * running_rigs + 16
    suggest = inotify_shortfall(limit, used, new_rigs)
    if suggest is not None:
        raise inotify_error(limit, used, new_rigs, suggest)


def _resolve_profiles(
    n_existing: dict[int, str],
    rigs: int | None,
    profile: str | None,
    profile_list: Sequence[str] | None,
) -> tuple[int, dict[int, str]]:
    """(number of rigs, profile per rig index)."""
    if profile and profile_list:
        raise InputError(
            "give either --profile or --profiles, not both",
            fix="`--profiles P1,P2,...` sets one profile per rig",
        )
    if profile_list:
        profile_list = [p.strip() for p in profile_list]
        if rigs is None:
            rigs = len(profile_list)
        if len(profile_list) != rigs:
            raise InputError(
                f"--profiles gives {len(profile_list)} profile(s) for {rigs} rig(s)",
                fix="give exactly one profile per rig (or leave out --rigs)",
            )
    if rigs is None:
        rigs = max(n_existing) if n_existing else 1
    check_rigs(rigs)
    wanted = {}
    for i in range(1, rigs + 1):
        if profile_list:
            wanted[i] = profile_list[i - 1]
        elif profile:
            wanted[i] = profile
        else:
            wanted[i] = n_existing.get(i) or profiles.DEFAULT_PROFILE
    for p in sorted(set(wanted.values())):
        profiles.check_profile(p)
    return rigs, wanted


def _ensure_network(name: str) -> str:
    net = network_name(name)
    res = docker.run(
        ["network", "inspect", "--format", f'{{{{index .Labels "{LABEL_LAB}"}}}}', net], check=False
    )
    if res.returncode == 0:
        if res.stdout.strip() != name:
            raise InputError(
                f"a Docker network named {net} exists but was not made by this lab",
                fix=f"remove it (`docker network rm {net}`) or use another `--name`",
            )
        return net
    docker.run(["network", "create", "--label", f"{LABEL_LAB}={name}", net], what=f"creating network {net}")
    return net


def _rig_files(lab: Lab, rig: Rig, client_pub: str, with_host_key: bool) -> list[tuple]:
    files: list[tuple] = []
    if with_host_key:
        hk = host_key_path(lab.name, rig.index)
        files.append(("/etc/ssh/ssh_host_ed25519_key", hk.read_bytes(), 0o600, 0, 0))
        pub = host_pub_path(lab.name, rig.index).read_bytes()
        files.append(("/etc/ssh/ssh_host_ed25519_key.pub", pub, 0o644, 0, 0))
    files.append(
        (f"/home/{RIG_USER}/.ssh/authorized_keys", (client_pub + "\n").encode(), 0o600, RIG_UID, RIG_UID)
    )
    files.extend(profiles.profile_files(rig.profile))
    if lab.mirror_dir:
        files.append((LAB_MIRROR_UNIT_PATH, mirror_unit_text().encode(), 0o644, 0, 0))
    return files


def _copy_in(container: str, files: list[tuple], what: str) -> None:
    docker.run(
        ["cp", "-a", "-", f"{container}:/"], input=tar_stream(files), what=f"copying files into {what}"
    )


def create_argv(lab: Lab, rig: Rig) -> list[str]:
    """`docker create` arguments of a rig's container (ports, labels, mounts, image)."""
    mirror: list[str] = []
    if lab.mirror_dir:
        # Bind mounts are fixed at creation: `lab up` refuses to change the directory later.
        mirror = [
            "--label",
            f"{LABEL_MIRROR_DIR}={lab.mirror_dir}",
            "-v",
            f"{lab.mirror_dir}:{LAB_MIRROR_MOUNT}:ro",
        ]
    return [
        # --pull never: the image is local; never ask a registry for it.
        "create",
        "--pull",
        "never",
        "--name",
        container_name(lab.name, rig.index),
        "--hostname",
        rig.name,
        "--network",
        lab.network,
        "--network-alias",
        rig.name,
        "--label",
        f"{LABEL_LAB}={lab.name}",
        "--label",
        f"{LABEL_RIG}={rig.name}",
        "--label",
        f"{LABEL_PORT}={rig.port}",
        "--label",
        f"{LABEL_PROFILE}={rig.profile}",
        "--restart",
        "unless-stopped",
        "--stop-signal",
        "SIGRTMIN+3",
        "--tmpfs",
        "/run",
        "--tmpfs",
        "/run/lock",
        "-v",
        "/sys/fs/cgroup:/sys/fs/cgroup:ro",
        *mirror,
        "-e",
        "container=docker",
        "-p",
        f"127.0.0.1:{rig.port}:22",
        lab.image,
        "/lib/systemd/systemd",
    ]


def _create_rig(lab: Lab, rig: Rig, client_pub: str, alloc: Callable[[], int]) -> None:
    """Create, fill and start one rig's container; picks another port if its is taken."""
    cname = container_name(lab.name, rig.index)
    for attempt in range(4):
        args = create_argv(lab, rig)
        res = docker.run(args, check=False)
        if res.returncode != 0:
            fix = None
            if "already in use" in res.stderr:
                fix = (
                    f"a container named {cname} exists but is not part of lab "
                    f"{lab.name!r}: remove it (`docker rm -f {cname}`) or use another "
                    "`--name`"
                )
            raise docker.DockerError(
                f"creating {rig.name} failed: {res.stderr.strip()}", stderr=res.stderr, fix=fix
            )
        rig.container_id = res.stdout.strip()
        rig.container = cname
        _copy_in(cname, _rig_files(lab, rig, client_pub, True), rig.name)
        res = docker.run(["start", cname], check=False)
        if res.returncode == 0:
            return
        if attempt < 3 and any(s in res.stderr.lower() for s in _PORT_ERRORS):
            # Lost a race for the port: remove the container just made, take the next port.
            docker.run(["rm", "-f", rig.container_id], check=False)
            rig.port = alloc()
            continue
        raise docker.DockerError(
            f"starting {rig.name} ({cname}) failed: {res.stderr.strip()}", stderr=res.stderr
        )


def _refresh_rig(lab: Lab, rig: Rig, c: dict, previous: str, client_pub: str, log: Log) -> None:
    """An existing container: start it if stopped, refresh key and simulator files.

    `previous` is the profile the rig had: on a change, the old simulator files and
    state are removed first; otherwise the runtime state (/run) is kept.
    """
    cname = c["name"]
    rig.container, rig.container_id = cname, c["id"]
    if c["state"] != "running":
        log(f"  starting {rig.name} ({c['state']})")
        res = docker.run(["start", cname], check=False)
        if res.returncode != 0:
            fix = None
            if any(s in res.stderr.lower() for s in _PORT_ERRORS):
                fix = (
                    f"port {rig.port} is used by something else now: "
                    f"`rigctl lab down --name {lab.name}` then `lab up` again"
                )
            raise docker.DockerError(
                f"starting {rig.name} ({cname}) failed: {res.stderr.strip()}", stderr=res.stderr, fix=fix
            )
    if previous != rig.profile:
        log(f"  {rig.name}: profile {previous} -> {rig.profile}")
        docker.exec_(cname, ["rm", "-rf", *SIMGPU_WIPE], check=True)
    files = _rig_files(lab, rig, client_pub, False)
    _copy_in(cname, files, rig.name)
    if any(f[0].startswith(("/etc/systemd/", "/lib/systemd/", "/usr/lib/systemd/")) for f in files):
        docker.exec_(cname, ["systemctl", "daemon-reload"])


def _wait_rig(lab: Lab, rig: Rig, deadline: float) -> tuple[str, list[str]]:
    """Wait for systemd to finish booting and for SSH to let us in.

    Returns (systemd state, failed units); raises RigctlError naming the rig on timeout.
    """
    cname = rig.container
    state, err = "", ""
    while True:
        res = docker.exec_(cname, ["systemctl", "is-system-running"], timeout=20)
        state = res.stdout.strip()
        if state in ("running", "degraded"):
            break
        err = (res.stderr or "").strip()
        if time.monotonic() > deadline:
            fix = f"look at `docker logs {cname}` and `docker exec {cname} systemctl list-jobs`"
            logs = docker.run(["logs", "--tail", "200", cname], check=False)
            jour = docker.exec_(cname, ["journalctl", "-b", "--no-pager", "-n", "300"])
            if "Too many open files" in logs.stdout + logs.stderr + jour.stdout:
                fix = (
                    "the machine ran out of inotify instances: raise "
                    "fs.inotify.max_user_instances (`sudo sysctl -w "
                    "fs.inotify.max_user_instances=1024`), then `lab up` again"
                )
            raise RigctlError(
                f"{rig.name} ({cname}): systemd did not finish booting (state {state or err or 'unknown'!r})",
                fix=fix,
            )
        time.sleep(0.5)
    failed: list[str] = []
    if state == "degraded":
        res = docker.exec_(cname, ["systemctl", "--failed", "--plain", "--no-legend"])
        failed = [ln.split()[0] for ln in res.stdout.splitlines() if ln.split()]
    while True:
        ok, why = ssh_probe(lab, rig)
        if ok:
            return state, failed
        if "host key" in why.lower() or "identification has changed" in why.lower():
            raise RigctlError(
                f"{rig.name}: SSH host key verification failed on 127.0.0.1:{rig.port}: {why}",
                fix=f"something else answers on that port, or the rig lost its key: "
                f"`rigctl lab down --name {lab.name}` then `lab up`",
            )
        if time.monotonic() > deadline:
            raise RigctlError(
                f"{rig.name}: no SSH login on 127.0.0.1:{rig.port} as {RIG_USER}: {why}",
                fix=f"check `docker exec {cname} systemctl status ssh` and "
                f"`rigctl lab status --name {lab.name}`",
            )
        time.sleep(0.5)


_MIRROR_PROBE = (
    "import sys, urllib.request\n"
    "try:\n"
    f"    urllib.request.urlopen({LAB_MIRROR_URL!r}, timeout=3).read(1)\n"
    "except Exception as exc:\n"
    "    sys.exit(str(exc))\n"
)


def _wait_mirror(lab: Lab, rig: Rig, deadline: float) -> None:
    """Wait until the rig's mirror unit answers at LAB_MIRROR_URL (from inside the rig)."""
    cname = rig.container or container_name(lab.name, rig.index)
    deadline = max(deadline, time.monotonic() + 20)
    while True:
        res = docker.exec_(cname, ["/usr/bin/python3", "-c", _MIRROR_PROBE], timeout=20)
        if res.returncode == 0:
            return
        if time.monotonic() > deadline:
            why = (res.stderr or res.stdout).strip().splitlines()
            raise RigctlError(
                f"{rig.name}: the lab mirror does not answer at {LAB_MIRROR_URL} inside the rig"
                + (f": {why[-1]}" if why else ""),
                fix=f"look at `docker exec {cname} systemctl status {LAB_MIRROR_UNIT}` and "
                f"`docker exec {cname} journalctl -u {LAB_MIRROR_UNIT}`",
            )
        time.sleep(0.3)


def _start_mirror(lab: Lab, rig: Rig, deadline: float) -> None:
    """Enable and start the rig's mirror unit (idempotent), then wait until it answers."""
    cname = rig.container or container_name(lab.name, rig.index)
    res = docker.exec_(cname, ["systemctl", "enable", "--now", LAB_MIRROR_UNIT], timeout=60)
    if res.returncode != 0:
        raise RigctlError(
            f"{rig.name}: cannot start {LAB_MIRROR_UNIT}: {(res.stderr or res.stdout).strip()}",
            fix=f"look at `docker exec {cname} journalctl -u {LAB_MIRROR_UNIT}`",
        )
    _wait_mirror(lab, rig, deadline)


def _parallel(fn, items, workers: int) -> list[Exception]:
    errors: list[Exception] = []
    if not items:
        return errors
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items)))) as ex:
        futs = [ex.submit(fn, it) for it in items]
        for f in futs:
            try:
                f.result()
            except Exception as exc:  # collected and reported together
                errors.append(exc)
    return errors


def _raise_collected(errors: list[Exception], what: str) -> None:
    if not errors:
        return
    if len(errors) == 1:
        raise errors[0]
    lines = [f"{what}: {len(errors)} rigs failed"]
    fixes = []
    for e in errors:
        lines.append(f"  - {getattr(e, 'message', str(e))}")
        if getattr(e, "fix", None) and e.fix not in fixes:
            fixes.append(e.fix)
    raise RigctlError("\n".join(lines), fix="; ".join(fixes[:2]) or None)


def _resolve_mirror_dir(name: str, lab: Lab, containers: dict[int, dict], wanted: str | None) -> str:
    """The mirror directory the lab will have: the one it has (containers keep their bind
    mounts), or `wanted` for a new lab. InputError for a change, or a recorded directory
    that is gone (Docker would serve an empty one made in its place)."""
    exists = bool(lab.rigs or containers)
    have = lab.mirror_dir if lab.rigs else ""
    mounted = {c.get("mirror_dir", "") for c in containers.values()}
    if containers and len(mounted) == 1:
        have = mounted.pop()
    elif len(mounted) > 1:
        raise InputError(
            f"the rigs of lab {name!r} serve different mirror directories: "
            + ", ".join(sorted(d or "(none)" for d in mounted)),
            fix=f"`rigctl lab down --name {name}` first, then `rigctl lab up` again",
        )
    if not exists:
        return wanted or ""
    if wanted is not None and wanted != have:
        what = f"serves {have} to its rigs" if have else "was started without --mirror-dir"
        raise InputError(
            f"lab {name!r} {what}; it cannot serve {wanted} instead",
            fix=f"a rig's directory is mounted when its container is created: `rigctl lab down "
            f"--name {name}` first, then `rigctl lab up --name {name} --mirror-dir {wanted}`"
            + (f" (or leave out --mirror-dir to keep {have})" if have else ""),
        )
    if have and not os.path.isdir(have):
        raise InputError(
            f"lab {name!r} serves the mirror directory {have}, which is gone",
            fix=f"recreate {have}, or `rigctl lab down --name {name}` and start the lab again",
        )
    return have


def write_lab_files(lab: Lab) -> None:
    """known_hosts, inventory.yml and lab.json for the lab as it is now."""
    entries = []
    for r in lab.rigs:
        pub = host_pub_path(lab.name, r.index)
        if pub.exists():
            entries.append((r.port, pub.read_text().strip()))
    write_private(lab.known_hosts, render_known_hosts(entries), 0o644)
    write_private(lab.inventory, render_inventory(lab), 0o644)
    save_state(lab)


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


# --- status, restart, down, list -----------------------------------------------------


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
