"""A loaded inventory: hosts, groups, every variable definition with its file and line,
and what Ansible makes of them: the groups of a host, the definition of each variable that
wins (Ansible's default ``VARIABLE_PRECEDENCE`` with ``hash_behaviour=replace``: ``all``
inventory vars < other groups' inventory vars (sorted by depth, priority, name) <
``group_vars/all`` of each source < ``group_vars/<group>`` of each source (same group order)
< host inventory vars < ``host_vars/<host>`` of each source), and the hosts a ``--limit``
selects. Reading files into it: loader.py."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from rigctl.errors import InputError
from rigctl.inventory import schema, yamlpos
from rigctl.inventory.hostpatterns import split_limit
from rigctl.inventory.problems import Problem, closest


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
    def identity(self) -> tuple:
        """One written definition: the hosts of one range pattern share it."""
        return (self.file, self.line, self.name, self.layer)

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
        self.add_group("all", implicit=True)
        self.add_group("ungrouped", implicit=True)

    # --- queries -------------------------------------------------------------------------

    def host(self, name: str) -> Host:
        return self._hosts[name]

    def has_host(self, name: str) -> bool:
        return name in self._hosts

    @property
    def fatal(self) -> bool:
        return any(p.fatal for p in self.problems)

    def _groups_reached(self, start: list[str], edges: str) -> set[str]:
        """The groups in ``start`` and every group reached from them through ``edges``
        (``"children"`` or ``"parents"``); unknown names are skipped."""
        seen: set[str] = set()
        stack = list(start)
        while stack:
            g = stack.pop()
            if g in seen or g not in self.groups:
                continue
            seen.add(g)
            stack.extend(getattr(self.groups[g], edges))
        return seen

    def group_hosts(self, name: str) -> list[str]:
        """Every host in a group or its descendants, in inventory order."""
        if name == "all":
            return list(self.hosts)
        found: set[str] = set()
        for g in self._groups_reached([name], "children"):
            found.update(self.groups[g].hosts)
        return [h for h in self.hosts if h in found]

    def host_groups(self, name: str) -> list[str]:
        """Every group of a host (with ancestors, without 'all'), in Ansible's precedence
        order: by depth, then ``ansible_group_priority``, then name."""
        groups = self._groups_reached(self._hosts[name].groups, "parents")
        groups.discard("all")
        return sorted(groups, key=lambda g: (self.groups[g].depth, self.groups[g].priority, g))

    @property
    def rig_hosts(self) -> list[str]:
        """The hosts the playbooks run on (group ``rigs``)."""
        if schema.TARGET_GROUP not in self.groups:
            return []
        return self.group_hosts(schema.TARGET_GROUP)

    def defs_by_precedence(self, name: str) -> list[VarDef]:
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
        for d in self.defs_by_precedence(name):
            out[d.name] = d
        return out

    def written_defs(self) -> list[VarDef]:
        """Every variable definition written in the inventory files and in the group_vars/
        host_vars files, once (the hosts of one range pattern share theirs)."""
        defs = [d for g in self.groups.values() for d in g.inline]
        defs += [d for h in self.hosts for d in self._hosts[h].inline]
        for per_source in self.vars_files:
            for kind in ("group_vars", "host_vars"):
                for files in per_source[kind].values():
                    for vf in files:
                        defs.extend(vf.defs)
        out, seen = [], set()
        for d in defs:
            if d.identity not in seen:
                seen.add(d.identity)
                out.append(d)
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
        terms = split_limit(limit)
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
            hint = closest(term, list(self._hosts) + list(self.groups))
            raise InputError(
                f"unknown host or group {term!r} in limit {limit!r}",
                fix=(f"did you mean {hint!r}? " if hint else "")
                + f"known hosts: {', '.join(known) or '(none)'}; groups: "
                + ", ".join(g for g in self.groups if g not in ("all", "ungrouped")),
            )
        return matched

    # --- building ------------------------------------------------------------------------

    def add_group(self, name: str, *, implicit: bool = False) -> Group:
        """The group ``name``, created when it is new."""
        g = self.groups.get(name)
        if g is None:
            g = self.groups[name] = Group(name, implicit=implicit)
        return g

    def add_host(self, name: str, file: str, line: int | None, group: str) -> Host:
        h = self._hosts.get(name)
        if h is None:
            h = self._hosts[name] = Host(name, file, line)
            self.hosts.append(name)
        h.places.append((file, line, group))
        if group not in h.groups:
            h.groups.append(group)
        g = self.add_group(group)
        if name not in g.hosts:
            g.hosts.append(name)
        return h

    def add_child(self, parent: str, child: str) -> None:
        p, c = self.add_group(parent), self.add_group(child)
        if child not in p.children:
            p.children.append(child)
        if parent not in c.parents:
            c.parents.append(parent)
