"""The P2P flavor's refusals before any change, end to end on a lab rig of the
mixed-3090-4090 profile: the kernel gate (a branch cut from NVIDIA 570.86.16 on a rig whose
facts show a 6.15 kernel), the mixed-generation rule under warn and enforce, the inventory
check reading the kernel from the last facts run, and rig_kernel_hold holding and
releasing the kernel meta-packages.

No lab image carries a kernel >= 6.15 (Debian 12 backports stop at 6.12), so the rig is
made to show one the way the fact gathering counts a target kernel: a
/lib/modules/6.15.2-rigctl/build tree with a Makefile (headers installed). The meta-package
held is a locally built, empty `linux-image-rigctl` (the fake kernel's flavour), installed
with dpkg: real apt/dpkg selections, no download."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.integration.conftest import BIN, ROOT, lab_session
from tests.integration.conftest import ansible_on_rig as _on_rig
from tests.integration.conftest import shell_on_rig as _shell

pytestmark = [pytest.mark.lab, pytest.mark.slow]

KERNEL = "6.15.2-rigctl"


@pytest.fixture(scope="module")
def lab1(tmp_path_factory):
    with lab_session(tmp_path_factory, "it-p2pg", "--rigs", "1", "--profile",
                     "mixed-3090-4090") as lab:
        yield lab


def _inventory(lab, tmp_path, text: str) -> str:
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True, exist_ok=True)
    (inv / "inventory.yml").write_text(open(lab.inventory).read())
    (inv / "group_vars" / "rigs.yml").write_text(text)
    return str(inv)


P2P_570 = ('rig_driver_flavor: p2p\nrig_driver_version: "570.86.16"\nrig_driver_source: debian\n'
           "rig_p2p_source: {catalog: aikitoria-570.86.16}\n")
STATE = ("dpkg-query -W -f '${db:Status-Abbrev} ${binary:Package}\\n' | sort | md5sum; "
         "ls -d /var/lib/rigctl/nvidia-p2p /var/tmp/rigctl-p2p-check-* "
         "/etc/modprobe.d/rigctl-nvidia-p2p.conf 2>/dev/null; command -v git; true")


def _kernel_615(lab):
    """The rig shows a 6.15 kernel with headers (what the fact gathering counts)."""
    _shell(lab, f"mkdir -p /lib/modules/{KERNEL}/build && "
                f"printf 'all:\\n' > /lib/modules/{KERNEL}/build/Makefile")


def test_kernel_gate_refuses_before_any_change(lab1, tmp_path):
    _kernel_615(lab1)
    before = _shell(lab1, STATE)
    inv = _inventory(lab1, tmp_path, P2P_570 + "rig_hw_check_policy: warn\n")
    proc = lab1.rigctl("provision", "host", "lab-rig-1", "-i", inv)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    # the gate: the kernel, the branch, both fixes, nothing changed
    assert f"target kernel {KERNEL} on lab-rig-1" in out, out
    assert "catalog entry aikitoria-570.86.16 (branch 570.86.16-p2p)" in out
    assert ("NVIDIA 570.86.16, which builds on Linux below 6.15 except 6.12.97 and later "
            "6.12.x only") in out
    assert "570.153.02 / 575.57.08 or newer" in out and "rig_kernel_hold: true" in out
    assert "Nothing was changed" in out
    # the hardware checks ran first (policy warn): the mixed generations named, card by card
    assert "mixed GPU generations in a P2P rig" in out
    assert "GeForce RTX 3090" in out and "GeForce RTX 4090" in out
    assert "libcuda" in out and "rigctl never applies" in out
    assert _shell(lab1, STATE) == before  # no package, no source cache, no git, no options

    # the inventory check now knows the kernel from that run's facts (a warning: `rigctl
    # facts` must still run to refresh them)
    rc = lab1.rigctl("inventory", "check", "-i", inv)
    assert rc.returncode == 0, rc.stdout + rc.stderr
    assert f"target kernel {KERNEL} on lab-rig-1" in rc.stdout + rc.stderr
    assert "facts gathered at" in rc.stdout + rc.stderr


def test_mixed_generations_refused_under_enforce(lab1, tmp_path):
    before = _shell(lab1, STATE)
    inv = _inventory(lab1, tmp_path, P2P_570)  # p2p: enforce unless set
    proc = lab1.rigctl("provision", "host", "lab-rig-1", "-i", inv)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "hardware checks failed on lab-rig-1 (policy enforce" in out
    assert "GPU 0 (0000:" in out and "GeForce RTX 3090" in out and "GeForce RTX 4090" in out
    # the run stopped at the hardware checks, before the driver role's gate refused...
    assert "Fix: use a branch cut from NVIDIA" not in out
    # ...but the inventory check warned first, from the kernel the last run's facts showed
    assert f"target kernel {KERNEL} on lab-rig-1" in out
    assert _shell(lab1, STATE) == before


PLAY = """\
- hosts: rigs
  gather_facts: false
  become: true
  tasks:
    - ansible.builtin.include_role: {name: rig_facts}
    - nvidia_kernel_gate:
        flavor: open
        running: "{{ rig_host.kernel.running }}"
        kernels: "{{ rig_host.kernel.targets }}"
        driver_version: "535.261.03"
      register: _nv_gate
    - ansible.builtin.include_role: {name: nvidia_driver, tasks_from: kernel_hold.yml}
"""


def _hold(lab, tmp_path, on: bool) -> str:
    play = tmp_path / "hold.yml"
    play.write_text(PLAY)
    # a fact cache of its own: the rig's facts (a 6.15 kernel) stay out of ~/.cache
    env = dict(lab.rigctl.env, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               ANSIBLE_CACHE_PLUGIN_CONNECTION=str(tmp_path / "fact_cache"))
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(lab.inventory), str(play), "-e",
         json.dumps({"rig_kernel_hold": on})], env=env, capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_kernel_hold_holds_and_releases_the_meta_packages(lab1, tmp_path):
    _shell(lab1, "set -e; d=$(mktemp -d); mkdir -p $d/DEBIAN; printf '%s\\n' "
                 "'Package: linux-image-rigctl' 'Version: 1' 'Architecture: all' "
                 "'Maintainer: rigctl tests <t@rigctl.invalid>' "
                 "'Description: test meta-package of the rigctl kernel flavour' "
                 "> $d/DEBIAN/control; dpkg-deb -b $d /var/tmp/linux-image-rigctl.deb "
                 ">/dev/null; dpkg -i /var/tmp/linux-image-rigctl.deb >/dev/null; rm -rf $d")
    out = _hold(lab1, tmp_path, True)
    assert _shell(lab1, "dpkg-query -W -f '${db:Status-Want}' linux-image-rigctl") == "hold"
    assert '"linux-image-rigctl"' in _shell(lab1, "cat /var/lib/rigctl/kernel-hold.json")
    # apt keeps it: a held package is not upgraded or removed by apt-get
    assert "linux-image-rigctl" in _shell(lab1, "apt-mark showhold")
    again = _hold(lab1, tmp_path, True)
    assert "changed=0" in again, again
    # false: rigctl releases what it held (recorded), nothing else
    out = _hold(lab1, tmp_path, False)
    assert _shell(lab1, "dpkg-query -W -f '${db:Status-Want}' linux-image-rigctl") == "install"
    assert '"held": []' in _shell(lab1, "cat /var/lib/rigctl/kernel-hold.json"), out


REGISTRY_PLAY = """\
- hosts: rigs
  gather_facts: false
  become: true
  vars:
    rig_driver_flavor: p2p
    rig_driver_version: "580.105.08"
    rig_driver_source: debian
    rig_p2p_source: {url: "file:///srv/forks/fork.git", branch: 580.105.08-p2p,
                     commit: "c0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ff"}
  tasks:
    - ansible.builtin.include_role: {name: rig_facts}
    # the role's own checks (the gate with the registry keys), then its registry step
    - ansible.builtin.include_role: {name: nvidia_driver, tasks_from: validate.yml}
    - ansible.builtin.include_role: {name: nvidia_driver, tasks_from: registry.yml}
"""


def _registry(lab, tmp_path, dwords):
    play = tmp_path / "registry.yml"
    play.write_text(REGISTRY_PLAY)
    env = dict(lab.rigctl.env, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               ANSIBLE_CACHE_PLUGIN_CONNECTION=str(tmp_path / "fact_cache"))
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(lab.inventory), str(play), "-e",
         json.dumps({"rig_p2p_registry_dwords": dwords})], env=env, capture_output=True,
        text=True, timeout=600)


def test_registry_keys_checked_against_the_base_then_written_and_removed(lab1, tmp_path):
    conf = "/etc/modprobe.d/rigctl-nvidia-p2p.conf"
    _kernel_615(lab1)
    # 580.105.08 builds on the rig's 6.15 kernel: the gate lets it through; the keys fit
    proc = _registry(lab1, tmp_path, {"RMForceP2PType": 1, "RMPcieP2PType": 1})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'options nvidia NVreg_RegistryDwords="RMForceP2PType=1;RMPcieP2PType=1"' in \
        _shell(lab1, f"cat {conf}")
    # RMForceP2PType 2 meant BAR1 before 575; from 575 it is NVLink: warned
    proc = _registry(lab1, tmp_path, {"RMForceP2PType": 2})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "means NVLink on this base" in proc.stdout + proc.stderr
    # a key that does not exist on the base: refused, the file as it was
    before = _shell(lab1, f"cat {conf}")
    proc = _registry(lab1, tmp_path, {"RMPcieP2PType": 5})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "RMPcieP2PType=5 is not a known value" in proc.stdout + proc.stderr
    assert _shell(lab1, f"cat {conf}") == before
    # no keys: the file goes
    proc = _registry(lab1, tmp_path, {})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _shell(lab1, f"test -e {conf} && echo present || echo absent") == "absent"


@pytest.fixture(scope="module")
def lab5090(tmp_path_factory):
    with lab_session(tmp_path_factory, "it-p2pd", "--rigs", "1", "--profile", "8x5090") as lab:
        yield lab


def test_display_attached_5090_reported_for_branches_before_610(lab5090):
    """A connected DRM connector on the first 5090 of a lab rig (in the simulated sysfs
    tree, where a real GPU's drm/card*/card*-*/status would be): the hardware checks fail
    it for a 595.x branch, naming the GPU and the fix, and pass it for a 610.x branch."""
    sysfs = "/var/lib/rigctl-simgpu/sys/bus/pci/devices"
    bdf = "0000:01:00.0"  # GPU 0 of the 8x5090 profile
    _shell(lab5090, f"mkdir -p {sysfs}/{bdf}/drm/card0/card0-DP-1 && "
                    f"echo connected > {sysfs}/{bdf}/drm/card0/card0-DP-1/status")
    for base, failed in (("595.58.03", True), ("610.43.02", False)):
        proc = _on_rig(lab5090, "hw_checks", json.dumps(
            {"flavor": "p2p", "policy": "warn", "p2p_base": base}))
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out
        if failed:
            assert "drives a display (connected: DP-1)" in out, out
            assert "before 610.x" in out and "595.58.03" in out and "headless" in out
        else:
            assert "drives a display" not in out and "display on GPU" in out, out
