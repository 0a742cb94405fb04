"""Build rigctl's wheel and install it into a folder of its own (no pip install into the
environment running the tests, no network)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_and_install(tmp: Path) -> Path:
    """The wheel of this checkout installed with `pip install --target`: the folder to put
    on PYTHONPATH (its `rigctl/` is the installed package)."""
    wheels = tmp / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--no-index", "-q", "-w", str(wheels), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    wheel = next(wheels.glob("rigctl-*.whl"))
    site = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                    "--target", str(site), str(wheel)], check=True, capture_output=True,
                   timeout=600)
    return site
