"""CLI behaviour that needs no host: start-up cost, exit codes, help."""

from __future__ import annotations

import subprocess
import sys


def test_help_does_not_import_ansible():
    code = (
        "import sys\n"
        "from rigctl.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "    ('ansible', 'ansible_runner', 'testinfra', 'pytest', 'rich', 'yaml'))\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out, out


def test_every_command_has_help():
    for cmd in (
        ["inventory", "--help"],
        ["facts", "--help"],
        ["provision", "host", "--help"],
        ["verify", "--help"],
        ["lab", "--help"],
    ):
        proc = subprocess.run([sys.executable, "-m", "rigctl", *cmd], capture_output=True, text=True)
        assert proc.returncode == 0, (cmd, proc.stderr)
        assert "Usage:" in proc.stdout


def test_unknown_command_is_a_usage_error():
    proc = subprocess.run([sys.executable, "-m", "rigctl", "frobnicate"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "No such command" in proc.stderr
