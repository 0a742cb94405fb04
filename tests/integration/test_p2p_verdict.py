"""The P2P verdict and nccl.conf on a lab rig with the P2P-broken profile (4x3090-p2p-broken:
`topo -p2p r` says OK everywhere, GPU 0's peer copies come back wrong): the nccl role's
module writes P2P off from the simulated probe's evidence (and says so in the file), and
`rigctl verify --report` fails the P2P checks naming GPU 0, the evidence and the fix, with
the P2P matrix in the HTML report, every page saying simulated."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
import yaml

from tests.integration.conftest import ansible_on_rig as _ansible
from tests.integration.conftest import lab_session

pytestmark = [pytest.mark.lab]


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    with lab_session(tmp_path_factory, "it-p2pv", "--rigs", "1", "--profile", "4x3090-p2p-broken") as lab:
        yield lab


def _result(proc) -> dict:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return yaml.safe_load(proc.stdout.split("=>", 1)[1])  # ansible.cfg: YAML results


def test_nccl_conf_from_the_simulated_probe_turns_p2p_off_for_gpu0(broken):
    got = _result(_ansible(broken, "nccl_setup", "phase=conf"))
    p2p = got["p2p"]
    assert p2p["evidence"] == "probe" and p2p["key"] == "NCCL_P2P_DISABLE"
    assert sorted(p2p["bad_pairs"]) == [["GPU0", "GPU1"], ["GPU0", "GPU2"], ["GPU0", "GPU3"]]
    assert p2p["verdict"]["simulated"] is True
    proc = _ansible(broken, "command", "cat /etc/nccl.conf")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout.split(">>", 1)[1]
    assert "NCCL_P2P_DISABLE=1" in text
    comment = next(ln for ln in text.splitlines() if ln.startswith("#") and "P2P works" in ln)
    assert "rig probe: 0-1 wrong-data" in comment and "simulated GPUs" in comment
    assert "topo -p2p r disagrees on 3 pair(s) and is overruled" in comment
    # the evidence is kept for this boot; a second run reads it and changes nothing
    again = _result(_ansible(broken, "nccl_setup", "phase=conf"))
    assert again["changed"] is False and again["p2p"]["evidence_from"] == "recorded this boot"


class Matrix(HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells = {}
        self.text = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "td" and "data-verdict" in a:
            self.cells[(int(a["data-src"]), int(a["data-dst"]))] = a["data-verdict"]

    def handle_data(self, data):
        self.text.append(data)


def test_verify_fails_the_p2p_check_naming_gpu0_and_reports_the_matrix(broken, tmp_path):
    # NCCL "managed" for this run so that the nccl.conf check compares the file with the probe
    inventory = yaml.safe_load(open(broken.inventory))
    inventory["all"]["children"]["rigs"]["children"]["lab"]["vars"]["rig_nccl_version"] = "2.21.5"
    inv = tmp_path / "inventory.yml"
    inv.write_text(yaml.safe_dump(inventory))
    html_path, md_path = tmp_path / "verify.html", tmp_path / "verify.md"
    rc, data = broken.rigctl.json("verify", "-i", str(inv), "--json", "-k", "p2p", "--report",
                                  str(html_path), "--report-md", str(md_path), timeout=600)
    assert rc == 1, data
    host = data["hosts"]["lab-rig-1"]
    checks = {c["name"]: c for c in host["checks"]}
    intact = checks["test_p2p_copies_arrive_intact_between_every_gpu_pair"]
    assert intact["outcome"] == "failed"
    assert "GPU 0 (0000:01:00.0)" in intact["details"]["found"]
    assert "data read back wrong" in intact["details"]["found"]
    assert "iommu=pt" in intact["details"]["fix"]
    follows = checks["test_nccl_conf_p2p_follows_the_probe_evidence"]
    assert follows["outcome"] == "simulated", follows  # the file written above keeps GPU 0 out
    report = host["report"]["p2p"]
    assert report["simulated"] is True
    assert sorted(map(tuple, report["not_p2p_pairs"])) == [(0, 1), (0, 2), (0, 3)]
    page = Matrix()
    page.feed(html_path.read_text())
    assert page.cells[(0, 1)] == "wrong-data" and page.cells[(1, 2)] == "ok" and len(page.cells) == 12
    words = " ".join(page.text)
    assert "SIMULATED GPUs (lab rig)" in words and "passed (simulated)" in words
    md = md_path.read_text()
    assert "**gpu_view: SIMULATED GPUs" in md and "WRONG DATA" in md
    json.dumps(data)  # the attached data is plain JSON


def test_p2p_probe_module_as_the_cuda_role_calls_it_warns_per_pair(broken):
    # templated floors arrive as strings, an unset one as "None"
    args = json.dumps({"floors": {"min_link_fraction": "0.6", "min_gbps": "None", "pairs": {}}})
    proc = _ansible(broken, "p2p_probe", args)
    got = _result(proc)
    assert got["changed"] is False and got["verdict"]["simulated"] is True
    assert got["evidence_from"] == "measured now"
    warnings = " ".join((proc.stdout + proc.stderr).split())  # Ansible prints them wrapped
    assert "P2P: GPU 0 (0000:01:00.0) -> GPU 1 (0000:21:00.0): data read back wrong" in warnings
