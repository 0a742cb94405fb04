"""docs/inventory.md, the inventory reference, generated from the rig variable schema, and
the check that the file in the tree is what it would be. Written and checked by
``python -m rigctl.inventory.generate``."""

from __future__ import annotations

import difflib
import textwrap
from typing import Any

from rigctl.inventory import schema
from rigctl.inventory.catalog import P2P_CATALOG
from rigctl.inventory.formats import OPEN_MODULE_MIN_DRIVER
from rigctl.inventory.generate import PROG

DOC_INTRO = """\
# Inventory reference

<!-- Generated from rigctl/inventory/schema.py by
     {prog} --write-docs docs/inventory.md
     Do not edit: a unit test checks that this file matches the schema. -->

rigctl reads standard Ansible YAML inventories, so the same files work with
`ansible-playbook -i inventory/...`. Start from `inventory/example/`, a small documented
fleet, and check your copy with:

```
rigctl inventory check -i inventory/           # every problem, with file:line; contacts no host
rigctl inventory show  -i inventory/ rig-a     # what a rig will get, and where each value comes from
```

## Format

An inventory is a YAML file (or a directory of them) in Ansible's YAML inventory format:
groups under `all:`, each with `hosts:`, `vars:` and `children:`.

```yaml
all:
  children:
    rigs:                 # the playbooks target this group: every rig must be under it
      children:
        epyc:
          hosts:
            rig-epyc-1: {ansible_host: 192.0.2.11}
          vars:
            rig_driver_flavor: p2p
```

- A directory inventory reads every `*.yml`, `*.yaml` and `*.json` file in it (and in its
  subdirectories) as one inventory, plus `group_vars/` and `host_vars/` in it.
- `group_vars/<group>.yml` (or `group_vars/<group>/*.yml`) and `host_vars/<host>.yml` (or
  `host_vars/<host>/*.yml`) next to the inventory file are read too, as Ansible reads them.
  When both `group_vars/<group>/` and `group_vars/<group>.yml` exist, Ansible reads only the
  directory.
- Host names may use ranges (`rig-[1:4]`) and a port (`rig-a:2222`).
- Values with Jinja (`{{ ... }}`) and `!vault` values are not type-checked (the check says
  so in a note); files encrypted with ansible-vault are not read.

## Where a value comes from (precedence)

Lowest first; a later source replaces the value of an earlier one (dicts are replaced, not
merged):

1. the schema default (below);
2. `vars:` of group `all` in the inventory files;
3. `vars:` of every other group of the host in the inventory files, parents before children
   (groups at the same depth: alphabetical order, later wins; `ansible_group_priority` moves
   a group later);
4. `group_vars/all`;
5. `group_vars/<group>` files, in the same group order;
6. variables written on the host in the inventory file;
7. `host_vars/<host>` files.

This is Ansible's own order, so note one surprise it has: a `group_vars/all.yml` file beats
`vars:` of any group written inside the inventory file. `rigctl inventory show` prints
every rig variable of a host with the file and line its value comes from.

## What `rigctl inventory check` reports

Errors (exit 2, nothing runs): YAML syntax errors; files that are not Ansible YAML
inventories; unknown section keys in a group (only `hosts`, `vars`, `children`); keys
written twice in one mapping; unknown `rig_*` variables (with the closest name);
wrong types, values out of range, not among the choices or in a bad format; the rules
between variables below; two hosts with the same `ansible_host` and `ansible_port`; a
missing or empty `rigs` group; group cycles; a missing inventory path.

Warnings (exit 0): a variable set twice for the same host or group in the inventory files
(the later one wins); `group_vars`/`host_vars` files for groups or hosts the inventory does
not have; settings that have no effect (`rig_p2p_source` on an `open` rig);
`NCCL_P2P_DISABLE` in `rig_nccl_env` of a `p2p` rig; a CUDA release in
`rig_cuda_extra_versions` twice or that is `rig_cuda_version` already; `rig_lab_profile` on
a host that is not on a loopback address; names that look like a rig variable without the
`rig_` prefix.

## Rules between variables

- `rig_driver_flavor: p2p` needs `rig_driver_version` and `rig_p2p_source`.
- `rig_p2p_source` takes `catalog` (optionally with `url`, a mirror of that fork), or
  `url`, `branch` and `commit`; `branch`/`commit` never go with `catalog`.
- The driver version in the P2P branch name (`570.86.16-p2p`) or of the catalog entry must
  equal `rig_driver_version`.
- `rig_p2p_source` on an `open` rig is ignored (a warning).
{mirror_rules}
- `rig_driver_source: runfile` needs `rig_driver_runfile_url` and `rig_driver_runfile_sha256`,
  and flavor `p2p` (the installer runs without its kernel modules).
- `rig_power_limit_overrides`, `rig_gpu_clock_lock_overrides`: an index must be below
  `rig_gpu_count` (when set), and no two keys may name the same GPU.
- A clock lock (`rig_gpu_clock_lock_mhz`, each override) needs `min` <= `max`.
- `rig_nccl_env` keys start with `NCCL_`; `NCCL_SOCKET_IFNAME` goes in
  `rig_nccl_socket_ifname`, not in both.
- The driver must be new enough for the CUDA major version, and at least
  {open_min} (the first driver with open kernel modules); the same for every release in
  `rig_cuda_extra_versions`, which needs `rig_cuda_version` and a `rig_cuda_source` other
  than `debian` (it ships one toolkit).
"""


def _md_value(v: Any) -> str:
    import json

    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (dict, list)):
        return json.dumps(v) if v else ("{}" if isinstance(v, dict) else "[]")
    return str(v)


def _type_text(f: schema.Field) -> str:
    base = schema.TYPES[f.type].doc
    if f.type == "list" and f.elements:
        base += f" of {f.elements}"
    if f.key_rule == "gpu_selector":
        what = "`{min, max}` MHz" if f.value_field and f.value_field.type == "dict" else "integer watts"
        base = f"mapping: GPU selector → {what}"
    elif f.key_rule == "nccl_env":
        base = "mapping: `NCCL_*` name → string, number or boolean"
    if f.nullable:
        base += " or null"
    return base


def _field_md(f: schema.Field, level: int = 3) -> list[str]:
    out = [f"{'#' * level} `{f.name}`", ""]
    out.append(f.description)
    out.append("")
    out.append(f"- type: {_type_text(f)}")
    out.append(f"- default: `{_md_value(f.default)}`")
    if f.choices and f.choice_help:
        out.append("- choices:")
        for choice, meaning in f.choice_help:
            out.append(f"  - `{choice}`: {meaning}")
    elif f.choices:
        out.append("- choices: " + ", ".join(f"`{c}`" for c in f.choices))
    if f.min is not None or f.max is not None:
        out.append(f"- range: {f.min} to {f.max}")
    if f.value_field is not None and f.value_field.min is not None:
        out.append(f"- each value: {f.value_field.min} to {f.value_field.max}")
    if f.pattern:
        out.append(f"- format: {f.format_help} (`{f.pattern}`)")
    if f.roles:
        out.append("- read by: " + ", ".join(f"`{r}`" for r in f.roles))
    else:
        out.append("- read by: no role (a record of how the rig was made)")
    if f.example is not None:
        out.append(f"- example: `{schema.example_line(f)}`")
    out.append("")
    if f.notes:
        out.extend([f.notes, ""])
    if f.options:
        out.append("Options:")
        out.append("")
        for o in f.options:
            extra = ""
            if o.name == "catalog":
                extra = (" Built in: " + ", ".join(f"`{c}`" for c in P2P_CATALOG)
                         + "; or an entry of `rig_p2p_catalog`.")
            elif o.format_help:
                extra = f" Format: {o.format_help}."
            out.append(f"- `{o.name}` ({_type_text(o)}): {o.description}{extra}")
        out.append("")
    return out


def render_docs() -> str:
    mirrors = "; ".join(f"`{source}: mirror` needs `{url}`"
                        for source, url in schema.MIRROR_URLS.items())
    intro = (DOC_INTRO.replace("{open_min}", OPEN_MODULE_MIN_DRIVER).replace("{prog}", PROG)
             .replace("{mirror_rules}", textwrap.fill(f"- {mirrors}.", width=92,
                                                      subsequent_indent="  ",
                                                      break_on_hyphens=False)))
    lines = [intro.rstrip("\n"), ""]
    lines += ["## Rig variables", ""]
    lines.append("| variable | type | default | read by |")
    lines.append("| --- | --- | --- | --- |")
    for f in schema.VARIABLES:
        lines.append(f"| [`{f.name}`](#{f.name}) | {_type_text(f)} | "
                     f"`{_md_value(f.default)}` | {', '.join(f.roles) or '-'} |")
    lines.append("")
    for section in schema.SECTIONS:
        fields = [f for f in schema.VARIABLES if f.section == section]
        if not fields:
            continue
        lines += [f"## {section}", ""]
        for f in fields:
            lines.extend(_field_md(f))
        if section == schema.get("rig_p2p_source").section:  # its catalog
            lines += ["### P2P source catalog", ""]
            lines.append("| catalog name | url | branch | commit | NVIDIA base | GPUs its "
                         "README claims | kernels |")
            lines.append("| --- | --- | --- | --- | --- | --- | --- |")
            for s in P2P_CATALOG.values():
                lines.append(f"| `{s.name}` | {s.url} | `{s.branch}` | `{s.commit}` | "
                             f"{s.driver_version} | {', '.join(s.gpus) or 'not recorded'} | "
                             f"{s.kernels['text']} |")
            lines += ["", "Newer branches (580.x to 615.x) have no head commit known here: "
                      "`rigctl p2p pin URL BRANCH` pins one from its own version.mk and "
                      "`--write FILE` adds it to `rig_p2p_catalog`; `rigctl p2p list` shows "
                      "every entry with its claims.", ""]
    if schema.REMOVED:
        lines += ["## Removed rig variables", "",
                  "`rigctl inventory check` warns about these and they are ignored.", ""]
        for name, why in schema.REMOVED.items():
            lines += [f"- `{name}`: {why}.", ""]
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


def check_docs(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            have = fh.read()
    except OSError as exc:
        return [f"{path}: cannot read: {exc.strerror}"]
    want = render_docs()
    if have == want:
        return []
    diff = difflib.unified_diff(have.splitlines(), want.splitlines(), path, "schema", n=0,
                                lineterm="")
    return [f"{path}: differs from the schema (regenerate it)", *list(diff)[:40]]


def write_docs(path: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(render_docs())
