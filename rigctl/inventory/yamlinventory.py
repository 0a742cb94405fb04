"""One YAML inventory file into an Inventory, the way Ansible's ``yaml`` inventory plugin
reads it: groups with ``hosts`` / ``vars`` / ``children`` (a string is taken as a one-key
mapping), host keys with ranges and ports, variables with the file and line of each; which
files of a directory are inventory sources. Every problem is recorded with its line and a
fix; a file that cannot be read or parsed at all is a fatal problem."""

from __future__ import annotations

import os
import re

import yaml

from rigctl.inventory import schema, yamlpos
from rigctl.inventory.hostpatterns import expand_host_pattern
from rigctl.inventory.model import Inventory, VarDef
from rigctl.inventory.problems import Problem, add_problem, closest

GROUP_SECTIONS = ("hosts", "vars", "children")
# Ansible's REJECT_EXTS + INVENTORY_IGNORE_EXTS defaults: files it skips in a directory.
IGNORED_EXTS = (".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig",
                ".cfg", ".retry")
YAML_EXTS = (".yml", ".yaml", ".json")


def load_inventory_file(inv: Inventory, path: str, *, in_dir: bool) -> None:
    inv.files.append(path)
    ext = os.path.splitext(path)[1]
    if ext not in YAML_EXTS and ext != "" and not in_dir:
        if ext in (".ini", ".cfg", ".toml", ".py", ".sh"):
            add_problem(inv.problems, path, None, "rigctl reads only YAML inventories",
                        f"convert it: ansible-inventory -i {path} --list --yaml --export > "
                        f"{os.path.splitext(path)[0]}.yml", fatal=True)
            return
    text = read_text(path, inv.problems)
    if text is None:
        return
    if _INI_SECTION_RE.search(text) and not re.search(r"^all:", text, re.M):
        add_problem(inv.problems, path, None, "this looks like an INI inventory; rigctl reads only "
                    "YAML inventories", f"convert it: ansible-inventory -i {path} --list --yaml "
                    f"--export > {os.path.splitext(path)[0]}.yml", fatal=True)
        return
    text, root = compose_file(path, inv.problems, what="inventory", text=text)
    if text is None or (root is None and has_fatal(inv, path)):
        return
    if root == "vault":
        add_problem(inv.problems, path, None, "encrypted with ansible-vault: rigctl cannot read "
                    "an encrypted inventory", "keep secrets in encrypted group_vars files or "
                    "!vault values, not in an encrypted inventory file", fatal=True)
        return
    _FileParser(inv, path).parse(root, in_dir=in_dir)


_INI_SECTION_RE = re.compile(r"^\[[A-Za-z0-9_.:-]+\]\s*$", re.M)


def has_fatal(inv: Inventory, path: str) -> bool:
    return any(p.file == path and p.fatal for p in inv.problems)


def dir_inventory_files(directory: str, problems: list[Problem]) -> list[str]:
    """Files Ansible reads as inventory sources in a directory (sorted, recursive)."""
    out = []
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        add_problem(problems, directory, None, f"cannot list: {exc.strerror}",
                    "check the permissions", fatal=True)
        return out
    for name in names:
        full = os.path.join(directory, name)
        if name.startswith(".") or name in ("group_vars", "host_vars"):
            continue
        if any(name.endswith(ext) for ext in IGNORED_EXTS):
            continue
        if os.path.isdir(full):
            out.extend(dir_inventory_files(full, problems))
            continue
        ext = os.path.splitext(name)[1]
        if ext in YAML_EXTS or ext == "":
            out.append(full)
        else:
            add_problem(problems, full, None,
                        "Ansible reads this file as an inventory too (INI, TOML or a script), "
                        "but rigctl reads only YAML inventories, so its hosts and variables "
                        "would go unchecked",
                        f"convert it (ansible-inventory -i {full} --list --yaml --export) or move "
                        "it out of the inventory directory", loses_structure=True)
    return out


def read_text(path: str, problems: list[Problem]) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except UnicodeDecodeError:
        add_problem(problems, path, None, "not a text file (not UTF-8)",
                    "point -i at a YAML inventory", fatal=True)
    except OSError as exc:
        add_problem(problems, path, None, f"cannot read: {exc.strerror}",
                    "check the path and its permissions", fatal=True)
    return None


def syntax_fix(message: str) -> str:
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


def compose_file(path: str, problems: list[Problem], *, what: str, text: str | None = None):
    """(text, root node) of a YAML file: (None, None) when unreadable, (text, None) when
    empty or broken (a fatal problem is then recorded), (text, "vault") when encrypted."""
    if text is None:
        text = read_text(path, problems)
    if text is None:
        return None, None
    if text.lstrip().startswith(yamlpos.VAULT_HEADER):
        return text, "vault"
    try:
        return text, yamlpos.compose(text)
    except yaml.YAMLError as exc:
        sp = yamlpos.syntax_problem(exc)
        add_problem(problems, path, sp.line, f"YAML syntax error: {sp.message}",
                    syntax_fix(sp.message), column=sp.column, fatal=True)
        return text, None


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


class _FileParser:
    """Parses one inventory file into an Inventory, recording problems."""

    def __init__(self, inv: Inventory, path: str):
        self.inv = inv
        self.path = path
        self.problems = inv.problems

    def problem(self, node, message, fix=None, **kw) -> Problem:
        line = yamlpos.line_of(node) if node is not None else None
        return add_problem(self.problems, self.path, line, message, fix, **kw)

    def report_duplicates(self, dups, *, what: str, host=None, group=None, key=None):
        for d in dups:
            add_problem(
                self.problems, self.path, d.line,
                f"{what} {d.key!r} is written twice in the same mapping (first at line "
                f"{d.first_line}); YAML keeps only the last one",
                "merge the two into one, or rename one of them",
                host=host, group=group, key=key,
            )

    def parse(self, root, *, in_dir: bool) -> None:
        if root is None:
            if in_dir:
                self.problem(None, "empty file; Ansible skips it", "remove it or add an inventory",
                       severity="warning")
            else:
                self.problem(None, "empty inventory file", "write an inventory (see "
                       "inventory/example/hosts.yml)", loses_structure=True)
            return
        if not yamlpos.is_mapping(root):
            self.problem(root, "not an Ansible YAML inventory: the top level must be a mapping of "
                   f"group names (usually `all:`), got {yamlpos.kind_text(root)}",
                   "start the file with `all:` and put `hosts:`/`children:` under it",
                   fatal=True)
            return
        pairs, dups = yamlpos.mapping_pairs(root)
        if any(p.key == "plugin" for p in pairs):
            self.problem(root, "this is the configuration of a dynamic inventory plugin, not a YAML "
                   "inventory; rigctl checks only static inventories",
                   "write a static one: ansible-inventory -i THIS_FILE --list --yaml --export "
                   "> hosts.yml", fatal=True)
            return
        self.report_duplicates(dups, what="group")
        for pair in pairs:
            if pair.key in GROUP_SECTIONS:
                self.problem(pair.key_node, f"top-level {pair.key!r} is read by Ansible as a group "
                       f"named {pair.key!r}, not as a section",
                       f"put it under a group: `all:` then `  {pair.key}:`", key=pair.key,
                       loses_structure=True)
                continue
            self.parse_group(pair, parent=None)

    def group_name(self, pair) -> str | None:
        name = pair.key
        if not isinstance(name, str):
            self.problem(pair.key_node, f"group name {pair.key_node.value!r} is read as "
                   f"{yamlpos.kind_text(pair.key_node)}, not a string; Ansible refuses the inventory",
                   f"name groups with letters, digits and _, or quote it: "
                   f"\"{pair.key_node.value}\":", key=str(name), loses_structure=True)
            return None
        problem = _name_problem(name)
        if problem:
            self.problem(pair.key_node, f"group name {name!r} {problem}",
                   f"name groups with letters, digits and _, like "
                   f"{_safe_name(name) or 'gpu_rigs'}", group=name or None,
                   loses_structure=True)
            return None
        return name

    def parse_group(self, pair, parent: str | None) -> str | None:
        name = self.group_name(pair)
        if name is None:
            return None
        node = pair.value_node
        if not (yamlpos.is_mapping(node) or yamlpos.is_null(node)):
            fix = "write `NAME:` then `  hosts:` / `  vars:` / `  children:` under it"
            if isinstance(node, yaml.ScalarNode) and parent is None:
                fix = "a group is a mapping; to add hosts write `all:` then `  hosts:` then " \
                      f"`    {name}: {{ansible_host: {node.value}}}`"
            self.problem(node, f"group {name!r} must be a mapping (hosts/vars/children) or empty, "
                   f"got {yamlpos.kind_text(node)}; Ansible skips it", fix, group=name,
                   loses_structure=True)
            return None
        g = self.inv.add_group(name)
        g.implicit = False
        if g.file is None:
            g.file, g.line = self.path, yamlpos.line_of(pair.key_node)
        if parent is not None:
            self.inv.add_child(parent, name)
        if yamlpos.is_null(node):
            return name
        pairs, dups = yamlpos.mapping_pairs(node)
        self.report_duplicates(dups, what="section", group=name)
        for sec in pairs:
            key = sec.key
            if key not in GROUP_SECTIONS:
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
                    self.problem(vnode, f"{key!r} of group {name!r} is the string {vnode.value!r}, "
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
                    self.problem(sec.value_node, "'vars' must be a mapping of variable names to "
                           "values, got a string", "write `vars:` then `  NAME: value` "
                           "lines", group=name, key="vars")
                    continue
            if not yamlpos.is_mapping(vnode):
                example = {"hosts": "`hosts:` then `  rig-a:` (one host per line, each "
                           "followed by ':')",
                           "children": "`children:` then `  GROUP:` lines",
                           "vars": "`vars:` then `  NAME: value` lines"}[key]
                self.problem(vnode, f"{key!r} of group {name!r} must be a mapping, got "
                       f"{yamlpos.kind_text(vnode)}", f"write {example}", group=name, key=key,
                       loses_structure=key != "vars")
                continue
            if key == "vars":
                for d in self.vars_mapping(vnode, "group", name):
                    g.inline.append(d)
            elif key == "children":
                cpairs, cdups = yamlpos.mapping_pairs(vnode)
                self.report_duplicates(cdups, what="child group", group=name)
                for cp in cpairs:
                    self.parse_group(cp, parent=name)
            else:
                self.parse_hosts(vnode, name)
        return name

    def unknown_section(self, group: str, sec) -> None:
        key = sec.key
        hint = closest(str(key), GROUP_SECTIONS, 0.5) if isinstance(key, str) else None
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
        self.problem(sec.key_node, f"unknown key {key!r} in group {group!r} (only hosts, vars and "
               "children are valid; Ansible skips it)", fix, group=group, key=str(key),
               loses_structure=yamlpos.is_mapping(sec.value_node))

    def parse_hosts(self, node, group: str) -> None:
        pairs, dups = yamlpos.mapping_pairs(node)
        for d in dups:
            add_problem(self.problems, self.path, d.line,
                        f"defined twice in the hosts of group {group!r} "
                        f"(first at line {d.first_line}); YAML keeps only the last one, the "
                        "variables of the first are lost",
                        "merge the two entries into one", host=str(d.key), group=group)
        for hp in pairs:
            if not isinstance(hp.key, str):
                self.problem(hp.key_node, f"host name {hp.key_node.value!r} is read as "
                       f"{yamlpos.kind_text(hp.key_node)}, not a string",
                       f"quote it: \"{hp.key_node.value}\":", group=group, loses_structure=True)
                continue
            problem = _name_problem(hp.key)
            if problem:
                self.problem(hp.key_node, f"host name {hp.key!r} {problem}",
                       "write one host per line, each a name like rig-a (letters, digits, "
                       "'.', '-' and '_'), its address in ansible_host",
                       host=hp.key or None, group=group, loses_structure=True)
                continue
            try:
                names, port = expand_host_pattern(hp.key)
            except ValueError as exc:
                self.problem(hp.key_node, f"host pattern {hp.key!r}: {exc}",
                       "write ranges like rig-[1:4] or rig-[01:10]", group=group,
                       loses_structure=True)
                continue
            vnode = hp.value_node
            line = yamlpos.line_of(hp.key_node)
            if not (yamlpos.is_mapping(vnode) or yamlpos.is_null(vnode)):
                val = getattr(vnode, "value", "")
                self.problem(vnode, f"the variables of host {hp.key!r} must be a mapping, got "
                       f"{yamlpos.kind_text(vnode)}",
                       f"write `{hp.key}: {{ansible_host: {val}}}`" if isinstance(val, str)
                       and val else f"write `{hp.key}:` then `  NAME: value` lines",
                       host=hp.key, group=group)
                vnode = None
            defs = []
            if yamlpos.is_mapping(vnode):
                defs = self.vars_mapping(vnode, "host", names[0] if len(names) == 1 else hp.key)
            for hname in names:
                h = self.inv.add_host(hname, self.path, line, group)
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
        add_problem(problems, path, d.line,
                    f"variable written twice in the same mapping (first at line {d.first_line}); "
                    "YAML keeps only the last one", "keep one of them",
                    host=who["host"], group=owner if owner_kind == "group" else None,
                    key=str(d.key))
    out = []
    for vp in pairs:
        kw = {"host": owner if owner_kind == "host" else None,
              "group": owner if owner_kind == "group" else None}
        if not isinstance(vp.key, str):
            add_problem(problems, path, yamlpos.line_of(vp.key_node),
                        f"variable name {vp.key_node.value!r} is not a string",
                        "variable names are words like rig_power_limit_w", **kw)
            continue
        try:
            value = yamlpos.construct(vp.value_node)
        except yaml.YAMLError as exc:
            sp = yamlpos.syntax_problem(exc)
            add_problem(problems, path, sp.line or yamlpos.line_of(vp.value_node),
                        f"cannot read the value: {sp.message}", syntax_fix(sp.message),
                        key=vp.key, **kw)
            continue
        for keypath, d in yamlpos.all_duplicates(vp.value_node):
            inner = ".".join(str(k) for k in [vp.key, *keypath])
            add_problem(problems, path, d.line,
                        f"key {d.key!r} is written twice in {inner} (first at line "
                        f"{d.first_line}); YAML keeps only the last one", "keep one of them",
                        key=vp.key, **kw)
        out.append(VarDef(vp.key, value, path, yamlpos.line_of(vp.key_node), owner_kind, owner,
                          layer, vp.value_node, vp.key_node))
    return out
