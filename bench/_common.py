"""What the benchmarks share: where the checkout and this venv's tools are, the environment
Ansible runs with (the CLI's), and running a tool whose failure ends the benchmark.

Imported first by every bench script (``from _common import ...``: the script's own folder
is on sys.path); it puts the checkout on sys.path so ``rigctl`` and ``tests`` import from
this checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BIN = Path(sys.executable).parent


def sh(*args: str, env=None) -> str:
    """Run a command; its stdout. A failure ends the benchmark with the command and the
    tail of its output."""
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args[:6])}... failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def tool_env() -> dict:
    """The environment for ansible commands run by hand: the CLI's Ansible settings
    (rigctl.runner.ansible_env) and this venv's bin first on PATH."""
    from rigctl.runner import ansible_env

    env = dict(os.environ, **ansible_env())
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env
