"""NVIDIA driver logic shared by the nvidia_driver role's modules, the suites and the CLI.

Stdlib only, Python 3.9 syntax: shipped to managed hosts as module_utils. Pure functions
first (versions, ``version.mk``, the P2P source a rig asks for, DKMS names, build logs),
then the provenance record. Which module file a kernel resolves is read on the host by
``hostfacts.resolve_module`` (with :func:`modprobe_target`).
"""

from __future__ import annotations

import json
import os
import re

from . import catalog, credurl

# Where the role records what it installed (read by `rigctl verify`).
PROVENANCE_PATH = "/var/lib/rigctl/nvidia-driver.json"
# The patched module is registered with DKMS under its own name, so it never collides with
# a distribution's `nvidia`/`nvidia-current-open` DKMS package and kernel upgrades rebuild it.
P2P_DKMS_NAME = "nvidia-p2p"
# The kernel modules an open-gpu-kernel-modules tree builds (under kernel-open/).
OPEN_MODULES = ("nvidia", "nvidia-uvm", "nvidia-modeset", "nvidia-drm", "nvidia-peermem")

# A driver version as nvidia-smi prints it (570.86.16, 565.77); the inventory schema's too.
VERSION_PATTERN = r"^\d{3}\.\d{1,3}(\.\d{1,3})?$"
_VERSION_RE = re.compile(VERSION_PATTERN)


# --- versions -------------------------------------------------------------------------


def version_tuple(version):
    return tuple(int(p) for p in re.findall(r"\d+", version or ""))


def is_driver_version(value):
    return isinstance(value, str) and bool(_VERSION_RE.fullmatch(value))


def parse_version_mk(text):
    """The driver version a source tree states: ``NVIDIA_VERSION = 570.86.16`` in
    ``version.mk``. Raises ValueError when the file does not say it."""
    for line in text.splitlines():
        m = re.match(r"^\s*NVIDIA_VERSION\s*[:?]?=\s*(\S+)\s*$", line)
        if m:
            value = m.group(1)
            if not is_driver_version(value):
                raise ValueError("version.mk: NVIDIA_VERSION is %r, not a driver version" % value)
            return value
    raise ValueError("version.mk has no NVIDIA_VERSION line")


def deb_version_matches(deb_version, driver_version):
    """Whether a Debian package version (``535.261.03-1``, ``535.261.03-1~deb12u1``,
    ``1:535.261.03-0ubuntu1``) is a build of exactly this driver version."""
    if not deb_version or not driver_version:
        return False
    upstream = deb_version.split(":", 1)[-1].rsplit("-", 1)[0]
    return upstream == driver_version


def apt_version_glob(driver_version):
    """What ``apt-get install pkg=<glob>`` and apt preferences pin: every Debian revision
    of exactly this upstream version (never 535.261.031)."""
    return "%s-*" % driver_version


# --- the P2P source a rig asks for ------------------------------------------------------


def resolve_p2p_source(source, user_catalog=None):
    """``rig_p2p_source`` as {name, url, branch, commit, catalog, driver_version,
    generations}. ``url`` has any credentials stripped (``https://host/path``; see
    ``p2p_source_credentials``), so it can be printed and recorded. ``user_catalog``:
    rig_p2p_catalog (catalog names are looked up there after the built-in ones). Raises
    ValueError with a rig owner's message when it is incomplete."""
    if not isinstance(source, dict):
        raise ValueError("rig_p2p_source must be a mapping with catalog, or url/branch/commit")
    name = source.get("catalog")
    if name:
        entry = catalog.lookup(name, user_catalog)
        if entry is None:
            raise ValueError("rig_p2p_source.catalog %r is not in the catalog (known: %s)"
                             % (name, ", ".join(catalog.names(user_catalog))))
        return {
            "catalog": entry.name,
            # a local mirror of the catalog's fork
            "url": credurl.split_credentials(source.get("url") or entry.url)[0],
            "branch": entry.branch,
            "commit": entry.commit,
            "driver_version": entry.driver_version,
            "generations": list(entry.generations),
        }
    missing = [k for k in ("url", "branch", "commit") if not source.get(k)]
    if missing:
        raise ValueError("rig_p2p_source needs catalog, or url, branch and commit (missing: %s)"
                         % ", ".join(missing))
    commit = source["commit"]
    if not isinstance(commit, str) or not re.match(r"^[0-9a-f]{40}$", commit):
        raise ValueError("rig_p2p_source.commit must be a full 40-character commit id (a "
                         "quoted string: YAML reads an all-digit id as a number), got %r"
                         % (commit,))
    m = re.match(r"^(\d{3}\.\d{1,3}(?:\.\d{1,3})?)(?:-|$)", str(source["branch"]))
    return {
        "catalog": None,
        "url": credurl.split_credentials(source["url"])[0],
        "branch": source["branch"],
        "commit": commit,
        "driver_version": m.group(1) if m else None,
        "generations": [],
    }


def p2p_source_credentials(source):
    """(username, password) from ``rig_p2p_source.url`` (``https://user:token@host/...``),
    or (None, None). Raises ValueError like resolve_p2p_source."""
    url = source.get("url") if isinstance(source, dict) else None
    if not url:
        return None, None
    _, user, password = credurl.split_credentials(url)
    return user, password


def p2p_source_secrets(source, user_catalog=None):
    """The strings a module given ``rig_p2p_source`` (and ``rig_p2p_catalog``) must never
    return or log (Ansible's ``module.no_log_values``, which also covers the invocation it
    records): every URL that carries credentials, and the token or user in it."""
    out = []
    urls = [source.get("url") if isinstance(source, dict) else None]
    for entry in (user_catalog or {}).values() if isinstance(user_catalog, dict) else ():
        urls.append(entry.get("url") if isinstance(entry, dict) else None)
    for url in urls:
        if not isinstance(url, str) or not credurl.has_credentials(url):
            continue
        out.append(url)
        try:
            _, user, password = credurl.split_credentials(url)
        except ValueError:
            continue
        out.extend(x for x in (password, user if not password else None) if x)
    return out


# Installed packages, one "<status> <name>" line each (the P2P source check diffs two).
DPKG_QUERY = ["dpkg-query", "-W", "-f", "${db:Status-Abbrev} ${binary:Package}\\n"]


def installed_packages(lines):
    """Package names dpkg has installed, from DPKG_QUERY output lines."""
    out = set()
    for line in lines or []:
        parts = line.split()
        if len(parts) == 2 and parts[0].startswith("ii"):
            out.add(parts[1].split(":", 1)[0])
    return out


def p2p_check_changes(before_lines, now_lines, lists_refreshed):
    """The sentence a P2P source refusal ends with: exactly what changed on the host
    before it (the packages installing git added since BEFORE_LINES, DPKG_QUERY output),
    or that nothing did."""
    if before_lines is None:
        return "Nothing was changed by this check."
    added = sorted(installed_packages(now_lines) - installed_packages(before_lines))
    if not added:
        return ("Nothing was changed" + (" (apt's package lists were refreshed)."
                                         if lists_refreshed else "."))
    one = len(added) == 1
    return ("Changed before this check: git was installed to fetch the source, adding %d "
            "package%s: %s (%s; `apt-get purge %s` removes %s)%s; nothing else was "
            "changed." % (len(added), "" if one else "s", ", ".join(added),
                          "it stays" if one else "they stay", " ".join(added),
                          "it" if one else "them",
                          ", and apt's package lists were refreshed" if lists_refreshed else ""))


def version_mismatch_message(source_version, userspace_version, source):
    """The refusal when a patched tree's version.mk differs from the userspace version."""
    where = "%s (branch %s, commit %s)" % (source.get("url"), source.get("branch"),
                                           source.get("commit"))
    msg = ("the patched source %s is driver %s (its version.mk), but the NVIDIA userspace "
           "is %s (rig_driver_version): they must be the same version to the last digit, or "
           "NVML fails with 'Driver/library version mismatch'. Nothing was changed."
           % (where, source_version, userspace_version))
    matches = catalog.entries_for_version(userspace_version)
    if matches:
        msg += " Catalog entry for %s: %s (rig_p2p_source: {catalog: %s})." % (
            userspace_version, ", ".join(m.name for m in matches), matches[0].name)
    else:
        msg += " No catalog entry is built for %s." % userspace_version
    same = catalog.entries_for_version(source_version)
    if same:
        msg += " For this source's version set rig_driver_version: \"%s\" (catalog entry %s)." % (
            source_version, same[0].name)
    return msg


def p2p_dkms_version(driver_version, commit):
    """DKMS version of a patched build: the driver version plus the commit, so another
    commit of the same version is a new DKMS version, never a silent overwrite."""
    return "%s-%s" % (driver_version, commit[:12])


def dkms_conf(name, version, kernel_dir="kernel-open", modules=OPEN_MODULES):
    """dkms.conf for an open-gpu-kernel-modules tree (fork layout: top-level Makefile with
    a ``modules`` target, modules built under kernel-open/).

    Debian splits the kernel headers into a build tree and a common source tree: the
    conftest step needs both, so SYSSRC and SYSOUT are passed separately."""
    lines = [
        "# Written by rigctl (nvidia_driver role): the patched P2P kernel module.",
        'PACKAGE_NAME="%s"' % name,
        'PACKAGE_VERSION="%s"' % version,
        'AUTOINSTALL="yes"',
        "MAKE[0]=\"'make' -j$(nproc) modules SYSSRC=$(test -d /lib/modules/${kernelver}/source"
        " && echo /lib/modules/${kernelver}/source || echo /lib/modules/${kernelver}/build)"
        " SYSOUT=/lib/modules/${kernelver}/build\"",
        "CLEAN=\"'make' clean\"",
    ]
    for i, mod in enumerate(modules):
        lines.append('BUILT_MODULE_NAME[%d]="%s"' % (i, mod))
        lines.append('BUILT_MODULE_LOCATION[%d]="%s/"' % (i, kernel_dir))
        lines.append('DEST_MODULE_LOCATION[%d]="/updates/dkms"' % i)
    return "\n".join(lines) + "\n"


def relevant_build_lines(log, limit=25):
    """The lines of a kernel build log that say what went wrong: compiler errors, missing
    files, make's own errors; the log's tail when none match."""
    lines = (log or "").splitlines()
    pat = re.compile(r"(\berror:|fatal error|No such file|\*\*\*|undefined reference|"
                     r"is undefined|Error \d+)")
    picked = [ln for ln in lines if pat.search(ln)]
    if not picked:
        picked = lines[-limit:]
    return [ln if len(ln) <= 300 else ln[:297] + "..." for ln in picked[:limit]]


# --- target kernels -----------------------------------------------------------------------


def target_kernels(kernel_facts):
    """The kernels a driver build must cover, and those of them that lack headers: the one
    definition (``rig_facts`` evaluates it on the rig as ``kernel.targets`` and
    ``kernel.targets_without_headers``; the role and the verification suite read those).

    Targets are the installed kernels: those with an image in /boot (``images``) or a module
    tree with modules of their own (``with_modules``: ``/lib/modules/K/kernel``, not a tree
    DKMS left behind), plus those whose headers are installed (``with_headers``). The running
    kernel counts only when it is installed here (in a container it is the host's, not a
    Debian kernel). Pure: reads the facts only, never this machine's /lib/modules.
    Returns (targets in version order, missing_headers)."""
    with_headers = set(kernel_facts.get("with_headers") or [])
    installed = set(kernel_facts.get("images") or []) | set(kernel_facts.get("with_modules") or [])
    targets = sorted(installed | with_headers, key=version_tuple)
    missing = [k for k in targets if k not in with_headers]
    return targets, missing


def headers_package(kernel, pattern="linux-headers-%s"):
    return pattern % kernel


# --- which module `modprobe nvidia` loads, the provenance record ----------------------------


def modprobe_target(config_text, name="nvidia"):
    """The module `modprobe <name>` really loads, from `modprobe -c` output: Debian renames
    its stock module (nvidia-current-open) and redirects with ``install nvidia modprobe -i
    nvidia-current-open``; without such a line it is <name> itself."""
    for line in config_text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "install" and parts[1] == name:
            m = re.search(r"modprobe\s+(?:-\S+\s+)*-i\s+([\w-]+)", line)
            if m:
                return m.group(1)
        if len(parts) == 3 and parts[0] == "alias" and parts[1] == name:
            return parts[2]
    return name


def read_provenance(path=PROVENANCE_PATH):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def write_provenance(record, path=PROVENANCE_PATH):
    """Write the record; False when the file already says the same (ignoring the build
    time, which only changes with a build)."""
    old = read_provenance(path)
    if old is not None:
        a = dict(old)
        b = dict(record)
        for key in ("build_time",):
            a.pop(key, None)
            b.pop(key, None)
        if a == b and (record.get("build_time") is None or old.get("build_time")):
            return False
    write_json_atomic(record, path)
    return True


def write_json_atomic(record, path):
    """Write a JSON record so that a reader sees the old file or the new one, never half:
    to ``path.tmp``, then renamed over ``path`` (directories created)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(record, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)
