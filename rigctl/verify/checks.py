"""How a verification check says what is wrong: expected, found, how to fix."""

from __future__ import annotations

import pytest


class CheckFailed(AssertionError):
    def __init__(self, what: str, expected, found, fix: str):
        self.what = what
        self.expected = expected
        self.found = found
        self.fix = fix
        super().__init__(f"{what}\nexpected: {expected}\nfound: {found}\nfix: {fix}")

    def as_dict(self) -> dict:
        return {
            "what": self.what,
            "expected": str(self.expected),
            "found": str(self.found),
            "fix": self.fix,
        }


def expect(ok: bool, what: str, *, expected, found, fix: str) -> None:
    """Fail the current check with a structured message unless ``ok``."""
    if not ok:
        raise CheckFailed(what, expected, found, fix)


def skip_unless_real_gpu(facts: dict, what: str) -> None:
    """Checks that need real GPUs are skipped, never passed, on simulated ones."""
    if facts["gpu_view"] == "simulated":
        profile = (facts.get("simulation") or {}).get("profile")
        pytest.skip(f"GPUs are simulated (lab profile {profile}): {what} needs real hardware")
    if facts["gpu_view"] == "none":
        pytest.skip(f"no NVIDIA GPU on PCI: {what} needs one")
