"""The inventory check: every problem at once, each with file, line, host or group, key,
what is wrong and what to do. Each written value against its field (values.py), the group
structure, the rules between the variables of each rig as it resolves them, addresses.
Contacts no host and never imports Ansible."""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable
from typing import Any

from rigctl.core import cuda as cudalib
from rigctl.core import gpudb
from rigctl.inventory import ansible_vars, formats, power_budget, schema, yamlpos
from rigctl.inventory.catalog import P2P_CATALOG
from rigctl.inventory.model import Inventory, VarDef
from rigctl.inventory.problems import Problem
from rigctl.inventory.values import check_value, pairs_of, show_value

_MISSING = object()


# --- the whole inventory ---------------------------------------------------------------


class _InventoryCheck:
    def __init__(self, inv: Inventory):
        self.inv = inv
        self.problems: list[Problem] = list(inv.problems)
        self.bad_defs: set[tuple] = set()  # definitions whose value is wrong

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
        for d in self.inv.written_defs():
            self.check_definition(d)
        self.group_rules()
        for h in self.checked_hosts():
            self.cross_field_rules(h)
        from rigctl.inventory import p2pcheck  # user P2P catalog, registry keys, kernel gate

        p2pcheck.check(self, self.inv.written_defs())
        self.duplicate_addresses()
        self.names_as_addresses()
        # SSH host key checking: one rule (rigctl.hostkeys), also used by the gate and the
        # access suite; the caller's environment counts too (ANSIBLE_HOST_KEY_CHECKING...)
        import os

        from rigctl.hostkeys import inventory_problems

        self.problems += inventory_problems(self.inv, self.checked_hosts(), os.environ)
        return _dedupe(self.problems)

    # one definition --------------------------------------------------------------------

    def check_definition(self, d: VarDef) -> None:
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
                self.bad_defs.add(d.identity)
            else:
                self.near_miss(d)
            return
        if d.unchecked and ansible_vars.get(name):
            return  # Ansible's own variables: Jinja and vault are usual there
        if name in ansible_vars.SECRETS:  # a password: no value in any message
            found = ansible_vars.secret_problem(d.value)
            if found:
                self.add(d, *found)
                self.bad_defs.add(d.identity)
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
                self.bad_defs.add(d.identity)

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

    def group_rules(self) -> None:
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
                        self.add(last, f"also set at {earlier.where} to {show_value(earlier.value)}; "
                                 f"this later value ({show_value(last.value)}) wins",
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

    def cross_field_rules(self, h: str) -> None:
        """The rules between the variables of one rig, on the values it resolves (a value
        that is wrong or not known before the play runs takes part in no rule)."""
        res = self.inv.resolved(h)

        def val(name: str):
            d = res.get(name)
            if d is None:
                return None
            if d.identity in self.bad_defs or d.unchecked:
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
                self.p2p_versions_agree(h, at("rig_p2p_source"), src, version,
                                        origin("rig_driver_version"))
        elif flavor == "open" and src not in (None, _MISSING):
            self.add(at("rig_p2p_source"), "ignored: rig_driver_flavor is 'open' "
                     f"({origin('rig_driver_flavor')})",
                     "remove rig_p2p_source, or set rig_driver_flavor: p2p",
                     severity="warning", host=h)
        for source, url in schema.MIRROR_URLS.items():
            if val(source) == "mirror" and val(url) is None:
                self.add(at(source), f"required because {source} is 'mirror'",
                         f"set {url} to your mirror of NVIDIA's CUDA apt repository, or use "
                         f"{source}: cuda-repo", key=url, host=h)
        if val("rig_driver_source") == "runfile":
            for need, what in (("rig_driver_runfile_url", "the URL of NVIDIA-Linux-x86_64-"
                                "<version>.run (your mirror, or file:// on the rig)"),
                               ("rig_driver_runfile_sha256", "the installer's sha256 "
                                "(`sha256sum FILE`)")):
                if val(need) is None:
                    self.add(at("rig_driver_source"), "required because rig_driver_source is "
                             "'runfile'", f"set {need} to {what}", key=need, host=h)
            if flavor == "open":
                self.add(at("rig_driver_source"), "'runfile' installs NVIDIA's userspace "
                         "without kernel modules, so it needs rig_driver_flavor: p2p "
                         f"(rig_driver_flavor is 'open', {origin('rig_driver_flavor')})",
                         "set rig_driver_flavor: p2p, or use rig_driver_source: debian or "
                         "cuda-repo for the stock open modules", host=h)
        self.cuda_extra_versions(h, val, at)
        count = val("rig_gpu_count")
        for var, message, fix in power_budget.problems(val):
            self.add(at(var), message, fix, host=h)
        # the keys that are valid indexes are checked even when another key is wrong
        for var in ("rig_power_limit_overrides", "rig_gpu_clock_lock_overrides"):
            od = res[var]
            overrides = od.value if not od.unchecked else None
            if not (isinstance(count, int) and isinstance(overrides, dict)):
                continue
            d = at(var)
            pairs = pairs_of(d.node)
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
        self.pull_mode_rules(h, val, at)

    def pull_mode_rules(self, h: str, val: Callable[[str], Any], at: Callable[[str], Any]) -> None:
        """Pull mode needs its repository and its pinned commit; an ssh repository needs the
        server's known host keys (git runs with StrictHostKeyChecking=yes)."""
        if val("rig_pull_enabled") is not True:
            return
        for name, fix in (("rig_pull_repo_url", "set rig_pull_repo_url to your inventory "
                           "repository's git URL as the rig reaches it"),
                          ("rig_pull_commit", "set rig_pull_commit to the full commit id to "
                           "converge to (`git rev-parse HEAD` in the repository)")):
            if val(name) is None:
                self.add(at("rig_pull_enabled"), "required because rig_pull_enabled is true",
                         fix, key=name, host=h)
        url = val("rig_pull_repo_url")
        if formats.is_ssh_git_url(url) and val("rig_pull_known_hosts") is None:
            self.add(at("rig_pull_repo_url"), "an ssh repository needs the git server's host "
                     "keys (rig_pull_known_hosts): ansible-pull never accepts an unknown key",
                     "set rig_pull_known_hosts to the server's known_hosts lines "
                     "(`ssh-keyscan HOST`, checked against the server's own fingerprint)",
                     key="rig_pull_known_hosts", host=h)

    def p2p_versions_agree(self, h: str, d: VarDef, src: dict, version: str, vorigin: str) -> None:
        pairs = pairs_of(d.node)
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

    def cuda_extra_versions(self, h: str, val: Callable[[str], Any], at: Callable[[str], Any]) -> None:
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

    # addresses ---------------------------------------------------------------------------

    def duplicate_addresses(self) -> None:
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

    return _dedupe(secrets.scrub_and_warn(inv, _InventoryCheck(inv).run()))
