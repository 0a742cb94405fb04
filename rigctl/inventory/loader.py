"""Load Ansible YAML inventories with the file and line of every host and variable.

This is a re-implementation of what Ansible does with a YAML inventory (the ``yaml``
inventory plugin and the ``host_group_vars`` vars plugin), without importing Ansible:
Ansible's InventoryManager is slow and forgets where things were written. What it mirrors:

- sources: a file, or a directory (every inventory file in it, recursively, sorted; not
  ``group_vars``/``host_vars``, hidden files or ignored extensions);
- groups: ``hosts`` / ``vars`` / ``children`` (a string is taken as a one-key mapping),
  top-level groups are children of ``all``, hosts in no group are in ``ungrouped``;
- host names with ranges (``rig-[1:4]``, ``rig-[a:c]``, ``[01:10]``) and ports
  (``rig-a:2222`` sets ``ansible_port``);
- ``group_vars/<name>`` and ``host_vars/<name>`` next to each source, as a file (no
  extension, ``.yml``, ``.yaml``, ``.json``, first found) or a directory (all files in it,
  recursively, sorted);
- variable precedence (Ansible's default ``VARIABLE_PRECEDENCE``, ``hash_behaviour=replace``):
  ``all`` inventory vars < other groups' inventory vars (sorted by depth, priority, name) <
  ``group_vars/all`` of each source < ``group_vars/<group>`` of each source (same group
  order) < host inventory vars < ``host_vars/<host>`` of each source.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from rigctl.errors import InputError, InputProblems
from rigctl.inventory import schema, yamlpos
from rigctl.inventory.problems import Problem

SECTIONS = ("hosts", "vars", "children")
# Ansible's REJECT_EXTS + INVENTORY_IGNORE_EXTS defaults: files it skips in a directory.
IGNORED_EXTS = (".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig",
                ".cfg", ".retry")
YAML_EXTS = (".yml", ".yaml", ".json")
VARS_EXTS = ("", ".yml", ".yaml", ".json")  # the order Ansible tries them in


@dataclass
class VarDef:
    """One variable written somewhere: the value, where, and for whom."""

    name: str
    value: Any
    file: str | None
    line: int | None
    owner_kind: str  # "group", "host" or "default"
    owner: str | None
    layer: str  # "inventory", "group_vars", "host_vars" or "default"
    node: yaml.Node | None = None
    key_node: yaml.Node | None = None

    @property
    def where(self) -> str:
        if self.layer == "default":
            return "default"
        return f"{self.file}:{self.line}" if self.line else str(self.file)

    @property
    def scope(self) -> str:
        if self.owner_kind == "default":
            return "schema default"
        return f"{self.owner_kind} {self.owner!r}"

    @property
    def unchecked(self) -> bool:
        """Jinja or vault: the value is only known when Ansible runs."""
        return yamlpos.contains_jinja(self.value) or yamlpos.contains_vault(self.value)

    def describe(self) -> str:
        if self.layer == "default":
            return "default"
        return f"{self.where} ({self.scope})"


@dataclass
class Host:
    name: str
    file: str
    line: int | None
    groups: list[str] = field(default_factory=list)  # direct groups, in order
    inline: list[VarDef] = field(default_factory=list)  # inventory-file vars, parse order
    places: list[tuple[str, int | None, str]] = field(default_factory=list)  # file, line, group


@dataclass
class Group:
    name: str
    file: str | None = None
    line: int | None = None
    hosts: list[str] = field(default_factory=list)  # direct members, in order
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    inline: list[VarDef] = field(default_factory=list)  # inventory-file vars, parse order
    depth: int = 0
    priority: int = 1
    implicit: bool = False  # 'all' / 'ungrouped' when no file names them


@dataclass
class VarsFile:
    path: str
    kind: str  # "group_vars" or "host_vars"
    owner: str
    defs: list[VarDef] = field(default_factory=list)
    readable: bool = True


@dataclass
class Source:
    path: str  # as given
    vars_dir: str  # the directory whose group_vars/ and host_vars/ belong to it
    is_dir: bool


def _problem(problems: list[Problem], file, line, message, fix=None, *, severity="error",
             host=None, group=None, key=None, column=None, fatal=False,
             loses_structure=False) -> Problem:
    """Record a problem. ``fatal``: the file could not be read or parsed at all (load()
    raises). ``loses_structure``: hosts or groups may be missing because of it (the check
    then does not also complain that group 'rigs' is missing or empty)."""
    p = Problem(file=file, line=line, message=message, fix=fix, severity=severity, host=host,
                group=group, key=key, column=column, fatal=fatal,
                loses_structure=fatal or loses_structure)
    problems.append(p)
    return p


def _suggest(word: str, candidates: Iterable[str], cutoff: float = 0.6) -> str | None:
    found = difflib.get_close_matches(str(word), list(candidates), n=1, cutoff=cutoff)
    return found[0] if found else None


def _kind_text(node) -> str:
    kind = yamlpos.kind_of(node)
    return {"mapping": "a mapping", "list": "a list", "null": "an empty value",
            "string": "a string", "integer": "a number", "number": "a number",
            "boolean": "a boolean"}.get(kind, "a value")


# --- host patterns ----------------------------------------------------------------------

def _split_port(pattern: str) -> tuple[str, int | None]:
    m = re.match(r"^\[([0-9a-fA-F:.]+)\]:(\d+)$", pattern)  # [ipv6]:port
    if m:
        return m.group(1), int(m.group(2))
    outside = re.sub(r"\[[^\]]*\]", "", pattern)
    if outside.count(":") == 1:
        m = re.match(r"^(.*):(\d+)$", pattern)
        if m and m.group(1):
            return m.group(1), int(m.group(2))
    return pattern, None


def _range_items(spec: str) -> list[str]:
    """The items of the inside of one ``[begin:end(:step)]`` range, by Ansible's rules:
    letters a-z/A-Z or whole numbers, an empty begin is 0, a zero-padded begin needs an end
    of the same width. Raises ValueError saying what is wrong (also for a range that
    expands to nothing or a step that is not positive, which Ansible takes silently)."""
    bounds = spec.split(":")
    if len(bounds) not in (2, 3):
        raise ValueError(f"[{spec}] is not a range (write [begin:end] or [begin:end:step])")
    begin, end = bounds[0] or "0", bounds[1]
    if not end:
        raise ValueError(f"range [{spec}] has no end")
    step_text = bounds[2] if len(bounds) == 3 else "1"
    if not step_text.isdigit() or int(step_text) == 0:
        raise ValueError(f"range [{spec}]: the step must be a whole number above 0")
    step = int(step_text)
    width = 0
    if begin.startswith("0") and len(begin) > 1:
        width = len(begin)
        if len(end) != width:
            raise ValueError(f"range [{spec}]: a zero-padded begin needs an end of the same "
                             f"width ({begin}:{end.zfill(width)})")
    letters = string.ascii_letters
    if len(begin) == 1 and len(end) == 1 and begin in letters and end in letters:
        lo, hi = letters.index(begin), letters.index(end)
        if lo > hi:
            raise ValueError(f"range [{spec}] goes backwards")
        return list(letters[lo:hi + 1:step])
    if not (begin.isdigit() and end.isdigit()):
        raise ValueError(f"range [{spec}]: begin and end must both be numbers or both be "
                         "single letters")
    if int(begin) > int(end):
        raise ValueError(f"range [{spec}] goes backwards, so it names no host")
    return [str(i).zfill(width) if width else str(i)
            for i in range(int(begin), int(end) + 1, step)]


def expand_host_pattern(pattern: str) -> tuple[list[str], int | None]:
    """Host names and port of a host key: ``rig-[1:3]:2222`` ->
    (['rig-1', 'rig-2', 'rig-3'], 2222). Raises ValueError for a bad range: any '[' in a
    host key starts a range for Ansible."""
    name, port = _split_port(pattern)
    return _expand_ranges(name), port


def _expand_ranges(name: str) -> list[str]:
    if "[" not in name:
        return [name]
    head, _, rest = name.partition("[")
    spec, closed, tail = rest.partition("]")
    if not closed:
        raise ValueError(f"'[' without ']' in {name!r}")
    out: list[str] = []
    for item in _range_items(spec):
        out.extend(_expand_ranges(head + item + tail))
    return out


def _name_problem(name: str) -> str | None:
    """What makes a host or group name unusable (Ansible refuses empty names; a name with
    spaces or commas is one entity with a name no host pattern can select), or None."""
    if not name.strip():
        return "is empty; Ansible refuses the inventory"
    if re.search(r"\s", name):
        return ("has spaces in it: Ansible reads it as one name, not as several, and no "
                "--limit can name it")
    if "," in name:
        return "has a comma in it: Ansible reads it as one name, and --limit splits it in two"
    return None


def _safe_name(name: str) -> str:
    return re.sub(r"\W+", "_", name.strip()).strip("_")


# --- the inventory ----------------------------------------------------------------------


class Inventory:
    """A loaded inventory. ``hosts``: names in file order; ``groups``: name -> Group."""

    def __init__(self, paths: list[str]):
        self.paths = list(paths)
        self.sources: list[Source] = []
        self.files: list[str] = []  # inventory files read
        self.hosts: list[str] = []
        self.groups: dict[str, Group] = {}
        self._hosts: dict[str, Host] = {}
        # vars files per source (same order as self.sources): kind -> name -> [VarsFile]
        self.vars_files: list[dict[str, dict[str, list[VarsFile]]]] = []
        self.problems: list[Problem] = []  # found while loading
        self._group("all", implicit=True)
        self._group("ungrouped", implicit=True)

    # --- queries -------------------------------------------------------------------------

    def host(self, name: str) -> Host:
        return self._hosts[name]

    def has_host(self, name: str) -> bool:
        return name in self._hosts

    @property
    def fatal(self) -> bool:
        return any(p.fatal for p in self.problems)

    def group_hosts(self, name: str) -> list[str]:
        """Every host in a group or its descendants, in inventory order."""
        if name == "all":
            return list(self.hosts)
        seen: set[str] = set()
        found: set[str] = set()
        stack = [name]
        while stack:
            g = stack.pop()
            if g in seen or g not in self.groups:
                continue
            seen.add(g)
            found.update(self.groups[g].hosts)
            stack.extend(self.groups[g].children)
        return [h for h in self.hosts if h in found]

    def host_groups(self, name: str) -> list[str]:
        """Every group of a host (with ancestors, without 'all'), in Ansible's precedence
        order: by depth, then ``ansible_group_priority``, then name."""
        h = self._hosts[name]
        seen: set[str] = set()
        stack = list(h.groups)
        while stack:
            g = stack.pop()
            if g in seen or g not in self.groups:
                continue
            seen.add(g)
            stack.extend(self.groups[g].parents)
        seen.discard("all")
        return sorted(seen, key=lambda g: (self.groups[g].depth, self.groups[g].priority, g))

    @property
    def rig_hosts(self) -> list[str]:
        """The hosts the playbooks run on (group ``rigs``)."""
        if schema.TARGET_GROUP not in self.groups:
            return []
        return self.group_hosts(schema.TARGET_GROUP)

    def layers(self, name: str) -> list[VarDef]:
        """Every variable definition that applies to a host, lowest precedence first."""
        groups = self.host_groups(name)
        # Ansible consumes ansible_group_priority written in the inventory file (it orders
        # the groups) instead of keeping it as a variable
        out: list[VarDef] = [d for d in self.groups["all"].inline
                             if d.name != "ansible_group_priority"]
        for g in groups:
            out.extend(d for d in self.groups[g].inline if d.name != "ansible_group_priority")
        for per_source in self.vars_files:
            for vf in per_source.get("group_vars", {}).get("all", []):
                out.extend(vf.defs)
        for per_source in self.vars_files:
            for g in groups:
                for vf in per_source.get("group_vars", {}).get(g, []):
                    out.extend(vf.defs)
        out.extend(self._hosts[name].inline)
        for per_source in self.vars_files:
            for vf in per_source.get("host_vars", {}).get(name, []):
                out.extend(vf.defs)
        return out

    def resolved(self, name: str) -> dict[str, VarDef]:
        """Each variable of a host with the definition that wins; rig variables that are
        set nowhere come with their schema default (layer ``default``)."""
        if name not in self._hosts:
            raise KeyError(name)
        out: dict[str, VarDef] = {
            n: VarDef(n, v, None, None, "default", None, "default")
            for n, v in schema.defaults().items()
        }
        for d in self.layers(name):
            out[d.name] = d
        return out

    def host_vars(self, name: str) -> dict[str, Any]:
        """The resolved variables of a host (rig variables include their defaults)."""
        return {k: d.value for k, d in self.resolved(name).items()}

    def select(self, limit: str | None, group: str | None = schema.TARGET_GROUP) -> list[str]:
        """Hosts of ``group`` (default: the playbooks' group ``rigs``; None: every host)
        that match an Ansible-style limit pattern, in inventory order.

        Supported: host and group names, ``all``/``*``, lists separated by ``,`` or
        ``:``, ``*``/``?`` wildcards, ``~regex``, ``!exclude`` and ``&intersection``.
        A name or pattern that matches nothing raises InputError (a typo in ``!name``
        would otherwise run on the very host meant to be left out).
        """
        base = self.hosts if group is None else self.group_hosts(group)
        if group is not None and group not in self.groups:
            raise InputError(
                f"the inventory has no group {group!r}",
                fix=f"put your rigs under `all: children: {group}:` "
                "(see inventory/example/hosts.yml)",
            )
        if limit is None or not limit.strip():
            return list(base)
        terms = _split_limit(limit)
        if not terms:
            return list(base)
        plain = [t for t in terms if not t.startswith(("!", "&"))]
        inter = [t[1:] for t in terms if t.startswith("&")]
        excl = [t[1:] for t in terms if t.startswith("!")]
        if not plain:
            plain = ["all"]
        chosen: set[str] = set()
        for t in plain:
            chosen.update(self._match_term(t, limit))
        for t in inter:
            chosen &= self._match_term(t, limit)
        for t in excl:
            chosen -= self._match_term(t, limit)
        selected = [h for h in base if h in chosen]
        if not selected:
            outside = sorted(chosen - set(base), key=self.hosts.index)
            if outside and group is not None:
                raise InputError(
                    f"limit {limit!r} selects no host of group {group!r}: "
                    f"{', '.join(outside)} {'is' if len(outside) == 1 else 'are'} not in it",
                    fix=f"add the host(s) under group {group!r}, or pick hosts from: "
                    f"{', '.join(base) or '(none)'}",
                )
            raise InputError(
                f"limit {limit!r} selects no host",
                fix=f"known hosts: {', '.join(base) or '(none)'}",
            )
        return selected

    def _match_term(self, term: str, limit: str) -> set[str]:
        term = term.strip()
        if term in ("all", "*"):
            return set(self.hosts)
        if term in self._hosts:
            return {term}
        if term in self.groups:
            return set(self.group_hosts(term))
        matched: set[str] = set()
        if term.startswith("~"):
            try:
                rx = re.compile(term[1:])
            except re.error as exc:
                raise InputError(f"bad regular expression in limit {limit!r}: {exc}") from exc
            names_h = [h for h in self.hosts if rx.search(h)]
            names_g = [g for g in self.groups if rx.search(g)]
        elif any(c in term for c in "*?["):
            names_h = fnmatch.filter(self.hosts, term)
            names_g = fnmatch.filter(list(self.groups), term)
        else:
            names_h, names_g = [], []
        matched.update(names_h)
        for g in names_g:
            matched.update(self.group_hosts(g))
        if not names_h and not names_g:
            known = self.hosts
            hint = _suggest(term, list(self._hosts) + list(self.groups))
            raise InputError(
                f"unknown host or group {term!r} in limit {limit!r}",
                fix=(f"did you mean {hint!r}? " if hint else "")
                + f"known hosts: {', '.join(known) or '(none)'}; groups: "
                + ", ".join(g for g in self.groups if g not in ("all", "ungrouped")),
            )
        return matched

    # --- building ------------------------------------------------------------------------

    def _group(self, name: str, *, implicit: bool = False) -> Group:
        g = self.groups.get(name)
        if g is None:
            g = self.groups[name] = Group(name, implicit=implicit)
        return g

    def _add_host(self, name: str, file: str, line: int | None, group: str) -> Host:
        h = self._hosts.get(name)
        if h is None:
            h = self._hosts[name] = Host(name, file, line)
            self.hosts.append(name)
        h.places.append((file, line, group))
        if group not in h.groups:
            h.groups.append(group)
        g = self._group(group)
        if name not in g.hosts:
            g.hosts.append(name)
        return h

    def _add_child(self, parent: str, child: str) -> None:
        p, c = self._group(parent), self._group(child)
        if child not in p.children:
            p.children.append(child)
        if parent not in c.parents:
            c.parents.append(parent)


def _split_limit(limit: str) -> list[str]:
    """Ansible's split of a host pattern: on commas, else on colons outside [...]."""
    text = limit.strip()
    if "," in text:
        parts = text.split(",")
    else:
        parts, depth, cur = [], 0, ""
        for ch in text:
            if ch == "[":
                depth += 1
            elif ch == "]":
                depth = max(0, depth - 1)
            if ch == ":" and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


# --- reading files -------------------------------------------------------------------------


def _read(path: str, problems: list[Problem]) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except UnicodeDecodeError:
        _problem(problems, path, None, "not a text file (not UTF-8)",
                 "point -i at a YAML inventory", fatal=True)
    except OSError as exc:
        _problem(problems, path, None, f"cannot read: {exc.strerror}",
                 "check the path and its permissions", fatal=True)
    return None


def _syntax_fix(message: str) -> str:
    m = message.lower()
    if "\\t" in m or "tab" in m:
        return "indent with spaces, not tabs"
    if "mapping values are not allowed" in m:
        return "check the indentation, and quote values that contain ': '"
    if "found duplicate anchor" in m or "undefined alias" in m:
        return "define each &anchor once, before its *alias"
    if "expected a single document" in m:
        return "keep one YAML document per file (remove the extra '---')"
    if "found undefined tag" in m or "could not determine a constructor" in m:
        return "remove the YAML tag, or quote the value"
    return "fix the YAML at that line (indentation, quoting, a missing ':')"


def _compose_file(path: str, problems: list[Problem], *, what: str, text: str | None = None):
    """(text, root node) of a YAML file: (None, None) when unreadable, (text, None) when
    empty or broken (a fatal problem is then recorded), (text, "vault") when encrypted."""
    if text is None:
        text = _read(path, problems)
    if text is None:
        return None, None
    if text.lstrip().startswith(yamlpos.VAULT_HEADER):
        return text, "vault"
    try:
        return text, yamlpos.compose(text)
    except yaml.YAMLError as exc:
        sp = yamlpos.syntax_problem(exc)
        _problem(problems, path, sp.line, f"YAML syntax error: {sp.message}",
                 _syntax_fix(sp.message), column=sp.column, fatal=True)
        return text, None


class _FileParser:
    """Parses one inventory file into an Inventory, recording problems."""

    def __init__(self, inv: Inventory, path: str):
        self.inv = inv
        self.path = path
        self.problems = inv.problems

    def p(self, node, message, fix=None, **kw) -> Problem:
        line = yamlpos.line_of(node) if node is not None else None
        return _problem(self.problems, self.path, line, message, fix, **kw)

    def duplicates(self, dups, *, what: str, host=None, group=None, key=None):
        for d in dups:
            _problem(
                self.problems, self.path, d.line,
                f"{what} {d.key!r} is written twice in the same mapping (first at line "
                f"{d.first_line}); YAML keeps only the last one",
                "merge the two into one, or rename one of them",
                host=host, group=group, key=key,
            )

    def parse(self, root, *, in_dir: bool) -> None:
        if root is None:
            if in_dir:
                self.p(None, "empty file; Ansible skips it", "remove it or add an inventory",
                       severity="warning")
            else:
                self.p(None, "empty inventory file", "write an inventory (see "
                       "inventory/example/hosts.yml)", loses_structure=True)
            return
        if not yamlpos.is_mapping(root):
            self.p(root, "not an Ansible YAML inventory: the top level must be a mapping of "
                   f"group names (usually `all:`), got {_kind_text(root)}",
                   "start the file with `all:` and put `hosts:`/`children:` under it",
                   fatal=True)
            return
        pairs, dups = yamlpos.mapping_pairs(root)
        if any(p.key == "plugin" for p in pairs):
            self.p(root, "this is the configuration of a dynamic inventory plugin, not a YAML "
                   "inventory; rigctl checks only static inventories",
                   "write a static one: ansible-inventory -i THIS_FILE --list --yaml --export "
                   "> hosts.yml", fatal=True)
            return
        self.duplicates(dups, what="group")
        for pair in pairs:
            if pair.key in SECTIONS:
                self.p(pair.key_node, f"top-level {pair.key!r} is read by Ansible as a group "
                       f"named {pair.key!r}, not as a section",
                       f"put it under a group: `all:` then `  {pair.key}:`", key=pair.key,
                       loses_structure=True)
                continue
            self.group(pair, parent=None)

    def group_name(self, pair) -> str | None:
        name = pair.key
        if not isinstance(name, str):
            self.p(pair.key_node, f"group name {pair.key_node.value!r} is read as "
                   f"{_kind_text(pair.key_node)}, not a string; Ansible refuses the inventory",
                   f"name groups with letters, digits and _, or quote it: "
                   f"\"{pair.key_node.value}\":", key=str(name), loses_structure=True)
            return None
        problem = _name_problem(name)
        if problem:
            self.p(pair.key_node, f"group name {name!r} {problem}",
                   f"name groups with letters, digits and _, like "
                   f"{_safe_name(name) or 'gpu_rigs'}", group=name or None,
                   loses_structure=True)
            return None
        return name

    def group(self, pair, parent: str | None) -> str | None:
        name = self.group_name(pair)
        if name is None:
            return None
        node = pair.value_node
        if not (yamlpos.is_mapping(node) or yamlpos.is_null(node)):
            fix = "write `NAME:` then `  hosts:` / `  vars:` / `  children:` under it"
            if isinstance(node, yaml.ScalarNode) and parent is None:
                fix = "a group is a mapping; to add hosts write `all:` then `  hosts:` then " \
                      f"`    {name}: {{ansible_host: {node.value}}}`"
            self.p(node, f"group {name!r} must be a mapping (hosts/vars/children) or empty, "
                   f"got {_kind_text(node)}; Ansible skips it", fix, group=name,
                   loses_structure=True)
            return None
        g = self.inv._group(name)
        g.implicit = False
        if g.file is None:
            g.file, g.line = self.path, yamlpos.line_of(pair.key_node)
        if parent is not None:
            self.inv._add_child(parent, name)
        if yamlpos.is_null(node):
            return name
        pairs, dups = yamlpos.mapping_pairs(node)
        self.duplicates(dups, what="section", group=name)
        for sec in pairs:
            key = sec.key
            if key not in SECTIONS:
                self.unknown_section(name, sec)
                continue
            vnode = sec.value_node
            if yamlpos.is_null(vnode):
                continue
            if isinstance(vnode, yaml.ScalarNode) and yamlpos.kind_of(vnode) == "string":
                if key in ("hosts", "children") and re.search(r"[\s,]", vnode.value):
                    what = "host" if key == "hosts" else "group"
                    items = [x for x in re.split(r"[\s,]+", vnode.value) if x]
                    first = items[0] if items else "NAME"
                    self.p(vnode, f"{key!r} of group {name!r} is the string {vnode.value!r}, "
                           f"which Ansible reads as ONE {what} named {vnode.value!r}",
                           f"write `{key}:` then one `  {first}:` line per {what}",
                           group=name, key=key, loses_structure=True)
                    continue
                # Ansible takes `hosts: rig-a` as `hosts: {rig-a: }`
                vnode = yaml.MappingNode("tag:yaml.org,2002:map", [
                    (vnode, yaml.ScalarNode("tag:yaml.org,2002:null", "", vnode.start_mark,
                                            vnode.end_mark))
                ], vnode.start_mark, vnode.end_mark)
                if key == "vars":
                    self.p(sec.value_node, "'vars' must be a mapping of variable names to "
                           "values, got a string", "write `vars:` then `  NAME: value` "
                           "lines", group=name, key="vars")
                    continue
            if not yamlpos.is_mapping(vnode):
                example = {"hosts": "`hosts:` then `  rig-a:` (one host per line, each "
                           "followed by ':')",
                           "children": "`children:` then `  GROUP:` lines",
                           "vars": "`vars:` then `  NAME: value` lines"}[key]
                self.p(vnode, f"{key!r} of group {name!r} must be a mapping, got "
                       f"{_kind_text(vnode)}", f"write {example}", group=name, key=key,
                       loses_structure=key != "vars")
                continue
            if key == "vars":
                for d in self.vars_mapping(vnode, "group", name):
                    g.inline.append(d)
            elif key == "children":
                cpairs, cdups = yamlpos.mapping_pairs(vnode)
                self.duplicates(cdups, what="child group", group=name)
                for cp in cpairs:
                    self.group(cp, parent=name)
            else:
                self.hosts(vnode, name)
        return name

    def unknown_section(self, group: str, sec) -> None:
        key = sec.key
        hint = _suggest(str(key), SECTIONS, 0.5) if isinstance(key, str) else None
        if hint:
            fix = f"did you mean {hint!r}?"
        elif isinstance(key, str) and (key.startswith(("rig_", "ansible_"))
                                       or schema.get(key)):
            fix = f"variables of a group go under `vars:` (`vars:` then `  {key}: ...`)"
        elif yamlpos.is_mapping(sec.value_node) or yamlpos.is_null(sec.value_node):
            fix = f"a host goes under `hosts:`, a group under `children:` (`hosts:` then " \
                  f"`  {key}:`)"
        else:
            fix = "use only hosts, vars and children under a group"
        self.p(sec.key_node, f"unknown key {key!r} in group {group!r} (only hosts, vars and "
               "children are valid; Ansible skips it)", fix, group=group, key=str(key),
               loses_structure=yamlpos.is_mapping(sec.value_node))

    def hosts(self, node, group: str) -> None:
        pairs, dups = yamlpos.mapping_pairs(node)
        for d in dups:
            _problem(self.problems, self.path, d.line,
                     f"defined twice in the hosts of group {group!r} "
                     f"(first at line {d.first_line}); YAML keeps only the last one, the "
                     "variables of the first are lost",
                     "merge the two entries into one", host=str(d.key), group=group)
        for hp in pairs:
            if not isinstance(hp.key, str):
                self.p(hp.key_node, f"host name {hp.key_node.value!r} is read as "
                       f"{_kind_text(hp.key_node)}, not a string",
                       f"quote it: \"{hp.key_node.value}\":", group=group, loses_structure=True)
                continue
            problem = _name_problem(hp.key)
            if problem:
                self.p(hp.key_node, f"host name {hp.key!r} {problem}",
                       "write one host per line, each a name like rig-a (letters, digits, "
                       "'.', '-' and '_'), its address in ansible_host",
                       host=hp.key or None, group=group, loses_structure=True)
                continue
            try:
                names, port = expand_host_pattern(hp.key)
            except ValueError as exc:
                self.p(hp.key_node, f"host pattern {hp.key!r}: {exc}",
                       "write ranges like rig-[1:4] or rig-[01:10]", group=group,
                       loses_structure=True)
                continue
            vnode = hp.value_node
            line = yamlpos.line_of(hp.key_node)
            if not (yamlpos.is_mapping(vnode) or yamlpos.is_null(vnode)):
                val = getattr(vnode, "value", "")
                self.p(vnode, f"the variables of host {hp.key!r} must be a mapping, got "
                       f"{_kind_text(vnode)}",
                       f"write `{hp.key}: {{ansible_host: {val}}}`" if isinstance(val, str)
                       and val else f"write `{hp.key}:` then `  NAME: value` lines",
                       host=hp.key, group=group)
                vnode = None
            defs = []
            if yamlpos.is_mapping(vnode):
                defs = self.vars_mapping(vnode, "host", names[0] if len(names) == 1 else hp.key)
            for hname in names:
                h = self.inv._add_host(hname, self.path, line, group)
                if port is not None:
                    h.inline.append(VarDef("ansible_port", port, self.path, line, "host", hname,
                                           "inventory", None, hp.key_node))
                for d in defs:
                    h.inline.append(VarDef(d.name, d.value, d.file, d.line, "host", hname,
                                           "inventory", d.node, d.key_node))

    def vars_mapping(self, node, owner_kind: str, owner: str) -> list[VarDef]:
        return parse_vars_mapping(node, self.path, owner_kind, owner, "inventory",
                                  self.problems)


def parse_vars_mapping(node, path: str, owner_kind: str, owner: str, layer: str,
                       problems: list[Problem]) -> list[VarDef]:
    """The VarDefs of a mapping of variable names to values."""
    who = {"host": owner, "group": None}
    pairs, dups = yamlpos.mapping_pairs(node)
    for d in dups:
        _problem(problems, path, d.line,
                 f"variable written twice in the same mapping (first at line {d.first_line}); "
                 "YAML keeps only the last one", "keep one of them",
                 host=who["host"], group=owner if owner_kind == "group" else None,
                 key=str(d.key))
    out = []
    for vp in pairs:
        kw = {"host": owner if owner_kind == "host" else None,
              "group": owner if owner_kind == "group" else None}
        if not isinstance(vp.key, str):
            _problem(problems, path, yamlpos.line_of(vp.key_node),
                     f"variable name {vp.key_node.value!r} is not a string",
                     "variable names are words like rig_power_limit_w", **kw)
            continue
        try:
            value = yamlpos.construct(vp.value_node)
        except yaml.YAMLError as exc:
            sp = yamlpos.syntax_problem(exc)
            _problem(problems, path, sp.line or yamlpos.line_of(vp.value_node),
                     f"cannot read the value: {sp.message}", _syntax_fix(sp.message),
                     key=vp.key, **kw)
            continue
        for keypath, d in yamlpos.all_duplicates(vp.value_node):
            inner = ".".join(str(k) for k in [vp.key, *keypath])
            _problem(problems, path, d.line,
                     f"key {d.key!r} is written twice in {inner} (first at line "
                     f"{d.first_line}); YAML keeps only the last one", "keep one of them",
                     key=vp.key, **kw)
        out.append(VarDef(vp.key, value, path, yamlpos.line_of(vp.key_node), owner_kind, owner,
                          layer, vp.value_node, vp.key_node))
    return out


def _dir_inventory_files(directory: str, problems: list[Problem]) -> list[str]:
    """Files Ansible reads as inventory sources in a directory (sorted, recursive)."""
    out = []
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        _problem(problems, directory, None, f"cannot list: {exc.strerror}",
                 "check the permissions", fatal=True)
        return out
    for name in names:
        full = os.path.join(directory, name)
        if name.startswith(".") or name in ("group_vars", "host_vars"):
            continue
        if any(name.endswith(ext) for ext in IGNORED_EXTS):
            continue
        if os.path.isdir(full):
            out.extend(_dir_inventory_files(full, problems))
            continue
        ext = os.path.splitext(name)[1]
        if ext in YAML_EXTS or ext == "":
            out.append(full)
        else:
            _problem(problems, full, None,
                     "Ansible reads this file as an inventory too (INI, TOML or a script), "
                     "but rigctl reads only YAML inventories, so its hosts and variables "
                     "would go unchecked",
                     f"convert it (ansible-inventory -i {full} --list --yaml --export) or move "
                     "it out of the inventory directory", loses_structure=True)
    return out


def _load_vars_file(inv: Inventory, path: str, kind: str, owner: str,
                    cache: dict[str, VarsFile]) -> VarsFile:
    real = os.path.realpath(path)
    if real in cache:
        return cache[real]
    owner_kind = "group" if kind == "group_vars" else "host"
    vf = VarsFile(path, kind, owner)
    cache[real] = vf
    text, root = _compose_file(path, inv.problems, what=kind)
    if root == "vault":
        _problem(inv.problems, path, None, "encrypted with ansible-vault: rigctl cannot read "
                 "it, so its variables are not checked and not shown", None, severity="note",
                 **{owner_kind: owner})
        vf.readable = False
        return vf
    if text is None or root is None:
        vf.readable = text is not None and not _has_fatal(inv, path)
        return vf
    if not yamlpos.is_mapping(root):
        _problem(inv.problems, path, yamlpos.line_of(root),
                 f"a {kind} file must be a mapping of variable names to values, got "
                 f"{_kind_text(root)}", "write `NAME: value` lines", fatal=True,
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


def _load_vars_dirs(inv: Inventory) -> None:
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
                _problem(inv.problems, base, None, f"{kind} is not a directory; Ansible skips "
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
                        _problem(inv.problems, s, None,
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
                hint = _suggest(stem, known)
                _problem(inv.problems, full, None,
                         f"the inventory has no {what} {stem!r}; Ansible ignores this file",
                         (f"did you mean {hint!r}? rename the file" if hint else
                          f"rename it after a {what} of the inventory, or remove it"),
                         severity="warning")


def _reconcile(inv: Inventory) -> None:
    """What Ansible does after parsing: top-level groups under 'all', hosts in no group in
    'ungrouped', group depths; group cycles are errors."""
    all_g = inv.groups["all"]
    for g in inv.groups.values():
        if g.name != "all" and not g.parents:
            inv._add_child("all", g.name)
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
        _problem(inv.problems, g.file, g.line,
                 f"groups form a loop: {' -> '.join(cyc)}; Ansible refuses this",
                 f"remove {cyc[-1]!r} from the children of {cyc[-2]!r}", group=cyc[0])
    # depth: the longest path from 'all' (what Ansible computes)
    depth: dict[str, int] = {}

    def d(n: str, seen: frozenset = frozenset()) -> int:
        if n == "all":
            return 0
        if n in depth:
            return depth[n]
        parents = [p for p in inv.groups[n].parents if p not in seen]
        val = max((d(p, seen | {n}) + 1 for p in parents), default=1)
        depth[n] = val
        return val

    for n, g in inv.groups.items():
        g.depth = d(n)
        prio = [v for v in g.inline if v.name == "ansible_group_priority"]
        if prio:
            try:
                g.priority = int(prio[-1].value)
            except (TypeError, ValueError):
                _problem(inv.problems, prio[-1].file, prio[-1].line,
                         f"ansible_group_priority must be an integer, got {prio[-1].value!r}",
                         "write a whole number like 10", group=n, key="ansible_group_priority")


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
        _problem(inv.problems, None, None, "no inventory given",
                 "pass -i PATH or set $RIGCTL_INVENTORY", fatal=True)
    for path in paths:
        if not os.path.exists(path):
            from rigctl.paths import ansible_dir

            example = ansible_dir() / "inventory" / "example"
            _problem(inv.problems, None, None, f"inventory not found: {path}",
                     f"pass -i PATH (a YAML inventory file or directory) or set "
                     f"$RIGCTL_INVENTORY; to start from the example: cp -r {example} "
                     "inventory", fatal=True)
            continue
        if os.path.isdir(path):
            inv.sources.append(Source(path, path, True))
            files = _dir_inventory_files(path, inv.problems)
            if not files:
                _problem(inv.problems, path, None, "no inventory file in this directory",
                         "add a hosts.yml (see inventory/example/hosts.yml)", fatal=True)
            for f in files:
                _load_inventory_file(inv, f, in_dir=True)
        else:
            inv.sources.append(Source(path, os.path.dirname(path) or ".", False))
            _load_inventory_file(inv, path, in_dir=False)
    _reconcile(inv)
    _load_vars_dirs(inv)
    if strict and inv.fatal:
        fatal = [p for p in inv.problems if p.fatal]
        raise InputProblems(fatal, header=_header(inv.paths, len(fatal), "cannot be read"))
    return inv


def _header(paths, n: int, what: str) -> str:
    where = ", ".join(str(p) for p in paths) or "inventory"
    return f"inventory {where} {what}: {n} problem{'s' if n != 1 else ''}"


def _load_inventory_file(inv: Inventory, path: str, *, in_dir: bool) -> None:
    inv.files.append(path)
    ext = os.path.splitext(path)[1]
    if ext not in YAML_EXTS and ext != "" and not in_dir:
        if ext in (".ini", ".cfg", ".toml", ".py", ".sh"):
            _problem(inv.problems, path, None, "rigctl reads only YAML inventories",
                     f"convert it: ansible-inventory -i {path} --list --yaml --export > "
                     f"{os.path.splitext(path)[0]}.yml", fatal=True)
            return
    text = _read(path, inv.problems)
    if text is None:
        return
    if _INI_SECTION_RE.search(text) and not re.search(r"^all:", text, re.M):
        _problem(inv.problems, path, None, "this looks like an INI inventory; rigctl reads only "
                 "YAML inventories", f"convert it: ansible-inventory -i {path} --list --yaml "
                 f"--export > {os.path.splitext(path)[0]}.yml", fatal=True)
        return
    text, root = _compose_file(path, inv.problems, what="inventory", text=text)
    if text is None or (root is None and _has_fatal(inv, path)):
        return
    if root == "vault":
        _problem(inv.problems, path, None, "encrypted with ansible-vault: rigctl cannot read "
                 "an encrypted inventory", "keep secrets in encrypted group_vars files or "
                 "!vault values, not in an encrypted inventory file", fatal=True)
        return
    _FileParser(inv, path).parse(root, in_dir=in_dir)


_INI_SECTION_RE = re.compile(r"^\[[A-Za-z0-9_.:-]+\]\s*$", re.M)


def _has_fatal(inv: Inventory, path: str) -> bool:
    return any(p.file == path and p.fatal for p in inv.problems)
