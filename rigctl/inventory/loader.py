"""Load Ansible YAML inventories with the file and line of every host and variable.

This re-implements what Ansible does with a YAML inventory, without importing Ansible
(Ansible's InventoryManager is slow and forgets where things were written), one module per
part of Ansible it mirrors:

- yamlinventory.py: the ``yaml`` inventory plugin (one file; the files of a directory,
  recursively, sorted; not ``group_vars``/``host_vars``, hidden files or ignored extensions);
- hostpatterns.py: host names with ranges and ports, ``--limit`` patterns;
- varsfiles.py: the ``host_group_vars`` vars plugin (``group_vars/``, ``host_vars/``);
- model.py: the inventory itself, its groups and the variable precedence;
- here: the sources, and what Ansible does after parsing (top-level groups are children of
  ``all``, hosts in no group are in ``ungrouped``, group depths; cycles are errors).
"""

from __future__ import annotations

import os

from rigctl.errors import InputProblems
from rigctl.inventory.model import Inventory, Source
from rigctl.inventory.problems import add_problem
from rigctl.inventory.varsfiles import load_vars_dirs
from rigctl.inventory.yamlinventory import dir_inventory_files, load_inventory_file


def load(paths: list[str] | tuple[str, ...] | str, *, strict: bool = True) -> Inventory:
    """Load inventory sources (files or directories).

    With ``strict`` (the default) raise InputProblems when a file cannot be read or parsed
    at all (missing path, YAML syntax error, not an inventory); otherwise those problems
    are kept in ``Inventory.problems`` (``check`` returns them with the others).
    """
    if isinstance(paths, str):
        paths = [paths]
    inv = Inventory(list(paths))
    if not paths:
        add_problem(inv.problems, None, None, "no inventory given",
                    "pass -i PATH or set $RIGCTL_INVENTORY", fatal=True)
    for path in paths:
        if not os.path.exists(path):
            from rigctl.paths import ansible_dir

            example = ansible_dir() / "inventory" / "example"
            add_problem(inv.problems, None, None, f"inventory not found: {path}",
                        f"pass -i PATH (a YAML inventory file or directory) or set "
                        f"$RIGCTL_INVENTORY; to start from the example: cp -r {example} "
                        "inventory", fatal=True)
            continue
        if os.path.isdir(path):
            inv.sources.append(Source(path, path, True))
            files = dir_inventory_files(path, inv.problems)
            if not files:
                add_problem(inv.problems, path, None, "no inventory file in this directory",
                            "add a hosts.yml (see inventory/example/hosts.yml)", fatal=True)
            for f in files:
                load_inventory_file(inv, f, in_dir=True)
        else:
            inv.sources.append(Source(path, os.path.dirname(path) or ".", False))
            load_inventory_file(inv, path, in_dir=False)
    _reconcile(inv)
    load_vars_dirs(inv)
    if strict and inv.fatal:
        fatal = [p for p in inv.problems if p.fatal]
        raise InputProblems(fatal, header=_header(inv.paths, len(fatal), "cannot be read"))
    return inv


def _header(paths, n: int, what: str) -> str:
    where = ", ".join(str(p) for p in paths) or "inventory"
    return f"inventory {where} {what}: {n} problem{'s' if n != 1 else ''}"


def _reconcile(inv: Inventory) -> None:
    """What Ansible does after parsing: top-level groups under 'all', hosts in no group in
    'ungrouped', group depths; group cycles are errors."""
    all_g = inv.groups["all"]
    for g in inv.groups.values():
        if g.name != "all" and not g.parents:
            inv.add_child("all", g.name)
    for name in inv.hosts:
        h = inv.host(name)
        if not [x for x in h.groups if x not in ("all", "ungrouped")]:
            if "ungrouped" not in h.groups:
                h.groups.append("ungrouped")
                inv.groups["ungrouped"].hosts.append(name)
        elif "ungrouped" in h.groups and all_g:
            h.groups.remove("ungrouped")
            inv.groups["ungrouped"].hosts.remove(name)
    # cycles
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(n: str, path: list[str]):
        state[n] = 1
        for c in list(inv.groups[n].children):
            if state.get(c) == 1:
                cycles.append([*path[path.index(c):], c] if c in path else [n, c])
                inv.groups[n].children.remove(c)
                inv.groups[c].parents.remove(n)
            elif state.get(c) is None:
                visit(c, [*path, c])
        state[n] = 2

    for n in list(inv.groups):
        if state.get(n) is None:
            visit(n, [n])
    for cyc in cycles:
        g = inv.groups[cyc[0]]
        add_problem(inv.problems, g.file, g.line,
                    f"groups form a loop: {' -> '.join(cyc)}; Ansible refuses this",
                    f"remove {cyc[-1]!r} from the children of {cyc[-2]!r}", group=cyc[0])
    # depth: the longest path from 'all' (what Ansible computes)
    depth: dict[str, int] = {}

    def depth_of(n: str, seen: frozenset = frozenset()) -> int:
        if n == "all":
            return 0
        if n in depth:
            return depth[n]
        parents = [p for p in inv.groups[n].parents if p not in seen]
        val = max((depth_of(p, seen | {n}) + 1 for p in parents), default=1)
        depth[n] = val
        return val

    for n, g in inv.groups.items():
        g.depth = depth_of(n)
        prio = [v for v in g.inline if v.name == "ansible_group_priority"]
        if prio:
            try:
                g.priority = int(prio[-1].value)
            except (TypeError, ValueError):
                add_problem(inv.problems, prio[-1].file, prio[-1].line,
                            f"ansible_group_priority must be an integer, got {prio[-1].value!r}",
                            "write a whole number like 10", group=n, key="ansible_group_priority")
