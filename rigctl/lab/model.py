"""Pure parts of the lab: names, validation, port allocation, the files a lab writes.

Nothing here talks to Docker or SSH, so all of it is unit tested directly.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import socket
import tarfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from rigctl.errors import InputError
from rigctl.paths import labs_dir

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")
MAX_RIGS = 32
DEFAULT_NAME = "default"
DEFAULT_PORT_BASE = 22201
RELEASES = ("bookworm", "trixie")
# Debian 13 (trixie) is Debian's stable release since August 2025: what a rig owner
# installing today gets. Debian 12 stays selectable (`rigctl lab up --release bookworm`).
DEFAULT_RELEASE = "trixie"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
MIRROR_ENV = "RIGCTL_LAB_MIRROR"

# Docker labels: everything a lab creates carries LABEL_LAB=<name>, so `lab down` finds
# it even when the lab directory is gone.
LABEL_LAB = "io.rigctl.lab"
LABEL_RIG = "io.rigctl.lab.rig"
LABEL_PORT = "io.rigctl.lab.port"
LABEL_PROFILE = "io.rigctl.lab.profile"
LABEL_IMAGE = "io.rigctl.lab-image"
LABEL_MIRROR_DIR = "io.rigctl.lab.mirror-dir"

# `lab up --mirror-dir DIR`: a controller directory (a local apt repository, say) that every
# rig of the lab serves to itself. DIR is bind-mounted read-only at LAB_MIRROR_MOUNT and a
# systemd unit serves it over HTTP on the rig's own loopback, so roles use LAB_MIRROR_URL
# and the traffic never leaves the rig. The unit is enabled: it is back after a reboot.
LAB_MIRROR_MOUNT = "/srv/rigctl-mirror"
LAB_MIRROR_PORT = 8600
LAB_MIRROR_URL = f"http://127.0.0.1:{LAB_MIRROR_PORT}/"
LAB_MIRROR_UNIT = "rigctl-lab-mirror.service"
LAB_MIRROR_UNIT_PATH = f"/etc/systemd/system/{LAB_MIRROR_UNIT}"

RIG_USER = "rig"
RIG_UID = 1000


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name) or name.endswith("-"):
        raise InputError(
            f"invalid lab name {name!r}",
            fix="use 1 to 31 characters: lowercase letters, digits and '-', starting with "
            "a letter or digit and not ending with '-' (e.g. `--name mylab`)",
        )
    return name


def check_rigs(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_RIGS:
        raise InputError(
            f"invalid number of rigs {n!r}: a lab has 1 to {MAX_RIGS} rigs",
            fix=f"use `--rigs N` with 1 <= N <= {MAX_RIGS}",
        )
    return n


def check_release(release: str) -> str:
    if release not in RELEASES:
        raise InputError(
            f"unsupported Debian release {release!r} for lab rigs",
            fix="use one of: " + ", ".join(RELEASES),
        )
    return release


def check_mirror(mirror: str) -> str:
    if not re.match(r"^(https?|file)://\S+$", mirror or ""):
        raise InputError(
            f"invalid Debian mirror {mirror!r}",
            fix=f"give an http://, https:// or file:// URL of a Debian archive (`--mirror` or ${MIRROR_ENV})",
        )
    return mirror.rstrip("/")


def check_mirror_dir(path: str | os.PathLike) -> str:
    """The absolute, resolved path of an existing directory to serve to the rigs."""
    raw = os.fspath(path) if path is not None else ""
    fix = (
        "give an existing directory on this machine (`--mirror-dir DIR`); each rig serves it "
        f"read-only at {LAB_MIRROR_URL}"
    )
    if not raw.strip():
        raise InputError("--mirror-dir needs a directory", fix=fix)
    p = Path(raw).expanduser()
    if not p.exists():
        raise InputError(f"mirror directory {raw!r} does not exist", fix=fix)
    if not p.is_dir():
        raise InputError(f"mirror directory {raw!r} is not a directory", fix=fix)
    resolved = str(p.resolve())
    if ":" in resolved:
        raise InputError(
            f"mirror directory {resolved!r} has a ':' in its path, which Docker cannot bind-mount",
            fix="move or link it to a path without ':' and give that",
        )
    return resolved


def mirror_unit_text() -> str:
    """The systemd unit that serves LAB_MIRROR_MOUNT on the rig's loopback only."""
    return f"""\
# Written by `rigctl lab up --mirror-dir`: serves the lab's mirror directory (the
# controller's directory bind-mounted read-only at {LAB_MIRROR_MOUNT}) on this rig's
# loopback only, at {LAB_MIRROR_URL}
[Unit]
Description=rigctl lab mirror: {LAB_MIRROR_MOUNT} at {LAB_MIRROR_URL}
After=network.target

[Service]
Type=exec
ExecStart=/usr/bin/python3 -m http.server {LAB_MIRROR_PORT} --bind 127.0.0.1 --directory {LAB_MIRROR_MOUNT}
Restart=on-failure
RestartSec=1

[Install]
WantedBy=multi-user.target
"""


def default_mirror() -> str:
    return os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR


def check_port_base(port: int) -> int:
    if not isinstance(port, int) or not 1024 <= port <= 65535:
        raise InputError(f"invalid port base {port!r}", fix="use a port between 1024 and 65535")
    return port


def rig_name(i: int) -> str:
    return f"lab-rig-{i}"


def rig_index(rig: str) -> int | None:
    """1 for 'lab-rig-1' or '1', None otherwise."""
    m = re.match(r"^(?:lab-rig-)?(\d+)$", rig.strip())
    return int(m.group(1)) if m else None


def container_name(lab: str, i: int) -> str:
    return f"rigctl-{lab}-rig-{i}"


def network_name(lab: str) -> str:
    return f"rigctl-{lab}"


def lab_dir(name: str) -> Path:
    return labs_dir() / name


def inventory_path(name: str) -> Path:
    return lab_dir(name) / "inventory.yml"


def key_path(name: str) -> Path:
    return lab_dir(name) / "id_ed25519"


def known_hosts_path(name: str) -> Path:
    return lab_dir(name) / "known_hosts"


def state_path(name: str) -> Path:
    return lab_dir(name) / "lab.json"


def host_key_path(name: str, i: int) -> Path:
    return lab_dir(name) / "hostkeys" / f"{rig_name(i)}_ed25519"


def host_pub_path(name: str, i: int) -> Path:
    return lab_dir(name) / "hostkeys" / f"{rig_name(i)}_ed25519.pub"


# --- ports -------------------------------------------------------------------------


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on host:port (a bind test, no traffic).

    SO_REUSEADDR like Docker's proxy: a port whose old connections are in TIME_WAIT is
    free for it, only a listener makes it busy.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def allocate_ports(
    count: int,
    base: int,
    taken: Iterable[int] = (),
    is_free: Callable[[int], bool] | None = None,
) -> list[int]:
    """`count` ports from `base` upwards, skipping `taken` ones and busy ones."""
    is_free = is_free or port_is_free
    taken = set(taken)
    ports: list[int] = []
    port = base
    while len(ports) < count:
        if port > 65535:
            raise InputError(
                f"no {count} free TCP ports on 127.0.0.1 from {base} upwards",
                fix="use `--port-base` with a lower port",
            )
        if port not in taken and is_free(port):
            ports.append(port)
        port += 1
    return ports


# --- inotify instances: what limits how many rigs a machine runs -------------------

# Measured: a rig's systemd, dbus and logind hold 5 inotify instances; 1 more of margin.
# Containers run as root without a user namespace, so all rigs share root's limit,
# fs.inotify.max_user_instances (128 by default: about 20 rigs).
INOTIFY_PER_RIG = 6
INOTIFY_SYSCTL = "fs.inotify.max_user_instances"


def inotify_shortfall(limit: int, used: int, new_rigs: int) -> int | None:
    """None when `new_rigs` more rigs fit under the limit, else the limit to ask for."""
    need = used + INOTIFY_PER_RIG * new_rigs
    if need <= limit:
        return None
    suggest = 1024
    while suggest < need * 2:
        suggest *= 2
    return suggest


def inotify_error(limit: int, used: int, new_rigs: int, suggest: int) -> InputError:
    return InputError(
        f"{new_rigs} more rig(s) need about {INOTIFY_PER_RIG * new_rigs} inotify instances "
        f"but this machine allows {limit} per user ({INOTIFY_SYSCTL}) and about {used} are "
        "in use: systemd in the extra rigs would hang at boot",
        fix=f"raise the limit: `sudo sysctl -w {INOTIFY_SYSCTL}={suggest}` (to keep it: "
        f"`echo {INOTIFY_SYSCTL}={suggest} | sudo tee /etc/sysctl.d/60-rigctl-lab.conf`), "
        "or start fewer rigs",
    )


# --- the state of a lab ------------------------------------------------------------


@dataclass
class Rig:
    index: int
    port: int
    profile: str
    gpu_count: int
    container: str = ""
    container_id: str = ""

    @property
    def name(self) -> str:
        return rig_name(self.index)


@dataclass
class Lab:
    name: str
    image: str = ""
    release: str = DEFAULT_RELEASE
    mirror: str = DEFAULT_MIRROR
    network: str = ""
    created: str = ""
    rigs: list[Rig] = field(default_factory=list)
    mirror_dir: str = ""  # `--mirror-dir`: served in every rig at LAB_MIRROR_URL ("" for none)

    @property
    def dir(self) -> Path:
        return lab_dir(self.name)

    @property
    def inventory(self) -> Path:
        return inventory_path(self.name)

    @property
    def key(self) -> Path:
        return key_path(self.name)

    @property
    def known_hosts(self) -> Path:
        return known_hosts_path(self.name)

    def rig(self, rig: str | int) -> Rig:
        i = rig if isinstance(rig, int) else rig_index(str(rig))
        for r in self.rigs:
            if r.index == i:
                return r
        names = ", ".join(r.name for r in self.rigs) or "none"
        raise InputError(f"lab {self.name!r} has no rig {rig!r}", fix=f"use one of: {names}")

    def to_json(self) -> dict:
        d = asdict(self)
        d["version"] = 1
        d["inventory"] = str(self.inventory)
        d["ssh_user"] = RIG_USER
        d["ssh_key"] = str(self.key)
        d["known_hosts"] = str(self.known_hosts)
        d["mirror_url"] = LAB_MIRROR_URL if self.mirror_dir else None
        for r, rd in zip(self.rigs, d["rigs"], strict=True):
            rd["name"] = r.name
        return d

    @classmethod
    def from_json(cls, d: dict) -> Lab:
        rigs = [
            Rig(
                index=int(r["index"]),
                port=int(r["port"]),
                profile=str(r["profile"]),
                gpu_count=int(r.get("gpu_count", 0)),
                container=str(r.get("container", "")),
                container_id=str(r.get("container_id", "")),
            )
            for r in d.get("rigs", [])
        ]
        return cls(
            name=d["name"],
            image=d.get("image", ""),
            release=d.get("release", DEFAULT_RELEASE),
            mirror=d.get("mirror", DEFAULT_MIRROR),
            network=d.get("network", ""),
            created=d.get("created", ""),
            rigs=sorted(rigs, key=lambda r: r.index),
            mirror_dir=str(d.get("mirror_dir") or ""),
        )


def load_state(name: str) -> Lab | None:
    p = state_path(name)
    try:
        return Lab.from_json(json.loads(p.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        return None  # half-written: rebuilt from the Docker labels


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write a file atomically (temp file + rename) with the given mode."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def save_state(lab: Lab) -> None:
    write_private(state_path(lab.name), json.dumps(lab.to_json(), indent=2) + "\n", 0o644)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --- inventory and known_hosts -----------------------------------------------------


def ssh_common_args(known_hosts: Path) -> str:
    return f"-o UserKnownHostsFile={shlex.quote(str(known_hosts))} -o StrictHostKeyChecking=yes"


def inventory_data(lab: Lab) -> dict:
    """The inventory as data (what `render_inventory` writes)."""
    hosts = {
        r.name: {
            "ansible_host": "127.0.0.1",
            "ansible_port": r.port,
            "rig_lab_profile": r.profile,
            "rig_gpu_count": r.gpu_count,
        }
        for r in sorted(lab.rigs, key=lambda r: r.index)
    }
    return {
        "all": {
            "children": {
                "rigs": {
                    "children": {
                        "lab": {
                            "hosts": hosts,
                            "vars": {
                                "ansible_user": RIG_USER,
                                "ansible_ssh_private_key_file": str(lab.key.resolve()),
                                "ansible_ssh_common_args": ssh_common_args(lab.known_hosts.resolve()),
                                "ansible_python_interpreter": "/usr/bin/python3",
                            },
                        }
                    }
                }
            }
        }
    }


def _flow(value) -> str:
    """One value in YAML flow style on one line (quoted only where YAML needs it)."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6)
    if text.endswith("\n...\n"):  # a plain scalar document
        text = text[: -len("\n...\n")]
    return text.strip()


def render_inventory(lab: Lab) -> str:
    """The inventory file: one flow-style line per host, as in docs/architecture.md."""
    data = inventory_data(lab)
    lab_group = data["all"]["children"]["rigs"]["children"]["lab"]
    out = [
        f"# Lab {lab.name!r}, written by `rigctl lab up`; removed by `rigctl lab down"
        f"{'' if lab.name == DEFAULT_NAME else ' --name ' + lab.name}`.",
        "all:",
        "  children:",
        "    rigs:",
        "      children:",
        "        lab:",
        "          hosts:",
    ]
    for host, hv in lab_group["hosts"].items():
        out.append(f"            {host}: {_flow(hv)}")
    out.append("          vars:")
    for k, v in lab_group["vars"].items():
        out.append(f"            {k}: {_flow(v)}")
    text = "\n".join(out) + "\n"
    if yaml.safe_load(text) != data:  # the hand-laid text and the data never drift
        raise ValueError(f"lab inventory rendering is inconsistent:\n{text}")
    return text


def known_hosts_line(port: int, pubkey: str) -> str:
    parts = pubkey.split()
    return f"[127.0.0.1]:{port} {parts[0]} {parts[1]}"


def render_known_hosts(entries: Iterable[tuple[int, str]]) -> str:
    return "".join(known_hosts_line(port, pub) + "\n" for port, pub in sorted(entries))


# --- tar streams for `docker cp -` -------------------------------------------------


def tar_stream(files: Iterable[tuple[str, bytes, int] | tuple[str, bytes, int, int, int]]) -> bytes:
    """A tar archive of (absolute path, content, mode[, uid, gid]) for `docker cp - C:/`.

    Only files are added: missing parent directories are created by Docker (root, 0755),
    existing ones keep their owner and mode.
    """
    buf = io.BytesIO()
    mtime = int(time.time())
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for entry in files:
            path, content, mode = entry[0], entry[1], entry[2]
            uid, gid = (entry[3], entry[4]) if len(entry) == 5 else (0, 0)
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size = len(content)
            info.mode = mode
            info.uid, info.gid = uid, gid
            info.uname = info.gname = ""
            info.mtime = mtime
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()
