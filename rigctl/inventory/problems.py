"""One inventory problem: where it is, what is wrong, what to do."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field

SEVERITIES = ("error", "warning", "note")


@dataclass
class Problem:
    """``severity``: ``error`` (the inventory cannot be used: exit 2), ``warning`` (it can,
    but something is probably not what you meant) or ``note`` (for information, e.g. values
    that could not be checked)."""

    file: str | None
    line: int | None
    message: str
    fix: str | None = None
    severity: str = "error"
    host: str | None = None
    group: str | None = None
    key: str | None = None
    column: int | None = None
    # set by the loader: the file could not be read or parsed at all (load() raises)
    fatal: bool = field(default=False, repr=False, compare=False)
    # set by the loader: hosts or groups may be missing because of this problem
    loses_structure: bool = field(default=False, repr=False, compare=False)

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    @property
    def location(self) -> str:
        if not self.file:
            return ""
        if self.line is None:
            return self.file
        if self.column is not None:
            return f"{self.file}:{self.line}:{self.column}"
        return f"{self.file}:{self.line}"

    def __str__(self) -> str:
        parts = []
        if self.location:
            parts.append(self.location)
        if self.severity != "error":
            parts.append(self.severity)
        if self.host:
            parts.append(f"host {self.host!r}")
        elif self.group:
            parts.append(f"group {self.group!r}")
        if self.key:
            parts.append(str(self.key))
        text = ": ".join(parts + [self.message])
        if self.fix:
            text += f"; {self.fix}"
        return text

    def as_dict(self) -> dict:
        """The JSON form: file, line, column, host, group, key, severity, message, fix."""
        return {k: getattr(self, k) for k in ("file", "line", "column", "host", "group", "key",
                                              "severity", "message", "fix")}

    def sort_key(self):
        return (self.file or "", self.line or 0, self.column or 0, self.host or "",
                self.group or "", self.key or "", self.message)


def add_problem(problems: list[Problem], file, line, message, fix=None, *, severity="error",
                host=None, group=None, key=None, column=None, fatal=False,
                loses_structure=False) -> Problem:
    """Record a problem found while loading. ``fatal``: the file could not be read or parsed
    at all (load() raises). ``loses_structure``: hosts or groups may be missing because of
    it (the check then does not also complain that group 'rigs' is missing or empty)."""
    p = Problem(file=file, line=line, message=message, fix=fix, severity=severity, host=host,
                group=group, key=key, column=column, fatal=fatal,
                loses_structure=fatal or loses_structure)
    problems.append(p)
    return p


def closest(word, candidates: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The candidate a misspelled ``word`` probably meant (for a "did you mean" fix)."""
    found = difflib.get_close_matches(str(word), list(candidates), n=1, cutoff=cutoff)
    return found[0] if found else None
