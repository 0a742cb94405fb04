"""Inventories: loading with file/line positions, the rig variable schema, validation.

The API the commands use before running anything::

    inv = load(paths)                   # raises InputProblems for unreadable/unparsable files
    problems = check(inv)               # every problem: errors, warnings, notes
    inv, hosts = require_valid(paths, limit)   # load + check + select; exit 2 on errors

None of this contacts a host or imports Ansible. The submodules are imported on first use
(so ``python -m rigctl.inventory.generate`` runs without importing the rest twice):

- schema.py: the rig variables (the ``Field`` list), their types and formats; formats.py:
  value rules a pattern cannot say; ansible_vars.py: Ansible's connection variables;
- argspecs.py, docs.py: the files generated from the schema (roles' argument specs,
  docs/inventory.md), written and checked by ``python -m rigctl.inventory.generate``;
- loader.py: reading inventories like Ansible (yamlinventory.py: the files, varsfiles.py:
  group_vars/host_vars, hostpatterns.py: ranges, ports, limits) into model.py's Inventory
  (groups, precedence, ``select``); yamlpos.py: YAML with line numbers;
- values.py: one value against its field; validate.py: the whole check (definitions,
  groups, the rules between a rig's variables, addresses); secrets.py: masking, plain-text
  warnings; problems.py: one problem.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rigctl.inventory.model import Group, Host, Inventory, VarDef
    from rigctl.inventory.problems import Problem

__all__ = [
    "Group",
    "Host",
    "Inventory",
    "Problem",
    "VarDef",
    "check",
    "errors_of",
    "load",
    "require_valid",
]

_LAZY = {
    "Group": "rigctl.inventory.model",
    "Host": "rigctl.inventory.model",
    "Inventory": "rigctl.inventory.model",
    "VarDef": "rigctl.inventory.model",
    "Problem": "rigctl.inventory.problems",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rigctl.inventory' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def load(paths: list[str] | str, *, strict: bool = True) -> Inventory:
    """Load inventory sources (files or directories). With ``strict`` (the default) raise
    InputProblems when a file cannot be read or parsed at all (missing path, YAML syntax
    error, not an inventory); otherwise those problems stay in ``Inventory.problems`` and
    ``check`` returns them with the others."""
    from rigctl.inventory.loader import load as _load

    return _load(paths, strict=strict)


def check(inv: Inventory) -> list[Problem]:
    """Every problem of a loaded inventory: severity ``error``, ``warning`` or ``note``,
    sorted by file and line. Contacts no host."""
    from rigctl.inventory.validate import check as _check

    return _check(inv)


def errors_of(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def require_valid(paths: list[str], limit: str | None = None, *,
                  stream=None) -> tuple[Inventory, list[str]]:
    """Load and check the inventory, then select the hosts of group ``rigs`` matching
    ``limit`` (None: all of them). Raises InputProblems (exit 2) listing every error when
    the inventory is not valid, and InputError for a limit naming no known host or group.
    Warnings go to ``stream`` (stderr); notes are not printed."""
    from rigctl.errors import InputProblems

    stream = stream or sys.stderr
    inv = load(paths, strict=False)
    problems = check(inv)
    errors = errors_of(problems)
    if errors:
        where = ", ".join(paths) or "inventory"
        n = len(errors)
        raise InputProblems(
            errors,
            header=f"inventory {where} has {n} error{'s' if n != 1 else ''} (nothing was "
            "contacted; `rigctl inventory check` shows every problem):",
        )
    for p in problems:
        if p.severity == "warning":
            print(str(p), file=stream)
    return inv, inv.select(limit)
