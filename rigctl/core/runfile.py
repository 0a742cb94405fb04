"""NVIDIA's ``.run`` installer as the source of the driver userspace (``rig_driver_source:
runfile``), and the stock module copies a patched or stock build must not lose to.

Stdlib only, Python 3.9 syntax: shipped to managed hosts as module_utils (the
nvidia_runfile and nvidia_dkms modules). Pure functions first (the installer's version
answer, its documented options, the command lines, which packages conflict, which module
copies and initramfs entries are stale), then the few that read this host.

The installer's contract (NVIDIA documents these options; the tests' stand-in,
tests/fixtures/fake_nvidia_runfile.py, has the same): ``sh FILE --version`` prints
``nvidia-installer:  version X.Y.Z ...``; ``--advanced-options`` lists every option;
``--silent`` installs without questions; ``--no-kernel-modules`` (``--no-kernel-module``
before it was renamed) leaves the kernel modules out; the install leaves
``/usr/bin/nvidia-uninstall``, which removes it again (``--silent``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time

from . import driver

# What rigctl records about the installer it ran (the provenance file embeds it).
RECORD_PATH = "/var/lib/rigctl/nvidia-runfile.json"
INSTALLER = "/usr/bin/nvidia-installer"
UNINSTALLER = "/usr/bin/nvidia-uninstall"
INSTALL_LOG = "/var/log/nvidia-installer.log"
UNINSTALL_LOG = "/var/log/nvidia-uninstall.log"

NOTHING_CHANGED = "Nothing was changed."

_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")
_VERSION = r"(\d{3}\.\d{1,3}(?:\.\d{1,3})?)"

# Distribution packages of the NVIDIA driver (Debian's and Ubuntu's names, NVIDIA's CUDA
# repository's): the installer overwrites their files and apt would put them back. The
# CUDA toolkit's own packages (nvidia-cuda-*, profilers, docs) are not the driver.
_DRIVER_PACKAGE_RE = re.compile(
    r"^(nvidia-(driver|smi|utils|alternative|kernel|open-kernel|dkms|persistenced|modprobe|"
    r"settings|suspend|egl|vdpau|vulkan|opencl-icd|cuda-mps|xconfig|compute-utils|"
    r"firmware|fabricmanager|headless|libopencl1|legacy)|libnvidia-|libcuda1|libcuda-|"
    r"libnvcuvid|libnvoptix|libnvidia|libegl-nvidia|libgl1-nvidia|libgles-nvidia|"
    r"libglx-nvidia|xserver-xorg-video-nvidia|firmware-nvidia-|nvidia$)"
)


def is_sha256(value):
    return isinstance(value, str) and bool(_SHA256_RE.match(value))


def parse_installer_version(text):
    """The driver version from ``sh FILE --version`` (``nvidia-installer:  version
    580.95.05  (...)``) or from the archive's label (``... for Linux-x86_64 580.95.05``);
    None when neither is there."""
    text = text or ""
    m = re.search(r"nvidia-installer:\s+version\s+" + _VERSION + r"\b", text)
    if not m:
        m = re.search(r"Linux-x86_64\s+" + _VERSION + r"\b", text)
    return m.group(1) if m else None


def no_kernel_modules_option(help_text):
    """The spelling of "install without kernel modules" the installer documents in its
    ``--advanced-options`` (``--no-kernel-modules``, or ``--no-kernel-module`` in older
    installers); None when it documents neither."""
    text = help_text or ""
    if re.search(r"(^|\s)--no-kernel-modules\b", text):
        return "--no-kernel-modules"
    if re.search(r"(^|\s)--no-kernel-module\b", text):
        return "--no-kernel-module"
    return None


def install_argv(path, help_text):
    """The non-interactive install without kernel modules, from the options the installer
    documents. ``--silent`` implies accepting the license and no questions. Raises
    ValueError when the installer cannot leave the kernel modules out."""
    flag = no_kernel_modules_option(help_text)
    if flag is None:
        raise ValueError("the installer does not document --no-kernel-modules (or "
                         "--no-kernel-module) in its --advanced-options")
    argv = ["sh", path, "--silent", flag]
    if re.search(r"(^|\s)--no-x-check\b", help_text or ""):
        argv.append("--no-x-check")  # headless rigs: never stop for an X server
    return argv


def uninstall_argv():
    return [UNINSTALLER, "--silent"]


def conflicting_packages(installed_names):
    """The installed distribution packages of the NVIDIA driver (sorted)."""
    return sorted(n for n in set(installed_names or []) if _DRIVER_PACKAGE_RE.match(n))


def conflict_message(host, packages, version, changes=NOTHING_CHANGED):
    return (
        "rig_driver_source is runfile, but %s has the distribution's NVIDIA driver packages "
        "%s installed: NVIDIA's installer (%s) would overwrite their files and apt would put "
        "them back. %s Remove them first (`apt-mark unhold %s; apt-get "
        "purge %s`; rigctl never removes another source's driver for you), or set "
        "rig_driver_source: debian (or cuda-repo) to keep using packages."
        % (host, ", ".join(packages), version, changes, " ".join(packages), " ".join(packages)))


def sha_mismatch_message(url, found, wanted, changes=NOTHING_CHANGED):
    return (
        "the installer at %s has sha256 %s, not the pinned rig_driver_runfile_sha256 %s: "
        "refused (a changed or damaged download). %s Check the file "
        "(`sha256sum`) against NVIDIA's published checksum and pin that one."
        % (url, found, wanted.lower(), changes))


def version_mismatch_message(url, found, wanted, changes=NOTHING_CHANGED):
    return (
        "the installer at %s is driver %s (its --version), but rig_driver_version is %s: "
        "the userspace and the kernel module must be the same version to the last digit. "
        "%s Point rig_driver_runfile_url at "
        "NVIDIA-Linux-x86_64-%s.run (and pin its sha256), or set rig_driver_version: \"%s\"."
        % (url, found or "unknown (no version in its answer)", wanted, changes, wanted,
           found or wanted))


def changes_before(before_lines, now_lines, lists_refreshed=False, source_cache=None):
    """The sentence a runfile refusal ends with: exactly what this run changed on the host
    before it, or that nothing did. The runfile step comes after the patched source was
    fetched (nvidia_driver's p2p_source.yml), which may have installed git (the packages
    added since BEFORE_LINES, ``driver.DPKG_QUERY`` output; None: not known to have run)
    and written the source cache SOURCE_CACHE (None: untouched). The driver itself is never
    touched before a refusal."""
    added = []
    if before_lines is not None:
        added = sorted(driver.installed_packages(now_lines)
                       - driver.installed_packages(before_lines))
    done = []
    if added:
        done.append("git was installed to fetch the patched source, adding %s (`apt-get "
                    "purge %s` removes %s)" % (", ".join(added), " ".join(added),
                                               "it" if len(added) == 1 else "them"))
    if source_cache:
        done.append("the patched source cache %s was updated" % source_cache)
    if not done:
        return NOTHING_CHANGED[:-1] + (" (apt's package lists were refreshed)."
                                       if lists_refreshed else ".")
    if lists_refreshed:
        done.append("apt's package lists were refreshed")
    return ("Changed before this check: only %s; the driver is untouched (no NVIDIA "
            "userspace, package or module was installed or removed)." % "; ".join(done))


def file_name(url):
    """The installer's file name in a URL (its last path part)."""
    name = (url or "").split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return name or "nvidia-installer.run"


def up_to_date(record, version, sha256, installed_version):
    """Whether the installed userspace is what is asked for: the record rigctl wrote says
    this file (sha256) at this version, and the installed nvidia-installer answers it."""
    return (isinstance(record, dict) and record.get("version") == version
            and (record.get("sha256") or "").lower() == (sha256 or "").lower()
            and installed_version == version)


def make_record(url, sha256, version, argv, uninstalled=None):
    return {
        "version": version,
        "sha256": sha256.lower(),
        "url": url,
        "file": file_name(url),
        "options": [a for a in argv if a.startswith("-")],
        "replaced": uninstalled,
        "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# --- module copies and the initramfs ----------------------------------------------------

# The driver's own modules (nvidia, -uvm, -modeset, -drm, -peermem) under every name
# distributions give them (Debian's nvidia-current-open-uvm, nvidia-tesla-535-...); not
# other NVIDIA modules such as nvidia-fs (GPUDirect Storage).
_KO_RE = re.compile(r"^(nvidia(?:-current|-tesla(?:-\d+)?|-legacy-\d+xx)?(?:-open)?"
                    r"(?:-uvm|-modeset|-drm|-peermem)?)\.ko(?:\.(?:xz|zst|gz))?$")


def module_base(filename):
    """``nvidia-uvm`` for ``.../nvidia-uvm.ko.zst``; None for anything not an NVIDIA
    module file."""
    m = _KO_RE.match(os.path.basename(filename or ""))
    return m.group(1) if m else None


def stray_copies(paths, ours):
    """Of PATHS (NVIDIA module files under a kernel's updates/dkms or extra trees), those
    that are not the build's own files OURS (paths). Those are what depmod could prefer
    over the build (another DKMS package's leftovers, a `make modules_install` into
    extra/), sorted."""
    own = set(os.path.normpath(p) for p in ours or [])
    return sorted(os.path.normpath(p) for p in paths or []
                  if module_base(p) and os.path.normpath(p) not in own)


def initramfs_modules(listing, kernel):
    """The NVIDIA module files an initramfs holds (``lsinitramfs`` output), as paths under
    /lib/modules/KERNEL (``usr/lib/modules/K/updates/dkms/nvidia.ko`` ->
    ``updates/dkms/nvidia.ko``)."""
    found = []
    for line in (listing or "").splitlines():
        line = line.strip()
        m = re.match(r"^(?:\./)?(?:usr/)?lib/modules/([^/]+)/(.+)$", line)
        if m and m.group(1) == kernel and module_base(m.group(2)):
            found.append(m.group(2))
    return sorted(set(found))


def stale_initramfs_modules(in_initramfs, on_disk, initrd_mtime):
    """Which NVIDIA modules in an initramfs are stale: the file is gone from
    /lib/modules/K (a removed stock copy) or is newer on disk than the initramfs (a rebuilt
    module the initramfs still carries the old copy of). ON_DISK: relative path -> mtime
    (None when missing)."""
    stale = []
    for rel in in_initramfs:
        mtime = on_disk.get(rel)
        if mtime is None or (initrd_mtime is not None and mtime > initrd_mtime):
            stale.append(rel)
    return stale


# --- this host ------------------------------------------------------------------------


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_record(path=RECORD_PATH):
    try:
        with open(path) as fh:
            value = json.load(fh)
        return value if isinstance(value, dict) else None
    except (OSError, ValueError):
        return None


def write_record(record, path=RECORD_PATH):
    driver.write_json_atomic(record, path)


def remove_record(path=RECORD_PATH):
    try:
        os.unlink(path)
        return True
    except OSError:
        return False


def module_copies(kernel, root="/"):
    """The NVIDIA module files under /lib/modules/KERNEL/updates/dkms and .../extra (the
    trees depmod searches before the kernel's own)."""
    base = os.path.join(root, "lib/modules", kernel)
    found = []
    for sub in ("updates/dkms", "extra"):
        top = os.path.join(base, sub)
        for dirpath, _dirs, files in os.walk(top):
            for f in files:
                if module_base(f):
                    found.append(os.path.join(dirpath, f))
    return sorted(found)


def tail(path, lines=20):
    try:
        with open(path, errors="replace") as fh:
            return "\n".join(fh.read().splitlines()[-lines:])
    except OSError:
        return ""
