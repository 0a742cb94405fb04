"""A rig's container: its network, `docker create` spec, files copied in, creation and refresh."""

from __future__ import annotations

from collections.abc import Callable

from rigctl.core.constants import SIMGPU_DIR, SIMGPU_STATE_DIR, SIMGPU_SYSFS_ROOT
from rigctl.errors import InputError
from rigctl.lab import docker, profiles
from rigctl.lab.fanout import Log
from rigctl.lab.model import (
    LAB_MIRROR_MOUNT,
    LAB_MIRROR_UNIT_PATH,
    LABEL_LAB,
    LABEL_MIRROR_DIR,
    LABEL_PORT,
    LABEL_PROFILE,
    LABEL_RIG,
    RIG_UID,
    RIG_USER,
    Lab,
    Rig,
    container_name,
    host_key_path,
    host_pub_path,
    mirror_unit_text,
    network_name,
    tar_stream,
)

SIMGPU_WIPE = (SIMGPU_DIR, SIMGPU_SYSFS_ROOT, SIMGPU_STATE_DIR)
_PORT_ERRORS = ("port is already allocated", "address already in use")


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
