"""The lab image: a Debian root file system built with debootstrap, imported into Docker.

No image registry is reachable from the machines rigctl runs on, so the image is built
locally, once, and reused: its tag ends with a hash of the build recipe (release, mirror,
packages, every customisation), so a changed recipe makes a new image and an unchanged one
is never rebuilt.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rigctl.errors import InputError, RigctlError
from rigctl.lab import docker
from rigctl.lab.model import LABEL_IMAGE, RIG_UID, RIG_USER
from rigctl.paths import state_home

IMAGE_REPO = "rigctl-lab"
RECIPE_VERSION = 1
BUILD_DIR_ENV = "RIGCTL_LAB_BUILD_DIR"

PACKAGES = (
    "python3",
    "openssh-server",
    "systemd",
    "systemd-sysv",
    "sudo",
    "dbus",
    "iproute2",
    "procps",
    "kmod",
    "pciutils",
    "ca-certificates",
    "gnupg",
    "apt-transport-https",
    "debian-archive-keyring",
)

# Units that make no sense in a container (no consoles, no udev, no kernel modules, a
# read-only /proc/sys) or that would race the roles for the apt lock (apt-daily).
MASKED_UNITS = (
    "getty.target",
    "getty@.service",
    "serial-getty@.service",
    "console-getty.service",
    "container-getty@.service",
    "getty-static.service",
    "systemd-udevd.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service",
    "systemd-udev-settle.service",
    "systemd-hwdb-update.service",
    "systemd-firstboot.service",
    "systemd-modules-load.service",
    "systemd-sysctl.service",
    "systemd-remount-fs.service",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "proc-sys-fs-binfmt_misc.mount",
    "sys-kernel-config.mount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-fs-fuse-connections.mount",
    "dev-hugepages.mount",
    "systemd-journald-audit.socket",
    "systemd-pstore.service",
    "e2scrub_reap.service",
    "e2scrub_all.timer",
    "fstrim.timer",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    # Password agents for consoles nobody looks at; each costs an inotify instance, and
    # those are what limits how many rigs a machine can run (see lab.check_inotify).
    "systemd-ask-password-console.path",
    "systemd-ask-password-wall.path",
    # trixie mounts a tmpfs on /tmp, which a container may not do: /tmp stays on the
    # container's disk, as on bookworm.
    "tmp.mount",
)

SSHD_CONFIG = """\
# rigctl lab rig: key authentication only. Host keys are generated per rig on the
# controller and copied in before the first start (none is baked into the image).
HostKey /etc/ssh/ssh_host_ed25519_key
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
PermitEmptyPasswords no
UseDNS no
"""

# OpenSSH 9.8 and later (trixie: 10.0) refuse, for a while, a source address that made
# connections without logging in (PerSourcePenalties, on by default). Every connection to a
# lab rig comes from this one machine, and the tests make many on purpose (host key
# refusals, ssh-keyscan of the key check, stopped rigs): the lab turns the penalties off.
# Bookworm's OpenSSH 9.2 does not know the keyword (sshd would not start with it).
SSHD_PENALTIES_OFF = """\
# Every client of a lab rig is the controller: no per-source penalties (OpenSSH >= 9.8).
PerSourcePenalties no
"""


def sshd_config(release: str) -> str:
    """The lab rig's sshd drop-in for a Debian release."""
    return SSHD_CONFIG + ("" if release == "bookworm" else SSHD_PENALTIES_OFF)


SUDOERS = f"{RIG_USER} ALL=(ALL:ALL) NOPASSWD: ALL\n"

COMPONENTS = "main contrib non-free non-free-firmware"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def apt_sources(release: str, mirror: str) -> str:
    return (
        "# Written by rigctl's lab image build. non-free is there for the NVIDIA packages.\n"
        "Types: deb\n"
        f"URIs: {mirror}\n"
        f"Suites: {release} {release}-updates\n"
        f"Components: {COMPONENTS}\n"
        f"Signed-By: {KEYRING}\n"
    )


def recipe(release: str, mirror: str) -> dict:
    """Everything that goes into the image; its hash names the image."""
    return {
        "version": RECIPE_VERSION,
        "release": release,
        "mirror": mirror,
        "variant": "minbase",
        "packages": list(PACKAGES),
        "masked": list(MASKED_UNITS),
        "sshd": sshd_config(release),
        "sudoers": SUDOERS,
        "user": [RIG_USER, RIG_UID],
        "sources": apt_sources(release, mirror),
    }


def recipe_hash(release: str, mirror: str) -> str:
    blob = json.dumps(recipe(release, mirror), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def image_tag(release: str, mirror: str) -> str:
    return f"{IMAGE_REPO}:{release}-{recipe_hash(release, mirror)}"


def ensure_image(release: str, mirror: str, log: Callable[[str], None] = print) -> str:
    """The image tag for (release, mirror), built first if it does not exist yet."""
    tag = image_tag(release, mirror)
    if docker.image_exists(tag):
        return tag
    lock_path = state_home() / "lab-image.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time on this machine
        if docker.image_exists(tag):
            return tag
        build_image(release, mirror, tag, log)
    return tag


KEYRING_ENV = "RIGCTL_LAB_KEYRING"


def controller_keyring() -> str:
    """The Debian archive keyring debootstrap checks the image's Release file against."""
    return os.environ.get(KEYRING_ENV) or KEYRING


def check_build_prerequisites() -> str:
    exe = shutil.which("debootstrap") or (
        "/usr/sbin/debootstrap" if os.path.exists("/usr/sbin/debootstrap") else None
    )
    if exe is None:
        raise InputError(
            "debootstrap is not installed: the lab image is built locally with it "
            "(no image registry is used)",
            fix="`sudo apt-get install debootstrap`",
        )
    keyring = controller_keyring()
    if not os.path.isfile(keyring) or os.path.getsize(keyring) == 0:
        raise InputError(
            f"the Debian archive keyring {keyring} is missing: debootstrap checks the lab "
            "image's signatures against it and rigctl never builds an unverified image",
            fix="`sudo apt-get install debian-archive-keyring` (scripts/setup does this), or "
            f"set ${KEYRING_ENV} to a Debian archive keyring file",
        )
    if os.geteuid() != 0:
        raise InputError(
            "building the lab image needs root (debootstrap and chroot)",
            fix="run the first `rigctl lab up` (or `rigctl lab image`) as root, e.g. "
            "`sudo rigctl lab image`; the image is then reused by every lab",
        )
    return exe


def build_image(release: str, mirror: str, tag: str, log: Callable[[str], None] = print) -> str:
    debootstrap = check_build_prerequisites()
    docker.check_engine()
    base = Path(os.environ.get(BUILD_DIR_ENV) or "/var/tmp")
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rigctl-lab-image-", dir=base))
    rootfs = work / "rootfs"
    log_path = state_home() / "lab-image-build.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log(f"building the lab image once (~1 min): Debian {release} from {mirror} -> {tag}")
    t0 = time.monotonic()
    try:
        with open(log_path, "w") as logf:
            cmd = [
                debootstrap,
                "--variant=minbase",
                "--include=" + ",".join(PACKAGES),
                "--components=main",
                # Signatures of the Release file are checked against Debian's archive
                # keyring, never skipped: an Ubuntu controller without it is refused
                # (check_build_prerequisites) instead of building an unverified image.
                f"--keyring={controller_keyring()}",
                "--force-check-gpg",
                release,
                str(rootfs),
                mirror,
            ]
            logf.write("$ " + " ".join(cmd) + "\n")
            logf.flush()
            try:
                proc = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, timeout=1800)
            except subprocess.TimeoutExpired as exc:
                raise RigctlError(
                    "debootstrap did not finish within 30 minutes", fix=f"see {log_path}"
                ) from exc
        if proc.returncode != 0:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
            raise RigctlError(
                f"debootstrap of Debian {release} from {mirror} failed:\n{tail}",
                fix=f"check that the mirror is reachable and serves {release} "
                f"(`--mirror URL` or $RIGCTL_LAB_MIRROR); full log: {log_path}",
            )
        log(f"  debootstrap done ({time.monotonic() - t0:.0f} s); customising the root fs")
        customise_rootfs(rootfs, release, mirror)
        t1 = time.monotonic()
        import_rootfs(rootfs, tag, release, mirror)
        log(f"  imported {tag} ({time.monotonic() - t1:.0f} s); image built in {time.monotonic() - t0:.0f} s")
    finally:
        safe_rmtree(work)
    return tag


def _chroot(rootfs: Path, *args: str) -> None:
    proc = subprocess.run(["chroot", str(rootfs), *args], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RigctlError(
            f"customising the lab image failed: chroot {' '.join(args)}: "
            f"{proc.stderr.strip() or proc.stdout.strip()}"
        )


def _write(rootfs: Path, path: str, text: str, mode: int = 0o644) -> None:
    p = rootfs / path.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    os.chmod(p, mode)


def customise_rootfs(rootfs: Path, release: str, mirror: str) -> None:
    """Turn a debootstrapped tree into a lab rig image (see the module docstring)."""
    etc = rootfs / "etc"
    # No baked host keys: every rig gets its own, generated on the controller.
    for p in (etc / "ssh").glob("ssh_host_*"):
        p.unlink()
    _write(rootfs, "/etc/ssh/sshd_config.d/rigctl-lab.conf", sshd_config(release))
    # Containers may not set the audit login uid: make pam_loginuid optional for sshd.
    pam = etc / "pam.d" / "sshd"
    pam.write_text(
        pam.read_text().replace(
            "session    required     pam_loginuid.so", "session    optional     pam_loginuid.so"
        )
    )
    # The user Ansible logs in as: key only ('*' = no password, not locked), sudo without
    # a password, an empty ~/.ssh that `lab up` fills with the lab's key.
    _chroot(
        rootfs,
        "useradd",
        "--create-home",
        "--uid",
        str(RIG_UID),
        "--user-group",
        "--shell",
        "/bin/bash",
        "--password",
        "*",
        RIG_USER,
    )
    ssh_dir = rootfs / "home" / RIG_USER / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    os.chown(ssh_dir, RIG_UID, RIG_UID)
    os.chmod(ssh_dir, 0o700)
    _write(rootfs, f"/etc/sudoers.d/rigctl-lab-{RIG_USER}", SUDOERS, 0o440)
    # Units that make no sense in a container.
    sysd = etc / "systemd" / "system"
    sysd.mkdir(parents=True, exist_ok=True)
    for unit in MASKED_UNITS:
        link = sysd / unit
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("/dev/null")
    for wants in sysd.glob("*.wants"):
        for link in wants.iterdir():
            if link.name in MASKED_UNITS:
                link.unlink()
    # Apt: the same signed mirror, with the components the NVIDIA packages live in.
    legacy = etc / "apt" / "sources.list"
    if legacy.exists():
        legacy.unlink()
    _write(rootfs, "/etc/apt/sources.list.d/debian.sources", apt_sources(release, mirror))
    for p in (rootfs / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        p.unlink()
    lists = rootfs / "var" / "lib" / "apt" / "lists"
    for p in lists.glob("*"):
        if p.is_file():
            p.unlink()
    # An empty machine-id: each container gets its own at boot.
    mid = etc / "machine-id"
    mid.write_text("")
    os.chmod(mid, 0o444)
    dbus_mid = rootfs / "var" / "lib" / "dbus" / "machine-id"
    if dbus_mid.exists() or dbus_mid.is_symlink():
        dbus_mid.unlink()
        dbus_mid.symlink_to("/etc/machine-id")
    _write(
        rootfs,
        "/etc/rigctl-lab-image",
        json.dumps({"release": release, "mirror": mirror, "recipe": recipe_hash(release, mirror)}) + "\n",
    )


def import_rootfs(rootfs: Path, tag: str, release: str, mirror: str) -> None:
    exe = docker.check_engine()
    changes = [
        'CMD ["/lib/systemd/systemd"]',
        "ENV container=docker",
        f"LABEL {LABEL_IMAGE}={recipe_hash(release, mirror)}",
        f"LABEL {LABEL_IMAGE}.release={release}",
    ]
    args = [exe, "import"]
    for c in changes:
        args += ["--change", c]
    args += ["--message", f"rigctl lab image (Debian {release})", "-", tag]
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        imp = subprocess.run(args, stdin=tar.stdout, capture_output=True, timeout=600)
    finally:
        if tar.stdout:
            tar.stdout.close()
        tar_err = tar.stderr.read().decode(errors="replace") if tar.stderr else ""
        tar_rc = tar.wait()
    if tar_rc != 0 or imp.returncode != 0:
        raise RigctlError(
            f"importing the lab image failed: "
            f"{imp.stderr.decode(errors='replace').strip() or tar_err.strip()}"
        )


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve())
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = line.split()[4].replace("\\040", " ")
                if mp == prefix or mp.startswith(prefix + "/"):
                    found.append(mp)
    except OSError:
        pass
    return sorted(found, key=len, reverse=True)


def safe_rmtree(path: Path) -> None:
    """Remove a build directory, never following into something still mounted in it."""
    for mp in _mounts_under(path):
        subprocess.run(["umount", "-l", mp], capture_output=True)
    if _mounts_under(path):
        return  # leave it rather than delete through a mount
    shutil.rmtree(path, ignore_errors=True)


def remove_image(tag: str) -> bool:
    """Remove a lab image; False when containers still use it or it is not there."""
    if not docker.image_exists(tag):
        return False
    users = docker.lines(["ps", "-a", "--filter", f"ancestor={tag}", "--format", "{{.Names}}"])
    if users:
        raise RigctlError(
            f"image {tag} is still used by containers: {', '.join(users)}",
            fix="remove those labs first (`rigctl lab down --name NAME`)",
        )
    docker.run(["rmi", tag], what=f"removing image {tag}")
    return True
