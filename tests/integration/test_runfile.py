"""rig_driver_source: runfile on a lab rig (the lab's default release, Debian 13), through
`rigctl provision`: the userspace from a stand-in of NVIDIA's installer
(tests/fixtures/fake_nvidia_runfile.py, same command-line contract, installs small text
files and a stand-in nvidia-persistenced, never NVIDIA software) served by the rig itself
from the lab mirror (http://127.0.0.1:8600/), with the patched module built by DKMS from a
small stand-in fork (tests/fixtures/small_p2p_fork.sh). Install with persistence on (the
installer's nvidia-persistenced under rigctl's own unit, no distribution driver package),
re-run with no change, refusals (sha256, version, distribution packages) that change
nothing on the driver and say exactly what they changed (the rig's packages and files are
compared before and after), a version switch that uninstalls the old one with its own
uninstaller, the switch back to Debian's packages (rigctl's unit gone), and a stray module
copy that depmod would prefer, planted by hand and removed by the next run.

One lab for the whole file, in this order (each test starts from the state the one before
left). The stray-copy test runs last, on the Debian packages: it installs initramfs-tools,
whose triggers would otherwise rebuild the initramfs on every package change of the switch."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from tests.fixtures import fake_nvidia_runfile
from tests.integration.conftest import ROOT, lab_session
from tests.integration.conftest import ansible_on_rig as _ansible
from tests.integration.conftest import shell_on_rig as _shell

pytestmark = [pytest.mark.lab, pytest.mark.slow]

V1, V2 = "580.95.05", "580.105.08"
# Debian 13 non-free's driver: the switch back to the distribution's packages.
VDEB = "550.163.01"
FORK = "/srv/forks/small-p2p.git"
URL = "http://127.0.0.1:8600/"
STAND_IN_VERSION = "/usr/share/nvidia/rigctl-stand-in-version"
UNIT = "/etc/systemd/system/nvidia-persistenced.service"
LAB_UNIT = "/usr/lib/systemd/system/nvidia-persistenced.service"  # the lab's package stand-in
CACHE = "/var/lib/rigctl/nvidia-p2p/git"
# What a refusal must leave as it was: the package database and the driver's files (the
# userspace, the modules, DKMS, rigctl's records and units). Apt's lists are not in it.
SNAPSHOT = (
    "dpkg-query -W -f '${db:Status-Abbrev} ${binary:Package} ${Version}\\n' | sed 's/^/pkg /'; "
    "find /usr/bin /usr/lib/x86_64-linux-gnu /usr/share/nvidia /var/lib/nvidia /var/lib/rigctl "
    "/var/lib/dkms /usr/src /lib/modules /etc/systemd/system /etc/modprobe.d /etc/apt "
    "/boot -xdev -printf 'file %p %y %s %T@ %l\\n' 2>/dev/null | sort"
)


@pytest.fixture(scope="module")
def installers(tmp_path_factory):
    d = tmp_path_factory.mktemp("runfile-mirror")
    return {v: fake_nvidia_runfile.build(v, d)[1] for v in (V1, V2)}, d


@pytest.fixture(scope="module")
def lab(tmp_path_factory, installers):
    _, mirror = installers
    # 4x3090-p2p: the simulated GPUs peer as they do under a patched module
    with lab_session(tmp_path_factory, "it-runf", "--rigs", "1", "--profile", "4x3090-p2p",
                     "--mirror-dir", str(mirror)) as session:
        got = _ansible(session, "apt", "name=linux-headers-amd64,git update_cache=true "
                       "install_recommends=false")
        assert got.returncode == 0, got.stdout + got.stderr
        copied = _ansible(session, "copy", f"src={ROOT}/tests/fixtures/small_p2p_fork.sh "
                          "dest=/srv/small_p2p_fork.sh mode=0755")
        assert copied.returncode == 0, copied.stdout
        out = _shell(session, f"/srv/small_p2p_fork.sh {FORK} {V1} {V2} {VDEB}")
        session.commits = dict(re.findall(r"^(\d+\.\d+\.\d+)=([0-9a-f]{40})$", out, re.M))
        assert set(session.commits) == {V1, V2, VDEB}, out
        session.kernel = _shell(
            session, "ls /usr/src | sed -n 's/^linux-headers-\\(.*-amd64\\)$/\\1/p' | head -1")
        assert session.kernel, "no Debian kernel headers on the rig"
        yield session


def _inventory(lab, tmp_path, version: str, source: str = "runfile", runfile_version: str | None = None,
               sha: str | None = None) -> str:
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True, exist_ok=True)
    shutil.copy(lab.inventory, inv / "inventory.yml")
    text = (
        "rig_driver_flavor: p2p\n"
        f'rig_driver_version: "{version}"\n'
        f"rig_driver_source: {source}\n"
        "rig_p2p_source:\n"
        f"  url: file://{FORK}\n"
        f"  branch: {version}-p2p\n"
        f'  commit: "{lab.commits[version]}"\n'
        # on: the installer's nvidia-persistenced runs under rigctl's own unit
        "rig_persistence_mode: true\n"
    )
    if source == "runfile":
        rv = runfile_version or version
        text += (f"rig_driver_runfile_url: {URL}NVIDIA-Linux-x86_64-{rv}.run\n"
                 f"rig_driver_runfile_sha256: \"{sha or lab.shas[rv]}\"\n")
    (inv / "group_vars" / "rigs.yml").write_text(text)
    return str(inv)


def _provision(lab, inv):
    proc = lab.rigctl("provision", "host", "lab-rig-1", "-i", inv, "--json", timeout=1500)
    try:
        summary = json.loads(proc.stdout)
    except ValueError:
        summary = {}
    return proc.returncode, summary, proc.stdout + proc.stderr


def _state(lab) -> dict:
    out = _shell(
        lab,
        f"echo version=$(cat {STAND_IN_VERSION} 2>/dev/null); "
        "echo libs=$(ls /usr/lib/x86_64-linux-gnu/ "
        "| grep -E '^lib(nvidia-ml|cuda)\\.so\\.[0-9]+\\.' | tr '\\n' ' '); "
        "echo uninstaller=$(test -e /usr/bin/nvidia-uninstall && echo yes || echo no); "
        "echo uninstalled=$(sed -n 's/^uninstalling version \\([^ ]*\\).*/\\1/p' "
        "/var/log/nvidia-uninstall.log 2>/dev/null); "
        "echo installlog=$(sed -n 2p /var/log/nvidia-installer.log 2>/dev/null); "
        f"echo module=$(modinfo -k {lab.kernel} -F filename nvidia 2>/dev/null) "
        f"$(modinfo -k {lab.kernel} -F version nvidia 2>/dev/null)",
    )
    state = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    state["provenance"] = json.loads(
        _shell(lab, "cat /var/lib/rigctl/nvidia-driver.json 2>/dev/null || echo null"))
    return state


def _checks(text: str) -> list[dict]:
    """Every check of a `rigctl verify --json` report (the dicts with an outcome)."""
    try:
        report = json.loads(text)
    except ValueError:
        return []
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "outcome" in node and "name" in node:
                found.append(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(report)
    return found


def _outcomes(text: str) -> dict[str, str]:
    return {c["name"]: c["outcome"] for c in _checks(text)}


def _failed_checks(text: str) -> list[dict]:
    return [c for c in _checks(text) if c["outcome"] in ("failed", "error")]


def _module(lab, st) -> tuple[str, str]:
    """(file without DKMS's compression suffix, version) of what `modinfo nvidia` resolves."""
    path, _, version = st["module"].partition(" ")
    return re.sub(r"\.(xz|zst|gz)$", "", path), version


def _snapshot(lab, leave_out: tuple[str, ...] = ()) -> set[str]:
    """The rig's packages and driver files (SNAPSHOT), as lines; LEAVE_OUT: path prefixes
    a refusal is allowed to have changed (and must have said so)."""
    lines = _shell(lab, SNAPSHOT).splitlines()
    return {line for line in lines
            if not any(line.startswith(f"file {p}") for p in leave_out)}


def _unchanged(before: set[str], after: set[str]) -> str:
    """'' when equal, else what differs (for the assertion message)."""
    gone, new = sorted(before - after), sorted(after - before)
    return "" if not gone and not new else f"gone: {gone[:20]}\nnew: {new[:20]}"


def _persistenced(lab) -> dict:
    """nvidia-persistenced as systemd and the stand-in daemon see it."""
    out = _shell(
        lab,
        "systemctl show nvidia-persistenced.service -p FragmentPath -p ActiveState "
        "-p UnitFileState -p MainPID -p ExecStart --no-pager; "
        f"echo unit=$(test -e {UNIT} && echo yes || echo no); "
        "echo pidfile=$(cat /run/nvidia-persistenced/nvidia-persistenced.pid 2>/dev/null); "
        "echo rundir_owner=$(stat -c %U /run/nvidia-persistenced 2>/dev/null); "
        "echo binary_sha=$(sha256sum /usr/bin/nvidia-persistenced 2>/dev/null | cut -d' ' -f1); "
        "echo smi=$(nvidia-smi --query-gpu=persistence_mode --format=csv,noheader | sort -u "
        "| tr '\\n' ' ')",
    )
    st = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    st["unit_text"] = _shell(lab, f"cat {UNIT} 2>/dev/null || true")
    return st


def _driver_packages(lab) -> list[str]:
    """Installed distribution NVIDIA driver packages (rigctl.core.runfile's list)."""
    from rigctl.core import runfile

    out = _shell(lab, "dpkg-query -W -f '${db:Status-Abbrev} ${binary:Package}\\n'")
    names = [line.split()[1].split(":")[0] for line in out.splitlines()
             if len(line.split()) == 2 and line.split()[0][1:2] == "i"]
    return runfile.conflicting_packages(names)


def test_runfile_installs_the_userspace_without_kernel_modules(lab, installers, tmp_path):
    lab.shas = installers[0]
    rc, summary, out = _provision(lab, _inventory(lab, tmp_path, V1))
    assert rc == 0, out[-5000:]
    st = _state(lab)
    assert st["version"] == V1
    assert st["libs"].split() == [f"libcuda.so.{V1}", f"libnvidia-ml.so.{V1}"]
    assert st["uninstaller"] == "yes"
    assert "--silent --no-kernel-modules" in st["installlog"], st
    assert _module(lab, st) == (f"/lib/modules/{lab.kernel}/updates/dkms/nvidia.ko", V1)
    prov = st["provenance"]
    assert prov["source"] == "runfile" and prov["flavor"] == "p2p" and prov["version"] == V1
    assert prov["runfile"]["version"] == V1 and prov["runfile"]["sha256"] == lab.shas[V1]
    assert prov["runfile"]["url"] == f"{URL}NVIDIA-Linux-x86_64-{V1}.run"
    assert prov["packages"] == [] and prov["commit"] == lab.commits[V1]
    # facts read the installer's userspace like any other
    rc, facts = lab.rigctl.json("facts", "-i", _inventory(lab, tmp_path, V1), "--json")
    assert rc == 0 and facts["hosts"]["lab-rig-1"]["driver"]["userspace_versions"] == [V1]
    # the shipped suites judge a runfile rig by the installer's record (no packages to hold)
    proc = lab.rigctl("verify", "-i", _inventory(lab, tmp_path, V1), "--json")
    outcomes = _outcomes(proc.stdout)
    why = f"{_failed_checks(proc.stdout)}\n{proc.stdout[-2000:]}{proc.stderr[-1000:]}"
    assert outcomes.get("test_driver_runfile_userspace_recorded") == "passed", why
    assert outcomes.get("test_driver_userspace_version") == "passed", why
    assert outcomes.get("test_driver_module_resolves_for_every_target_kernel") == "passed", why
    assert outcomes.get("test_driver_packages_held") == "skipped", why
    # persistence from the installer's own daemon, under rigctl's unit
    # ("simulated": passed on the lab's simulated GPUs)
    assert outcomes.get("test_persistenced_enabled") == "simulated", why
    assert outcomes.get("test_persistence_mode_on") == "simulated", why
    pd = _persistenced(lab)
    assert pd["FragmentPath"] == UNIT and pd["ActiveState"] == "active", pd
    assert pd["UnitFileState"] == "enabled", pd
    assert pd["unit_text"].startswith("# Written by rigctl (role gpu_tuning) for NVIDIA's "
                                      "installer"), pd["unit_text"]
    assert "Type=forking\n" in pd["unit_text"]
    assert ("ExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced --verbose\n"
            in pd["unit_text"])
    assert f"/usr/bin/nvidia-persistenced sha256 {pd['binary_sha']}:" in pd["unit_text"]
    assert pd["MainPID"] == pd["pidfile"] != "0", pd  # the forked daemon, by its PID file
    assert pd["rundir_owner"] == "nvidia-persistenced", pd
    assert pd["smi"].strip() == "Enabled", pd  # persistence reported by (simulated) nvidia-smi
    journal = _shell(lab, "journalctl -u nvidia-persistenced --no-pager -o cat | tail -n 20")
    assert f"nvidia-persistenced (stand-in): version {V1}, user nvidia-persistenced, " \
           "persistence mode on" in journal, journal  # --verbose reached the daemon
    # and no distribution driver package came with it (nvidia-persistenced, libnvidia-cfg1)
    assert _driver_packages(lab) == []


def test_a_rerun_changes_nothing(lab, tmp_path):
    rc, summary, out = _provision(lab, _inventory(lab, tmp_path, V1))
    assert rc == 0, out[-4000:]
    assert summary["hosts"]["lab-rig-1"]["changed"] == 0, summary["changes"]


def test_a_wrong_sha256_is_refused_and_says_what_changed(lab, tmp_path):
    # V2's fork branch is fetched into the source cache before the installer is checked:
    # the refusal says so, and nothing else on the rig changed.
    before = _snapshot(lab, leave_out=(CACHE,))
    rc, _, out = _provision(lab, _inventory(lab, tmp_path, V2, sha="0" * 64))
    assert rc == 1, out[-4000:]
    assert f"has sha256 {lab.shas[V2]}, not the pinned rig_driver_runfile_sha256 {'0' * 64}" in out
    assert f"Changed before this check: only the patched source cache {CACHE} was updated" in out
    assert "the driver is untouched" in out and "Nothing was changed" not in out
    assert not _unchanged(before, _snapshot(lab, leave_out=(CACHE,))), \
        _unchanged(before, _snapshot(lab, leave_out=(CACHE,)))
    st = _state(lab)
    assert st["version"] == V1 and st["uninstalled"] == ""  # V1 untouched, nothing uninstalled


def test_an_installer_of_another_version_is_refused_before_any_change(lab, tmp_path):
    rc, _, out = _provision(lab, _inventory(lab, tmp_path, V1, runfile_version=V2))
    assert rc == 1, out[-4000:]
    assert f"is driver {V2} (its --version), but rig_driver_version is {V1}" in out
    # the cache goes back to V1's commit before the installer is checked: said so
    assert f"Changed before this check: only the patched source cache {CACHE} was updated" in out
    assert _state(lab)["version"] == V1


def test_distribution_driver_packages_are_refused_with_the_fix(lab, tmp_path):
    got = _ansible(lab, "apt", "name=nvidia-modprobe install_recommends=false")
    assert got.returncode == 0, got.stdout
    try:
        # the source cache is at V1 already (the test before): this refusal changes nothing
        before = _snapshot(lab)
        rc, _, out = _provision(lab, _inventory(lab, tmp_path, V1))
        assert rc == 1, out[-4000:]
        assert "has the distribution's NVIDIA driver packages nvidia-modprobe installed" in out
        assert "apt-get purge nvidia-modprobe" in out and "rig_driver_source: debian" in out
        assert "Nothing was changed" in out
        assert not _unchanged(before, _snapshot(lab)), _unchanged(before, _snapshot(lab))
        assert _state(lab)["version"] == V1
    finally:
        assert _ansible(lab, "apt", "name=nvidia-modprobe state=absent purge=true").returncode == 0


def test_a_version_switch_uninstalls_the_old_one_with_its_own_uninstaller(lab, tmp_path):
    rc, _, out = _provision(lab, _inventory(lab, tmp_path, V2))
    assert rc == 0, out[-5000:]
    st = _state(lab)
    assert st["uninstalled"] == V1  # nvidia-uninstall's log: the old version went first
    assert st["version"] == V2
    assert st["libs"].split() == [f"libcuda.so.{V2}", f"libnvidia-ml.so.{V2}"]
    assert _module(lab, st) == (f"/lib/modules/{lab.kernel}/updates/dkms/nvidia.ko", V2)
    assert st["provenance"]["runfile"]["version"] == V2
    assert st["provenance"]["runfile"]["replaced"] == V1
    assert st["provenance"]["dkms_version"] == f"{V2}-{lab.commits[V2][:12]}"
    # the new installer's daemon runs: rigctl's unit names its sha256 and was restarted
    pd = _persistenced(lab)
    assert f"/usr/bin/nvidia-persistenced sha256 {pd['binary_sha']}:" in pd["unit_text"]
    assert pd["ActiveState"] == "active" and pd["MainPID"] == pd["pidfile"] != "0", pd
    journal = _shell(lab, "journalctl -u nvidia-persistenced --no-pager -o cat | tail -n 5")
    assert f"nvidia-persistenced (stand-in): version {V2}," in journal, journal
    assert _driver_packages(lab) == []


def test_back_to_debian_packages_uninstalls_the_runfile(lab, tmp_path):
    rc, _, out = _provision(lab, _inventory(lab, tmp_path, VDEB, source="debian"))
    assert rc == 0, out[-5000:]
    st = _state(lab)
    assert st["uninstalled"] == V2 and st["uninstaller"] == "no" and st["version"] == ""
    assert _module(lab, st) == (f"/lib/modules/{lab.kernel}/updates/dkms/nvidia.ko", VDEB)
    prov = st["provenance"]
    assert prov["source"] == "debian" and "runfile" not in prov and "libnvidia-ml1" in prov["packages"]
    assert _shell(lab, "test -e /var/lib/rigctl/nvidia-runfile.json && echo yes || echo no") == "no"
    held = _shell(lab, "apt-mark showhold")
    assert "libnvidia-ml1" in held.split()
    # rigctl's unit is gone; the package's unit (on a lab rig: the lab's stand-in of it,
    # so the package itself is not installed) runs persistence now
    pd = _persistenced(lab)
    assert pd["unit"] == "no" and pd["FragmentPath"] == LAB_UNIT, pd
    assert pd["ActiveState"] == "active" and pd["UnitFileState"] == "enabled", pd
    assert pd["smi"].strip() == "Enabled", pd


def test_a_stray_module_copy_depmod_would_prefer_is_removed(lab, tmp_path):
    k = lab.kernel
    # A stock module left under updates/dkms by another package and a hand-made install
    # into extra/: both nvidia*.ko files that are not this build's. And an initramfs that
    # still carries the stock module (made here with cpio, as update-initramfs would have
    # when that module was installed): rebuilt with the real update-initramfs.
    got = _ansible(lab, "apt", "name=initramfs-tools,cpio install_recommends=false")
    assert got.returncode == 0, got.stdout
    ko = _shell(lab, f"cd /lib/modules/{k}/updates/dkms && ls nvidia.ko*")  # .ko.xz on Debian 13
    ext = ko[len("nvidia"):]
    stock = f"nvidia-current-open{ext}"
    _shell(lab, f"set -e; cd /lib/modules/{k}; "
                f"cp updates/dkms/{ko} updates/dkms/{stock}; "
                f"mkdir -p extra/nv; cp updates/dkms/{ko} extra/nv/{ko}; depmod {k}; "
                f"d=$(mktemp -d); mkdir -p $d/usr/lib/modules/{k}/updates/dkms; "
                f"cp updates/dkms/{stock} $d/usr/lib/modules/{k}/updates/dkms/; "
                f"(cd $d && find . | cpio -o -H newc 2>/dev/null | gzip) > /boot/initrd.img-{k}; "
                "rm -rf $d; touch -d '1 hour ago' /boot/initrd.img-" + k)
    assert stock in _shell(lab, f"lsinitramfs /boot/initrd.img-{k}")
    rc, summary, out = _provision(lab, _inventory(lab, tmp_path, VDEB, source="debian"))
    assert rc == 0, out[-5000:]
    assert summary["hosts"]["lab-rig-1"]["changed"] >= 1
    left = _shell(lab, f"ls /lib/modules/{k}/updates/dkms/ /lib/modules/{k}/extra/nv/ 2>&1; "
                       "find /var/lib/rigctl/removed-modules -type f | sort")
    assert f"/var/lib/rigctl/removed-modules/{k}/updates/dkms/{stock}" in left, left
    assert f"/var/lib/rigctl/removed-modules/{k}/extra/nv/{ko}" in left, left
    assert stock not in left.split("/var/lib/rigctl/removed-modules")[0], left
    assert _module(lab, _state(lab)) == (f"/lib/modules/{k}/updates/dkms/nvidia.ko", VDEB)
    listing = _shell(lab, f"lsinitramfs /boot/initrd.img-{k}")
    assert stock not in listing and f"lib/modules/{k}/kernel" in listing
    rc, summary, out = _provision(lab, _inventory(lab, tmp_path, VDEB, source="debian"))
    assert rc == 0 and summary["hosts"]["lab-rig-1"]["changed"] == 0, summary.get("changes")
