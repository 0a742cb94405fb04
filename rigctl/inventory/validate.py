"""The inventory check: every problem at once, each with file, line, host or group, key,
what is wrong and what to do. Contacts no host and never imports Ansible."""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from rigctl.core import cuda as cudalib
from rigctl.core import gpudb
from rigctl.inventory import ansible_vars, schema, yamlpos
from rigctl.inventory.catalog import P2P_CATALOG
from rigctl.inventory.loader import Inventory, VarDef
from rigctl.inventory.problems import Problem
from rigctl.inventory.schema import Field

_MISSING = object()


@dataclass
class Issue:
    """A problem with one value, before it is tied to a host or group."""

    message: str
    fix: str | None = None
    node: yaml.Node | None = None  # where, inside the value
    key: str | None = None  # e.g. "rig_p2p_source.branch"; None: the variable itself
    severity: str = "error"


# --- describing values ---------------------------------------------------------------------


def _raw(node) -> str | None:
    if isinstance(node, yaml.ScalarNode):
        return node.value
    return None


def _got(value: Any, node=None) -> str:
    raw = _raw(node)
    plain = yamlpos.is_plain_scalar(node)
    if value is None:
        return "an empty value (null)"
    if isinstance(value, bool):
        text = f"the boolean {str(value).lower()}"
        if plain and raw and raw.lower() not in ("true", "false"):
            text += f" (YAML reads unquoted {raw} as a boolean)"
        return text
    if isinstance(value, (int, float)):
        shown = raw if raw else repr(value)
        text = f"the number {shown}"
        if plain and raw and isinstance(value, float) and raw != repr(value):
            text += f" (YAML reads unquoted {raw} as the number {value!r})"
        elif plain and raw and ":" in raw:
            text += f" (YAML 1.1 reads unquoted {raw} as the base-60 number {value!r})"
        return text
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


_TYPE_WORDS = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "list": "a list",
    "dict": "a mapping",
    "scalar": "a string, number or boolean",
}


def _type_ok(ftype: str, value: Any) -> bool:
    if ftype == "str":
        return isinstance(value, str)
    if ftype == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if ftype == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if ftype == "bool":
        return isinstance(value, bool)
    if ftype == "list":
        return isinstance(value, list)
    if ftype == "dict":
        return isinstance(value, dict)
    if ftype == "scalar":
        return isinstance(value, (str, int, float, bool))
    return True


def _example(f: Field, name: str) -> str:
    return schema.example_line(f, name)


def _type_fix(f: Field, name: str, value: Any, node) -> str:
    raw = _raw(node)
    plain = yamlpos.is_plain_scalar(node)
    if f.type == "str" and plain and raw is not None and value is not None and not (
            f.check and f.check(raw)):  # quoting helps only where the text itself is valid
        return f'quote it: {name}: "{raw}"'
    if f.type in ("int", "float") and isinstance(value, str):
        try:
            float(value)
            return f"write it without quotes: {name}: {value.strip()}"
        except ValueError:
            pass
    if f.type == "int" and isinstance(value, float) and not isinstance(value, bool):
        return f"use a whole number, like {name}: {int(value)}"
    if f.type == "bool" and isinstance(value, str):
        if value.strip().lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            truth = value.strip().lower() in ("true", "yes", "on", "1")
            return f"write {name}: {str(truth).lower()} (no quotes)"
    ex = _example(f, name)
    return f"write it like {ex}" if ex else f"give {_TYPE_WORDS[f.type]}"


# --- checking one value against the schema --------------------------------------------------


def _pairs_of(node) -> dict[Any, tuple[yaml.Node, yaml.Node]]:
    if not yamlpos.is_mapping(node):
        return {}
    pairs, _ = yamlpos.mapping_pairs(node)
    return {p.key: (p.key_node, p.value_node) for p in pairs}


def check_value(f: Field, value: Any, node=None, path: str | None = None,
                leaf: str | None = None) -> Iterator[Issue]:
    """Issues of one value against a field of the schema (its type, range, choices, format,
    options). Values with Jinja or vault are not checked. ``path`` names the value in
    messages (``rig_p2p_source.branch``), ``leaf`` is its own key (``branch``)."""
    path = path or f.name
    name = leaf or f.name
    for issue in _check_value(f, value, node, path, name):
        if issue.key is None:
            issue.key = path
        yield issue


def _check_value(f: Field, value: Any, node, path: str, name: str) -> Iterator[Issue]:
    if yamlpos.contains_jinja(value) or yamlpos.contains_vault(value):
        return
    if value is None:
        if not f.nullable:
            default = "" if f.default is None else f" ({_show(f.default)})"
            yield Issue(f"expected {_TYPE_WORDS[f.type]}, got an empty value (null)",
                        f"give a value, or remove the line to get the default{default}",
                        node)
        return
    if not _type_ok(f.type, value):
        yield Issue(f"expected {_TYPE_WORDS[f.type]}, got {_got(value, node)}",
                    _type_fix(f, name, value, node), node)
        return
    if f.choices and value not in f.choices:
        hint = difflib.get_close_matches(str(value), [str(c) for c in f.choices], n=1)
        valid = ", ".join(str(c) for c in f.choices)
        fix = f"did you mean {hint[0]!r}? (one of: {valid})" if hint else f"use one of: {valid}"
        yield Issue(f"{value!r} is not a valid value", fix, node)
        return
    if f.type in ("int", "float"):
        if f.min is not None and value < f.min:
            yield Issue(f"{value} is below the minimum {f.min}",
                        f"use a value from {f.min} to {f.max}", node)
            return
        if f.max is not None and value > f.max:
            yield Issue(f"{value} is above the maximum {f.max}",
                        f"use a value from {f.min} to {f.max}", node)
            return
    if f.pattern and isinstance(value, str) and not re.match(f.pattern, value):
        yield _pattern_issue(f, name, value, node)
        return
    if f.check is not None:
        found = f.check(value)
        if found:
            yield Issue(found[0], found[1], node)
            return
    if f.type == "list" and f.elements:
        sub = Field(f"{name}[]", f.elements, "")
        for i, item in enumerate(value):
            item_node = node.value[i] if yamlpos.is_sequence(node) else None
            yield from check_value(sub, item, item_node, f"{path}[{i}]", name)
    if f.type == "dict":
        pairs = _pairs_of(node)
        if f.options:
            yield from _check_options(f, value, pairs, path)
        elif f.key_rule:
            yield from _check_free_dict(f, value, pairs, path)


def _show(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    return repr(v) if isinstance(v, str) else str(v)


def _pattern_issue(f: Field, name: str, value: str, node) -> Issue:
    if f.pattern == schema.COMMIT_RE:
        if re.match(r"^[0-9a-fA-F]{4,39}$", value):
            return Issue(f"abbreviated commit id {value!r}: a pinned commit must be the full "
                         "40-character id, so that it cannot be ambiguous",
                         f"`git rev-parse {value}` in a clone of the fork prints the full id",
                         node)
        if re.match(r"^[0-9A-F]{40}$", value, re.I):
            return Issue(f"commit id {value!r} has upper-case letters",
                         f"write it in lower case: {value.lower()}", node)
    what = f.format_help or f"match {f.pattern}"
    return Issue(f"{value!r} is not in the expected format: {what}",
                 f"write it like {_example(f, name)}" if f.example is not None
                 else "fix the value", node)


def _check_options(f: Field, value: dict, pairs, name: str) -> Iterator[Issue]:
    known = [o.name for o in f.options]
    for key, sub in value.items():
        key_node, value_node = pairs.get(key, (None, None))
        opt = f.option(key) if isinstance(key, str) else None
        if opt is None:
            hint = difflib.get_close_matches(str(key), known, n=1)
            yield Issue(f"unknown key {key!r} in {name} (valid: {', '.join(known)})",
                        f"did you mean {hint[0]!r}?" if hint else "remove it",
                        key_node, f"{name}.{key}")
            continue
        yield from check_value(opt, sub, value_node, f"{name}.{key}", key)
    if f.name == "rig_p2p_source":
        yield from _p2p_source_shape(value, pairs, name)


def _p2p_source_shape(value: dict, pairs, name: str) -> Iterator[Issue]:
    def node(k):
        return pairs.get(k, (None, None))[0]

    catalog, url = value.get("catalog"), value.get("url")
    if catalog is not None:
        # With a catalog entry, `url` may only point at a mirror of that fork (air-gapped
        # fleets): the entry still fixes the branch and the pinned commit, which the role
        # verifies after fetching from the mirror.
        for k in ("branch", "commit"):
            if value.get(k) is not None:
                yield Issue(f"{k} cannot be combined with catalog (the catalog entry fixes "
                            "branch and commit; url may name a mirror of its fork)",
                            f"remove {k}, or replace catalog with url/branch/commit",
                            node(k), f"{name}.{k}")
        return
    if url is None:
        names = ", ".join(P2P_CATALOG)
        yield Issue("needs catalog, or url with branch and commit",
                    f"write {{catalog: NAME}} with NAME one of {names}, or "
                    "{url: ..., branch: ..., commit: ...}", None)
        return
    if value.get("branch") is None:
        yield Issue("url needs a branch (the known forks name it <driver version>-p2p)",
                    "add branch, like branch: 570.86.16-p2p", node("url"), f"{name}.branch")
    if value.get("commit") is None:
        # Third-party kernel source is pinned and verified, never "whatever the branch
        # head is today": two rigs provisioned a week apart would get different modules.
        yield Issue("no commit: third-party kernel source must be pinned to a commit",
                    "add commit with the full 40-character id of the reviewed commit "
                    "(git ls-remote URL BRANCH shows the current head)", node("url"),
                    f"{name}.commit")


def _check_free_dict(f: Field, value: dict, pairs, name: str) -> Iterator[Issue]:
    seen: dict[Any, Any] = {}
    for key, sub in value.items():
        key_node, value_node = pairs.get(key, (None, None))
        label = f"{name}[{key!r}]"
        if f.key_rule == "gpu_selector":
            raw = _raw(key_node)
            if (yamlpos.is_plain_scalar(key_node) and isinstance(key, float) and raw
                    and gpudb.parse_gpu_selector(raw)):
                yield Issue(f"the key {raw} is read by YAML 1.1 as the base-60 number {key!r}, "
                            "not as a PCI bus id",
                            f'quote it: "{raw}": {_show(sub)}', key_node, f"{name}[{raw!r}]")
                continue
            sel = gpudb.parse_gpu_selector(key)
            if sel is None:
                yield Issue(f"{key!r} is not a GPU index, PCI bus id or UUID",
                            "use an index (0), a bus id (\"0000:41:00.0\") or a UUID "
                            "(GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), as nvidia-smi "
                            "--query-gpu=index,pci.bus_id,uuid --format=csv prints them",
                            key_node, label)
                continue
            if sel[0] == "index" and sel[1] >= schema.MAX_GPUS:
                yield Issue(f"GPU index {sel[1]} is out of range (a rig has at most "
                            f"{schema.MAX_GPUS} GPUs, indexes from 0)",
                            f"use an index from 0 to {schema.MAX_GPUS - 1}", key_node, label)
                continue
            if sel in seen:
                yield Issue(f"{key!r} and {seen[sel]!r} name the same GPU",
                            "keep one of the two", key_node, label)
                continue
            seen[sel] = key
        elif f.key_rule == "nccl_env":
            if not isinstance(key, str) or not re.match(schema.NCCL_ENV_KEY_RE, key):
                if isinstance(key, str) and re.match(schema.NCCL_ENV_KEY_RE, key.upper()):
                    fix = f"NCCL variables are upper case: {key.upper()}"
                elif isinstance(key, str) and re.match(r"^[A-Z0-9_]+$", key):
                    fix = (f"NCCL reads only NCCL_* variables; did you mean NCCL_{key}?"
                           if not key.startswith("NCCL") else "write it like NCCL_P2P_LEVEL")
                else:
                    fix = "keys are NCCL variable names like NCCL_P2P_LEVEL"
                yield Issue(f"{key!r} is not an NCCL variable (keys must start with NCCL_)",
                            fix, key_node, label)
                continue
        if f.value_field is not None:
            yield from check_value(f.value_field, sub, value_node, label, str(key))


# --- the whole inventory ---------------------------------------------------------------


def _unique_defs(inv: Inventory) -> list[VarDef]:
    """Every variable definition once (hosts from one range share theirs)."""
    out, seen = [], set()

    def add(d: VarDef):
        k = _def_key(d)
        if k in seen:
            return
        seen.add(k)
        out.append(d)

    for g in inv.groups.values():
        for d in g.inline:
            add(d)
    for name in inv.hosts:
        for d in inv.host(name).inline:
            add(d)
    for per in inv.vars_files:
        for kind in ("group_vars", "host_vars"):
            for files in per[kind].values():
                for vf in files:
                    for d in vf.defs:
                        add(d)
    return out


def _def_key(d: VarDef) -> tuple:
    """One written definition (hosts from one range pattern share it)."""
    return (d.file, d.line, d.name, d.layer)


class _Checker:
    def __init__(self, inv: Inventory):
        self.inv = inv
        self.problems: list[Problem] = list(inv.problems)
        self.bad: set[tuple] = set()  # definitions whose value is wrong

    def add(self, d: VarDef | None, message: str, fix: str | None = None, *, key=None,
            severity="error", host=None, group=None, line=None, file=None) -> None:
        if d is not None and host is None and group is None:
            if d.owner_kind == "host":
                host = d.owner
            elif d.owner_kind == "group":
                group = d.owner
        self.problems.append(Problem(
            file=file if file is not None else (d.file if d else None),
            line=line if line is not None else (d.line if d else None),
            message=message, fix=fix, severity=severity, host=host, group=group,
            key=key if key is not None else (d.name if d else None)))

    def run(self) -> list[Problem]:
        for d in _unique_defs(self.inv):
            self.definition(d)
        self.groups()
        for h in self.checked_hosts():
            self.host(h)
        self.addresses()
        self.names_as_addresses()
        # SSH host key checking: one rule (rigctl.hostkeys), also used by the gate and the
        # access suite; the caller's environment counts too (ANSIBLE_HOST_KEY_CHECKING...)
        import os

        from rigctl.hostkeys import inventory_problems

        self.problems += inventory_problems(self.inv, self.checked_hosts(), os.environ)
        return _dedupe(self.problems)

    # one definition --------------------------------------------------------------------

    def definition(self, d: VarDef) -> None:
        name = d.name
        f = schema.get(name) or ansible_vars.get(name)
        if f is None:
            if name.startswith("ansible_"):
                self.connection_near_miss(d)
            elif name in schema.REMOVED:
                self.add(d, f"{name} is no longer a rig variable and is ignored",
                         f"remove it: {schema.REMOVED[name]}", severity="warning")
            elif name.startswith("rig_"):
                hint = difflib.get_close_matches(name, schema.NAMES, n=1, cutoff=0.6)
                self.add(d, "unknown rig variable",
                         f"did you mean {hint[0]!r}?" if hint else
                         "see docs/inventory.md for the rig variables")
                self.bad.add(_def_key(d))
            else:
                self.near_miss(d)
            return
        if d.unchecked and ansible_vars.get(name):
            return  # Ansible's own variables: Jinja and vault are usual there
        if name in ansible_vars.SECRETS:  # a password: no value in any message
            found = ansible_vars.secret_problem(d.value)
            if found:
                self.add(d, *found)
                self.bad.add(_def_key(d))
            return
        if d.unchecked:
            what = "!vault-encrypted" if yamlpos.contains_vault(d.value) else "Jinja"
            self.add(d, f"the value uses {what}; Ansible computes it when the play runs, so it "
                     "is not checked here", None, severity="note")
            return
        for issue in check_value(f, ansible_vars.as_ansible_reads(f, d.value), d.node, name):
            # the value as a whole is wrong: the line of its name (a block list or mapping
            # starts below it)
            whole = issue.node is None or issue.node is d.node
            line = d.line if whole else (yamlpos.line_of(issue.node) or d.line)
            self.add(d, issue.message, issue.fix, key=issue.key, line=line,
                     severity=issue.severity)
            if issue.severity == "error":
                self.bad.add(_def_key(d))

    def connection_near_miss(self, d: VarDef) -> None:
        """``ansible_usr``: Ansible ignores a misspelled connection variable silently."""
        cand = ansible_vars.suggest(d.name)
        if cand and cand != d.name:
            self.add(d, "not a variable Ansible reads, so the connection goes on without it",
                     f"did you mean {cand!r}?", severity="warning")

    def near_miss(self, d: VarDef) -> None:
        name = d.name
        lower = name.lower().replace("-", "_")
        cand = None
        if lower in schema.BY_NAME:
            cand = lower
        elif "rig_" + lower in schema.BY_NAME:
            cand = "rig_" + lower
        else:
            hint = difflib.get_close_matches(lower, schema.NAMES, n=1, cutoff=0.85)
            cand = hint[0] if hint else None
        if cand:
            self.add(d, "not a rig variable, so rigctl's roles never read it",
                     f"did you mean {cand!r}?", severity="warning")

    # groups ------------------------------------------------------------------------------

    def groups(self) -> None:
        inv = self.inv
        target = schema.TARGET_GROUP
        first = inv.files[0] if inv.files else None
        if not inv.files:
            return
        if any(p.loses_structure for p in inv.problems):
            pass  # the group may be in what could not be read: no cascade of errors
        elif target not in inv.groups:
            self.add(None, f"no group {target!r}: the playbooks run on the hosts of group "
                     f"{target!r}", f"put your rigs under `all:` → `children:` → `{target}:` "
                     "(see inventory/example/hosts.yml)", file=first, key=None)
        elif not inv.group_hosts(target):
            g = inv.groups[target]
            self.add(None, "has no host, so there is nothing to run on",
                     f"add hosts under `{target}:` → `hosts:`, or under a child group",
                     file=g.file or first, line=g.line, group=target)
        for gname, g in inv.groups.items():
            if gname in ("all", "ungrouped"):
                continue
            if inv.has_host(gname):
                self.add(None, f"{gname!r} is both a group and a host; Ansible warns and "
                         "patterns become ambiguous", "rename one of them", file=g.file,
                         line=g.line, group=gname, severity="warning")
            if re.search(r"[^\w]", gname) or gname[:1].isdigit():
                fixed = re.sub(r"\W", "_", gname)
                self.add(None, "Ansible warns about group names that are not valid Python "
                         "identifiers", f"use letters, digits and _: {fixed}",
                         file=g.file, line=g.line,
                         group=gname, severity="warning")
        self.redefinitions()
        self.outside_rigs()

    def redefinitions(self) -> None:
        """The same variable set twice for one host or group in the inventory files, with
        different values: the later one silently wins."""
        inv = self.inv
        owners = [("group", g.name, g.inline) for g in inv.groups.values()]
        owners += [("host", h, inv.host(h).inline) for h in inv.hosts]
        for kind, owner, defs in owners:
            by_name: dict[str, list[VarDef]] = {}
            for d in defs:
                by_name.setdefault(d.name, []).append(d)
            for ds in by_name.values():
                if len(ds) < 2:
                    continue
                last = ds[-1]
                for earlier in ds[:-1]:
                    if earlier.value != last.value and (earlier.file, earlier.line) != (
                            last.file, last.line):
                        self.add(last, f"also set at {earlier.where} to {_show(earlier.value)}; "
                                 f"this later value ({_show(last.value)}) wins",
                                 "set it in one place", severity="warning",
                                 **{kind: owner})

    def outside_rigs(self) -> None:
        inv = self.inv
        target = schema.TARGET_GROUP
        if target not in inv.groups or not inv.group_hosts(target):
            return
        rigs = set(inv.group_hosts(target))
        for h in inv.hosts:
            if h in rigs:
                continue
            rig_defs = [d for d in inv.host(h).inline if d.name.startswith("rig_")]
            for per in inv.vars_files:
                for vf in per["host_vars"].get(h, []):
                    rig_defs.extend(d for d in vf.defs if d.name.startswith("rig_"))
            if rig_defs:
                d = rig_defs[0]
                self.add(d, f"the host is not in group {target!r}, so the playbooks never "
                         "run on it and its rig variables are unused",
                         f"add it under `{target}:`, or remove the rig variables",
                         severity="warning", key=None, host=h)

    # one host (the rules between variables) -------------------------------------------

    def checked_hosts(self) -> list[str]:
        rigs = self.inv.rig_hosts
        return rigs if rigs else list(self.inv.hosts)

    def host(self, h: str) -> None:
        res = self.inv.resolved(h)

        def val(name: str):
            d = res.get(name)
            if d is None:
                return None
            if _def_key(d) in self.bad or d.unchecked:
                return _MISSING
            return d.value

        def at(name: str) -> VarDef:
            return res[name]

        def origin(name: str) -> str:
            d = res[name]
            return "the default" if d.layer == "default" else d.where

        flavor = val("rig_driver_flavor")
        version = val("rig_driver_version")
        src = val("rig_p2p_source")
        if flavor == "p2p":
            if version is None:
                self.add(at("rig_driver_flavor"),
                         "required because rig_driver_flavor is 'p2p': the patched module "
                         "is built for one exact driver version",
                         "set rig_driver_version to the version of the P2P branch, like "
                         '"570.86.16"', key="rig_driver_version", host=h)
            if src is None:
                self.add(at("rig_driver_flavor"),
                         "required because rig_driver_flavor is 'p2p'",
                         "add rig_p2p_source: {catalog: NAME} (NAME one of "
                         f"{', '.join(P2P_CATALOG)}) or {{url: ..., branch: ..., commit: ...}}",
                         key="rig_p2p_source", host=h)
            elif isinstance(src, dict) and isinstance(version, str):
                self.p2p_version(h, at("rig_p2p_source"), src, version,
                                 origin("rig_driver_version"))
        elif flavor == "open" and src not in (None, _MISSING):
            self.add(at("rig_p2p_source"), "ignored: rig_driver_flavor is 'open' "
                     f"({origin('rig_driver_flavor')})",
                     "remove rig_p2p_source, or set rig_driver_flavor: p2p",
                     severity="warning", host=h)
        for source, url in (("rig_driver_source", "rig_driver_mirror_url"),
                            ("rig_cuda_source", "rig_cuda_mirror_url"),
                            ("rig_nccl_source", "rig_nccl_mirror_url")):
            if val(source) == "mirror" and val(url) is None:
                self.add(at(source), f"required because {source} is 'mirror'",
                         f"set {url} to your mirror of NVIDIA's CUDA apt repository, or use "
                         f"{source}: cuda-repo", key=url, host=h)
        self.cuda_versions(h, val, at)
        count = val("rig_gpu_count")
        # the keys that are valid indexes are checked even when another key is wrong
        for var in ("rig_power_limit_overrides", "rig_gpu_clock_lock_overrides"):
            od = res[var]
            overrides = od.value if not od.unchecked else None
            if not (isinstance(count, int) and isinstance(overrides, dict)):
                continue
            d = at(var)
            pairs = _pairs_of(d.node)
            for key in overrides:
                sel = gpudb.parse_gpu_selector(key)
                if sel and sel[0] == "index" and sel[1] >= count:
                    key_node = pairs.get(key, (None, None))[0]
                    self.add(d, f"GPU index {sel[1]} does not exist on a rig with "
                             f"rig_gpu_count {count} ({origin('rig_gpu_count')}); indexes go "
                             f"from 0 to {count - 1}",
                             "fix the index, or rig_gpu_count",
                             key=f"{var}[{key!r}]",
                             line=yamlpos.line_of(key_node), host=h)
        env = val("rig_nccl_env")
        ifname = val("rig_nccl_socket_ifname")
        if isinstance(env, dict):
            if "NCCL_SOCKET_IFNAME" in env and ifname not in (None, _MISSING):
                self.add(at("rig_nccl_env"), "NCCL_SOCKET_IFNAME is set here and in "
                         f"rig_nccl_socket_ifname ({origin('rig_nccl_socket_ifname')})",
                         "set it in one place: rig_nccl_socket_ifname",
                         key="rig_nccl_env['NCCL_SOCKET_IFNAME']", host=h)
            disable = env.get("NCCL_P2P_DISABLE")
            if flavor == "p2p" and disable not in (None, 0, "0", False, "false"):
                self.add(at("rig_nccl_env"), "NCCL_P2P_DISABLE turns off the P2P that "
                         "rig_driver_flavor 'p2p' installs",
                         "remove NCCL_P2P_DISABLE (P2P rigs usually run NCCL_P2P_LEVEL: SYS)",
                         key="rig_nccl_env['NCCL_P2P_DISABLE']", severity="warning", host=h)
        cuda = val("rig_cuda_version")
        compat = val("rig_cuda_minor_version_compat") is True
        if isinstance(cuda, str) and isinstance(version, str):
            extra = val("rig_cuda_extra_versions")
            for release in [cuda] + [v for v in (extra if isinstance(extra, list) else [])
                                     if isinstance(v, str) and re.match(schema.CUDA_VERSION_RE, v)]:
                support = cudalib.driver_support(release, version, allow_minor_compat=compat)
                if not support["supported"]:
                    key = "rig_cuda_version" if release == cuda else "rig_cuda_extra_versions"
                    message = support["message"].replace("the installed driver is", "rig_driver_version is")
                    self.add(at(key),
                             f"{message} (rig_driver_version from {origin('rig_driver_version')})",
                             support["fix"], host=h)
        profile = val("rig_lab_profile")
        if isinstance(profile, str):
            addr = val("ansible_host")
            addr = h if addr is None else addr
            if isinstance(addr, str) and not _loopback(addr):
                self.add(at("rig_lab_profile"),
                         f"set, but it is for simulated lab rigs only and this host is at "
                         f"{addr}, not on a loopback address",
                         "remove rig_lab_profile from real rigs", severity="warning", host=h)

    def p2p_version(self, h: str, d: VarDef, src: dict, version: str, vorigin: str) -> None:
        pairs = _pairs_of(d.node)
        catalog = src.get("catalog")
        if isinstance(catalog, str) and catalog in P2P_CATALOG:
            entry = P2P_CATALOG[catalog]
            if entry.driver_version != version:
                node = pairs.get("catalog", (None, None))[1]
                self.add(d, f"catalog entry {catalog!r} is for driver {entry.driver_version}, "
                         f"but rig_driver_version is {version} ({vorigin}); the module and the "
                         "userspace must be the same version to the last digit",
                         f'set rig_driver_version: "{entry.driver_version}", or pick the '
                         f"entry for {version}" + _catalog_hint(version),
                         key="rig_p2p_source.catalog", line=yamlpos.line_of(node), host=h)
            return
        branch = src.get("branch")
        if not isinstance(branch, str) or yamlpos.contains_jinja(branch):
            return
        node = pairs.get("branch", (None, None))[1]
        m = re.match(r"^(\d{3}\.\d{1,3}(?:\.\d{1,3})?)(?=$|[^\d.])", branch)
        if not m:
            self.add(d, f"cannot tell the driver version from branch {branch!r}; the "
                     f"module's version.mk must say {version} (the build checks it)",
                     "use a branch named <driver version>-p2p", key="rig_p2p_source.branch",
                     line=yamlpos.line_of(node), severity="warning", host=h)
            return
        if m.group(1) != version:
            self.add(d, f"branch {branch!r} is for driver {m.group(1)}, but rig_driver_version "
                     f"is {version} ({vorigin}); the module and the userspace must be the same "
                     "version to the last digit",
                     f'set rig_driver_version: "{m.group(1)}", or use the branch '
                     f"{version}-p2p", key="rig_p2p_source.branch",
                     line=yamlpos.line_of(node), host=h)

    # addresses ---------------------------------------------------------------------------

    def cuda_versions(self, h: str, val: Callable[[str], Any], at: Callable[[str], Any]) -> None:
        """rig_cuda_extra_versions: valid releases, not the default twice, and only from a
        source that has several releases."""
        extra = val("rig_cuda_extra_versions")
        if not isinstance(extra, list) or not extra:
            return
        cuda = val("rig_cuda_version")
        seen: set[str] = set()
        for item in extra:
            if not isinstance(item, str) or not re.match(schema.CUDA_VERSION_RE, item):
                self.add(at("rig_cuda_extra_versions"), f"{item!r} is not a CUDA release",
                         'write releases as quoted strings like "12.6"', host=h)
                continue
            if item == cuda:
                self.add(at("rig_cuda_extra_versions"), f"{item} is rig_cuda_version already",
                         f"remove {item} from rig_cuda_extra_versions", severity="warning", host=h)
            if item in seen:
                self.add(at("rig_cuda_extra_versions"), f"{item} is listed twice",
                         f"list {item} once", severity="warning", host=h)
            seen.add(item)
        if cuda is None:
            self.add(at("rig_cuda_extra_versions"), "set, but rig_cuda_version is null (CUDA is "
                     "not managed)", "set rig_cuda_version (the default toolkit)", host=h)
        if val("rig_cuda_source") == "debian":
            self.add(at("rig_cuda_extra_versions"), "the debian source ships one CUDA toolkit, "
                     "so toolkits cannot be installed side by side",
                     "use rig_cuda_source: cuda-repo (or mirror), or empty rig_cuda_extra_versions",
                     host=h)

    def addresses(self) -> None:
        inv = self.inv
        rigs = set(inv.rig_hosts)
        seen: dict[tuple[str, int], str] = {}
        for h in inv.hosts:
            res = inv.resolved(h)
            addr_def = res.get("ansible_host") or res.get("ansible_ssh_host")
            port_def = res.get("ansible_port") or res.get("ansible_ssh_port")
            addr = addr_def.value if addr_def else h
            if not isinstance(addr, str) or yamlpos.contains_jinja(addr):
                continue
            port: Any = port_def.value if port_def else 22
            if isinstance(port, str) and port.strip().isdigit():
                port = int(port)
            if not isinstance(port, int) or isinstance(port, bool):
                continue
            key = (addr.strip().lower(), port)
            if key in seen:
                other = seen[key]
                both = other in rigs and h in rigs
                d = addr_def or port_def
                self.add(d, f"same address as host {other!r} ({addr} port {port}): two names "
                         "for one machine, which a run would provision twice at once",
                         "remove one of the two, or fix ansible_host/ansible_port",
                         severity="error" if both else "warning", host=h,
                         key="ansible_host" if addr_def else None,
                         file=None if d else inv.host(h).file,
                         line=None if d else inv.host(h).line)
            else:
                seen[key] = h

    def names_as_addresses(self) -> None:
        """Without ansible_host, Ansible connects over SSH to the host's inventory name."""
        inv = self.inv
        for h in inv.hosts:
            res = inv.resolved(h)
            if res.get("ansible_host") or res.get("ansible_ssh_host"):
                continue
            conn = res.get("ansible_connection")
            if conn is not None and (conn.unchecked or conn.value not in ("ssh", "paramiko",
                                                                          "smart")):
                continue
            found = ansible_vars.address_problem(h, "ansible_host")
            if found:
                host = inv.host(h)
                self.add(None, f"no ansible_host, so Ansible connects to the host's name, and "
                         f"{found[0]}", "set ansible_host (like ansible_host: 192.0.2.10), "
                         "or rename the host", host=h, file=host.file, line=host.line)


def _catalog_hint(version: str) -> str:
    names = [s.name for s in P2P_CATALOG.values() if s.driver_version == version]
    return f" ({names[0]})" if names else ""


def _loopback(addr: str) -> bool:
    if addr.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def _dedupe(problems: list[Problem]) -> list[Problem]:
    out, seen = [], set()
    for p in problems:
        k = (p.file, p.line, p.column, p.host, p.group, p.key, p.severity, p.message)
        if k not in seen:
            seen.add(k)
            out.append(p)
    order = {"error": 0, "warning": 1, "note": 2}
    return sorted(out, key=lambda p: (p.file is not None, p.file or "", p.line or 0,
                                      order.get(p.severity, 3), p.host or "", p.key or ""))


def check(inv: Inventory) -> list[Problem]:
    """Every problem of a loaded inventory (errors, warnings and notes), sorted by file
    and line, including those found while loading."""
    from rigctl.inventory import secrets  # no secret value in any message; plain-text warnings

    return _dedupe(secrets.review(inv, _Checker(inv).run()))
