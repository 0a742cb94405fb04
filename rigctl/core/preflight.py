"""Preflight rules: may this host be provisioned at all?

Pure functions over the facts from hostfacts.gather(). The `rig_preflight` role fails on
them, and the verification suite asserts the same rules, so both say the same thing.
"""

from __future__ import annotations

# (os id, version id) -> the name users know it by.
SUPPORTED_OS = {
    ("debian", "12"): "Debian 12 (bookworm)",
    ("debian", "13"): "Debian 13 (trixie)",
    ("ubuntu", "22.04"): "Ubuntu 22.04 LTS",
    ("ubuntu", "24.04"): "Ubuntu 24.04 LTS",
}
SUPPORTED_ARCH = ("x86_64",)
MIN_PYTHON = (3, 9)

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"


def _result(name, status, message, fix=None):
    summary = "%s: %s" % (name, message) + (" (fix: %s)" % fix if fix else "")
    return {"name": name, "status": status, "message": message, "fix": fix, "summary": summary}


def supported_os_names():
    return ", ".join(SUPPORTED_OS.values())


def check_os(facts):
    osr = facts["os"]
    key = (osr["id"], osr["version_id"])
    label = osr.get("pretty_name") or "%s %s" % key
    if key in SUPPORTED_OS:
        return _result("os_supported", PASS, "%s is supported" % SUPPORTED_OS[key])
    return _result(
        "os_supported",
        FAIL,
        "%s is not supported (supported: %s)" % (label, supported_os_names()),
        "install a supported OS on this host, or remove it from the inventory",
    )


def check_arch(facts):
    arch = facts["arch"]
    if arch in SUPPORTED_ARCH:
        return _result("arch_supported", PASS, "%s is supported" % arch)
    return _result(
        "arch_supported",
        FAIL,
        "CPU architecture %s is not supported (supported: %s)" % (arch, ", ".join(SUPPORTED_ARCH)),
        "rigctl targets x86_64 rigs; remove this host from the inventory",
    )


def check_python(facts):
    version = tuple(int(x) for x in facts["python"].split(".")[:2])
    if version >= MIN_PYTHON:
        return _result("python_usable", PASS, "python %s" % facts["python"])
    return _result(
        "python_usable",
        FAIL,
        "python %s on the host is too old (need %d.%d+)" % ((facts["python"],) + MIN_PYTHON),
        "install python3 from the distribution",
    )


def check_become(facts):
    if facts["euid"] == 0:
        return _result("become_root", PASS, "privilege escalation to root works")
    return _result(
        "become_root",
        FAIL,
        "tasks run as uid %d, not root" % facts["euid"],
        "give the SSH user passwordless sudo (or set ansible_become_password via a vault)",
    )


def check_disk(facts, min_free_gib):
    free = facts["disk_free_gib"].get("/")
    if free is None:
        return _result("disk_space", WARN, "free space on / could not be read")
    if free >= min_free_gib:
        return _result("disk_space", PASS, "%.1f GiB free on / (need %s)" % (free, min_free_gib))
    return _result(
        "disk_space",
        FAIL,
        "%.1f GiB free on /, need %s GiB for driver, CUDA and module builds" % (free, min_free_gib),
        "free space on / (apt-get clean, old kernels) or lower rig_min_free_disk_gib",
    )


def check_dpkg(facts):
    dpkg = facts.get("dpkg") or {}
    if not dpkg.get("present"):
        return _result("package_manager_ready", SKIP, "no dpkg on this host")
    if dpkg.get("interrupted"):
        return _result(
            "package_manager_ready",
            FAIL,
            "an earlier dpkg run was interrupted; package installs would fail halfway",
            "finish it on the host: dpkg --configure -a (then apt-get -f install)",
        )
    return _result("package_manager_ready", PASS, "dpkg is in a consistent state")


def check_gpus(facts, expected=None):
    gpus = facts["gpus"]
    view = facts["gpu_view"]
    suffix = " (simulated)" if view == "simulated" else ""
    if not gpus:
        return _result(
            "gpus_on_pci",
            FAIL if expected else WARN,
            "no NVIDIA GPU found on PCI",
            "check that the cards are seated and powered (risers, PCIe power cables)",
        )
    if expected is not None and len(gpus) != expected:
        return _result(
            "gpus_on_pci",
            FAIL,
            "expected %d GPUs (rig_gpu_count), found %d on PCI%s: %s"
            % (expected, len(gpus), suffix, ", ".join(g["bus_id"] for g in gpus)),
            "a missing GPU is usually a riser, a power cable or a slot: reseat it, "
            "or correct rig_gpu_count",
        )
    return _result("gpus_on_pci", PASS, "%d NVIDIA GPU(s) on PCI%s" % (len(gpus), suffix))


def check_headers(facts, driver_managed=True):
    """Kernel headers matter only where rigctl builds the NVIDIA kernel modules (DKMS):
    when the driver is managed (rig_driver_version set). Without headers the driver role
    refuses before changing anything; this says so early."""
    kern = facts["kernel"]
    if not driver_managed:
        return _result(
            "kernel_headers", SKIP,
            "the NVIDIA driver is not managed (rig_driver_version is null): no kernel module "
            "is built, headers are not needed",
        )
    if kern["with_headers"]:
        return _result(
            "kernel_headers", PASS, "headers installed for %s" % ", ".join(kern["with_headers"])
        )
    return _result(
        "kernel_headers",
        WARN,
        "no installed kernel has its headers, so the NVIDIA kernel modules cannot be built: "
        "the driver role will refuse (rig_driver_version is set) and change nothing",
        "install them, then run again: apt-get install linux-headers-$(uname -r) "
        "(Debian: linux-headers-amd64, Ubuntu: linux-headers-generic)",
    )


def check_secure_boot(facts, flavor):
    state = facts["secure_boot"]["state"]
    if state == "enabled" and flavor == "p2p":
        return _result(
            "secure_boot",
            WARN,
            "Secure Boot is on: the patched module must be signed with an enrolled key",
            "the driver role signs it with a machine-owner key and prints how to enroll it",
        )
    return _result("secure_boot", PASS, "Secure Boot %s" % state)


def evaluate(facts, min_free_disk_gib=10, gpu_count=None, driver_flavor="open",
             driver_managed=True):
    """All preflight results, in a stable order. ``driver_managed``: rig_driver_version is
    set (the driver role builds kernel modules, so headers are needed)."""
    return [
        check_os(facts),
        check_arch(facts),
        check_python(facts),
        check_become(facts),
        check_disk(facts, min_free_disk_gib),
        check_dpkg(facts),
        check_gpus(facts, gpu_count),
        check_headers(facts, driver_managed),
        check_secure_boot(facts, driver_flavor),
    ]


def failures(results):
    return [r for r in results if r["status"] == FAIL]
