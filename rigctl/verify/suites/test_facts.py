"""Facts gathered from the rig and the preflight rules, one test per fact."""

import pytest

from rigctl.core import constants, hostfacts, preflight
from rigctl.verify.checks import expect, reads_gpu, skip_unless_real_gpu


def _rule(result, *, expected, found):
    """A preflight rule as a check: FAIL fails, WARN is a visible warn (never a pass),
    SKIP skips; ``expected``/``found`` are the real values the rule compared."""
    if result["status"] == preflight.SKIP:
        pytest.skip(result["message"])
    expect(
        result["status"] == preflight.PASS,
        result["message"],
        expected=expected,
        found=found,
        fix=result["fix"] or "-",
        warn=result["status"] == preflight.WARN,
    )


def test_facts_gathered(rig_facts):
    expect(
        rig_facts.get("schema") == hostfacts.FACTS_SCHEMA
        and rig_facts["os"]["id"] != "unknown"
        and bool(rig_facts["kernel"]["running"]),
        "rig facts gathered",
        expected=f"facts schema {hostfacts.FACTS_SCHEMA} with OS and kernel",
        found={k: rig_facts.get(k) for k in ("schema", "os", "arch")},
        fix="check the rig_facts module output with `rigctl facts HOST -vvv`",
    )


def test_os_supported(rig_facts):
    osr = rig_facts["os"]
    _rule(preflight.check_os(rig_facts), expected=preflight.supported_os_names(),
          found=osr.get("pretty_name") or f"{osr['id']} {osr['version_id']}")


def test_arch_supported(rig_facts):
    _rule(preflight.check_arch(rig_facts), expected=", ".join(preflight.SUPPORTED_ARCH),
          found=rig_facts["arch"])


def test_python_usable(rig_facts):
    _rule(preflight.check_python(rig_facts),
          expected="python {}.{} or newer".format(*preflight.MIN_PYTHON), found=rig_facts["python"])


def test_disk_space(rig_facts, rig_vars):
    free = rig_facts["disk_free_gib"].get("/")
    _rule(preflight.check_disk(rig_facts, rig_vars["rig_min_free_disk_gib"]),
          expected=f"at least {rig_vars['rig_min_free_disk_gib']} GiB free on /",
          found="unreadable" if free is None else f"{free:.1f} GiB free on /")


def test_package_manager_ready(rig_facts):
    dpkg = rig_facts.get("dpkg") or {}
    _rule(preflight.check_dpkg(rig_facts), expected="no interrupted dpkg run",
          found="an interrupted dpkg run" if dpkg.get("interrupted") else "consistent")


def test_secure_boot_state_known(rig_facts):
    sb = rig_facts["secure_boot"]
    if sb["state"] == "unknown" and rig_facts.get("container"):
        pytest.skip(f"Secure Boot unknown (container): {rig_facts['container']} hides "
                    "/sys/firmware; the machine's firmware setting cannot be read from here")
    expect(
        sb["state"] in ("enabled", "disabled"),
        "Secure Boot state is known (it decides whether modules must be signed)",
        expected="enabled or disabled",
        found=f"{sb['state']} ({sb['source']})",
        fix="mount efivarfs (/sys/firmware/efi/efivars) or check `mokutil --sb-state`",
    )


@reads_gpu  # on a lab rig the IOMMU is part of the simulated hardware
def test_iommu_mode_known(rig_facts):
    mode = rig_facts["iommu"]["mode"]
    expect(
        mode in ("off", "passthrough", "translated"),
        "IOMMU mode is known (P2P needs it off or in passthrough)",
        expected="off, passthrough or translated",
        found=f"{mode} (group types {rig_facts['iommu']['group_types']})",
        fix="read /sys/kernel/iommu_groups/*/type on the rig to see what the kernel applies",
    )


def test_gpu_view_reported_honestly(host, rig_facts):
    marker = host.file(constants.SIMGPU_PROFILE).exists
    if marker:
        ok = rig_facts["gpu_view"] == "simulated" and all(g["simulated"] for g in rig_facts["gpus"])
        expected = "simulated (this is a lab rig)"
    else:
        ok = rig_facts["gpu_view"] in ("real", "none") and not any(
            g["simulated"] for g in rig_facts["gpus"]
        )
        expected = "real or none (no simulated GPU layer on this host)"
    expect(
        ok,
        "the GPU view is reported as what it is",
        expected=expected,
        found=rig_facts["gpu_view"],
        fix="a lab rig must carry the simulated GPU marker; a real rig must not",
    )


def test_gpu_count_matches_inventory(rig_facts, rig_vars):
    skip_unless_real_gpu(rig_facts, "counting GPUs on PCI")
    expected = rig_vars.get("rig_gpu_count")
    if expected is None:
        pytest.skip("rig_gpu_count is not set in the inventory")
    _rule(preflight.check_gpus(rig_facts, expected), expected=f"{expected} GPUs on PCI",
          found=f"{len(rig_facts['gpus'])} GPUs on PCI: "
          + (", ".join(g["bus_id"] for g in rig_facts["gpus"]) or "none"))


def test_gpus_visible_to_driver(host, rig_facts):
    skip_unless_real_gpu(rig_facts, "comparing PCI with nvidia-smi")
    if not rig_facts["driver"]["loaded"]:
        pytest.skip("no NVIDIA driver loaded yet (the driver role installs it)")
    seen = [g for g in rig_facts["gpus"] if g["driver_visible"]]
    expect(
        len(seen) == len(rig_facts["gpus"]),
        "every GPU on PCI is visible to the driver",
        expected=[g["bus_id"] for g in rig_facts["gpus"]],
        found=[g["bus_id"] for g in seen],
        fix="a GPU on PCI that nvidia-smi does not list fell off the bus or failed to "
        "initialise: check `dmesg | grep -i nvrm`, reseat it, check its power cables",
    )


def test_kernel_headers_for_driver_builds(rig_facts, rig_vars):
    if not rig_vars.get("rig_driver_version"):
        pytest.skip("the NVIDIA driver is not managed on this rig (rig_driver_version unset)")
    kern = rig_facts["kernel"]
    _rule(preflight.check_headers(rig_facts),
          expected="headers installed for at least one installed kernel",
          found={"kernels with headers": kern.get("with_headers") or [],
                 "running": kern.get("running")})
