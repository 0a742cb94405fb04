"""The roles' ``meta/argument_specs.yml``, generated from the rig variable schema, and the
checks that the files in roles/ agree with it: the argument specs themselves and the rig
variables each role repeats in ``defaults/main.yml`` (Ansible does not apply argument spec
defaults). Written and checked by ``python -m rigctl.inventory.generate``."""

from __future__ import annotations

import os
from typing import Any

from rigctl.inventory import schema
from rigctl.inventory.generate import PROG

ARGSPEC_HEADER = (
    "# Generated from rigctl/inventory/schema.py by\n"
    f"#   {PROG} --write-argspecs roles\n"
    "# Do not edit: change the schema and regenerate (a unit test checks they agree).\n"
)


def _argspec_option(f: schema.Field) -> dict[str, Any]:
    opt: dict[str, Any] = {"type": schema.TYPES[f.type].argspec}
    desc = [f.description]
    if f.nullable and f.default is None:
        desc.append("Null is allowed.")
    if f.min is not None or f.max is not None:
        desc.append(f"Range {f.min}..{f.max}.")
    if f.pattern:
        desc.append(f"Format: {f.format_help or f.pattern}.")
    opt["description"] = desc
    if f.default is not None:
        opt["default"] = f.default
    if f.choices:
        # an explicit null must pass Ansible's choices check too
        opt["choices"] = [*f.choices, None] if f.nullable else list(f.choices)
    if f.type == "list" and f.elements:
        opt["elements"] = f.elements
    if f.options:
        opt["options"] = {o.name: _argspec_option(o) for o in f.options}
    return opt


def argument_spec(role: str) -> dict[str, Any]:
    """The ``meta/argument_specs.yml`` data of a role."""
    return {
        "argument_specs": {
            "main": {
                "short_description": schema.ROLES[role],
                "description": [
                    schema.ROLES[role],
                    "The rig variables are defined in rigctl/inventory/schema.py and "
                    "documented in docs/inventory.md.",
                ],
                "options": {f.name: _argspec_option(f) for f in schema.for_role(role)},
            }
        }
    }


def _yaml_dump(data: Any) -> str:
    import yaml

    class _Dumper(yaml.SafeDumper):
        def increase_indent(self, flow=False, indentless=False):  # indent lists under keys
            return super().increase_indent(flow, False)

    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     width=88, allow_unicode=True)


def render_argspec(role: str) -> str:
    return "---\n" + ARGSPEC_HEADER + _yaml_dump(argument_spec(role))


def _argspec_roles(roles_dir: str) -> list[str]:
    return [r for r in schema.ROLES if os.path.isdir(os.path.join(roles_dir, r))]


def write_argspecs(roles_dir: str) -> list[str]:
    """Write meta/argument_specs.yml of every known role that exists under roles_dir."""
    written = []
    for role in _argspec_roles(roles_dir):
        meta = os.path.join(roles_dir, role, "meta")
        os.makedirs(meta, exist_ok=True)
        path = os.path.join(meta, "argument_specs.yml")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(render_argspec(role))
        written.append(path)
    return written


def _diff_options(prefix: str, want: dict, have: Any) -> list[str]:
    out = []
    if not isinstance(have, dict):
        return [f"{prefix}: options missing or not a mapping"]
    for name in want:
        if name not in have:
            out.append(f"{prefix}: option {name!r} missing")
            continue
        w, h = want[name], have[name]
        if not isinstance(h, dict):
            out.append(f"{prefix}.{name}: not a mapping")
            continue
        for attr in sorted(set(w) | set(h)):
            if attr == "options":
                out.extend(_diff_options(f"{prefix}.{name}", w.get("options", {}),
                                         h.get("options")))
            elif w.get(attr) != h.get(attr):
                out.append(f"{prefix}.{name}.{attr}: schema says {w.get(attr)!r}, "
                           f"file says {h.get(attr)!r}")
    for name in have:
        if name not in want:
            out.append(f"{prefix}: option {name!r} is not in the schema for this role")
    return out


def check_argspecs(roles_dir: str) -> list[str]:
    """Differences between the roles' argument specs and the schema (empty: in sync)."""
    import yaml

    problems = []
    for role in _argspec_roles(roles_dir):
        path = os.path.join(roles_dir, role, "meta", "argument_specs.yml")
        if not os.path.exists(path):
            problems.append(f"{path}: missing")
            continue
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        if text == render_argspec(role):
            continue
        try:
            have = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problems.append(f"{path}: not valid YAML: {exc}")
            continue
        want = argument_spec(role)
        found = []
        try:
            main_have = have["argument_specs"]["main"]
        except (TypeError, KeyError):
            found.append(f"{path}: no argument_specs.main")
        else:
            main_want = want["argument_specs"]["main"]
            for attr in ("short_description", "description"):
                if main_have.get(attr) != main_want[attr]:
                    found.append(f"{path}: main.{attr} differs from the schema")
            found.extend(f"{path}: {d}" for d in
                         _diff_options("main", main_want["options"], main_have.get("options")))
        problems.extend(found or [f"{path}: same content, different text (regenerate it)"])
    return problems + check_role_defaults(roles_dir)


def check_role_defaults(roles_dir: str) -> list[str]:
    """Rig variables in the roles' ``defaults/main.yml`` must be schema variables with the
    schema's default (Ansible does not apply argument spec defaults, so roles repeat them)."""
    import yaml

    problems = []
    for role in _argspec_roles(roles_dir):
        path = os.path.join(roles_dir, role, "defaults", "main.yml")
        if not os.path.exists(path):
            continue
        try:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh) or {}
        except (OSError, yaml.YAMLError) as exc:
            problems.append(f"{path}: cannot read: {exc}")
            continue
        if not isinstance(data, dict):
            continue
        for name, value in data.items():
            if not isinstance(name, str) or not name.startswith("rig_"):
                continue
            f = schema.BY_NAME.get(name)
            if f is None:
                if not any(name.startswith(r + "_") or name == r for r in schema.ROLES):
                    problems.append(f"{path}: {name} is not a rig variable of the schema "
                                    "(role-internal variables are named after the role)")
            elif value != f.default:
                problems.append(f"{path}: {name} is {value!r} here but the schema default is "
                                f"{f.default!r} (edit this file or the schema)")
            elif role not in f.roles:
                problems.append(f"{path}: {name} is not listed as read by {role} in the schema "
                                "(add the role to its roles)")
    return problems
