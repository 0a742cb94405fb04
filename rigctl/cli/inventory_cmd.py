"""`rigctl inventory check|show`: validate an inventory and show what each rig will get.
Neither contacts a host."""

from __future__ import annotations

import json

import click

from rigctl.cli.common import exits_on_errors, inventory_option, json_option, resolve_inventory_paths
from rigctl.errors import EXIT_OK, EXIT_USAGE


def _json_value(v):
    from rigctl.inventory.yamlpos import VaultValue

    if isinstance(v, VaultValue):
        return "<vault-encrypted>"
    if isinstance(v, dict):
        return {str(k): _json_value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_value(x) for x in v]
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


def _shown(name: str, v):
    """The value as printed: secrets masked (rigctl.inventory.secrets decides)."""
    from rigctl.inventory import secrets

    return _json_value(secrets.mask(v, name))


def _text_value(v) -> str:
    v = _json_value(v)
    if v == "***":  # a masked secret
        return v
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        # quoted when YAML would read it as something else (12.8, true, ...)
        return v if _reads_as_string(v) else json.dumps(v)
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return str(v)


def _reads_as_string(text: str) -> bool:
    import yaml

    if not text or text.strip() != text or text[0] in "\"'{[&*!|>%@`#,?:-":
        return False
    try:
        return yaml.safe_load(text) == text
    except yaml.YAMLError:
        return False


def _select_shown(inv, hosts: tuple[str, ...]) -> list[str]:
    """The hosts named (names, groups or patterns); every unknown name is an error."""
    from rigctl.errors import InputError

    if not hosts:
        return list(inv.hosts)
    chosen: set[str] = set()
    unknown = []
    for name in hosts:
        try:
            chosen.update(inv.select(name, group=None))
        except InputError:
            unknown.append(name)
    if unknown:
        s = "s" if len(unknown) > 1 else ""
        raise InputError(
            f"unknown host{s}: {', '.join(unknown)}",
            fix=f"known hosts: {', '.join(inv.hosts) or '(none)'}",
        )
    return [h for h in inv.hosts if h in chosen]


@click.group()
def inventory():
    """Check and show inventories (no host is contacted).

    The inventory is a standard Ansible YAML inventory (a file or a directory with
    group_vars/ and host_vars/); the playbooks run on the hosts of group `rigs`.
    The rig variables are described in docs/inventory.md.
    """


@inventory.command(
    "check", short_help="Check an inventory: every problem with file:line; contacts no host."
)
@inventory_option
@json_option
@click.option("-q", "--quiet", is_flag=True, help="Print errors only (no warnings or notes).")
@click.pass_context
@exits_on_errors
def check_cmd(ctx, inventory, as_json, quiet):
    """Check an inventory for every problem at once, without contacting any host.

    Each problem is one line: file:line, the host or group, the variable, what is wrong
    and what to do. Exit 2 when there is an error, 0 otherwise (warnings included).
    """
    from rigctl.inventory import check, load

    paths = resolve_inventory_paths(inventory)
    inv = load(paths, strict=False)
    problems = check(inv)
    errors = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity == "warning"]
    notes = [p for p in problems if p.severity == "note"]
    rigs = inv.rig_hosts
    if as_json:
        click.echo(json.dumps({
            "ok": not errors,
            "inventory": paths,
            "problems": [
                {k: p.as_dict()[k] for k in ("file", "line", "column", "host", "group", "key",
                                             "severity", "message", "fix")}
                for p in problems
            ],
            "hosts": list(inv.hosts),
            "rigs": rigs,
        }, indent=2))
    else:
        for p in problems:
            if quiet and p.severity != "error":
                continue
            click.echo(str(p))
        counts = [f"{len(errors)} error{'s' if len(errors) != 1 else ''}"]
        if warnings:
            counts.append(f"{len(warnings)} warning{'s' if len(warnings) != 1 else ''}")
        if notes:
            counts.append(f"{len(notes)} note{'s' if len(notes) != 1 else ''}")
        where = ", ".join(paths)
        if errors:
            click.echo(f"{where}: {', '.join(counts)}; fix the errors above (nothing was "
                       "contacted)", err=True)
        else:
            hosts = ", ".join(rigs) if len(rigs) <= 8 else f"{', '.join(rigs[:8])}, ..."
            click.echo(f"{where}: ok, {len(rigs)} rig{'s' if len(rigs) != 1 else ''} "
                       f"({hosts}); {', '.join(counts[1:]) or 'no warnings'}")
    ctx.exit(EXIT_USAGE if errors else EXIT_OK)


@inventory.command(
    "show", short_help="Show what each rig gets: every rig variable and where it comes from."
)
@inventory_option
@json_option
@click.option("--all-vars", "all_vars", is_flag=True,
              help="Also show the variables that are not rig variables (ansible_* and yours).")
@click.argument("hosts", nargs=-1)
@click.pass_context
@exits_on_errors
def show_cmd(ctx, inventory, as_json, all_vars, hosts):
    """Show the resolved variables of HOSTS (default: every host): each rig variable with
    its value and where the value comes from (a file:line and group or host, or the
    schema default). HOSTS may also be groups or patterns (rig-*)."""
    from rigctl.errors import InputProblems
    from rigctl.inventory import check, load, schema

    paths = resolve_inventory_paths(inventory)
    inv = load(paths, strict=False)
    if inv.fatal:
        fatal = [p for p in inv.problems if p.fatal]
        raise InputProblems(fatal, header=f"cannot read inventory {', '.join(paths)}:")
    names = _select_shown(inv, hosts)
    errors = [p for p in check(inv) if p.severity == "error"]
    out = {}
    for h in names:
        res = inv.resolved(h)
        rig = list(schema.NAMES)
        other = sorted(n for n in res if n not in schema.BY_NAME) if all_vars else []
        out[h] = {
            "groups": inv.host_groups(h),
            "in_rigs": h in inv.rig_hosts,
            "vars": {
                n: {
                    "value": _shown(n, res[n].value),
                    "source": res[n].where,
                    "scope": None if res[n].layer == "default" else res[n].scope,
                    **({"masked": True} if _shown(n, res[n].value) != _json_value(res[n].value)
                       else {}),
                }
                for n in rig + other
            },
        }
        extra = sorted(n for n in res if n not in schema.BY_NAME and n.startswith("rig_"))
        for n in extra:  # unknown rig_* names: shown so a typo is visible
            out[h]["vars"].setdefault(n, {"value": _shown(n, res[n].value),
                                          "source": res[n].where, "scope": res[n].scope,
                                          "unknown": True})
    if as_json:
        click.echo(json.dumps({"ok": not errors, "inventory": paths, "hosts": out}, indent=2))
    else:
        first = True
        for h, data in out.items():
            if not first:
                click.echo("")
            first = False
            groups = ", ".join(data["groups"]) or "ungrouped"
            note = "" if data["in_rigs"] else "  (not in group 'rigs': playbooks skip it)"
            click.echo(f"{h}  [groups: {groups}]{note}")
            width = max(len(n) for n in data["vars"])
            values = {n: _text_value(v["value"]) for n, v in data["vars"].items()}
            vwidth = min(40, max(len(v) for v in values.values()))
            for n, v in data["vars"].items():
                src = "default" if v["source"] == "default" else f"{v['source']} ({v['scope']})"
                flag = "  <- unknown rig variable" if v.get("unknown") else ""
                click.echo(f"  {n:<{width}}  {values[n]:<{vwidth}}  {src}{flag}")
    if errors:
        click.echo(f"warning: the inventory has {len(errors)} error"
                   f"{'s' if len(errors) != 1 else ''}; run `rigctl inventory check`", err=True)
