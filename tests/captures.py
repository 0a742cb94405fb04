"""Where the real captured GPU tool outputs are, for parser tests.

The captures live outside the repository, in ``../shared/captures`` next to the checkout
(each with its provenance in that folder's SOURCES.md); they are read in place, never
copied into the repo. ``RIGCTL_CAPTURES_DIR`` points elsewhere. When the folder is not
there, tests that need it are skipped with the reason
"real captures not present at <path>", and the session ends with one line counting them
(tests/conftest.py). With ``RIGCTL_REQUIRE_CAPTURES=1`` (``.ci/run`` sets it) a missing
folder stops the session before any test runs, and a missing capture file fails its test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ENV = "RIGCTL_CAPTURES_DIR"
REQUIRE_ENV = "RIGCTL_REQUIRE_CAPTURES"
SKIP_REASON = "real captures not present"


def captures_dir() -> Path:
    override = os.environ.get(ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "shared" / "captures"


def required() -> bool:
    """Whether this run must have the captures (``RIGCTL_REQUIRE_CAPTURES`` set, not 0)."""
    return os.environ.get(REQUIRE_ENV, "").strip().lower() not in ("", "0", "no", "false")


def missing_message(path: Path) -> str:
    return (
        f"{SKIP_REASON} at {path}: {REQUIRE_ENV} is set, so they are required "
        f"(put them in ../shared/captures next to the checkout, or point {ENV} at them)"
    )


def _absent(path: Path):
    if required():
        pytest.fail(missing_message(path), pytrace=False)
    pytest.skip(f"{SKIP_REASON} at {path}")


def require_captures() -> Path:
    """The captures folder, or a pytest skip when it is absent (a failure when required)."""
    path = captures_dir()
    if not path.is_dir():
        _absent(path)
    return path


def capture_path(name: str) -> Path:
    path = require_captures() / name
    if not path.is_file():
        _absent(path)
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
