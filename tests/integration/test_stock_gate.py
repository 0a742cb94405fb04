"""The kernel gate's evidence check for the stock flavor, end to end on a Debian 13 lab rig
(the lab's default release; 4x3090 profile, simulated GPUs): `rigctl provision` with
rig_driver_flavor open from Debian's non-free (nvidia-open-kernel-dkms 550.163.01-2).

Debian's package calls pci_resize_resource() with three arguments and has no conftest for
the exclude_bars form that trixie's kernel headers declare from 6.12.97 on; installing it
would fail in the package's postinst (DKMS build) and leave dpkg half-configured. The role
downloads the package, reads its DKMS source without installing it, reads the target
kernel's real include/linux/pci.h, and refuses before the install: real apt, real Debian
package, real headers. If the headers on the lab's apt source have the three-argument
form (6.12.96 or older), the check must let the package through: that is asserted
instead, with the module called directly so no driver is built."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.integration.conftest import ansible_on_rig as _ansible
from tests.integration.conftest import lab_session
from tests.integration.conftest import shell_on_rig as _shell

pytestmark = [pytest.mark.lab, pytest.mark.slow]

VDEB = "550.163.01"
STATE = ("dpkg-query -W -f '${db:Status-Abbrev} ${binary:Package} ${Version}\\n' | sort | md5sum; "
         "ls -d /var/lib/dkms/nvidia* /usr/src/nvidia* 2>/dev/null; "
         "find /lib/modules \\( -name 'nvidia.ko*' -o -name 'nvidia-current*' "
         "-o -name 'nvidia-uvm*' -o -name 'nvidia-drm*' -o -name 'nvidia-modeset*' "
         "-o -name 'nvidia-peermem*' \\) -print; ls /var/tmp | grep rigctl-gate; true")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with lab_session(tmp_path_factory, "d-stock", "--rigs", "1", "--profile", "4x3090") as s:
        # The headers the module would be built for (the user installs them: rigctl refuses
        # a rig without them, and a refusal leaves them in place).
        got = _ansible(s, "apt", "name=linux-headers-amd64 update_cache=true "
                       "install_recommends=false")
        assert got.returncode == 0, got.stdout + got.stderr
        s.kernel = _shell(
            s, "ls /usr/src | sed -n 's/^linux-headers-\\(.*-amd64\\)$/\\1/p' | sort -V | tail -1")
        assert s.kernel, "no Debian kernel headers on the rig"
        decl = _shell(s, f"grep -A2 'pci_resize_resource(' /lib/modules/{s.kernel}/source/"
                         "include/linux/pci.h | tr -s ' \\t\\n' ' '")
        s.new_form = "exclude_bars" in decl
        yield s


def _inventory(lab, tmp_path) -> str:
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True, exist_ok=True)
    shutil.copy(lab.inventory, inv / "inventory.yml")
    (inv / "group_vars" / "rigs.yml").write_text(
        f'rig_driver_flavor: open\nrig_driver_version: "{VDEB}"\nrig_driver_source: debian\n'
        "rig_hw_check_policy: warn\n")
    return str(inv)


def test_stock_package_refused_before_install_on_new_headers(lab, tmp_path):
    if not lab.new_form:
        pytest.skip(f"headers of {lab.kernel} have the three-argument form: "
                    "test_stock_package_let_through_on_old_headers covers it")
    before = _shell(lab, STATE)
    assert "nvidia" not in before.split("\n", 1)[-1], before  # nothing of the driver yet
    inv = _inventory(lab, tmp_path)
    proc = lab.rigctl("provision", "host", "lab-rig-1", "-i", inv, timeout=1500)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    flat = " ".join(out.split())
    assert f"target kernel {lab.kernel} on lab-rig-1" in flat, out
    assert "declare pci_resize_resource() with its fourth argument, exclude_bars" in flat
    assert (f"nvidia-open-kernel-dkms {VDEB}-2 (read from the package, not installed) "
            f"(NVIDIA {VDEB}) calls it with three (/usr/src/nvidia-current-open-{VDEB}/"
            "nvidia/nv-pci.c:") in flat
    assert "too few arguments to function 'pci_resize_resource'" in flat and "#1272" in flat
    assert "NVIDIA 580.126.09 or newer" in flat and "rig_kernel_hold: true" in flat
    assert "below 6.12.97" in flat and "Debian 12" in flat
    assert "Refused before any driver package or module was installed or built" in flat
    assert "headers were already installed before this check" in flat
    # the rig: no driver package, nothing half-configured, no module, no temporary files
    assert _shell(lab, STATE) == before
    assert _shell(lab, "dpkg --audit; echo rc=$?") == "rc=0"
    assert _shell(lab, "dpkg-query -W -f '${db:Status-Abbrev}' nvidia-open-kernel-dkms "
                       "2>/dev/null; true") in ("", "un ")
    # the inventory check knows the kernel from that run's facts: the table's warning
    rc = lab.rigctl("inventory", "check", "-i", inv)
    said = " ".join((rc.stdout + rc.stderr).split())
    assert rc.returncode == 0, said
    assert f"target kernel {lab.kernel} on lab-rig-1" in said
    assert f"the stock open kernel module of NVIDIA {VDEB} (debian packages)" in said


def test_stock_package_let_through_on_old_headers(lab):
    """The same check where the headers have the three-argument form: no refusal. Run as
    the module alone (the provision would build the driver for minutes)."""
    if lab.new_form:
        pytest.skip(f"headers of {lab.kernel} declare exclude_bars: the refusal test covers it")
    args = json.dumps({"mode": "evidence", "flavor": "open", "driver_version": VDEB,
                       "kernels": [lab.kernel], "host": "lab-rig-1",
                       "packages": ["nvidia-open-kernel-dkms"]})
    got = _ansible(lab, "nvidia_kernel_gate", args)
    assert got.returncode == 0, got.stdout + got.stderr
    assert "arity: 3" in got.stdout and "needs_old: true" in got.stdout, got.stdout
