"""The Molecule scenario: create a lab rig, converge, idempotence, check mode, verify with
the shipped suites, destroy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.lab, pytest.mark.slow]


@pytest.mark.parametrize("scenario", ["default"])
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
    # The verify step ran the rig suites and they passed on the converged rig.
    assert "test_become_gives_root" in output or "passed" in output
