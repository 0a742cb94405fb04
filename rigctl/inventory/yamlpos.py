"""YAML with positions: compose nodes (which keep file/line), construct values from them,
and find what PyYAML would hide (duplicate keys, numbers that were meant as strings).

The tags Ansible adds (``!vault``, ``!unsafe``) are understood so that a real-world
inventory parses here exactly as it does in Ansible.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import yaml

VAULT_HEADER = "$ANSIBLE_VAULT;"
MERGE_TAG = "tag:yaml.org,2002:merge"


class VaultValue:
    """An ``!vault`` encrypted value: never decrypted, never type-checked."""

    __slots__ = ("ciphertext",)

    def __init__(self, ciphertext: str):
        self.ciphertext = ciphertext

    def __repr__(self) -> str:
        return "<vault-encrypted>"

    def __eq__(self, other) -> bool:
        return isinstance(other, VaultValue) and other.ciphertext == self.ciphertext

    def __hash__(self) -> int:
        return hash(self.ciphertext)


class _Loader(yaml.SafeLoader):
    pass


def _construct_vault(loader, node):
    return VaultValue(loader.construct_scalar(node))


def _construct_unsafe(loader, node):
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


for _tag in ("!vault", "!vault-encrypted"):
    _Loader.add_constructor(_tag, _construct_vault)
_Loader.add_constructor("!unsafe", _construct_unsafe)


@dataclass
class SyntaxProblem:
    line: int | None
    column: int | None
    message: str


def compose(text: str) -> yaml.Node | None:
    """The node tree of one YAML document (None for an empty one). Raises yaml.YAMLError."""
    loader = _Loader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def syntax_problem(exc: yaml.YAMLError) -> SyntaxProblem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    parts = []
    context = getattr(exc, "context", None)
    problem = getattr(exc, "problem", None)
    if context:
        parts.append(context)
    if problem:
        parts.append(problem)
    message = " ".join(parts) if parts else str(exc).splitlines()[0]
    if mark is None:
        return SyntaxProblem(None, None, message)
    return SyntaxProblem(mark.line + 1, mark.column + 1, message)


def construct(node: yaml.Node) -> Any:
    """The Python value of a node, as Ansible's loader would build it. The node is left
    as it is (PyYAML's constructor rewrites mappings that use merge keys)."""
    if not isinstance(node, yaml.ScalarNode):
        node = copy.deepcopy(node)
    loader = _Loader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def line_of(node: yaml.Node | None) -> int | None:
    return None if node is None else node.start_mark.line + 1


def is_mapping(node) -> bool:
    return isinstance(node, yaml.MappingNode)


def is_sequence(node) -> bool:
    return isinstance(node, yaml.SequenceNode)


def is_null(node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def is_plain_scalar(node) -> bool:
    """An unquoted scalar (so YAML picked its type from how it looks)."""
    return isinstance(node, yaml.ScalarNode) and node.style in (None, "")


def kind_of(node) -> str:
    """'mapping', 'list', 'null', 'string', 'integer', 'number', 'boolean' or 'value'."""
    if isinstance(node, yaml.MappingNode):
        return "mapping"
    if isinstance(node, yaml.SequenceNode):
        return "list"
    tag = getattr(node, "tag", "")
    return {
        "tag:yaml.org,2002:null": "null",
        "tag:yaml.org,2002:str": "string",
        "tag:yaml.org,2002:int": "integer",
        "tag:yaml.org,2002:float": "number",
        "tag:yaml.org,2002:bool": "boolean",
    }.get(tag, "value")


def kind_text(node) -> str:
    """What a node is, for messages: 'a mapping', 'a list', 'an empty value', 'a string',
    'a number', 'a boolean' or 'a value'."""
    return {"mapping": "a mapping", "list": "a list", "null": "an empty value",
            "string": "a string", "integer": "a number", "number": "a number",
            "boolean": "a boolean"}.get(kind_of(node), "a value")


@dataclass
class Pair:
    key: Any  # the constructed key (usually a str)
    key_node: yaml.Node
    value_node: yaml.Node


@dataclass
class DuplicateKey:
    key: Any
    line: int
    first_line: int


def _merged_pairs(node: yaml.MappingNode, depth: int = 0) -> list[tuple[yaml.Node, yaml.Node]]:
    """The pairs of a mapping with YAML merge keys (``<<``) expanded as PyYAML expands
    them (merged pairs first, so explicit keys win), without changing the node."""
    if depth > 50:
        return []
    merged: list[tuple[yaml.Node, yaml.Node]] = []
    explicit: list[tuple[yaml.Node, yaml.Node]] = []
    for key_node, value_node in node.value:
        if key_node.tag != MERGE_TAG:
            explicit.append((key_node, value_node))
        elif isinstance(value_node, yaml.MappingNode):
            merged.extend(_merged_pairs(value_node, depth + 1))
        elif isinstance(value_node, yaml.SequenceNode):
            # `<<: [a, b]`: a wins over b
            for sub in reversed(value_node.value):
                if isinstance(sub, yaml.MappingNode):
                    merged.extend(_merged_pairs(sub, depth + 1))
    return merged + explicit


def mapping_pairs(node: yaml.MappingNode) -> tuple[list[Pair], list[DuplicateKey]]:
    """The (key, value) pairs of a mapping in document order, with YAML merge keys (``<<``)
    applied as PyYAML applies them, and the keys written twice (PyYAML keeps the last
    silently; so does Ansible)."""
    duplicates: list[DuplicateKey] = []
    seen: dict[Any, int] = {}
    for key_node, _value_node in node.value:
        if key_node.tag == MERGE_TAG:
            continue
        try:
            key = construct(key_node)
            hash(key)
        except Exception:  # complex keys: not ours to judge
            continue
        line = line_of(key_node) or 0
        if key in seen:
            duplicates.append(DuplicateKey(key, line, seen[key]))
        else:
            seen[key] = line
    pairs: list[Pair] = []
    index: dict[Any, int] = {}
    for key_node, value_node in _merged_pairs(node):
        try:
            key = construct(key_node)
            hash(key)
        except Exception:
            key = repr(key_node.value)
        if key in index:
            # the later key wins (merged keys come first, so explicit keys override them);
            # it keeps the place of the first appearance
            pairs[index[key]] = Pair(key, key_node, value_node)
        else:
            index[key] = len(pairs)
            pairs.append(Pair(key, key_node, value_node))
    return pairs, duplicates


def all_duplicates(node: yaml.Node | None) -> list[tuple[list[Any], DuplicateKey]]:
    """Duplicate keys anywhere below ``node``, each with the key path to its mapping."""
    found: list[tuple[list[Any], DuplicateKey]] = []
    seen_nodes: set[int] = set()

    def walk(n, path):
        if n is None or id(n) in seen_nodes:
            return
        seen_nodes.add(id(n))
        if isinstance(n, yaml.MappingNode):
            pairs, dups = mapping_pairs(n)
            found.extend((list(path), d) for d in dups)
            for p in pairs:
                walk(p.value_node, [*path, p.key])
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                walk(item, [*path, i])

    walk(node, [])
    return found


def contains_jinja(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(contains_jinja(k) or contains_jinja(v) for k, v in value.items())
    if isinstance(value, list):
        return any(contains_jinja(v) for v in value)
    return False


def contains_vault(value: Any) -> bool:
    if isinstance(value, VaultValue):
        return True
    if isinstance(value, dict):
        return any(contains_vault(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_vault(v) for v in value)
    return False
