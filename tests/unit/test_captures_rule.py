"""The real-captures rule (tests/captures.py, tests/conftest.py): required under
RIGCTL_REQUIRE_CAPTURES=1 (.ci/run), counted in one line when a user's run skips them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# one test that reads a capture, one that does not
SELECT = ["tests/unit/test_nccl.py", "-k", "h100x8_capture_all_ok or render"]


def _pytest(tmp_path, **env):
    full = {k: v for k, v in os.environ.items() if not k.startswith("RIGCTL_")}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SELECT],
        cwd=ROOT, env=full, capture_output=True, text=True, timeout=120,
    )


def test_required_and_absent_stops_the_session_before_any_test(tmp_path):
    missing = tmp_path / "no-captures"
    run = _pytest(tmp_path, RIGCTL_CAPTURES_DIR=str(missing), RIGCTL_REQUIRE_CAPTURES="1")
    out = run.stdout + run.stderr
    assert run.returncode == 4, out
    assert f"real captures not present at {missing}" in out
    assert "RIGCTL_REQUIRE_CAPTURES" in out
    assert "passed" not in out


def test_required_and_one_file_missing_fails_that_test(tmp_path):
    run = _pytest(tmp_path, RIGCTL_CAPTURES_DIR=str(tmp_path), RIGCTL_REQUIRE_CAPTURES="1")
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "FAILED tests/unit/test_nccl.py::test_h100x8_capture_all_ok" in out


def test_absent_without_requirement_skips_and_says_so_in_one_line(tmp_path):
    missing = tmp_path / "no-captures"
    run = _pytest(tmp_path, RIGCTL_CAPTURES_DIR=str(missing))
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    lines = [line for line in out.splitlines() if "capture test(s) skipped" in line]
    assert len(lines) == 1, out
    assert lines[0].startswith("1 capture test(s) skipped: real captures not present at ")
    assert str(missing) in lines[0]


def test_present_captures_print_no_skip_line(tmp_path):
    from tests import captures

    if not captures.captures_dir().is_dir():
        captures.require_captures()  # skips (or fails when required) like every capture test
    run = _pytest(tmp_path, RIGCTL_CAPTURES_DIR=str(captures.captures_dir()))
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "capture test(s) skipped" not in out
