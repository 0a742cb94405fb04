"""The nvidia_driver role's refusals that need no kernel-module build, through `rigctl
provision` on a lab rig over SSH. (The builds themselves, flavors open and p2p, the
idempotence and the other refusals are in the Molecule scenarios nvidia_driver_open and
nvidia_driver_p2p.)"""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from tests.integration.conftest import ROOT, lab_session
from tests.integration.conftest import ansible_on_rig as _on_rig

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
    headers = _on_rig(lab1, "apt", "name=linux-headers-amd64 update_cache=true install_recommends=false")
    assert headers.returncode == 0, headers.stdout + headers.stderr
    inv = inventory_with(
        lab1,
        tmp_path,
        (
            'rig_driver_flavor: p2p\nrig_driver_version: "535.261.03"\nrig_driver_source: debian\n'
            "rig_p2p_source:\n  url: file:///srv/forks/missing.git\n  branch: 535.261.03-p2p\n"
            "  commit: " + "a" * 40 + "\n"
        ),
    )
    before = _installed(lab1)
    assert "git" not in before  # the lab image has no git: the role installs it to fetch
    proc = lab1.rigctl("provision", "host", "lab-rig-1", "-i", inv)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "cannot fetch branch 535.261.03-p2p from file:///srv/forks/missing.git" in out, out
    # The refusal says exactly what changed: the packages installing git added, no more.
    added = sorted(_installed(lab1) - before)
    assert "git" in added
    assert (
        f"Changed before this check: git was installed to fetch the source, adding "
        f"{len(added)} packages: {', '.join(added)} (they stay; `apt-get purge "
        f"{' '.join(added)}` removes them)"
    ) in out, out
    assert "nothing else was changed" in out
    # Nothing else: no cache, no temporary repository left, no driver package, no DKMS.
    assert _left_on_rig(lab1) == []
    rc, facts = lab1.rigctl.json("facts", "-i", inv, "--json")
    assert rc == 0
    assert facts["hosts"]["lab-rig-1"]["driver"]["packages"] == []
    assert facts["hosts"]["lab-rig-1"]["driver"]["dkms"] in (None, [])


def _left_on_rig(lab) -> list[str]:
    """What a refused fetch must not leave: the cache, a temporary check repository."""
    proc = _on_rig(
        lab, "shell", "ls -d /var/lib/rigctl/nvidia-p2p /var/tmp/rigctl-p2p-check-* 2>/dev/null; true"
    )
    assert proc.returncode == 0, proc.stdout
    return [x for x in proc.stdout.split(">>", 1)[-1].split() if x.startswith("/")]


def _installed(lab) -> set[str]:
    proc = _on_rig(lab, "command", "dpkg-query -W -f '${db:Status-Abbrev} ${binary:Package}\\n'")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = set()
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].startswith("ii"):
            names.add(parts[1].split(":", 1)[0])
    assert names, proc.stdout
    return names


TOKEN = "ghp_rigctlTestTokenNotRealAbcdef0123456789"
GITSRV = "/srv/rigctl-test-git"


def _serve_fork_over_http_with_a_token(lab) -> dict[str, str]:
    """On the rig: a fork with two branches (version.mk 535.261.05 and 535.261.03) behind
    git http-backend with Basic auth alice:TOKEN on the rig's 127.0.0.1:18080."""
    got = _on_rig(lab, "apt", "name=git update_cache=true cache_valid_time=3600 install_recommends=false")
    assert got.returncode == 0, got.stdout
    assert _on_rig(lab, "file", f"path={GITSRV} state=directory mode=0755").returncode == 0
    copied = _on_rig(lab, "copy", f"src={ROOT}/tests/fixtures/git_http_server.py dest={GITSRV}/server.py")
    assert copied.returncode == 0, copied.stdout
    made = _on_rig(
        lab,
        "shell",
        (
            f"set -e; cd {GITSRV}; umask 077; printf 'alice:%s' '{TOKEN}' > creds; umask 022; "
            "rm -rf w fork.git log.jsonl; git init -q -b p2p-other w; cd w; "
            "git config user.name t; git config user.email t@t.invalid; "
            "echo 'NVIDIA_VERSION = 535.261.05' > version.mk; git add -A; git commit -q -m a; "
            "echo other=$(git rev-parse HEAD); git checkout -q -b p2p-ok; "
            "echo 'NVIDIA_VERSION = 535.261.03' > version.mk; git commit -q -am b; "
            "echo ok=$(git rev-parse HEAD); cd ..; git clone -q --bare w fork.git; "
            "systemctl stop rigctl-test-git 2>/dev/null || true; "
            f"systemd-run -q --unit rigctl-test-git python3 {GITSRV}/server.py {GITSRV} "
            f"{GITSRV}/creds {GITSRV}/log.jsonl 18080; "
            'for i in $(seq 100); do python3 -c "import socket; '
            "socket.create_connection(('127.0.0.1', 18080))\" 2>/dev/null && break; "
            "sleep 0.1; done"
        ),
    )
    assert made.returncode == 0, made.stdout + made.stderr
    ids = dict(line.split("=", 1) for line in made.stdout.splitlines() if line.startswith(("other=", "ok=")))
    assert set(ids) == {"other", "ok"}, made.stdout
    return ids


def _no_token_anywhere(lab) -> None:
    """Not in the controller's run artifacts, not on the rig outside the test server."""
    for f in (lab.home / "runs").rglob("*"):
        if f.is_file():
            assert TOKEN.encode() not in f.read_bytes(), f
    found = _on_rig(
        lab,
        "shell",
        f"grep -rlsF -e {TOKEN} /var/lib/rigctl /var/tmp /tmp /root /home /etc; true",
    )
    assert found.returncode == 0 and "/" not in found.stdout.split(">>", 1)[-1], found.stdout
    log = _on_rig(lab, "command", f"cat {GITSRV}/log.jsonl")
    entries = [json.loads(x) for x in log.stdout.splitlines() if x.startswith("{")]
    assert any(e["authorized"] for e in entries), log.stdout  # git did send the token...
    assert all(e["cmdlines_seen"] > 0 for e in entries)
    assert not [e for e in entries if e["token_in_cmdlines"]], log.stdout  # ...never via argv


def test_p2p_fork_token_never_reaches_a_command_line_the_cache_or_the_output(lab1, tmp_path):
    """A fork served over HTTP that needs a token (http://alice:TOKEN@127.0.0.1:18080 on
    the rig): git gets the token from a credential helper (the server sees it, no command
    line on the rig ever carries it), and neither rigctl's output, its run artifacts, the
    rig's cache nor the module's result has it."""
    ids = _serve_fork_over_http_with_a_token(lab1)
    url = f"http://alice:{TOKEN}@127.0.0.1:18080/fork.git"
    clean = "http://127.0.0.1:18080/fork.git"
    try:
        # 1. Through `rigctl provision`: a version mismatch, refused after the fetch.
        inv = inventory_with(
            lab1,
            tmp_path,
            (
                'rig_driver_flavor: p2p\nrig_driver_version: "535.261.03"\nrig_driver_source: debian\n'
                f'rig_p2p_source:\n  url: {url}\n  branch: p2p-other\n  commit: "{ids["other"]}"\n'
            ),
        )
        proc = lab1.rigctl("provision", "host", "lab-rig-1", "-i", inv)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 1, out
        assert f"the patched source {clean} (branch p2p-other" in out, out
        assert "is driver 535.261.05 (its version.mk)" in out
        assert "Nothing was changed" in out  # git was there already
        assert TOKEN not in out and "alice" not in out
        assert "a URL with a password or token in plain text" in out  # the inventory warning
        assert _left_on_rig(lab1) == []
        _no_token_anywhere(lab1)

        # 2. The module alone with the matching branch: fetched into the cache; the result
        # (what the role records as the provenance's fork) and the cache have no credential.
        args = json.dumps(
            {
                "source": {"url": url, "branch": "p2p-ok", "commit": ids["ok"]},
                "userspace_version": "535.261.03",
            }
        )
        fetched = _on_rig(lab1, "nvidia_p2p_source", args)
        res = yaml.safe_load(fetched.stdout.split("=>", 1)[1])
        assert fetched.returncode == 0, fetched.stdout + fetched.stderr
        assert res["url"] == clean and res["commit"] == ids["ok"] and res["changed"] is True
        assert TOKEN not in fetched.stdout + fetched.stderr
        cache = _on_rig(
            lab1,
            "shell",
            "cd /var/lib/rigctl/nvidia-p2p/git && git config --list --local "
            "&& cat .git/FETCH_HEAD && git rev-parse HEAD && ls /var/tmp",
        )
        assert ids["ok"] in cache.stdout and "remote." not in cache.stdout, cache.stdout
        assert "rigctl-p2p-check-" not in cache.stdout
        _no_token_anywhere(lab1)
    finally:
        _on_rig(lab1, "shell", f"systemctl stop rigctl-test-git; rm -rf {GITSRV} /var/lib/rigctl/nvidia-p2p")


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
