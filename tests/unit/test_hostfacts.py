"""Host fact gathering on fake root trees shaped like real hosts (sysfs, procfs, /etc)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rigctl.core import constants, hostfacts

EFI_SB = "sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-e0ed8c5b9d4e"


def put(root: Path, rel: str, content: str | bytes = "") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def pci_device(
    sysroot: Path,
    bdf: str,
    vendor: str,
    device: str,
    klass: str,
    link=("16.0 GT/s PCIe", 16),
    max_link=("16.0 GT/s PCIe", 16),
    numa="0",
):
    base = f"bus/pci/devices/{bdf}"
    put(sysroot, f"{base}/vendor", vendor + "\n")
    put(sysroot, f"{base}/device", device + "\n")
    put(sysroot, f"{base}/class", klass + "\n")
    put(sysroot, f"{base}/current_link_speed", link[0] + "\n")
    put(sysroot, f"{base}/current_link_width", f"{link[1]}\n")
    put(sysroot, f"{base}/max_link_speed", max_link[0] + "\n")
    put(sysroot, f"{base}/max_link_width", f"{max_link[1]}\n")
    put(sysroot, f"{base}/numa_node", numa + "\n")


@pytest.fixture
def rig_root(tmp_path: Path) -> Path:
    root = tmp_path
    put(
        root,
        "etc/os-release",
        'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
        "VERSION_CODENAME=bookworm\n",
    )
    put(root, "lib/modules/6.1.0-27-amd64/build/Makefile", "# headers\n")
    (root / "lib/modules/6.1.0-28-amd64").mkdir(parents=True)
    put(root, "boot/vmlinuz-6.1.0-27-amd64")
    put(root, "proc/cmdline", "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet amd_iommu=on iommu=pt\n")
    put(root, "proc/cpuinfo", "processor\t: 0\nvendor_id\t: AuthenticAMD\n")
    sysroot = root / "sys"
    pci_device(sysroot, "0000:01:00.0", "0x10de", "0x2204", "0x030000")
    pci_device(sysroot, "0000:01:00.1", "0x10de", "0x1aef", "0x040300")  # the GPU's HDMI audio
    pci_device(sysroot, "0000:41:00.0", "0x10de", "0x2204", "0x030000", link=("8.0 GT/s PCIe", 4), numa="1")
    pci_device(sysroot, "0000:02:00.0", "0x1022", "0x1483", "0x060400")  # an AMD bridge
    for group in ("0", "1", "2"):
        put(sysroot, f"kernel/iommu_groups/{group}/type", "identity\n")
    put(root, EFI_SB, b"\x06\x00\x00\x00\x01")
    put(root, "etc/modprobe.d/nvidia-blacklists-nouveau.conf", "blacklist nouveau\n")
    put(root, "usr/lib/x86_64-linux-gnu/libnvidia-ml.so.535.261.03")
    return root


def test_os_kernels_and_boot(rig_root):
    facts = hostfacts.gather(str(rig_root))
    assert facts["os"]["id"] == "debian" and facts["os"]["version_id"] == "12"
    assert facts["os"]["codename"] == "bookworm"
    assert facts["kernel"]["with_headers"] == ["6.1.0-27-amd64"]
    assert facts["kernel"]["module_dirs"] == ["6.1.0-27-amd64", "6.1.0-28-amd64"]
    assert facts["kernel"]["images"] == ["6.1.0-27-amd64"]
    assert facts["kernel"]["targets"] == ["6.1.0-27-amd64"]
    assert facts["kernel"]["targets_without_headers"] == []
    assert facts["secure_boot"]["state"] == "enabled"
    assert facts["cmdline"]["iommu_flags"] == {"amd_iommu": "on", "iommu": "pt"}
    assert facts["iommu"]["mode"] == "passthrough"
    assert facts["iommu"]["groups"] == 3
    assert facts["cpu_vendor"] == "AMD"


def test_gpus_from_pci_real_view(rig_root):
    facts = hostfacts.gather(str(rig_root))
    assert facts["gpu_view"] == "real"
    assert [g["bus_id"] for g in facts["gpus"]] == ["0000:01:00.0", "0000:41:00.0"]
    first, second = facts["gpus"]
    assert first["name"] == "NVIDIA GeForce RTX 3090" and first["generation"] == "Ampere"
    assert first["device_id"] == "2204" and first["driver_visible"] is False
    assert first["link"] == {
        "gen_current": 4,
        "gen_max": 4,
        "speed_current_gts": 16.0,
        "speed_max_gts": 16.0,
        "width_current": 16,
        "width_max": 16,
        "device_gen_max": 4,
        "device_width_max": 16,
    }
    assert second["link"]["gen_current"] == 3 and second["link"]["width_current"] == 4
    assert second["numa_node"] == 1
    assert not any(g["simulated"] for g in facts["gpus"])


def test_secure_boot_disabled_and_legacy(rig_root):
    (rig_root / EFI_SB).write_bytes(b"\x06\x00\x00\x00\x00")
    assert hostfacts.secure_boot(str(rig_root))["state"] == "disabled"
    import shutil

    shutil.rmtree(rig_root / "sys/firmware")
    sb = hostfacts.secure_boot(str(rig_root))
    assert sb["state"] == "disabled" and "legacy" in sb["source"]


def test_iommu_translated_and_off(rig_root):
    put(rig_root, "sys/kernel/iommu_groups/1/type", "DMA-FQ\n")
    assert hostfacts.iommu(str(rig_root / "sys"), {})["mode"] == "translated"
    import shutil

    shutil.rmtree(rig_root / "sys/kernel/iommu_groups")
    assert hostfacts.iommu(str(rig_root / "sys"), {})["mode"] == "off"


def test_driver_userspace_and_nouveau(rig_root):
    drv = hostfacts.driver(hostfacts.kernels(str(rig_root)), str(rig_root))
    assert drv["userspace_versions"] == ["535.261.03"]
    assert drv["nouveau_blacklisted"] is True
    assert drv["loaded"] is None


def test_loaded_open_driver_from_real_capture(rig_root, captures):
    text = captures.read("proc-driver-nvidia-version__open-595.71.05__1.txt")
    put(rig_root, "proc/driver/nvidia/version", text)
    drv = hostfacts.driver(hostfacts.kernels(str(rig_root)), str(rig_root))
    assert drv["loaded"]["version"] == "595.71.05"
    assert drv["loaded"]["flavor"] == "open"


def _modinfo_text(filename, version="535.261.03", license_="Dual MIT/GPL", name="nvidia"):
    return (f"filename:       {filename}\nversion:        {version}\nlicense:        {license_}\n"
            f"srcversion:     0123456789ABCDEF0123456\nname:           {name}\n"
            "vermagic:       6.1.0-27-amd64 SMP preempt mod_unload modversions \n")


def fake_tools(monkeypatch, modprobe_c, modules):
    """hostfacts.run answering `modprobe -c` and `modinfo -k K NAME` (modules: {(K, NAME):
    filename}); every call is recorded."""
    calls = []

    def run(argv, timeout=30):
        calls.append(list(argv))
        if argv[:2] == ["modprobe", "-c"]:
            return 0, modprobe_c, ""
        if argv[0] == "modinfo" and argv[1] == "-k" and (argv[2], argv[3]) in modules:
            return 0, _modinfo_text(modules[(argv[2], argv[3])]), ""
        if argv[0] == "modinfo":
            return 1, "", f"modinfo: ERROR: Module {argv[-1]} not found.\n"
        return 127, "", f"{argv[0]}: not found"

    monkeypatch.setattr(hostfacts, "run", run)
    return calls


def test_target_kernels_are_worked_out_on_the_rig(rig_root):
    put(rig_root, "lib/modules/6.1.0-9-amd64/kernel/drivers/x.ko")  # modules, no image/headers
    put(rig_root, "lib/modules/6.1.0-26-amd64/updates/dkms/nvidia.ko")  # what DKMS left behind
    kern = hostfacts.kernels(str(rig_root))
    assert kern["with_modules"] == ["6.1.0-9-amd64"]
    assert kern["targets"] == ["6.1.0-9-amd64", "6.1.0-27-amd64"]
    assert kern["targets_without_headers"] == ["6.1.0-9-amd64"]


def test_module_facts_follow_debians_modprobe_redirect(rig_root, monkeypatch):
    kernel = "6.1.0-27-amd64"
    calls = fake_tools(
        monkeypatch,
        "install nvidia modprobe -i nvidia-current-open $CMDLINE_OPTS\n",
        {(kernel, "nvidia-current-open"):
         f"/lib/modules/{kernel}/updates/dkms/nvidia-current-open.ko"},
    )
    drv = hostfacts.driver(hostfacts.kernels(str(rig_root)), str(rig_root))
    mod = drv["modules"][kernel]
    assert mod["module"] == "nvidia-current-open" and mod["kernel"] == kernel
    assert mod["version"] == "535.261.03" and mod["flavor"] == "open"
    assert mod["location"] == "dkms"
    assert ["modinfo", "-k", kernel, "nvidia"] not in calls
    assert sum(c[:2] == ["modprobe", "-c"] for c in calls) == 1  # once, not per kernel


@pytest.mark.parametrize(
    ("filename", "location"),
    [
        ("/lib/modules/K/updates/dkms/nvidia.ko", "dkms"),
        ("/lib/modules/K/updates/dkms/nvidia.ko.xz", "dkms"),
        # copied there by hand or by another installer: not a DKMS build
        ("/lib/modules/K/updates/nvidia.ko", "updates"),
        ("/lib/modules/K/kernel/drivers/video/nvidia.ko", "kernel"),
        ("/lib/modules/K/extra/nvidia.ko", "other"),
    ],
)
def test_resolved_module_location_is_dkms_only_under_updates_dkms(monkeypatch, filename, location):
    fake_tools(monkeypatch, "", {("K", "nvidia"): filename})
    info = hostfacts.resolve_module("K")
    assert info["filename"] == filename and info["module"] == "nvidia"
    assert info["location"] == location


def test_resolve_module_when_nothing_resolves(monkeypatch):
    fake_tools(monkeypatch, "", {})
    assert hostfacts.resolve_module("6.1.0-27-amd64") is None
    assert hostfacts.modinfo("/nonexistent.ko") is None


def test_simulated_gpus_are_reported_as_simulated(rig_root):
    put(rig_root, constants.SIMGPU_PROFILE.lstrip("/"), json.dumps({"name": "4x3090"}))
    simsys = rig_root / constants.SIMGPU_SYSFS_ROOT.lstrip("/")
    for i in range(4):
        pci_device(simsys, f"0000:0{i + 1}:00.0", "0x10de", "0x2204", "0x030000")
    facts = hostfacts.gather(str(rig_root))
    assert facts["gpu_view"] == "simulated"
    assert facts["simulation"]["profile"] == "4x3090"
    # Only the simulated GPUs, each marked simulated; the real sysfs is not mixed in.
    assert len(facts["gpus"]) == 4
    assert all(g["simulated"] for g in facts["gpus"])


def test_no_gpu(tmp_path):
    put(tmp_path, "etc/os-release", "ID=debian\nVERSION_ID=12\n")
    facts = hostfacts.gather(str(tmp_path))
    assert facts["gpu_view"] == "none" and facts["gpus"] == []
    assert facts["nvidia_smi"]["available"] is False


def test_dkms_status_both_formats():
    text = (
        "nvidia/535.261.03, 6.1.0-27-amd64, x86_64: installed\n"
        "nvidia-p2p, 565.57.01, 6.1.0-27-amd64, x86_64: built\n"
        "nvidia/535.261.03: added\n"
    )
    entries = hostfacts.parse_dkms_status(text)
    assert entries[0] == {
        "module": "nvidia",
        "version": "535.261.03",
        "kernel": "6.1.0-27-amd64",
        "arch": "x86_64",
        "state": "installed",
    }
    assert entries[1]["module"] == "nvidia-p2p" and entries[1]["state"] == "built"
    assert entries[2] == {
        "module": "nvidia",
        "version": "535.261.03",
        "kernel": None,
        "arch": None,
        "state": "added",
    }


def test_facts_are_json_serialisable(rig_root):
    json.dumps(hostfacts.gather(str(rig_root)))


def test_dpkg_interrupted(rig_root):
    (rig_root / "var/lib/dpkg/updates").mkdir(parents=True)
    assert hostfacts.dpkg_state(str(rig_root)) == {"present": True, "interrupted": False}
    put(rig_root, "var/lib/dpkg/updates/0001", "Package: x\n")
    assert hostfacts.dpkg_state(str(rig_root)) == {"present": True, "interrupted": True}


def _fact_keys() -> set[str]:
    """The top-level keys of the rig facts, read off hostfacts.gather's return."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(hostfacts.gather))
    (ret,) = [n for n in ast.walk(tree) if isinstance(n, ast.Return)]
    return {k.value for k in ret.value.keys}


def test_ansible_content_reads_the_facts_as_rig_host():
    """rig_facts sets its facts as `rig_host` (next to `rig_gpus`); a role, playbook or
    scenario still reading the old name `rig` would find nothing there."""
    import re

    from rigctl import paths

    keys = _fact_keys()
    assert {"kernel", "driver", "gpus", "reboot", "gpu_view"} <= keys
    names = "|".join(sorted(keys))
    old = re.compile(r"(?<![\w.\-/])rig(\.(" + names + r")\b|\[|\s+is\s+(not\s+)?defined)")
    root = paths.ansible_dir()
    found = []
    for top in ("roles", "playbooks", "molecule"):
        for path in sorted((root / top).rglob("*")):
            if path.suffix in (".yml", ".yaml", ".j2") and path.is_file():
                for n, line in enumerate(path.read_text().splitlines(), 1):
                    if old.search(line.split("#", 1)[0] if path.suffix != ".j2" else line):
                        found.append(f"{path.relative_to(root)}:{n}: {line.strip()}")
    assert found == []
