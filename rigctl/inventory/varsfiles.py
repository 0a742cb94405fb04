"""``group_vars/`` and ``host_vars/`` next to each inventory source, the way Ansible's
``host_group_vars`` vars plugin finds them: ``<name>`` as a file (no extension, ``.yml``,
``.yaml``, ``.json``: the first found) or a directory (all files in it, recursively,
sorted). Files for groups or hosts the inventory does not have, and files shadowed by an
earlier candidate, are warned about (Ansible ignores them silently)."""

from __future__ import annotations

import os

from rigctl.inventory import yamlpos
from rigctl.inventory.model import Inventory, VarsFile
from rigctl.inventory.problems import add_problem, closest
from rigctl.inventory.yamlinventory import YAML_EXTS, compose_file, has_fatal, parse_vars_mapping

VARS_EXTS = ("", ".yml", ".yaml", ".json")  # the order Ansible tries them in


def _load_vars_file(inv: Inventory, path: str, kind: str, owner: str,
                    cache: dict[str, VarsFile]) -> VarsFile:
    real = os.path.realpath(path)
    if real in cache:
        return cache[real]
    owner_kind = "group" if kind == "group_vars" else "host"
    vf = VarsFile(path, kind, owner)
    cache[real] = vf
    text, root = compose_file(path, inv.problems, what=kind)
    if root == "vault":
        add_problem(inv.problems, path, None, "encrypted with ansible-vault: rigctl cannot read "
                    "it, so its variables are not checked and not shown", None, severity="note",
                    **{owner_kind: owner})
        vf.readable = False
        return vf
    if text is None or root is None:
        vf.readable = text is not None and not has_fatal(inv, path)
        return vf
    if not yamlpos.is_mapping(root):
        add_problem(inv.problems, path, yamlpos.line_of(root),
                    f"a {kind} file must be a mapping of variable names to values, got "
                    f"{yamlpos.kind_text(root)}", "write `NAME: value` lines", fatal=True,
                    **{owner_kind: owner})
        return vf
    vf.defs = parse_vars_mapping(root, path, owner_kind, owner, kind, inv.problems)
    return vf


def _find_vars_files(base: str, name: str) -> tuple[list[str], list[str]]:
    """(files Ansible reads for entity `name` under base/, files it ignores because an
    earlier candidate was found)."""
    found: list[str] = []
    shadowed: list[str] = []
    for ext in VARS_EXTS:
        full = os.path.join(base, name + ext)
        if not os.path.exists(full):
            continue
        if found:
            shadowed.append(full)
            continue
        if os.path.isdir(full):
            found.extend(_vars_dir_files(full))
            if not found:
                found.append("")  # an empty dir still wins
        else:
            found.append(full)
    return [f for f in found if f], shadowed


def _vars_dir_files(directory: str) -> list[str]:
    out = []
    for name in sorted(os.listdir(directory)):
        if name.startswith(".") or name.endswith("~"):
            continue
        full = os.path.join(directory, name)
        ext = os.path.splitext(name)[1]
        if os.path.isdir(full) and not ext:
            out.extend(_vars_dir_files(full))
        elif os.path.isfile(full) and (not ext or ext in YAML_EXTS):
            out.append(full)
    return out


def load_vars_dirs(inv: Inventory) -> None:
    cache: dict[str, VarsFile] = {}
    warned: set[str] = set()
    for src in inv.sources:
        per: dict[str, dict[str, list[VarsFile]]] = {"group_vars": {}, "host_vars": {}}
        inv.vars_files.append(per)
        for kind, names in (("group_vars", list(inv.groups)), ("host_vars", inv.hosts)):
            base = os.path.join(src.vars_dir, kind)
            if not os.path.exists(base):
                continue
            if not os.path.isdir(base):
                add_problem(inv.problems, base, None, f"{kind} is not a directory; Ansible skips "
                            "it", "make it a directory of <name>.yml files", severity="warning")
                continue
            for name in names:
                if name.startswith(os.sep):
                    continue
                files, shadowed = _find_vars_files(base, name)
                for s in shadowed:
                    if s not in warned:
                        warned.add(s)
                        first = os.path.join(base, name)
                        add_problem(inv.problems, s, None,
                                    f"Ansible ignores this file because "
                                    f"{first if os.path.exists(first) else files[0]} is read for "
                                    f"{name!r} instead", "merge the two into one",
                                    severity="warning")
                if files:
                    per[kind][name] = [_load_vars_file(inv, f, kind, name, cache)
                                       for f in files]
            # files that belong to no group/host: Ansible ignores them silently
            known = set(names)
            for entry in sorted(os.listdir(base)):
                if entry.startswith(".") or entry.endswith("~"):
                    continue
                stem, ext = os.path.splitext(entry)
                full = os.path.join(base, entry)
                if os.path.isdir(full):
                    stem, ext = entry, ""
                if ext not in VARS_EXTS:
                    continue
                if stem in known or full in warned:
                    continue
                warned.add(full)
                what = "group" if kind == "group_vars" else "host"
                hint = closest(stem, known)
                add_problem(inv.problems, full, None,
                            f"the inventory has no {what} {stem!r}; Ansible ignores this file",
                            (f"did you mean {hint!r}? rename the file" if hint else
                          f"rename it after a {what} of the inventory, or remove it"),
                            severity="warning")
