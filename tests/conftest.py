"""Shared test fixtures, and the real-captures rule (tests/captures.py): a run with
RIGCTL_REQUIRE_CAPTURES=1 (.ci/run) stops before any test when the captures are absent;
any other run ends with one line counting the capture tests it skipped and why."""

from __future__ import annotations

import types

import pytest

from tests import captures as _captures


def pytest_sessionstart(session):
    if _captures.required() and not _captures.captures_dir().is_dir():
        raise pytest.UsageError(_captures.missing_message(_captures.captures_dir()))


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr or "")


def pytest_terminal_summary(terminalreporter):
    skipped = [
        r for r in terminalreporter.stats.get("skipped", [])
        if _captures.SKIP_REASON in _skip_reason(r)
    ]
    if not skipped:
        return
    terminalreporter.write_line(
        f"{len(skipped)} capture test(s) skipped: {_captures.SKIP_REASON} at "
        f"{_captures.captures_dir()} (put them in ../shared/captures or set {_captures.ENV}; "
        f"{_captures.REQUIRE_ENV}=1, as .ci/run sets, makes them required)",
        yellow=True,
    )


@pytest.fixture
def captures():
    """Real captured GPU tool outputs, read in place from ../shared/captures (skips when absent)."""
    return types.SimpleNamespace(read=_captures.read_capture, path=_captures.capture_path)
