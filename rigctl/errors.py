"""Errors the CLI turns into exit codes.

Exit codes (every command): 0 success, 1 a host failed or a check failed,
2 usage or input error (nothing was contacted, no host was touched).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class RigctlError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.fix = fix

    def render(self) -> str:
        if self.fix:
            return f"{self.message}\n  fix: {self.fix}"
        return self.message


class InputError(RigctlError):
    """Bad input from the user (inventory, options, environment). Exit 2, nothing touched."""

    exit_code = EXIT_USAGE


class InputProblems(InputError):
    """Several input problems found at once (e.g. by the inventory check)."""

    def __init__(self, problems: list, *, header: str | None = None):
        self.problems = list(problems)
        self.header = header
        super().__init__(header or f"{len(self.problems)} problem(s) found")

    def render(self) -> str:
        lines = [self.header] if self.header else []
        lines.extend(str(p) for p in self.problems)
        return "\n".join(lines)
