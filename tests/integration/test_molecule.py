"""The Molecule scenario: create a lab rig, converge, idempotence, check mode, verify with
the shipped suites, destroy."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.lab, pytest.mark.slow]


# Steps some scenarios run on top of the common sequence.
EXTRA_STEPS = {
    "gpu_tuning": ("side_effect",),
    "nvidia_driver_open": ("prepare",),
    "nvidia_driver_p2p": ("prepare", "side_effect"),
    "cuda_nccl": ("side_effect",),
}


@pytest.mark.parametrize(
    "scenario", ["default", "gpu_tuning", "nvidia_driver_open", "nvidia_driver_p2p", "cuda_nccl"]
)
def test_molecule_scenario(scenario):
    bindir = Path(sys.executable).parent
    env = dict(
        os.environ,
        PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}",
        ANSIBLE_NOCOLOR="1",
        PY_COLORS="0",
        MOLECULE_NO_LOG="false",
    )
    proc = subprocess.run(
        [str(bindir / "molecule"), "test", "-s", scenario],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    # Every step of the sequence ran, including idempotence and check mode.
    for step in ("create", "converge", "idempotence", "check", "verify", "destroy",
                 *EXTRA_STEPS.get(scenario, ())):
        assert f"[{scenario} > {step}] Executed: Successful" in output, step
    # The verify step ran the shipped rig suites (not scenario-local tests) and they passed.
    assert "Executing Testinfra tests found in " + str(ROOT / "rigctl" / "verify" / "suites") in output
    summary = re.search(r"=+ (\d+) passed(?:, (\d+) skipped)? in ", output)
    assert summary and int(summary.group(1)) >= 10, output[-3000:]
    assert " failed" not in summary.group(0)
