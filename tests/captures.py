"""Where the real captured GPU tool outputs are, for parser tests.

The captures live outside the repository, in ``../shared/captures`` next to the checkout
(each with its provenance in that folder's SOURCES.md); they are read in place, never
copied into the repo. ``RIGCTL_CAPTURES_DIR`` points elsewhere. When the folder is not
there, tests that need it are skipped with the reason
"real captures not present at <path>".
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ENV = "RIGCTL_CAPTURES_DIR"


def captures_dir() -> Path:
    override = os.environ.get(ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "shared" / "captures"


def require_captures() -> Path:
    """The captures folder, or a pytest skip when it is absent."""
    path = captures_dir()
    if not path.is_dir():
        pytest.skip(f"real captures not present at {path}")
    return path


def capture_path(name: str) -> Path:
    path = require_captures() / name
    if not path.is_file():
        pytest.skip(f"real captures not present at {path}")
    return path


def read_capture(name: str) -> str:
    """The text of one capture (UTF-8, newlines as stored)."""
    with open(capture_path(name), encoding="utf-8", newline="") as handle:
        return handle.read()


def capture_names() -> list[str]:
    """Every capture file (not SOURCES.md); empty when the folder is absent."""
    path = captures_dir()
    if not path.is_dir():
        return []
    return sorted(p.name for p in path.glob("*.txt"))
