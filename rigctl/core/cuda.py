"""CUDA toolkit and NCCL version logic shared by the cuda and nccl roles' modules, the
inventory check and the verification suites.

Stdlib only, Python 3.9 syntax: shipped to managed hosts as module_utils.

- Which driver a CUDA toolkit needs (NVIDIA's CUDA release notes, "CUDA Toolkit and
  Corresponding Driver Versions"): every toolkit release ships with a driver and needs at
  least that driver (``TOOLKIT_DRIVER``); within a major release an older driver still runs
  it through *minor version compatibility* (``MINOR_COMPAT_DRIVER``), with limits (PTX
  built by the newer toolkit cannot be JIT-compiled by the older driver; some APIs return
  ``cudaErrorCallRequiresNewerDriver``). :func:`driver_support` decides.
- Which packages carry a toolkit per source (NVIDIA's repository names them
  ``cuda-toolkit-12-8`` and installs under ``/usr/local/cuda-12.8``; Debian ships one
  toolkit, ``nvidia-cuda-toolkit``, spread over ``/usr``: ``nvcc`` in ``/usr/bin``).
- Which NCCL build to install: NVIDIA's repository carries each NCCL release once per CUDA
  release it was built with (``libnccl2 2.26.2-1+cuda12.8``); :func:`select_nccl_build`
  picks the one for the rig's toolkit.
"""

from __future__ import annotations

import os
import re

from . import driver as driverlib
from . import gpulayer, hostfacts

# --- toolkit <-> driver -----------------------------------------------------------------

# CUDA release -> the Linux x86_64 driver it ships with (GA release; updates of a release
# need at most a slightly newer driver of the same branch, which the branch check covers).
TOOLKIT_DRIVER = {
    "11.0": "450.36.06",
    "11.1": "455.23",
    "11.2": "460.27.03",
    "11.3": "465.19.01",
    "11.4": "470.42.01",
    "11.5": "495.29.05",
    "11.6": "510.39.01",
    "11.7": "515.43.04",
    "11.8": "520.61.05",
    "12.0": "525.60.13",
    "12.1": "530.30.02",
    "12.2": "535.54.03",
    "12.3": "545.23.06",
    "12.4": "550.54.14",
    "12.5": "555.42.02",
    "12.6": "560.28.03",
    "12.8": "570.26",
    "12.9": "575.51.03",
    "13.0": "580.65.06",
}

# CUDA major -> the oldest driver that runs any toolkit of that major (minor version
# compatibility). Below it, the toolkit's programs do not run at all.
MINOR_COMPAT_DRIVER = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}

# A CUDA release, major.minor (12.8, 12.10); the inventory schema's too.
CUDA_VERSION_PATTERN = r"^(\d{2})\.(\d{1,2})$"
_CUDA_RE = re.compile(CUDA_VERSION_PATTERN)


def parse_cuda_version(value):
    """'12.8' -> (12, 8). Raises ValueError for anything else (12.10 is 12.10, not 12.1)."""
    match = _CUDA_RE.match(str(value or "").strip())
    if not match:
        raise ValueError("%r is not a CUDA version (major.minor like 12.8)" % (value,))
    return int(match.group(1)), int(match.group(2))


def cuda_key(value):
    major, minor = parse_cuda_version(value)
    return "%d.%d" % (major, minor)


def toolkit_driver(cuda_version):
    """The driver a toolkit release ships with, or None when rigctl does not know it (a
    release newer than this table: then only the major's minimum is known)."""
    return TOOLKIT_DRIVER.get(cuda_key(cuda_version))


def driver_cuda_version(driver_version):
    """The newest CUDA release a driver supports fully (the last toolkit whose shipped
    driver is not newer), like nvidia-smi's "CUDA Version". None for unknown/old drivers."""
    have = driverlib.version_tuple(driver_version)
    best = None
    for cuda, need in TOOLKIT_DRIVER.items():
        if have >= driverlib.version_tuple(need):
            if best is None or parse_cuda_version(cuda) > parse_cuda_version(best):
                best = cuda
    return best


def driver_support(cuda_version, driver_version, allow_minor_compat=False):
    """Whether ``driver_version`` runs toolkit ``cuda_version``.

    Returns ``{"supported", "mode" ("full", "minor-compat", "unsupported"), "needs",
    "minimum", "message", "fix"}``. ``mode`` full: the driver is at least the toolkit's
    own; minor-compat: same major, older driver (runs, with limits) -- accepted only with
    ``allow_minor_compat``; unsupported: below the major's minimum.
    """
    major, _ = parse_cuda_version(cuda_version)
    needs = toolkit_driver(cuda_version)
    minimum = MINOR_COMPAT_DRIVER.get(major)
    have = driverlib.version_tuple(driver_version)
    result = {"cuda": cuda_key(cuda_version), "driver": driver_version, "needs": needs,
              "minimum": minimum, "driver_cuda": driver_cuda_version(driver_version)}
    if minimum is None:
        result.update(supported=False, mode="unsupported",
                      message="rigctl does not know which driver CUDA %s needs" % cuda_version,
                      fix="use a CUDA release of major %s" % "/".join(
                          str(m) for m in sorted(MINOR_COMPAT_DRIVER)))
        return result
    if needs is not None and have >= driverlib.version_tuple(needs):
        result.update(supported=True, mode="full", message=None, fix=None)
        return result
    if needs is None and have >= driverlib.version_tuple(minimum):
        # A release newer than the table: the major's minimum is all that is known.
        result.update(supported=True, mode="full", message=None, fix=None)
        return result
    if have < driverlib.version_tuple(minimum):
        result.update(
            supported=False, mode="unsupported",
            message="CUDA %s needs NVIDIA driver %s or newer (any CUDA %d.x needs at least %s); "
            "the installed driver is %s" % (cuda_key(cuda_version), needs or minimum, major,
                                             minimum, driver_version),
            fix="set rig_cuda_version to a release this driver supports (%s or older) or "
            "install a newer driver (rig_driver_version)" % (result["driver_cuda"] or "none"),
        )
        return result
    if allow_minor_compat:
        result.update(supported=True, mode="minor-compat", message=None, fix=None)
        return result
    result.update(
        supported=False, mode="minor-compat",
        message="CUDA %s ships with driver %s; the installed driver %s supports CUDA up to %s. "
        "It would run only through CUDA minor version compatibility (PTX from this toolkit "
        "cannot be JIT-compiled, newer APIs fail)" % (cuda_key(cuda_version), needs, driver_version,
                                                       result["driver_cuda"] or "?"),
        fix="install driver %s or newer, set rig_cuda_version to %s, or accept minor version "
        "compatibility with rig_cuda_minor_version_compat: true"
        % (needs, result["driver_cuda"] or "an older release"),
    )
    return result


def installed_driver_version(driver_facts, gpu_driver_version=None):
    """The driver version the toolkit will meet: the loaded kernel module's, else what
    nvidia-smi reports, else the installed userspace libraries'. None when there is none.

    ``driver_facts`` is ``hostfacts.driver(...)``'s answer."""
    loaded = driver_facts.get("loaded_version_sysfs")
    if loaded:
        return loaded, "loaded kernel module"
    proc = driver_facts.get("loaded") or {}
    if proc.get("version"):
        return proc["version"], "loaded kernel module"
    if gpu_driver_version:
        return gpu_driver_version, "nvidia-smi"
    userspace = driver_facts.get("userspace_versions") or []
    if userspace:
        return sorted(userspace, key=driverlib.version_tuple)[-1], "installed userspace libraries"
    return None, None


# --- toolkit packages per source ---------------------------------------------------------

SOURCES = ("cuda-repo", "debian", "mirror")


def toolkit_package(source, cuda_version):
    """The apt package that carries a toolkit release from a source."""
    major, minor = parse_cuda_version(cuda_version)
    if source == "debian":
        return "nvidia-cuda-toolkit"
    return "cuda-toolkit-%d-%d" % (major, minor)


def toolkit_home(source, cuda_version):
    """Where a toolkit lives on the rig (CUDA_HOME: bin/nvcc, include/, lib). Debian spreads
    its one toolkit over /usr (nvcc in /usr/bin, headers in /usr/include, libraries in the
    multiarch directory), so CUDA_HOME is /usr there."""
    if source == "debian":
        return "/usr"
    return "/usr/local/cuda-%s" % cuda_key(cuda_version)


def toolkit_nvcc(source, cuda_version):
    if source == "debian":
        return "/usr/bin/nvcc"
    return os.path.join(toolkit_home(source, cuda_version), "bin", "nvcc")


def toolkit_ccbin(source):
    """The host compiler directory nvcc must be given (``-ccbin``), or None. Debian's
    toolkit brings the gcc release it supports with wrappers in its own bin directory, but
    nvcc only finds them there when told (the plain ``gcc`` package may be absent or newer
    than nvcc accepts)."""
    return "/usr/lib/nvidia-cuda-toolkit/bin" if source == "debian" else None


def deb_matches_cuda(deb_version, source, cuda_version):
    """Whether an apt version of the toolkit package is this CUDA release.

    Debian: ``11.8.89~11.8.0-5~deb12u1`` (upstream 11.8.89); NVIDIA: any version of
    ``cuda-toolkit-12-8`` is 12.8 (``12.8.1-1``)."""
    if not deb_version:
        return False
    upstream = deb_version.split(":", 1)[-1]
    match = re.match(r"^(\d+)\.(\d+)", upstream)
    return bool(match) and (int(match.group(1)), int(match.group(2))) == parse_cuda_version(cuda_version)


def pick_toolkit_version(madison_versions, source, cuda_version):
    """The newest apt version of the toolkit package that is this CUDA release, or None."""
    matching = [v for v in madison_versions if deb_matches_cuda(v, source, cuda_version)]
    if not matching:
        return None
    return sorted(matching, key=_deb_sort_key)[-1]


def parse_nvcc_version(text):
    """``nvcc --version`` -> "12.8" (from ``release 12.8, V12.8.61``). ValueError otherwise."""
    match = re.search(r"release (\d+\.\d+), V(\d+\.\d+\.\d+)", text or "")
    if not match:
        raise ValueError("not nvcc --version output: %r" % (text or "")[:120])
    return match.group(1)


def parse_madison(text):
    """``apt-cache madison PKG`` -> list of versions (as printed, newest first)."""
    versions = []
    for line in (text or "").splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 3 and parts[1]:
            versions.append(parts[1])
    return versions


def _deb_order(char):
    if char == "~":
        return -1
    if char.isalpha():
        return ord(char)
    return ord(char) + 256 if char else 0


def _deb_compare_part(a, b):
    """dpkg's comparison of an upstream version or revision string."""
    while a or b:
        da = re.match(r"^[^0-9]*", a).group(0)
        db = re.match(r"^[^0-9]*", b).group(0)
        for i in range(max(len(da), len(db))):
            ca = _deb_order(da[i] if i < len(da) else "")
            cb = _deb_order(db[i] if i < len(db) else "")
            if ca != cb:
                return -1 if ca < cb else 1
        a, b = a[len(da):], b[len(db):]
        na = re.match(r"^[0-9]*", a).group(0)
        nb = re.match(r"^[0-9]*", b).group(0)
        if int(na or 0) != int(nb or 0):
            return -1 if int(na or 0) < int(nb or 0) else 1
        a, b = a[len(na):], b[len(nb):]
    return 0


def deb_compare(a, b):
    """Compare two Debian versions like ``dpkg --compare-versions``: -1, 0 or 1."""
    def split(v):
        epoch, _, rest = v.partition(":") if ":" in v else ("0", "", v)
        upstream, _, revision = rest.rpartition("-") if "-" in rest else (rest, "", "")
        return int(epoch or 0), upstream, revision

    ea, ua, ra = split(a)
    eb, ub, rb = split(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _deb_compare_part(ua, ub) or _deb_compare_part(ra, rb)


def _deb_sort_key(version):
    import functools

    return functools.cmp_to_key(deb_compare)(version)


# --- NCCL ------------------------------------------------------------------------------

_NCCL_DEB_RE = re.compile(r"^(?:\d+:)?(\d+\.\d+\.\d+)-(\d+)\+cuda(\d+)\.(\d+)$")


def parse_nccl_deb_version(deb_version):
    """``2.26.2-1+cuda12.8`` -> {"nccl": "2.26.2", "release": "1", "cuda": "12.8"}, or None."""
    match = _NCCL_DEB_RE.match((deb_version or "").strip())
    if not match:
        return None
    return {"nccl": match.group(1), "release": match.group(2),
            "cuda": "%s.%s" % (match.group(3), match.group(4))}


def nccl_version_matches(deb_version, wanted):
    """Whether an apt version is NCCL ``wanted`` (``2.26.2`` or ``2.26.2-1``)."""
    parsed = parse_nccl_deb_version(deb_version)
    if not parsed:
        return False
    if "-" in wanted:
        return "%s-%s" % (parsed["nccl"], parsed["release"]) == wanted
    return parsed["nccl"] == wanted


def select_nccl_build(madison_versions, wanted, cuda_version=None, driver_version=None):
    """Pick the apt version of libnccl2 to install.

    NVIDIA builds each NCCL release once per CUDA release (``+cuda12.8``). NCCL carries
    its own GPU code and links the CUDA runtime statically, so the build must be of the
    toolkit's CUDA major, not newer than the toolkit (it may need a newer driver), and run
    on the driver. Preference: the toolkit's exact release, else the newest older release
    of the same major. Without a managed toolkit, the newest build the driver runs fully.

    Returns ``{"version", "cuda", "candidates", "error", "fix"}``.
    """
    candidates = []
    for deb in madison_versions:
        parsed = parse_nccl_deb_version(deb)
        if parsed and nccl_version_matches(deb, wanted):
            candidates.append((deb, parsed["cuda"]))
    result = {"version": None, "cuda": None, "candidates": [c[0] for c in candidates],
              "error": None, "fix": None}
    if not candidates:
        builds = sorted({p["nccl"] + "-" + p["release"]
                         for p in (parse_nccl_deb_version(v) for v in madison_versions) if p})
        result["error"] = "NCCL %s is not in the source; it has %s" % (
            wanted, ", ".join(builds) or "no NCCL at all")
        result["fix"] = "set rig_nccl_version to one of those, or point the NCCL source at a " \
            "repository that has %s" % wanted
        return result
    usable = []
    for deb, cuda in candidates:
        if cuda_version is not None:
            if parse_cuda_version(cuda)[0] != parse_cuda_version(cuda_version)[0]:
                continue
            if parse_cuda_version(cuda) > parse_cuda_version(cuda_version):
                continue
        elif driver_version is not None:
            if not driver_support(cuda, driver_version)["supported"]:
                continue
        usable.append((deb, cuda))
    if not usable:
        builds = ", ".join("%s (CUDA %s)" % c for c in candidates)
        if cuda_version is not None:
            result["error"] = "no build of NCCL %s fits CUDA %s: the source has %s" % (
                wanted, cuda_version, builds)
            result["fix"] = "choose an NCCL release built for CUDA %s.x up to %s, or change " \
                "rig_cuda_version" % (parse_cuda_version(cuda_version)[0], cuda_version)
        else:
            result["error"] = "no build of NCCL %s runs on driver %s: the source has %s" % (
                wanted, driver_version, builds)
            result["fix"] = "install a newer driver or choose an older NCCL release"
        return result
    usable.sort(key=lambda c: (parse_cuda_version(c[1]), _deb_sort_key(c[0])))
    exact = [c for c in usable if cuda_version is not None and cuda_key(c[1]) == cuda_key(cuda_version)]
    chosen = exact[-1] if exact else usable[-1]
    result["version"], result["cuda"] = chosen
    return result


def parse_nccl_header_version(text):
    """``nccl.h`` -> "2.26.2" from NCCL_MAJOR/MINOR/PATCH defines. ValueError otherwise."""
    parts = {}
    for name in ("MAJOR", "MINOR", "PATCH"):
        match = re.search(r"^#define\s+NCCL_%s\s+(\d+)" % name, text or "", re.M)
        if not match:
            raise ValueError("nccl.h has no NCCL_%s define" % name)
        parts[name] = match.group(1)
    return "%s.%s.%s" % (parts["MAJOR"], parts["MINOR"], parts["PATCH"])


def parse_nccl_library_version(data):
    """The ``NCCL version 2.21.5+cuda11.0`` string NCCL embeds in libnccl.so (bytes or
    text) -> {"nccl": "2.21.5", "cuda": "11.0"}, or None."""
    if isinstance(data, bytes):
        data = data.decode("latin-1")
    match = re.search(r"NCCL version (\d+\.\d+\.\d+)\+cuda(\d+\.\d+)", data or "")
    if not match:
        return None
    return {"nccl": match.group(1), "cuda": match.group(2)}


# --- host readers (used by the modules and the suites) ---------------------------------


def read_driver_version(root="/"):
    """(version, where from) of the NVIDIA driver on this host, or (None, None)."""
    facts = hostfacts.driver(hostfacts.kernels(root), root)
    gpu_layer = gpulayer.layer(root)
    smi = hostfacts.nvidia_smi_gpus(gpu_layer["nvidia_smi"])
    smi_version = smi["gpus"][0].get("driver_version") if smi["available"] and smi["gpus"] else None
    version, where = installed_driver_version(facts, smi_version)
    if version and gpu_layer["simulated"] and where == "nvidia-smi":
        where = "simulated nvidia-smi (lab rig)"
    return version, where


def installed_deb_version(package):
    """The installed version of one NVIDIA/CUDA/NCCL package (from hostfacts'
    package list), or None."""
    for entry in hostfacts.nvidia_packages() or []:
        if entry["name"] == package:
            return entry["version"]
    return None


def read_nvcc_version(nvcc):
    """The CUDA release of an nvcc binary, or None when it is missing or does not answer."""
    rc, out, _ = hostfacts.run([nvcc, "--version"])
    if rc != 0:
        return None
    try:
        return parse_nvcc_version(out)
    except ValueError:
        return None
