"""Gather the facts about a rig that the roles, the checks and the CLI need.

Runs ON the managed host (shipped by Ansible inside the `rig_facts` module) with the
standard library only. Every reading says where it came from; nothing is guessed. On a lab
rig the GPUs come from the simulated GPU layer and are reported as simulated.
"""

from __future__ import annotations

import glob
import os
import platform
import re
import shutil
import subprocess
import sys

from . import aptsource, constants, drvinfo, gpudb, gpulayer, gpumodel, pcidev, reboot, smiquery
from . import driver as _driver

FACTS_SCHEMA = 1

# GUID of the EFI global variable namespace (SecureBoot, SetupMode live there).
_EFI_GLOBAL = "8be4df61-93ca-11d2-aa0d-e0ed8c5b9d4e"

def run(argv, timeout=30):
    """Run a command; (rc, stdout, stderr). rc 127 when the program is missing."""
    if shutil.which(argv[0]) is None and not os.path.isabs(argv[0]):
        return 127, "", "%s: not found" % argv[0]
    try:
        proc = subprocess.run(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            timeout=timeout,
            env=dict(os.environ, LC_ALL="C"),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 126, "", str(exc)
    return proc.returncode, proc.stdout, proc.stderr


def read(path, default=None):
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return default


def read_stripped(path, default=None):
    value = read(path)
    return default if value is None else value.strip()


# --- OS, kernel, boot -------------------------------------------------------------------


def os_release(root="/"):
    text = read(os.path.join(root, "etc/os-release")) or read(
        os.path.join(root, "usr/lib/os-release"), ""
    )
    values = {}
    for line in text.splitlines():
        if "=" not in line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip('"').strip("'")
    return {
        "id": values.get("ID", "unknown"),
        "id_like": values.get("ID_LIKE", ""),
        "version_id": values.get("VERSION_ID", ""),
        "codename": values.get("VERSION_CODENAME", ""),
        "pretty_name": values.get("PRETTY_NAME", ""),
    }


def kernels(root="/"):
    """Kernels known to the host: the running one, those with a module tree, those with
    modules of their own (``/lib/modules/K/kernel``), those whose headers are installed,
    and the kernels a driver build must cover (``targets``, :func:`driver.target_kernels`,
    evaluated here on the rig)."""
    running = platform.release()
    module_dirs = sorted(
        os.path.basename(p)
        for p in glob.glob(os.path.join(root, "lib/modules/*"))
        if os.path.isdir(p)
    )
    with_headers = []
    with_modules = []
    for name in module_dirs:
        build = os.path.join(root, "lib/modules", name, "build")
        if os.path.isfile(os.path.join(build, "Makefile")):
            with_headers.append(name)
        if os.path.isdir(os.path.join(root, "lib/modules", name, "kernel")):
            with_modules.append(name)
    images = sorted(
        os.path.basename(p)[len("vmlinuz-") :]
        for p in glob.glob(os.path.join(root, "boot/vmlinuz-*"))
    )
    facts = {
        "running": running,
        "running_has_headers": running in with_headers,
        "with_headers": with_headers,
        "module_dirs": module_dirs,
        "with_modules": with_modules,
        "images": images,
    }
    facts["targets"], facts["targets_without_headers"] = _driver.target_kernels(facts)
    return facts


def secure_boot(root="/", container=None):
    """Secure Boot state from the EFI variable (no mokutil needed). In a container
    (``container``: its kind) a missing /sys/firmware/efi says nothing about the machine's
    firmware (container runtimes hide /sys/firmware): the state is ``unknown``, never
    ``disabled``."""
    efi = os.path.join(root, "sys/firmware/efi")
    if not os.path.isdir(efi):
        if container:
            return {
                "state": "unknown",
                "source": "container (%s): /sys/firmware is not visible here" % container,
                "container": True,
            }
        return {"state": "disabled", "source": "no EFI firmware (legacy BIOS boot)"}
    path = os.path.join(efi, "efivars", "SecureBoot-" + _EFI_GLOBAL)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        return {"state": "unknown", "source": "cannot read %s: %s" % (path, exc.strerror)}
    # 4 bytes of attributes, then one byte: 1 enabled, 0 disabled.
    if len(data) < 5:
        return {"state": "unknown", "source": "%s is %d bytes" % (path, len(data))}
    return {"state": "enabled" if data[4] == 1 else "disabled", "source": path}


_IOMMU_FLAGS = ("iommu", "intel_iommu", "amd_iommu", "iommu.passthrough", "pcie_acs_override")


def kernel_cmdline(root="/"):
    raw = (read(os.path.join(root, "proc/cmdline"), "") or "").strip()
    flags = {}
    for token in raw.split():
        key, sep, value = token.partition("=")
        if key in _IOMMU_FLAGS:
            flags[key] = value if sep else True
    return {"raw": raw, "iommu_flags": flags}


def iommu(sys_root, cmdline_flags, simulated=False):
    """IOMMU mode as the kernel applies it: groups exist when an IOMMU is on; each
    group's type is `identity` in passthrough and `DMA`/`DMA-FQ` when translating.
    ``simulated``: ``sys_root`` is a lab rig's simulated sysfs (the mode is the lab
    profile's, not a real IOMMU's; the result says so)."""
    groups_dir = os.path.join(sys_root, "kernel/iommu_groups")
    groups = sorted(glob.glob(os.path.join(groups_dir, "*")))
    types = {}
    for group in groups:
        kind = read_stripped(os.path.join(group, "type"))
        if kind:
            types[kind] = types.get(kind, 0) + 1
    if not groups:
        mode = "off"
    elif types and set(types) == {"identity"}:
        mode = "passthrough"
    elif any(t.startswith("DMA") for t in types):
        mode = "translated"
    else:
        mode = "unknown"
    return {
        "mode": mode,
        "groups": len(groups),
        "group_types": types,
        "cmdline": cmdline_flags,
        "source": ("simulated (lab profile): %s" % groups_dir) if simulated else groups_dir,
        "simulated": bool(simulated),
    }


def cpu_vendor(root="/"):
    text = read(os.path.join(root, "proc/cpuinfo"), "") or ""
    match = re.search(r"^vendor_id\s*:\s*(\S+)", text, re.M)
    vendor = match.group(1) if match else ""
    return {"AuthenticAMD": "AMD", "GenuineIntel": "Intel"}.get(vendor, vendor or "unknown")


def container_kind(root="/"):
    value = read_stripped(os.path.join(root, "run/systemd/container"))
    if value:
        return value
    if os.path.exists(os.path.join(root, ".dockerenv")):
        return "docker"
    return None


def dpkg_state(root="/"):
    """An interrupted dpkg run (files left in /var/lib/dpkg/updates) makes every later
    package operation fail until `dpkg --configure -a` finishes it."""
    updates = os.path.join(root, "var/lib/dpkg/updates")
    if not os.path.isdir(os.path.join(root, "var/lib/dpkg")):
        return {"present": False, "interrupted": False}
    try:
        pending = sorted(os.listdir(updates))
    except OSError:
        pending = []
    return {"present": True, "interrupted": bool(pending)}


def disk_free_gib(path="/"):
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return round(st.f_bavail * st.f_frsize / 2**30, 1)


# --- GPUs on PCI ----------------------------------------------------------------------


def _link(dev):
    def speed(name):
        return pcidev.parse_sysfs_link_speed(read_stripped(os.path.join(dev, name), "") or "")

    def width(name):
        value = read_stripped(os.path.join(dev, name))
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None

    cur, top = speed("current_link_speed"), speed("max_link_speed")
    return {
        "gen_current": pcidev.pcie_gen_from_speed(cur) if cur else None,
        "gen_max": pcidev.pcie_gen_from_speed(top) if top else None,
        "speed_current_gts": cur,
        "speed_max_gts": top,
        "width_current": width("current_link_width"),
        "width_max": width("max_link_width"),
    }


def pci_gpus(sys_root, simulated):
    """NVIDIA display-class devices (class 0x03xxxx, vendor 10de) from a sysfs tree."""
    gpus = []
    for dev in sorted(glob.glob(os.path.join(sys_root, "bus/pci/devices/*"))):
        vendor = (read_stripped(os.path.join(dev, "vendor"), "") or "").lower()
        klass = (read_stripped(os.path.join(dev, "class"), "") or "").lower()
        if vendor != "0x" + constants.NVIDIA_PCI_VENDOR or not klass.startswith("0x03"):
            continue
        device_id = gpudb.normalize_device_id(read_stripped(os.path.join(dev, "device"), "") or "")
        model = gpudb.model_for_device(device_id)
        numa = read_stripped(os.path.join(dev, "numa_node"))
        driver = os.path.join(dev, "driver")
        group = os.path.join(dev, "iommu_group")
        gpus.append(
            {
                "bus_id": gpudb.normalize_bus_id(os.path.basename(dev)),
                "device_id": device_id,
                "model": model[0] if model else None,
                "generation": model[1] if model else None,
                "class": klass,
                "numa_node": int(numa) if numa and numa.lstrip("-").isdigit() else None,
                "link": _link(dev),
                "kernel_driver": os.path.basename(os.readlink(driver))
                if os.path.islink(driver)
                else None,
                "iommu_group": os.path.basename(os.readlink(group))
                if os.path.islink(group)
                else None,
                "simulated": simulated,
            }
        )
    return gpus


def nvidia_smi_gpus(nvidia_smi="nvidia-smi"):
    """What the driver says about each GPU, when a driver answers."""
    rc, out, err = run(
        [nvidia_smi, "--query-gpu=" + ",".join(gpumodel.QUERY_FIELDS),
         "--format=csv,noheader,nounits"]
    )
    if rc == 127:
        return {"available": False, "error": "nvidia-smi not installed", "gpus": []}
    if rc != 0:
        message = (err or out).strip().splitlines()
        return {"available": False, "error": message[0] if message else "rc=%d" % rc, "gpus": []}
    try:
        rows = smiquery.parse_query_gpu_csv(out, fields=list(gpumodel.QUERY_FIELDS))
    except ValueError as exc:
        return {"available": False, "error": "unparsable nvidia-smi output: %s" % exc, "gpus": []}
    return {"available": True, "error": None, "gpus": rows}


def read_gpus(gpu_layer, driver=True):
    """What the GPU layer (:func:`gpulayer.layer`) says about the GPUs: ``(pci,
    answer)``, sysfs's NVIDIA devices (:func:`pci_gpus`) and :func:`nvidia_smi_gpus`' answer
    (asked only when there are GPUs on PCI and ``driver``). Both GPU fact gatherers read
    through here and build the list with :func:`gpumodel.build`."""
    pci = pci_gpus(gpu_layer["sys_root"], simulated=gpu_layer["simulated"])
    if not pci:
        return pci, {"available": False, "error": "no NVIDIA GPU on PCI", "gpus": []}
    if not driver:
        return pci, {"available": False, "error": "not asked", "gpus": []}
    return pci, nvidia_smi_gpus(gpu_layer["nvidia_smi"])


def read_iommu(root="/", gpu_layer=None):
    """:func:`iommu` of this host. On a lab rig the IOMMU is part of the simulated hardware
    (the container would otherwise report the lab host's own IOMMU): its groups are read
    from the simulated sysfs and the result says it is simulated."""
    gpu_layer = gpu_layer or gpulayer.layer(root)
    flags = kernel_cmdline(root)["iommu_flags"]
    return iommu(gpu_layer["sys_root"], flags, simulated=gpu_layer["simulated"])


# --- driver ---------------------------------------------------------------------------


def userspace_versions(root="/"):
    """Versions of the NVIDIA userspace installed (from libnvidia-ml's file name: works for
    distro packages, the CUDA repo and the .run installer alike)."""
    versions = set()
    for pattern in (
        "usr/lib/*/libnvidia-ml.so.*.*",
        # Debian's packages: the real file sits behind the `nvidia` alternative
        "usr/lib/*/nvidia/current/libnvidia-ml.so.*.*",
        "usr/lib64/libnvidia-ml.so.*.*",
        "usr/lib/libnvidia-ml.so.*.*",
    ):
        for path in glob.glob(os.path.join(root, pattern)):
            match = re.search(r"libnvidia-ml\.so\.(\d+\.\d+(?:\.\d+)?)$", path)
            if match:
                versions.add(match.group(1))
    return sorted(versions)


def nvidia_packages():
    """Installed Debian packages that belong to the NVIDIA stack, with hold state."""
    rc, out, _ = run(
        ["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${db:Status-Abbrev}\t${Status}\n"]
    )
    if rc != 0:
        return None
    packages = []
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) < 4:
            continue
        name, version, abbrev, status = parts[0], parts[1], parts[2].strip(), parts[3]
        if not re.search(r"nvidia|cuda|nccl", name):
            continue
        if not abbrev.startswith(("ii", "hi")):
            continue
        packages.append({"name": name, "version": version, "held": status.startswith("hold")})
    return packages


def parse_dkms_status(text):
    """`dkms status` lines: 'nvidia/535.261.03, 6.1.0-27-amd64, x86_64: installed'
    (dkms 3) or 'nvidia, 535.261.03, 6.1.0-27-amd64, x86_64: installed' (dkms 2)."""
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or ":" not in line:
            continue
        head, _, state = line.rpartition(":")
        fields = [f.strip() for f in head.split(",")]
        if "/" in fields[0]:
            module, _, version = fields[0].partition("/")
            rest = fields[1:]
        else:
            module, version, rest = fields[0], fields[1] if len(fields) > 1 else "", fields[2:]
        entries.append(
            {
                "module": module,
                "version": version,
                "kernel": rest[0] if rest else None,
                "arch": rest[1] if len(rest) > 1 else None,
                "state": state.strip().split()[0] if state.strip() else "",
            }
        )
    return entries


def modinfo(module, kernel=None):
    """``modinfo [-k KERNEL] MODULE`` (a module name or a .ko path) through
    :func:`drvinfo.parse_modinfo`: None when modinfo finds nothing, ``{"error": ...}`` when
    its output cannot be read."""
    argv = ["modinfo"] + (["-k", kernel] if kernel else []) + [module]
    rc, out, _ = run(argv)
    if rc != 0 or not out.strip():
        return None
    try:
        return drvinfo.parse_modinfo(out)
    except ValueError as exc:
        return {"error": str(exc)}


def modprobe_name(name="nvidia"):
    """The module ``modprobe NAME`` loads here (Debian's install redirect to
    nvidia-current-open followed): :func:`driver.modprobe_target` of ``modprobe -c``."""
    rc, out, _ = run(["modprobe", "-c"])
    return _driver.modprobe_target(out if rc == 0 else "", name)


def resolve_module(kernel, module=None):
    """Which file ``modprobe nvidia`` loads for this kernel: :func:`modinfo` of the modprobe
    target (``module``, else :func:`modprobe_name`) plus ``kernel`` and ``module``; None
    when nothing resolves. ``location`` is parse_modinfo's (``dkms`` only under
    ``/updates/dkms/``)."""
    module = module or modprobe_name()
    info = modinfo(module, kernel)
    return None if info is None else dict(info, kernel=kernel, module=module)


def driver(kernel_facts, root="/"):
    loaded = None
    text = read(os.path.join(root, "proc/driver/nvidia/version"))
    if text:
        try:
            loaded = drvinfo.parse_proc_driver_version(text)
        except ValueError as exc:
            loaded = {"error": str(exc)}
    # Per target kernel (and the running one): the file `modprobe nvidia` loads.
    modules = {}
    module = modprobe_name()
    kernels_ = set(kernel_facts["targets"]) | {kernel_facts["running"]}
    for kernel in sorted(kernels_, key=_driver.version_tuple):
        info = resolve_module(kernel, module)
        if info is not None:
            modules[kernel] = info
    dkms = None
    rc, out, _ = run(["dkms", "status"])
    if rc == 0:
        dkms = parse_dkms_status(out)
    nouveau_blacklisted = False
    for path in glob.glob(os.path.join(root, "etc/modprobe.d/*.conf")) + glob.glob(
        os.path.join(root, "usr/lib/modprobe.d/*.conf")
    ):
        if re.search(r"^\s*blacklist\s+nouveau\s*$", read(path, "") or "", re.M):
            nouveau_blacklisted = True
            break
    return {
        "loaded": loaded,
        "loaded_version_sysfs": read_stripped(os.path.join(root, "sys/module/nvidia/version")),
        "modules": modules,
        "userspace_versions": userspace_versions(root),
        "packages": nvidia_packages(),
        "dkms": dkms,
        "nouveau_loaded": os.path.isdir(os.path.join(root, "sys/module/nouveau")),
        "nouveau_blacklisted": nouveau_blacklisted,
    }


# --- all together ---------------------------------------------------------------------


def gather(root="/"):
    gpu_layer = gpulayer.layer(root)
    pci, smi = read_gpus(gpu_layer)
    gpus = gpumodel.build(pci, smi["gpus"])
    kern = kernels(root)
    cmdline = kernel_cmdline(root)
    container = container_kind(root)
    return {
        "schema": FACTS_SCHEMA,
        "os": os_release(root),
        "nvidia_repo": aptsource.nvidia_repo(os_release(root), platform.machine()),
        "arch": platform.machine(),
        "python": "%d.%d.%d" % sys.version_info[:3],
        "euid": os.geteuid(),
        "container": container,
        "cpu_vendor": cpu_vendor(root),
        "kernel": kern,
        "secure_boot": secure_boot(root, container),
        "cmdline": cmdline,
        "iommu": read_iommu(root, gpu_layer),
        "disk_free_gib": {"/": disk_free_gib("/")},
        "dpkg": dpkg_state(root),
        "gpu_view": gpulayer.gpu_view(gpu_layer, gpus),
        "simulation": gpu_layer["simulation"],
        "gpus": gpus,
        "nvidia_smi": {"available": smi["available"], "error": smi["error"]},
        "driver": driver(kern, root),
        "reboot": reboot.status(root),
    }
