"""Value rules that a pattern or a range cannot say: a field's ``check`` in the schema.
Each takes a value and returns ``(message, fix)`` when it is wrong, else None; a value of
another type passes (its field's type check reports it)."""

from __future__ import annotations

import re
from typing import Any

from rigctl.core import driver as driverlib

# The open kernel modules exist from this driver branch on.
OPEN_MODULE_MIN_DRIVER = "515.43.04"


def clock_lock_problem(value: Any) -> tuple[str, str] | None:
    """A clock lock needs both min and max, min <= max (types and bounds: the options)."""
    if not isinstance(value, dict):
        return None
    missing = [k for k in ("min", "max") if k not in value]
    if missing:
        return (f"a clock lock needs min and max (missing: {', '.join(missing)})",
                "write it like {min: 210, max: 1695}")
    low, high = value["min"], value["max"]
    if (isinstance(low, int) and isinstance(high, int) and not isinstance(low, bool)
            and not isinstance(high, bool) and low > high):
        return (f"min {low} MHz is above max {high} MHz",
                f"swap them: {{min: {high}, max: {low}}}")
    return None


# scp-like git URLs: git@github.com:owner/repo
_SCP_LIKE = r"[\w.-]+@[\w.-]+:"


def is_ssh_git_url(value: Any) -> bool:
    """True for a git URL that git reaches over ssh (``ssh://`` or scp-like ``user@host:``):
    such a clone checks the server's host key."""
    return isinstance(value, str) and re.match(rf"^(ssh://|{_SCP_LIKE})", value) is not None


def git_url_problem(value: Any) -> tuple[str, str] | None:
    """(message, fix) when ``value`` is not a git URL or path rigctl can clone."""
    if not isinstance(value, str):
        return None
    if re.match(r"^(https?|ssh|git|file)://[^\s]+$", value):
        return None
    if re.match(rf"^{_SCP_LIKE}[^\s]+$", value):
        return None
    if re.match(r"^(/|\./|\.\./|~/)[^\s]*$", value):
        return None
    return (
        f"{value!r} is not a git URL or path",
        "use https://host/owner/repo.git, ssh://..., git@host:owner/repo.git, file:///path "
        "or an absolute path",
    )


def pull_url_problem(value: Any) -> tuple[str, str] | None:
    """(message, fix) for rig_pull_repo_url: a git URL the rig can clone, with no
    credentials in it (the URL is on ansible-pull's command line and in its log)."""
    problem = git_url_problem(value)
    if problem or not isinstance(value, str):
        return problem
    from rigctl.core import credurl

    if credurl.has_credentials(value):
        return (
            "the URL carries credentials, which would show in the rig's process list and "
            "journal",
            "use an ssh:// URL with a deploy key on the rig (rig_pull_ssh_key_file) and the "
            "server's key in rig_pull_known_hosts",
        )
    return None


def driver_version_problem(value: Any) -> tuple[str, str] | None:
    """(message, fix) for a well-formed driver version that has no open kernel modules."""
    if not driverlib.is_driver_version(value):
        return None
    if driverlib.version_tuple(value) < driverlib.version_tuple(OPEN_MODULE_MIN_DRIVER):
        return (
            f"driver {value} has no open kernel modules (they start with "
            f"{OPEN_MODULE_MIN_DRIVER})",
            "use a newer driver (RTX 5090s need 570 or newer)",
        )
    return None
