"""Shared test fixtures."""

from __future__ import annotations

import types

import pytest

from tests import captures as _captures


@pytest.fixture
def captures():
    """Real captured GPU tool outputs, read in place from ../shared/captures (skips when absent)."""
    return types.SimpleNamespace(read=_captures.read_capture, path=_captures.capture_path)
