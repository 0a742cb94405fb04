"""The P2P source cache on a lab rig holds exactly the pinned commit: files left in its
work tree (untracked, ignored, modified) are removed by the next nvidia_p2p_source run,
and the tree exported for DKMS (rigctl.core.gittree, as nvidia_dkms registers it) has
none of them even while they are there. A tiny stand-in fork: no NVIDIA tree, no build."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.integration.conftest import ROOT, lab_session
from tests.integration.conftest import ansible_on_rig as _ansible
from tests.integration.conftest import shell_on_rig as _shell

pytestmark = [pytest.mark.lab, pytest.mark.slow]

FORK = "/root/rigctl-test-fork"
CACHE = "/var/lib/rigctl/nvidia-p2p/git"
MAKE_FORK = f"""set -e
command -v git >/dev/null || {{ apt-get update -q >/dev/null && \
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends git \
  >/dev/null 2>&1; }}
export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@rigctl.invalid GIT_COMMITTER_NAME=t \
  GIT_COMMITTER_EMAIL=t@rigctl.invalid
rm -rf {FORK} && mkdir -p {FORK}/kernel-open && cd {FORK} && git init -q -b main
echo 'NVIDIA_VERSION = 535.261.03' > version.mk
echo 'int nv;' > kernel-open/nv.c
echo '*.o' > .gitignore
git add -A && git commit -q -m pinned && git branch p2p && git rev-parse HEAD
"""


@pytest.fixture(scope="module")
def lab1(tmp_path_factory):
    with lab_session(tmp_path_factory, "it-p2pc", "--rigs", "1", "--profile", "4x3090") as lab:
        yield lab


def _fetch(lab, commit: str) -> dict:
    args = {"source": {"url": f"file://{FORK}", "branch": "p2p", "commit": commit},
            "userspace_version": "535.261.03"}
    proc = _ansible(lab, "nvidia_p2p_source", json.dumps(args))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return yaml.safe_load(proc.stdout.split("=>", 1)[1])  # ansible.cfg: YAML results


def test_cache_keeps_only_the_pinned_commits_files(lab1):
    out = _shell(lab1, MAKE_FORK)
    commit = re.findall(r"\b[0-9a-f]{40}\b", out)[-1]
    first = _fetch(lab1, commit)
    assert first["changed"] and first["src"] == CACHE and first["commit"] == commit
    assert _fetch(lab1, commit)["changed"] is False

    # dirt in the cache: an untracked file, an ignored build output, a modified file
    _shell(lab1, f"cd {CACHE} && echo '#error stray' > kernel-open/stray.c && "
                 "echo old > kernel-open/nv.o && echo 'int changed;' > kernel-open/nv.c")
    # what DKMS would get from the dirty cache: exactly the commit (nvidia_dkms's export)
    copied = _ansible(lab1, "copy", f"src={ROOT}/rigctl/core/gittree.py dest=/var/tmp/rigctl-gittree/")
    assert copied.returncode == 0, copied.stdout + copied.stderr
    exported = _shell(
        lab1,
        "rm -rf /var/tmp/rigctl-export-test && python3 -c "
        "\"import sys; sys.path.insert(0, '/var/tmp/rigctl-gittree'); import gittree; "
        f"print(gittree.export_commit('{CACHE}', '{commit}', '/var/tmp/rigctl-export-test'))\"; "
        "cat /var/tmp/rigctl-export-test/kernel-open/nv.c; rm -rf /var/tmp/rigctl-export-test "
        "/var/tmp/rigctl-gittree",
    )
    assert "['.gitignore', 'kernel-open/nv.c', 'version.mk']" in exported, exported
    assert exported.endswith("int nv;"), exported

    again = _fetch(lab1, commit)
    assert again["changed"] is True
    left = _shell(lab1, f"cd {CACHE} && git status --porcelain --ignored --untracked-files=all; "
                        "ls kernel-open; cat kernel-open/nv.c")
    assert left.split() == ["nv.c", "int", "nv;"], left
    assert _fetch(lab1, commit)["changed"] is False
    _shell(lab1, f"rm -rf {FORK} /var/lib/rigctl/nvidia-p2p")

