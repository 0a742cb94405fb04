"""Pull mode on a lab rig (Debian 13): `rigctl pull setup` installs the distribution's
ansible-core and git, this checkout's collection and the timer; the rig's own
`rigctl-pull.service` runs ansible-pull of an inventory repository (a bare git repository
the test builds, served to the rig from the lab's mirror directory) at the pinned commit and
converges the rig (power limits on the simulated GPUs); a new pin moves it, a pin the
repository does not have fails and leaves the rig as it was, rig_pull_enabled false removes
the units. Bad pull settings stop at the inventory check (exit 2, nothing contacted)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import ansible_on_rig, lab_session, shell_on_rig

pytestmark = [pytest.mark.lab, pytest.mark.slow]

GIT = ["git", "-c", "user.name=rigctl test", "-c", "user.email=test@rigctl.invalid"]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def _commit(src: Path, bare: Path, watts: int) -> str:
    """Commit the rig-side inventory with every GPU at ``watts``, push it to ``bare``."""
    (src / "inventory" / "group_vars" / "rigs.yml").write_text(
        "---\n"
        "ansible_python_interpreter: /usr/bin/python3\n"
        "rig_gpu_count: 4\n"
        "# driver, CUDA and NCCL unmanaged: the pulled run converges the GPU settings\n"
        "rig_driver_version: null\n"
        "rig_cuda_version: null\n"
        "rig_nccl_version: null\n"
        "rig_persistence_mode: false\n"
        f"rig_power_limit_w: {watts}\n"
    )
    _git(src, "add", "-A")
    _git(src, "commit", "-q", "-m", f"every GPU at {watts} W")
    _git(src, "push", "-q", str(bare), "HEAD:refs/heads/main")
    return _git(src, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def pull(tmp_path_factory):
    mirror = tmp_path_factory.mktemp("pull-mirror")
    with lab_session(tmp_path_factory, "pull", "--rigs", "1", "--profile", "4x3090",
                     "--mirror-dir", str(mirror)) as lab:
        src = tmp_path_factory.mktemp("pull-src")
        (src / "inventory" / "group_vars").mkdir(parents=True)
        (src / "local.yml").write_text("---\n- import_playbook: rigctl.rig.provision\n")
        (src / "inventory" / "hosts.yml").write_text(
            "all:\n  children:\n    rigs:\n      hosts:\n        lab-rig-1:\n")
        _git(src, "init", "-q", "-b", "main")
        bare = mirror / "inventory.git"
        subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
        inv = tmp_path_factory.mktemp("pull-inv")
        (inv / "hosts.yml").write_text(Path(lab.inventory).read_text())
        (inv / "group_vars").mkdir()

        def pin(commit: str | None, enabled: bool = True, url: str =
                "file:///srv/rigctl-mirror/inventory.git") -> None:
            (inv / "group_vars" / "rigs.yml").write_text(
                f"---\nrig_pull_enabled: {str(enabled).lower()}\nrig_pull_repo_url: {url}\n"
                + (f"rig_pull_commit: \"{commit}\"\n" if commit else "") + "rig_pull_interval: 1h\n")

        lab.src, lab.bare, lab.inv, lab.pin = src, bare, inv, pin
        yield lab


def _setup(lab) -> dict:
    rc, data = lab.rigctl.json("pull", "setup", "-i", str(lab.inv), "--json", timeout=1200)
    assert rc == 0, json.dumps(data, indent=2)[-4000:]
    return data


def _changed(data: dict) -> list[str]:
    return [c["task"] for c in data["changes"] if c["host"] == "lab-rig-1"]


def _limits(lab) -> list[str]:
    out = shell_on_rig(lab, "nvidia-smi --query-gpu=power.limit --format=csv,noheader")
    return [ln.strip() for ln in out.splitlines() if ln.strip()]


def _run_pull(lab) -> subprocess.CompletedProcess:
    """The rig's own pull service, started now (what the timer does every interval)."""
    return ansible_on_rig(lab, "shell", "systemctl start rigctl-pull.service", timeout=900)


def test_setup_installs_the_pieces_and_a_rerun_changes_nothing(pull):
    first = _commit(pull.src, pull.bare, 280)
    pull.pin(first)
    data = _setup(pull)
    changed = _changed(data)
    assert "Install ansible-core and git from the distribution" in changed
    assert any(t.startswith("Install the collection") for t in changed), changed
    version = shell_on_rig(pull, "ansible-playbook --version | head -1")
    assert "core 2.19" in version, version
    manifest = json.loads(shell_on_rig(
        pull, "cat /usr/share/ansible/collections/ansible_collections/rigctl/rig/MANIFEST.json"))
    import rigctl

    assert manifest["collection_info"]["version"] == rigctl.__version__
    assert shell_on_rig(pull, "stat -c '%a %U' /etc/rigctl/pull.env") == "600 root"
    env = shell_on_rig(pull, "cat /etc/rigctl/pull.env")
    assert f"RIGCTL_PULL_COMMIT={first}" in env and "RIGCTL_PULL_HOST=lab-rig-1" in env
    assert shell_on_rig(pull, "systemctl is-enabled rigctl-pull.timer") == "enabled"
    assert shell_on_rig(pull, "systemctl is-active rigctl-pull.timer") == "active"
    # the first run comes one interval after setup, not during it
    assert shell_on_rig(pull, "systemctl show -p ExecMainStartTimestampMonotonic --value "
                              "rigctl-pull.service") == "0"
    again = _setup(pull)
    assert again["hosts"]["lab-rig-1"]["changed"] == 0, _changed(again)


def test_the_rigs_own_pull_run_converges_it_at_the_pinned_commit(pull):
    proc = _run_pull(pull)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert _limits(pull) == ["280.00 W"] * 4
    head = shell_on_rig(pull, "git -C /var/lib/rigctl/pull/checkout rev-parse HEAD")
    assert head == _git(pull.src, "rev-parse", "HEAD")
    log = shell_on_rig(pull, "journalctl -u rigctl-pull.service --no-pager -o cat")
    assert f"--checkout {head}" in log and "failed=0" in log


def test_a_new_pin_moves_the_rig_and_the_collection_is_not_reinstalled(pull):
    second = _commit(pull.src, pull.bare, 260)
    pull.pin(second)
    changed = _changed(_setup(pull))
    assert "Pull mode's settings" in changed
    assert not any(t.startswith("Install the collection") for t in changed), changed
    proc = _run_pull(pull)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert _limits(pull) == ["260.00 W"] * 4
    assert shell_on_rig(pull, "git -C /var/lib/rigctl/pull/checkout rev-parse HEAD") == second


def test_a_pin_the_repository_lacks_fails_and_leaves_the_rig_as_it_was(pull):
    before = _git(pull.src, "rev-parse", "HEAD")
    pull.pin("5" * 40)
    _setup(pull)
    proc = _run_pull(pull)
    assert proc.returncode != 0
    assert shell_on_rig(pull, "systemctl show -p Result --value rigctl-pull.service") == "exit-code"
    assert _limits(pull) == ["260.00 W"] * 4
    assert shell_on_rig(pull, "git -C /var/lib/rigctl/pull/checkout rev-parse HEAD") == before
    pull.pin(before)


@pytest.mark.parametrize("settings, needle", [
    ("rig_pull_enabled: true\nrig_pull_repo_url: https://deploy:s3cret@git.example/inv.git\n"
     "rig_pull_commit: " + "a" * 40 + "\n", "credentials"),
    ("rig_pull_enabled: true\nrig_pull_repo_url: file:///srv/x.git\nrig_pull_commit: abc123\n",
     "rig_pull_commit"),
    ("rig_pull_enabled: true\nrig_pull_repo_url: ssh://git@git.example/inv.git\n"
     "rig_pull_commit: " + "a" * 40 + "\n", "rig_pull_known_hosts"),
    ("rig_pull_enabled: true\nrig_pull_commit: " + "a" * 40 + "\n", "rig_pull_repo_url"),
])
def test_bad_pull_settings_stop_before_any_rig_is_contacted(pull, tmp_path, settings, needle):
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text(Path(pull.inventory).read_text())
    (inv / "group_vars" / "rigs.yml").write_text("---\n" + settings)
    before = shell_on_rig(pull, "cat /etc/rigctl/pull.env")
    proc = pull.rigctl("pull", "setup", "-i", str(inv))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert needle in proc.stderr and "s3cret" not in proc.stdout + proc.stderr
    assert shell_on_rig(pull, "cat /etc/rigctl/pull.env") == before


def test_disabling_removes_the_units_and_a_rerun_changes_nothing(pull):
    pull.pin(None, enabled=False)
    changed = _changed(_setup(pull))
    assert "Remove pull mode's units, settings and checkout" in changed
    gone = shell_on_rig(pull, "ls /etc/systemd/system/rigctl-pull.* /etc/rigctl/pull.env "
                              "/var/lib/rigctl/pull/checkout 2>/dev/null | wc -l")
    assert gone == "0"
    assert shell_on_rig(pull, "systemctl is-active rigctl-pull.timer || true") == "inactive"
    assert _setup(pull)["hosts"]["lab-rig-1"]["changed"] == 0
