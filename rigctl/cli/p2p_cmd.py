"""`rigctl p2p pin|list`: pin a patched P2P fork branch, list the P2P sources rigctl knows.

`pin` contacts only the fork (or its mirror), never a rig; `list` contacts nothing.
The logic lives in rigctl.core (p2ppin, catalog, kernelgate); this module prints.
"""

from __future__ import annotations

import json
import os

import click

from rigctl.cli.common import exits_on_errors, inventory_option, json_option, resolve_inventory_paths
from rigctl.errors import InputError

CATALOG_VAR = "rig_p2p_catalog"
# Footprint lines printed with the mapping (--json and the catalog note carry them all).
FOOTPRINT_SHOWN = 40


@click.group()
def p2p():
    """Patched P2P kernel module sources: pin a fork branch, list the known ones."""


def _mapping_text(entry: dict, name: str | None) -> str:
    rng = entry["kernels"]
    lines = [f"# NVIDIA {entry['driver_version']} (version.mk of {entry['branch']} at "
             f"{entry['commit'][:12]}); kernels: {rng['text']}"]
    if entry.get("had_credentials"):
        lines.append("# the URL's credentials were left out: put the tokened URL in a vaulted "
                     "variable and set rig_p2p_source.url to it")
    stock = entry.get("stock") or {}
    if entry.get("verified_by") == "content":
        lines.append(f"# patch footprint against stock NVIDIA {stock['tag']} (tag {stock['tag']} "
                     f"of {stock['upstream']}): {len(stock['footprint'])} file(s) differ")
        lines += [f"#   {r['change']} {r['path']}" for r in stock["footprint"][:FOOTPRINT_SHOWN]]
        if len(stock["footprint"]) > FOOTPRINT_SHOWN:
            lines.append(f"#   ... and {len(stock['footprint']) - FOOTPRINT_SHOWN} more (--json "
                         "lists them all)")
    else:
        lines.append("# NOT verified by content (stock NVIDIA could not be compared); see the "
                     "warning")
    lines.append(f'rig_driver_version: "{entry["driver_version"]}"')
    if name:
        lines.append(f"rig_p2p_source: {{catalog: {name}}}")
    else:
        lines += ["rig_p2p_source:", f"  url: {entry['url']}", f"  branch: {entry['branch']}",
                  f'  commit: "{entry["commit"]}"']
    return "\n".join(lines)


def _catalog_entry(entry: dict, gpus: list[str], note: str | None) -> dict:
    out = {"url": entry["url"], "branch": entry["branch"], "commit": entry["commit"],
           "driver_version": entry["driver_version"]}
    if gpus:
        out["gpus"] = gpus
    out["note"] = note or _default_note(entry)
    return out


def _default_note(entry: dict) -> str:
    """The catalog entry's note: what the pin found, the patch's footprint as evidence."""
    from rigctl.core import p2ppin

    stock = entry.get("stock") or {}
    head = f"pinned by rigctl p2p pin: head of {entry['branch']}"
    if entry.get("verified_by") == "content":
        return (f"{head}; differs from stock NVIDIA {stock['tag']} (tag {stock['tag']} of "
                f"{stock['upstream']}) in {p2ppin.footprint_text(stock)}")
    return f"{head}; the patch was NOT verified by content: {stock.get('reason')}"


def write_user_catalog(path: str, name: str, value: dict) -> str:
    """Add or replace entry NAME of rig_p2p_catalog in the group_vars file PATH (a file of
    its own: one holding other variables is refused, since it is rewritten). Returns
    'added' or 'replaced'."""
    import yaml

    from rigctl.core import catalog

    problems = catalog.entry_problems(name, value)
    if problems:
        key, message, fix = problems[0]
        raise InputError(f"entry {name}: {message}", fix=fix)
    data: dict = {}
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise InputError(f"cannot read {path}: {exc}",
                             fix="give --write a file of its own, like "
                             "inventory/group_vars/all/p2p_catalog.yml") from None
        other = sorted(k for k in data if k != CATALOG_VAR) if isinstance(data, dict) else ["?"]
        if other:
            raise InputError(f"{path} holds other variables ({', '.join(map(str, other))}); "
                             "--write rewrites the file",
                             fix="give --write a file of its own, like "
                             "inventory/group_vars/all/p2p_catalog.yml")
    entries = data.get(CATALOG_VAR) or {}
    if not isinstance(entries, dict):
        raise InputError(f"{path}: {CATALOG_VAR} is not a mapping of named entries",
                         fix=f"fix or remove {CATALOG_VAR} in {path}")
    state = "replaced" if name in entries else "added"
    old = entries.get(name)
    if isinstance(old, dict) and "gpus" not in value and old.get("gpus") \
            and old.get("url") == value.get("url"):
        value = dict(value, gpus=old["gpus"])  # a re-pin keeps the claims recorded before
    entries[name] = value
    text = ("# P2P sources pinned with `rigctl p2p pin` (rig_p2p_catalog: named entries, used\n"
            "# as rig_p2p_source: {catalog: NAME}). `rigctl p2p pin ... --write` rewrites\n"
            "# this file; `rigctl inventory check` validates it.\n---\n"
            + yaml.safe_dump({CATALOG_VAR: entries}, sort_keys=False, default_flow_style=False,
                             width=100))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
    return state


@p2p.command("pin")
@click.argument("url")
@click.argument("branch")
@click.option("--version", "version", default=None, metavar="VERSION",
              help="The driver version you expect (refused when version.mk says another).")
@click.option("--write", "write", default=None, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=str),
              help="Add the entry to rig_p2p_catalog in this group_vars file (a file of its "
              "own) instead of printing the rig_p2p_source mapping.")
@click.option("--name", "name", default=None,
              help="Entry name for --write (default: <fork owner>-<version>).")
@click.option("--upstream", "upstream", default=None, metavar="URL",
              help="NVIDIA's repository, or a mirror of it, whose tag VERSION (the branch's "
              "version.mk) is the stock tree the branch is compared with (default: "
              "$RIGCTL_P2P_UPSTREAM, else https://github.com/NVIDIA/open-gpu-kernel-modules.git).")
@click.option("--gpus", "gpus", default=None, metavar="LIST",
              help="The GPUs the branch's README claims, comma separated (recorded in the "
              "entry; rigctl never reads the README).")
@json_option
@exits_on_errors
def pin_cmd(url, branch, version, upstream, write, name, gpus, as_json):
    """Pin BRANCH of the fork at URL (http(s), ssh, file or a local mirror path).

    Resolves the branch to its commit, fetches that commit shallowly into a temporary
    directory (removed afterwards) and reads its version.mk. Then compares its tree with
    NVIDIA's stock release of that version (the tag of that name, fetched shallowly from
    --upstream): the same tree is refused (no patch); otherwise the files that differ (the
    patch's footprint) are printed and recorded. When the upstream cannot be reached or
    has no such tag, a warning says the patch was not verified by content, and only the
    branch's place in the fork is judged (its default branch is refused). Prints the
    rig_p2p_source mapping (or writes a catalog entry)."""
    from rigctl.core import credurl, p2ppin

    if version is not None:
        from rigctl.core import driver

        if not driver.is_driver_version(version):
            raise InputError(f"--version {version!r} is not a driver version",
                             fix="write it like --version 580.105.08")
    try:
        entry = p2ppin.pin(url, branch, version=version, upstream=upstream)
    except p2ppin.PinRefused as exc:
        raise InputError(credurl.mask_text(exc.message), fix=exc.fix) from None
    if entry["warning"]:
        click.echo(f"warning: {credurl.mask_text(entry['warning'])}", err=True)
    claims = [g.strip() for g in (gpus or "").split(",") if g.strip()]
    result = {k: v for k, v in entry.items() if k != "had_credentials"}
    if write:
        name = name or p2ppin.default_name(entry["url"], entry["driver_version"])
        state = write_user_catalog(write, name, _catalog_entry(entry, claims, None))
        result.update(name=name, file=write, state=state)
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
        return
    if write:
        click.echo(f"{result['state']} entry {name} in {write} ({CATALOG_VAR}); use it with:")
    click.echo(_mapping_text(entry, name if write else None))


def _inventory_catalogs(paths: list[str]):
    """(entries, problems) of every rig_p2p_catalog definition in the inventory: entries as
    (P2PSource, 'file:line'), problems as 'file:line: entry NAME: message (fix)'."""
    from rigctl.core import catalog
    from rigctl.inventory import loader, yamlpos

    inv = loader.load(paths)
    entries, problems, seen = [], [], set()
    for d in inv.written_defs():
        if d.name != CATALOG_VAR or not isinstance(d.value, dict):
            continue
        pairs = {}
        if yamlpos.is_mapping(d.node):
            pairs = {p.key: p for p in yamlpos.mapping_pairs(d.node)[0]}
        for key, value in d.value.items():
            pair = pairs.get(key)
            line = yamlpos.line_of(pair.key_node) if pair else d.line
            where = f"{d.file}:{line}"
            found = catalog.entry_problems(key, value)
            if found:
                problems += [f"{where}: entry {key}: {m} (fix: {fx})" for _, m, fx in found]
                continue
            if (key, where) not in seen:
                seen.add((key, where))
                entries.append((catalog.user_entry(key, value), where))
    return entries, problems


@p2p.command("list")
@inventory_option
@click.option("--no-inventory", is_flag=True, help="Only the built-in catalog.")
@json_option
@exits_on_errors
def list_cmd(inventory, no_inventory, as_json):
    """The P2P sources rigctl knows: the built-in catalog, the inventory's rig_p2p_catalog
    entries, and fork branches known to exist but not pinned here (pin them with
    `rigctl p2p pin`). Contacts nothing."""
    from rigctl.core import catalog

    rows = [(s, "built-in") for s in catalog.P2P_CATALOG.values()]
    problems: list[str] = []
    if not no_inventory:
        paths = resolve_inventory_paths(inventory)
        if inventory or any(os.path.exists(p) for p in paths):
            user, problems = _inventory_catalogs(paths)
            rows += user
    known = [b for b in catalog.KNOWN_BRANCHES
             if not any(s.url == b.url and s.branch == b.branch for s, _ in rows)]
    if as_json:
        click.echo(json.dumps({
            "entries": [dict(s.as_dict(), where=w) for s, w in rows],
            "unpinned_branches": [
                {"fork": b.url, "branch": b.branch, "base": b.base, "gpus": list(b.gpus),
                 "generations": list(catalog.generations_of(b.gpus)),
                 "kernels": catalog.kernelgate.kernel_range(b.base)["text"], "note": b.note}
                for b in known],
            "problems": problems,
        }, indent=2, sort_keys=True))
    else:
        header = ("name", "base", "GPUs claimed", "kernels", "branch", "commit", "from")
        table = [header] + [
            (s.name, s.driver_version, ", ".join(s.gpus) or "not recorded",
             s.kernels["text"], s.branch, s.commit[:12], w) for s, w in rows]
        _print_table(table)
        click.echo("")
        click.echo("Fork branches known to exist, not pinned here (rigctl p2p pin URL BRANCH):")
        table = [("fork", "branch", "base", "GPUs claimed", "kernels", "note")] + [
            (b.url, b.branch, b.base, ", ".join(b.gpus) or "not recorded",
             catalog.kernelgate.kernel_range(b.base)["text"], b.note) for b in known]
        _print_table(table)
        click.echo("")
        click.echo("GPU claims are the READMEs' (not test results). vLLM: custom all-reduce has "
                   "returned wrong data on patched-P2P 3090s; run it with "
                   "--disable-custom-all-reduce.")
    for p in problems:
        click.echo(f"error: {p}", err=True)
    if problems:
        raise click.exceptions.Exit(2)


def _print_table(rows):
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
