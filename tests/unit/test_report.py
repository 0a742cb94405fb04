"""`rigctl verify --report`: the HTML report (self-contained, parsed with html.parser and
rendered headless by Chromium) and the Markdown report, from a result carrying what the
suites attach (checks.attach): GPUs, the P2P verdict of a real capture, NCCL, health."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from rigctl.core import p2pbench, p2pverdict
from rigctl.verify import report
from rigctl.verify.run import Check, VerifyResult
from tests.captures import read_capture

GPU = {"index": 0, "bus_id": "0000:04:00.0", "name": "NVIDIA GeForce RTX 5070", "vram_mib": 12227,
       "bar1_mib": 16384, "link": {"gen_current": 3, "gen_max": 3, "width_current": 4, "width_max": 4},
       "power": {"current_w": 220.0, "default_w": 250.0, "min_w": 100.0, "max_w": 250.0},
       "clocks": {"locked_mhz": None, "locked_source": "record"}}


def capture_verdict(simulated=False):
    parsed = p2pbench.parse_p2p_bandwidth_latency_test(
        read_capture("p2pBandwidthLatencyTest__rtx5070-5060tix4__1.txt"))
    links = {str(i): {"gen": 3, "width": 4} for i in range(5)}
    return p2pverdict.judge(p2pverdict.from_p2p_bandwidth_test(parsed), links,
                            source="p2pBandwidthLatencyTest", simulated=simulated)


def result_with_rigs() -> VerifyResult:
    r = VerifyResult()
    r.rigs = {
        "rig-real": {"gpu_view": "real", "profile": None, "report": {
            "gpus": [GPU, dict(GPU, index=1, bus_id="0000:09:00.0", name="NVIDIA GeForce RTX 5060 Ti")],
            "p2p": capture_verdict(),
            "nccl": {"settings": [{"key": "NCCL_P2P_DISABLE", "value": "1",
                                   "reason": "P2P works between only 6 of 10 GPU pairs"}],
                     "evidence": "the rig probe"},
            "health": [{"check": "xid", "gpu": "0000:04:00.0", "severity": "fail",
                        "evidence": "Xid 79 x2 <since boot>", "fix": "reseat the riser"},
                       {"check": "throttle", "gpu": {"index": 1, "bus_id": "0000:09:00.0"},
                        "severity": "warn", "evidence": "HW slowdown", "fix": "airflow"},
                       {"check": "numa", "gpu": None, "severity": "info",
                        "evidence": "single socket", "fix": "none needed"}]}},
        "lab-rig-1": {"gpu_view": "simulated", "profile": "4x3090-p2p-broken",
                      "report": {"p2p": capture_verdict(simulated=True)}},
    }
    r.checks = [
        Check("rig-real", "test_p2p_pairs", "test_p2p", "failed", "P2P pairs",
              {"what": "P2P pairs", "expected": "ok", "found": "GPU 0 -> GPU 1: no P2P", "fix": "driver"}),
        Check("rig-real", "test_clock_lock_applied", "test_tuning", "recorded",
              "recorded, not observed: clock locks of 2 GPU(s) agree"),
        Check("lab-rig-1", "test_power_limit_applied", "test_tuning", "simulated"),
        Check("lab-rig-1", "test_real_thing", "test_facts", "passed"),
    ]
    r.add_host_result("rig-down", "unreachable", "ssh: connect to host 10.0.0.9 port 22: No route to host")
    return r


class Cells(HTMLParser):
    """The P2P matrix cells (td with data-verdict) per table id, and every external link."""

    def __init__(self):
        super().__init__()
        self.table = None
        self.cells: dict = {}
        self.external: list = []
        self._cell = None
        self.text: list = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href"):
            if a.get(key) and "://" in a[key]:
                self.external.append(a[key])
        if tag == "link" or tag == "script":
            self.external.append(tag)
        if tag == "table" and (a.get("id") or "").startswith("p2p-"):
            self.table = a["id"]
            self.cells[self.table] = {}
        if tag == "td" and self.table and "data-verdict" in a:
            self._cell = (int(a["data-src"]), int(a["data-dst"]), a["data-verdict"], a.get("data-gbps"))
            self.cells[self.table][self._cell[:2]] = {
                "verdict": a["data-verdict"], "gbps": a.get("data-gbps"), "text": ""}

    def handle_endtag(self, tag):
        if tag == "table":
            self.table = None
        if tag == "td":
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell and self.table:
            self.cells[self.table][self._cell[:2]]["text"] += data


def check_matrix(cells):
    real = cells["p2p-rig-real"]
    assert len(real) == 20
    for peer in range(1, 5):
        assert real[(0, peer)]["verdict"] == "no-peer" and real[(peer, 0)]["verdict"] == "no-peer"
    assert real[(1, 2)]["verdict"] == "ok" and real[(1, 2)]["gbps"] == "3.58"
    assert real[(1, 2)]["text"] == "3.58 GB/s, 91% of link, ok"
    assert real[(0, 1)]["text"] == "3.59 GB/s, 91% of link, no P2P"


def test_html_report_is_self_contained_and_carries_the_matrix():
    text = report.render_html(result_with_rigs())
    parser = Cells()
    parser.feed(text)
    assert parser.external == []  # no external asset: readable offline
    check_matrix(parser.cells)
    page = " ".join(parser.text)
    assert "SIMULATED GPUs (lab rig)" in page and "profile 4x3090-p2p-broken" in page
    assert "passed (simulated)" in page and "recorded, not observed" in page
    assert "UNREACHABLE: ssh: connect to host 10.0.0.9 port 22: No route to host" in page
    assert "Xid 79 x2 <since boot>" in page and "<since boot>" not in text  # escaped
    assert "Gen3 x4 (max Gen3 x4)" in page and "16384 MiB" in page and "220 W (default 250" in page
    assert "(simulated GPUs)" in page  # the lab rig's matrix says so
    assert "GPU 1 (0000:09:00.0)" in page and "{'" not in page  # a finding's GPU as words
    assert page.count("fix: the driver gives no peer access here") == 2  # once per rig


def test_every_passed_check_of_a_simulated_rig_reads_simulated():
    r = result_with_rigs()
    rows = [row for outcome, row in report._checks_rows(r, "lab-rig-1") if outcome == "simulated"]
    assert rows and all(row[2] == "passed (simulated)" for row in rows)


def test_markdown_report(tmp_path):
    r = result_with_rigs()
    path = tmp_path / "verify.md"
    assert report.write_report(r, str(path)) == "markdown"
    text = path.read_text()
    assert "## rig-real" in text and "**gpu_view: SIMULATED GPUs" in text
    assert "| GPU 1 | 3.57 GB/s, 91% of link, no P2P | - | 3.58 GB/s, 91% of link, ok |" in text
    assert "| test_tuning | test_power_limit_applied | passed (simulated) |" in text
    assert "UNREACHABLE: ssh: connect to host" in text
    html_path = tmp_path / "verify.html"
    assert report.write_report(r, str(html_path)) == "html"
    assert html_path.read_text().startswith("<!DOCTYPE html>")


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def test_html_report_renders_headless_in_chromium(tmp_path):
    browser = chromium()
    if browser is None:
        if os.environ.get("RIGCTL_REQUIRE_BROWSER"):
            pytest.fail("no chromium on PATH although RIGCTL_REQUIRE_BROWSER is set "
                        "(scripts/setup --with-browser installs Debian's chromium)")
        pytest.skip("no chromium on PATH (scripts/setup --with-browser installs it)")
    path = tmp_path / "verify.html"
    report.write_report(result_with_rigs(), str(path))
    profile = tmp_path / "profile"
    # offline: every host name resolves to nothing and no proxy answers
    argv = [browser, "--headless", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
            "--dump-dom", path.as_uri()]
    if os.geteuid() == 0:
        argv.insert(1, "--no-sandbox")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = Cells()
    dom.feed(proc.stdout)
    check_matrix(dom.cells)
    assert "SIMULATED GPUs (lab rig)" in " ".join(dom.text)
