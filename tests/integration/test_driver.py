"""The nvidia_driver role's refusals that need no kernel-module build, through `rigctl
provision` on a lab rig over SSH. (The builds themselves, flavors open and p2p, the
idempotence and the other refusals are in the Molecule scenarios nvidia_driver_open and
nvidia_driver_p2p.)"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.integration.conftest import BIN, ROOT, lab_session

pytestmark = [pytest.mark.lab, pytest.mark.slow]


@pytest.fixture(scope="module")
def lab1(tmp_path_factory):
    with lab_session(tmp_path_factory, "it-drv", "--rigs", "1", "--profile", "4x3090") as lab:
        yield lab


def inventory_with(lab, tmp_path, text: str) -> str:
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    shutil.copy(lab.inventory, inv / "inventory.yml")
    (inv / "group_vars" / "rigs.yml").write_text(text)
    return str(inv)


def test_no_kernel_headers_is_refused_naming_the_package(lab1, tmp_path):
    inv = inventory_with(lab1, tmp_path, 'rig_driver_version: "535.261.03"\nrig_driver_source: debian\n')
    proc = lab1.rigctl("provision", "host", "lab-rig-1", "-i", inv)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "no installed kernel with headers" in out
    assert "Install linux-headers-amd64" in out
    assert "Nothing was changed" in out
    # nothing of the driver was touched
    rc, facts = lab1.rigctl.json("facts", "-i", inv, "--json")
    assert rc == 0
    assert facts["hosts"]["lab-rig-1"]["driver"]["packages"] == []


def test_p2p_fork_that_cannot_be_fetched_is_refused_before_any_change(lab1, tmp_path):
    # Headers installed so the headers check passes; the fork URL points at a path on the
    # rig where no repository is: the fetch fails and nothing of the driver is touched.
    env = dict(lab1.rigctl.env, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    subprocess.run(
        [
            str(BIN / "ansible"),
            "-i",
            str(lab1.inventory),
            "lab-rig-1",
            "-b",
            "-m",
            "apt",
            "-a",
            "name=linux-headers-amd64 update_cache=true install_recommends=false",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    inv = inventory_with(
        lab1,
        tmp_path,
        (
            'rig_driver_flavor: p2p\nrig_driver_version: "535.261.03"\nrig_driver_source: debian\n'
            "rig_p2p_source:\n  url: file:///srv/forks/missing.git\n  branch: 535.261.03-p2p\n"
            "  commit: " + "a" * 40 + "\n"
        ),
    )
    proc = lab1.rigctl("provision", "host", "lab-rig-1", "-i", inv)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "cannot fetch branch 535.261.03-p2p from file:///srv/forks/missing.git" in out, out
    assert "nothing was changed" in out
    rc, facts = lab1.rigctl.json("facts", "-i", inv, "--json")
    assert rc == 0
    assert facts["hosts"]["lab-rig-1"]["driver"]["packages"] == []
    assert facts["hosts"]["lab-rig-1"]["driver"]["dkms"] in (None, [])


def _on_rig(lab, module: str, args: str) -> subprocess.CompletedProcess:
    env = dict(lab.rigctl.env, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    return subprocess.run(
        [str(BIN / "ansible"), "-i", str(lab.inventory), "lab-rig-1", "-b", "-m", module, "-a", args],
        env=env,
        capture_output=True,
        text=True,
    )


def test_mirror_signing_key_not_pinned_is_refused_before_apt_trusts_it(lab1, tmp_path):
    """A mirror (file:// on the rig) that serves a key other than the pinned one: refused,
    and neither the key nor the apt source is installed."""
    assert (
        _on_rig(lab1, "apt", "name=linux-headers-amd64 update_cache=true install_recommends=false").returncode
        == 0
    )
    made = _on_rig(
        lab1,
        "shell",
        (
            "set -e; mkdir -p /srv/mirror; export GNUPGHOME=$(mktemp -d); "
            "gpg --batch --passphrase '' --quick-gen-key 'rigctl test mirror' ed25519 sign never; "
            "gpg --armor --export > /srv/mirror/3bf863cc.pub"
        ),
    )
    assert made.returncode == 0, made.stdout + made.stderr
    inv = inventory_with(
        lab1,
        tmp_path,
        'rig_driver_version: "535.261.03"\n'
        "rig_driver_source: mirror\n"
        "rig_driver_mirror_url: file:///srv/mirror/\n",
    )
    proc = lab1.rigctl("provision", "host", "lab-rig-1", "-i", inv)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "not the pinned EB693B3035CD5710E231E123A4B469963BF863CC" in out, out
    assert "Refused before apt trusts it" in out
    gone = _on_rig(
        lab1,
        "shell",
        "! ls /etc/apt/keyrings/rigctl-srv-mirror-* /etc/apt/sources.list.d/rigctl-srv-mirror-* "
        "2>/dev/null && ! grep -rl srv/mirror /etc/apt/sources.list.d /etc/apt/keyrings",
    )
    assert gone.returncode == 0, gone.stdout
