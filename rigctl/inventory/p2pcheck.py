"""The inventory rules of the P2P flavor that need the P2P catalog, the registry keys'
meanings or the rigs' last known kernels: the user catalog (``rig_p2p_catalog``, every
entry checked with file:line), ``rig_p2p_source.catalog`` naming a built-in or user entry
of the right version, ``rig_p2p_registry_dwords`` against the NVIDIA base, and the kernel
gate (:mod:`rigctl.core.kernelgate`; also for the stock flavor open) on the kernels the
last kept run saw (:mod:`rigctl.inventory.factcache`: the fact cache of the runs under
$RIGCTL_HOME/runs). Called by the inventory check (``rigctl.inventory.validate``);
contacts no host."""

from __future__ import annotations

import difflib
from typing import Any

from rigctl.core import catalog, kernelgate, p2pregistry
from rigctl.inventory import factcache, yamlpos

CATALOG_VAR = "rig_p2p_catalog"


def _pairs(node) -> dict:
    if not yamlpos.is_mapping(node):
        return {}
    return {p.key: p for p in yamlpos.mapping_pairs(node)[0]}


def _line(pair, key=None, default=None):
    if pair is None:
        return default
    if key is None:
        return yamlpos.line_of(pair.key_node) or default
    sub = _pairs(pair.value_node).get(key)
    return (yamlpos.line_of(sub.key_node) if sub else None) or yamlpos.line_of(pair.key_node) \
        or default


def _unknown_entry(checker, d, name: str, user: dict, h: str) -> None:
    line = _line(_pairs(d.node).get("catalog"), None, d.line) if d.node is not None else d.line
    if name in user:
        checker.add(d, f"catalog entry {name!r} of rig_p2p_catalog has problems (listed "
                    "with it), so it cannot be used", "fix the entry",
                    key="rig_p2p_source.catalog", line=line, host=h)
        return
    known = catalog.names(user)
    hint = difflib.get_close_matches(name, known, n=1)
    checker.add(d, f"catalog entry {name!r} is not in the catalog (built-in or "
                "rig_p2p_catalog)",
                (f"did you mean {hint[0]!r}? " if hint else "")
                + f"(one of: {', '.join(known)}); or pin the branch with `rigctl p2p pin URL "
                "BRANCH --write FILE`", key="rig_p2p_source.catalog", line=line, host=h)


def check(checker, defs) -> None:
    """Add the problems to ``checker`` (validate._InventoryCheck); ``defs``: every written
    variable definition (Inventory.written_defs)."""
    for d in defs:
        if d.name == CATALOG_VAR and not d.unchecked and isinstance(d.value, dict):
            pairs = _pairs(d.node)
            for name, value in d.value.items():
                for key, message, fix in catalog.entry_problems(name, value):
                    checker.add(d, f"entry {name}: {message}", fix,
                                key=f"{CATALOG_VAR}.{name}" + (f".{key}" if key else ""),
                                line=_line(pairs.get(name), key, d.line))
                    checker.bad_defs.add(d.identity)
    for h in checker.checked_hosts():
        _host(checker, h)


def _host(checker, h: str) -> None:
    res = checker.inv.resolved(h)

    def val(name: str) -> Any:
        d = res.get(name)
        if d is None or d.unchecked or d.identity in checker.bad_defs:
            return None
        return d.value

    flavor, version, src = val("rig_driver_flavor"), val("rig_driver_version"), val(
        "rig_p2p_source")
    # the user catalog as written: lookup() uses only its valid entries
    cat_def = res.get(CATALOG_VAR)
    user = cat_def.value if cat_def is not None and not cat_def.unchecked else None
    user = user if isinstance(user, dict) else {}
    dwords = val("rig_p2p_registry_dwords")
    if isinstance(src, dict) and isinstance(src.get("catalog"), str) \
            and catalog.lookup(src["catalog"], user) is None:
        _unknown_entry(checker, res["rig_p2p_source"], src["catalog"], user, h)
        return
    if flavor != "p2p":
        if dwords:
            checker.add(res["rig_p2p_registry_dwords"], "ignored: rig_driver_flavor is not "
                        "'p2p' (the keys are for the patched module)",
                        "remove rig_p2p_registry_dwords, or set rig_driver_flavor: p2p",
                        severity="warning", host=h)
        if flavor == "open" and isinstance(version, str):
            source = val("rig_driver_source") or "debian"
            _kernel_gate(checker, res, h, version, f"NVIDIA {version} ({source} packages)",
                         "open")
        return
    label = None
    if isinstance(src, dict) and isinstance(src.get("catalog"), str):
        name = src["catalog"]
        d = res["rig_p2p_source"]
        line = _line(_pairs(d.node).get("catalog"), None, d.line) if d.node is not None \
            else d.line
        entry = catalog.lookup(name, user)
        label = f"catalog entry {entry.name} (branch {entry.branch})"
        if entry.origin == "inventory" and isinstance(version, str) \
                and entry.driver_version != version:
            checker.add(d, f"catalog entry {name!r} (rig_p2p_catalog) is for driver "
                        f"{entry.driver_version}, but rig_driver_version is {version}; the "
                        "module and the userspace must be the same version to the last digit",
                        f'set rig_driver_version: "{entry.driver_version}", or pin the branch '
                        f"of {version}", key="rig_p2p_source.catalog", line=line, host=h)
    elif isinstance(src, dict) and src.get("branch"):
        label = f"branch {src['branch']}"
    if not isinstance(version, str):
        return
    if dwords:
        d = res["rig_p2p_registry_dwords"]
        pairs = _pairs(d.node)
        for p in p2pregistry.problems(version, dwords):
            pair = pairs.get(p["key"])
            checker.add(d, p["message"], p["fix"], severity=p["severity"], host=h,
                        key=f"rig_p2p_registry_dwords.{p['key']}" if p["key"] else None,
                        line=(yamlpos.line_of(pair.key_node) if pair else None) or d.line)
    _kernel_gate(checker, res, h, version, label or f"NVIDIA {version}", "p2p")


def _kernel_gate(checker, res, h: str, version: str, label: str, flavor: str) -> None:
    """The kernel gate's table on the target kernels the last kept run saw (a warning:
    the facts may be old, and the role checks again, from the files where it can)."""
    seen = factcache.rig_facts(h)
    if seen is None:
        return
    kernels = ((seen["facts"].get("kernel") or {}).get("targets")) or []
    found = kernelgate.refusal(version, kernels, label, host=h, flavor=flavor,
                               suggestions=catalog.suggested_branches(version, kernels)
                               if flavor == "p2p" else ())
    if found:
        d = res["rig_driver_version"]
        checker.add(d, found["message"] + f" (the target kernels the facts gathered at "
                    f"{seen['time']} saw; `rigctl facts` refreshes them, and the role checks "
                    "again before any change)", found["fix"], severity="warning", host=h,
                    key="rig_driver_version")
