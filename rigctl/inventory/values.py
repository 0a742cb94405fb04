"""One value against its field of the schema (a rig variable, or one of Ansible's
connection variables): type, range, choices, format, the options of a mapping, the keys of
a per-GPU mapping. Each problem comes as an Issue with a message and a fix that show the
value as YAML read it (``the number 565.77``, ``the base-60 number 2460.0``). The inventory
check (validate.py) ties the issues to files, lines, hosts and groups."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from rigctl.core import gpudb
from rigctl.inventory import schema, yamlpos
from rigctl.inventory.catalog import P2P_CATALOG
from rigctl.inventory.schema import Field


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


def _describe_value(value: Any, node=None) -> str:
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
    return f"write it like {ex}" if ex else f"give {schema.TYPES[f.type].words}"


# --- checking one value against the schema --------------------------------------------------


def pairs_of(node) -> dict[Any, tuple[yaml.Node, yaml.Node]]:
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
            default = "" if f.default is None else f" ({show_value(f.default)})"
            yield Issue(f"expected {schema.TYPES[f.type].words}, got an empty value (null)",
                        f"give a value, or remove the line to get the default{default}",
                        node)
        return
    if not schema.TYPES[f.type].accepts(value):
        yield Issue(f"expected {schema.TYPES[f.type].words}, got {_describe_value(value, node)}",
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
    # fullmatch: a pattern's `$` would let a trailing newline through (a `|` block scalar)
    if f.pattern and isinstance(value, str) and not re.fullmatch(f.pattern, value):
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
        pairs = pairs_of(node)
        if f.options:
            yield from _check_options(f, value, pairs, path)
        elif f.key_rule:
            yield from _check_free_keys(f, value, pairs, path)


def show_value(v: Any) -> str:
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


def _check_free_keys(f: Field, value: dict, pairs, name: str) -> Iterator[Issue]:
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
                            f'quote it: "{raw}": {show_value(sub)}', key_node, f"{name}[{raw!r}]")
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
