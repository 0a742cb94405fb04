"""SSH host keys: strict checking always, never trust on first use.

Two parts, used by every command that contacts a rig:

- the rule (:func:`strict_checking_problems`): what a host's inventory variables and the
  caller's environment may say about host key checking. Anything but strict checking, in
  any spelling, is a problem. ``rigctl inventory check`` (so every command, before it
  contacts anything) and the access verification suite apply it.
- the gate (:func:`check_hosts`): before Ansible or testinfra connects, each selected
  host's effective ssh configuration (``ssh -G`` with the arguments Ansible will use) and
  the key the rig offers (``ssh-keyscan``) are compared with the known_hosts files that
  configuration names. An unknown or changed key is refused, naming the fingerprints; a
  rig that does not answer within the connect timeout is unreachable. Ansible itself then
  runs with ``StrictHostKeyChecking=yes`` first on the ssh command line, so the gate is
  the readable refusal and ssh stays the enforcement.

Nothing here writes a known_hosts file: only ``rigctl lab up`` does, for keys it made.
Controller side only (runs ssh, ssh-keygen, ssh-keyscan); stdlib only.
"""

from __future__ import annotations

import base64
import concurrent.futures
import configparser
import hashlib
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

TIMEOUT_ENV = "RIGCTL_CONNECT_TIMEOUT"
DEFAULT_TIMEOUT = 10
MAX_TIMEOUT = 600
_CTX_KEY = "rigctl.connect_timeout"

# First on every ssh command line rigctl's Ansible runs build (ssh takes the first value
# it sees for an option, from the command line before any config file): strict checking,
# and no writes to known_hosts (UpdateHostKeys would add keys a server proves it holds;
# CheckHostIP would add address entries).
PINNED_SSH_OPTIONS = (
    "-o", "StrictHostKeyChecking=yes",
    "-o", "UpdateHostKeys=no",
    "-o", "CheckHostIP=no",
)

README_STEPS = "README, 'Pointing it at real rigs'"

# Where Ansible and the environment can change how ssh checks host keys.
ARG_VARS = (
    "ansible_ssh_args",
    "ansible_ssh_common_args",
    "ansible_ssh_extra_args",
    "ansible_sftp_extra_args",
    "ansible_scp_extra_args",
)
BOOL_VARS = ("ansible_host_key_checking", "ansible_ssh_host_key_checking")
ARG_ENV = (
    "ANSIBLE_SSH_ARGS",
    "ANSIBLE_SSH_COMMON_ARGS",
    "ANSIBLE_SSH_EXTRA_ARGS",
    "ANSIBLE_SFTP_EXTRA_ARGS",
    "ANSIBLE_SCP_EXTRA_ARGS",
)
BOOL_ENV = ("ANSIBLE_HOST_KEY_CHECKING", "ANSIBLE_SSH_HOST_KEY_CHECKING")
_PARAMIKO = ("paramiko", "paramiko_ssh", "ansible.builtin.paramiko_ssh")
_SSH_CONNECTIONS = ("ssh", "smart", "ansible.builtin.ssh")
_TRUE = ("yes", "true", "on", "1", "y", "t")
_OPTION = re.compile(r"^\s*([A-Za-z]+)\s*(?:=\s*|\s+)(.*?)\s*$")


# --- the connect timeout ---------------------------------------------------------------


def connect_timeout() -> int:
    """Seconds to wait for a rig's SSH answer: ``--connect-timeout``, else
    ``$RIGCTL_CONNECT_TIMEOUT``, else 10. Raises InputError for a bad value."""
    try:
        import click

        ctx = click.get_current_context(silent=True)
    except ImportError:  # pragma: no cover - click ships with rigctl
        ctx = None
    if ctx is not None:
        value = ctx.find_root().meta.get(_CTX_KEY)
        if value is not None:
            return int(value)
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 1 <= value <= MAX_TIMEOUT:
        from rigctl.errors import InputError

        raise InputError(
            f"{TIMEOUT_ENV}={raw!r} is not a connect timeout",
            fix=f"set it to whole seconds from 1 to {MAX_TIMEOUT} (default {DEFAULT_TIMEOUT}), "
            "or unset it",
        )
    return value


def set_connect_timeout(ctx, value: int | None) -> None:
    """Record ``--connect-timeout`` for this command (click callback helper)."""
    if value is not None:
        ctx.find_root().meta[_CTX_KEY] = int(value)


# --- the rule --------------------------------------------------------------------------


@dataclass
class HostKeyProblem:
    """One setting that turns strict host key checking off (or would write known_hosts)."""

    key: str  # the variable or environment variable
    value: str
    message: str
    fix: str
    source: str  # "inventory" or "environment"

    def __str__(self) -> str:
        where = "environment variable " if self.source == "environment" else ""
        return f"{where}{self.key}: {self.message}; {self.fix}"


def _is_true(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value == 1
    return str(value).strip().strip("'\"").lower() in _TRUE


def ssh_options(args: Any) -> list[tuple[str, str]]:
    """The ``-o`` options in an ssh argument string (or list), as (keyword lowercased,
    value) in order. Accepts ``-o K=V``, ``-oK=V``, ``-o "K V"``, ``-o K = V``. Raises
    ValueError when the string cannot be split like a shell would."""
    tokens = shlex.split(args) if isinstance(args, str) else [str(a) for a in args or ()]
    out = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        text = None
        if tok == "-o" and i + 1 < len(tokens):
            text = tokens[i + 1]
            i += 1
            # the space form split by the shell: -o StrictHostKeyChecking no / = no
            if "=" not in text and " " not in text.strip() and i + 1 < len(tokens):
                nxt = tokens[i + 1]
                if nxt == "=" and i + 2 < len(tokens):
                    text = f"{text}={tokens[i + 2]}"
                    i += 2
                elif not nxt.startswith("-"):
                    text = f"{text} {nxt}"
                    i += 1
            elif text.endswith("=") and i + 1 < len(tokens) and not tokens[i + 1].startswith("-"):
                text += tokens[i + 1]
                i += 1
        elif tok.startswith("-o") and len(tok) > 2:
            text = tok[2:]
        i += 1
        if text is None:
            continue
        m = _OPTION.match(text)
        if m:
            out.append((m.group(1).lower(), m.group(2).strip().strip("'\"")))
    return out


def _args_problems(key: str, value: Any, source: str) -> list[HostKeyProblem]:
    if value is None or value == "":
        return []
    fix_off = ("remove it: rigctl runs ssh with StrictHostKeyChecking=yes, and a rig's key is "
               "recorded in known_hosts from a trusted path (" + README_STEPS + ")")
    try:
        options = ssh_options(value)
    except ValueError as exc:
        return [HostKeyProblem(key, str(value), f"cannot be read as ssh arguments ({exc})",
                               "fix the quoting", source)]
    out = []
    for opt, val in options:
        low = val.lower()
        if opt == "stricthostkeychecking" and low not in ("yes", "true"):
            what = {"accept-new": "trusts an unknown host key on first use",
                    "ask": "asks to trust an unknown host key"}.get(
                        low, "accepts unknown and changed host keys")
            out.append(HostKeyProblem(
                key, str(value), f"StrictHostKeyChecking={val} turns host key checking off "
                f"({what})", fix_off, source))
        elif opt == "userknownhostsfile" and "/dev/null" in val.split():
            out.append(HostKeyProblem(
                key, str(value), "UserKnownHostsFile=/dev/null: no host key can be known",
                "name the known_hosts file that holds the rig's recorded key", source))
        elif opt == "updatehostkeys" and low not in ("no", "false"):
            out.append(HostKeyProblem(
                key, str(value), f"UpdateHostKeys={val} lets ssh add host keys to known_hosts",
                "remove it: rigctl never adds a key to known_hosts", source))
    return out


def _bool_problem(key: str, value: Any, source: str) -> list[HostKeyProblem]:
    if value is None or _is_true(value):
        return []
    return [HostKeyProblem(
        key, str(value), f"is {value!s}, which turns host key checking off (unknown and changed host "
        "keys would be accepted)",
        "remove it (rigctl always checks host keys) and record the rig's key in known_hosts "
        f"from a trusted path ({README_STEPS})", source)]


def _setting_problems(values: Mapping[str, Any], arg_keys, bool_keys,
                      source: str) -> list[HostKeyProblem]:
    """The problems of one source (inventory variables or the environment): its ssh
    argument settings (``arg_keys``) and its host key checking switches (``bool_keys``)."""
    out: list[HostKeyProblem] = []
    for key in arg_keys:
        out += _args_problems(key, values.get(key), source)
    for key in bool_keys:
        if key in values:
            out += _bool_problem(key, values[key], source)
    return out


def strict_checking_problems(host_vars: Mapping[str, Any] | None,
                             environ: Mapping[str, str] | None = None) -> list[HostKeyProblem]:
    """Everything in a host's variables and in ``environ`` that is not strict host key
    checking: StrictHostKeyChecking other than yes (accept-new, no, off, ask, in any case,
    ``=`` or space form) in any ssh argument variable, ``UserKnownHostsFile=/dev/null``,
    ``UpdateHostKeys`` on, ``ansible_host_key_checking``/``ANSIBLE_HOST_KEY_CHECKING`` and
    their ``_ssh_`` spellings false, and the paramiko connection (its own trust rules)."""
    hv = host_vars or {}
    out = _setting_problems(hv, ARG_VARS, BOOL_VARS, "inventory")
    conn = hv.get("ansible_connection")
    if isinstance(conn, str) and conn.strip().lower() in _PARAMIKO:
        out.append(HostKeyProblem(
            "ansible_connection", conn, "the paramiko connection has its own host key rules "
            "(it can add keys on first use)", "use the ssh connection (remove "
            "ansible_connection)", "inventory"))
    env = environ or {}
    out += _setting_problems(env, ARG_ENV, BOOL_ENV, "environment")
    transport = env.get("ANSIBLE_TRANSPORT", "")
    if transport.strip().lower() in _PARAMIKO:
        out.append(HostKeyProblem(
            "ANSIBLE_TRANSPORT", transport, "the paramiko connection has its own host key "
            "rules (it can add keys on first use)", "unset ANSIBLE_TRANSPORT", "environment"))
    for p in out:
        if p.source == "environment":
            p.fix = f"unset {p.key} (rigctl always checks host keys)"
    return out


def inventory_problems(inv, hosts: Iterable[str], environ: Mapping[str, str] | None):
    """The rule as inventory Problems (file:line of the definition that wins), for
    ``rigctl inventory check``; environment problems once, without a file."""
    from rigctl.inventory.problems import Problem

    out = []
    for h in hosts:
        try:
            res = inv.resolved(h)
        except KeyError:
            continue
        values = {k: d.value for k, d in res.items()}
        for p in strict_checking_problems(values, None):
            d = res.get(p.key)
            host = group = None
            if d is not None and d.owner_kind == "host":
                host = d.owner
            elif d is not None and d.owner_kind == "group":
                group = d.owner
            out.append(Problem(file=d.file if d else None, line=d.line if d else None,
                               message=p.message, fix=p.fix, host=host, group=group,
                               key=p.key))
    for p in strict_checking_problems(None, environ):
        out.append(Problem(file=None, line=None, message=f"set in the environment: {p.message}",
                           fix=p.fix, key=p.key))
    return out


# --- the ssh arguments Ansible uses ----------------------------------------------------


def config_ssh_args(cfg_path: str | os.PathLike | None = None) -> str:
    """ansible.cfg's ``[ssh_connection] ssh_args`` with :data:`PINNED_SSH_OPTIONS` first."""
    raw = ""
    if cfg_path is None:
        from rigctl import paths

        cfg_path = paths.ansible_dir() / "ansible.cfg"
    parser = configparser.RawConfigParser()
    try:
        parser.read(cfg_path)
        raw = parser.get("ssh_connection", "ssh_args", fallback="")
    except configparser.Error:
        raw = ""
    return pinned_ssh_args(raw)


def pinned_ssh_args(args: str) -> str:
    pinned = " ".join(PINNED_SSH_OPTIONS)
    args = (args or "").strip()
    if args.startswith(pinned):
        return args
    return f"{pinned} {args}".strip()


# --- the gate --------------------------------------------------------------------------


@dataclass
class HostCheck:
    """What the gate found for one host. ``outcome``: ok | unreachable | refused;
    ``reason``: ok, unchecked (ssh enforces at connect time), not_ssh (a local or
    container connection), unreachable, unknown_key, changed_key, revoked_key, policy,
    ssh_config."""

    host: str
    outcome: str
    reason: str
    message: str = ""
    address: str = ""
    offered: list[str] = field(default_factory=list)  # fingerprints
    known: list[str] = field(default_factory=list)  # fingerprints
    known_files: list[str] = field(default_factory=list)
    known_keys: list[tuple[str, str]] = field(default_factory=list)
    ssh_argv: list[str] = field(default_factory=list)  # ssh options + destination

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def as_dict(self) -> dict:
        return {"host": self.host, "outcome": self.outcome, "reason": self.reason,
                "message": self.message, "offered": self.offered, "known": self.known}


def fingerprint(keytype: str, blob_b64: str) -> str:
    """``ED25519 SHA256:...`` as ssh prints it."""
    try:
        blob = base64.b64decode(blob_b64.encode(), validate=False)
    except (ValueError, TypeError):
        blob = blob_b64.encode()
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"{_short_type(keytype)} SHA256:{digest}"


def _short_type(keytype: str) -> str:
    t = keytype.lower()
    if "ed25519" in t:
        return "ED25519-SK" if t.startswith("sk-") else "ED25519"
    if "ecdsa" in t:
        return "ECDSA-SK" if t.startswith("sk-") else "ECDSA"
    if "rsa" in t:
        return "RSA"
    return keytype.upper()


def _scan_type(keytype: str) -> str | None:
    t = keytype.lower()
    if t.startswith("sk-"):
        return "ed25519-sk" if "ed25519" in t else "ecdsa-sk"
    if "ed25519" in t:
        return "ed25519"
    if "ecdsa" in t:
        return "ecdsa"
    if "rsa" in t:
        return "rsa"
    return None


def _split(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    return shlex.split(str(value))


def ssh_destination_argv(host_vars: Mapping[str, Any], name: str, ssh_args: str) -> list[str]:
    """ssh options and destination as Ansible's ssh connection orders them: ssh_args,
    port, key, user, ssh_common_args, ssh_extra_args."""
    hv = host_vars
    argv = _split(hv.get("ansible_ssh_args") or ssh_args)
    port = hv.get("ansible_port") or hv.get("ansible_ssh_port")
    if port:
        argv += ["-o", f"Port={port}"]
    key = hv.get("ansible_ssh_private_key_file") or hv.get("ansible_private_key_file")
    if key:
        argv += ["-o", f"IdentityFile={os.path.expanduser(str(key))}"]
    user = hv.get("ansible_user") or hv.get("ansible_ssh_user")
    if user:
        argv += ["-o", f"User={user}"]
    argv += _split(hv.get("ansible_ssh_common_args"))
    argv += _split(hv.get("ansible_ssh_extra_args"))
    address = str(hv.get("ansible_host") or hv.get("ansible_ssh_host") or name)
    return [*argv, "--", address]


def _effective(ssh: str, argv: list[str], timeout: int) -> tuple[dict[str, str], str]:
    try:
        proc = subprocess.run([ssh, "-G", *argv], capture_output=True, text=True,
                              timeout=timeout + 5, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {}, "ssh -G timed out"
    if proc.returncode != 0:
        return {}, _one_line(proc.stderr) or f"ssh -G exited {proc.returncode}"
    cfg: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        k, _, v = line.partition(" ")
        cfg.setdefault(k.lower(), v.strip())
    return cfg, ""


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("#")]
    return lines[-1] if lines else ""


def lookup_name(cfg: Mapping[str, str]) -> str:
    """The name ssh looks up in known_hosts: HostKeyAlias, else ``host`` or
    ``[host]:port``."""
    alias = cfg.get("hostkeyalias")
    if alias and alias != "none":
        return alias
    host = cfg.get("hostname", "")
    port = cfg.get("port", "22")
    return host if port == "22" else f"[{host}]:{port}"


def known_host_files(cfg: Mapping[str, str]) -> list[str]:
    files = []
    for key in ("userknownhostsfile", "globalknownhostsfile"):
        for f in (cfg.get(key) or "").split():
            if f and f != "none":
                files.append(os.path.expanduser(f))
    return files


def known_entries(keygen: str, name: str, files: list[str]):
    """(known, revoked, has_ca, files_with_entries) for ``name`` in ``files``."""
    known: list[tuple[str, str]] = []
    revoked: list[tuple[str, str]] = []
    has_ca = False
    where: list[str] = []
    for f in files:
        if not os.path.isfile(f):
            continue
        try:
            proc = subprocess.run([keygen, "-F", name, "-f", f], capture_output=True,
                                  text=True, timeout=30, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            continue
        found = False
        for line in proc.stdout.splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split()
            marker = parts[0] if parts[0].startswith("@") else None
            if marker:
                parts = parts[1:]
            if len(parts) < 3:
                continue
            entry = (parts[1], parts[2])
            if marker == "@revoked":
                revoked.append(entry)
            elif marker == "@cert-authority":
                has_ca = True
                found = True
            else:
                known.append(entry)
                found = True
        if found:
            where.append(f)
    return known, revoked, has_ca, where


def scan(keyscan: str, host: str, port: str, types: list[str], timeout: int):
    """(offered keys, banner seen, error line) from ssh-keyscan."""
    argv = [keyscan, "-T", str(timeout), "-p", str(port)]
    if types:
        argv += ["-t", ",".join(types)]
    argv += ["--", host]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True,
                              timeout=timeout * max(1, len(types) or 3) + 10,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return [], False, f"no SSH answer within {timeout} s"
    keys = []
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and not line.startswith("#"):
            keys.append((parts[1], parts[2]))
    banner = " SSH-" in proc.stderr
    err = ""
    if not keys:
        err = _one_line(proc.stderr) if not banner else ""
        if not err and not banner:
            err = _tcp_error(host, port, timeout) or f"no SSH answer within {timeout} s"
        elif not err:
            err = "the server offered no host key"
    return keys, banner, err


def _tcp_error(host: str, port: str, timeout: int) -> str:
    """Why a TCP connection to host:port fails (ssh-keyscan stays silent about it), as
    ssh words it ("Connection refused"), or "" when it connects."""
    import socket

    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return ""
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        return f"connect to {host} port {port}: {reason}"


def _fps(keys: Iterable[tuple[str, str]]) -> list[str]:
    return [fingerprint(t, b) for t, b in keys]


def check_host(name: str, host_vars: Mapping[str, Any], *, timeout: int, ssh_args: str,
               environ: Mapping[str, str] | None = None) -> HostCheck:
    """The gate for one host (see the module docstring). Contacts the host only through
    ssh-keyscan (no login); reads known_hosts, never writes it."""
    problems = strict_checking_problems(host_vars, environ)
    if problems:
        return HostCheck(name, "refused", "policy",
                         f"{problems[0]} (nothing was run there)")
    conn = str(host_vars.get("ansible_connection") or "ssh").strip().lower()
    if conn not in _SSH_CONNECTIONS:  # local, docker, ...: no SSH host key to check
        return HostCheck(name, "ok", "not_ssh")
    argv = ssh_destination_argv(host_vars, name, ssh_args)
    check = HostCheck(name, "ok", "ok", ssh_argv=argv, address=argv[-1])
    if any("{{" in a or "{%" in a for a in argv):
        check.reason = "unchecked"
        return check
    ssh, keygen, keyscan = (shutil.which(t) for t in ("ssh", "ssh-keygen", "ssh-keyscan"))
    if not (ssh and keygen and keyscan):
        check.outcome, check.reason = "refused", "ssh_config"
        check.message = ("ssh, ssh-keygen and ssh-keyscan are needed to "
                         "check host keys (`sudo apt-get install openssh-client`)")
        return check
    cfg, err = _effective(ssh, argv, timeout)
    if err:
        check.outcome, check.reason = "refused", "ssh_config"
        check.message = f"the ssh arguments for it do not work: {err}"
        return check
    strict = cfg.get("stricthostkeychecking", "")
    if strict != "true":
        check.outcome, check.reason = "refused", "policy"
        check.message = (f"ssh would run with StrictHostKeyChecking={strict} "
                         "(from an ssh configuration file or ansible_ssh_args); rigctl needs "
                         "it on: remove that setting")
        return check
    hostname, port = cfg.get("hostname", check.address), cfg.get("port", "22")
    check.address = f"{hostname}:{port}"
    lookup = lookup_name(cfg)
    files = known_host_files(cfg)
    known, revoked, has_ca, where = known_entries(keygen, lookup, files)
    check.known_keys = sorted(set(known))
    check.known = _fps(known)
    check.known_files = where
    proxied = any(cfg.get(k, "none") not in ("none", "") for k in ("proxyjump", "proxycommand"))
    if proxied or (has_ca and not known):
        check.reason = "unchecked"  # ssh-keyscan cannot go through a proxy or check a CA
        return check
    types = sorted({t for t in (_scan_type(k) for k, _ in known) if t})
    offered, banner, err = scan(keyscan, hostname, port, types, timeout)
    if not offered and banner and types:
        offered, banner, err = scan(keyscan, hostname, port, [], timeout)
    if not offered:
        check.outcome, check.reason = "unreachable", "unreachable"
        check.message = (f"{hostname}:{port}: {err} (connect timeout "
                         f"{timeout} s: --connect-timeout or ${TIMEOUT_ENV})")
        return check
    check.offered = _fps(offered)
    user_file = files[0] if files else "~/.ssh/known_hosts"
    record = (f"compare `ssh-keyscan -p {port} {hostname}` with the fingerprint on the rig's "
              f"console, then add that line to {user_file} ({README_STEPS})")
    bad = [k for k in offered if k in revoked]
    if bad:
        check.outcome, check.reason = "refused", "revoked_key"
        check.message = (f"REVOKED host key: {hostname}:{port} offers {fingerprint(*bad[0])}, "
                         "marked @revoked in known_hosts; nothing was run there")
        return check
    if any(k in known for k in offered):
        return check
    offered_text = ", ".join(check.offered)
    if not known:
        check.outcome, check.reason = "refused", "unknown_key"
        check.message = (f"unknown host key: {hostname}:{port} offers {offered_text}, in no "
                         f"known_hosts in use ({', '.join(files) or 'none'}); nothing was run "
                         f"there and no key was trusted. To record it from a trusted path: "
                         f"{record}")
        return check
    check.outcome, check.reason = "refused", "changed_key"
    check.message = (f"HOST KEY CHANGED for {lookup}: offered {offered_text}, known "
                     f"{', '.join(check.known)} ({', '.join(where)}); nothing was run there. "
                     "If the rig was reinstalled: check the new fingerprint on its console, "
                     f"`ssh-keygen -R '{lookup}' -f {where[0]}`, then {record}")
    return check


def check_hosts(inv, hosts: list[str], *, timeout: int | None = None,
                environ: Mapping[str, str] | None = None, jobs: int = 16) -> list[HostCheck]:
    """The gate for every host in ``hosts`` (names in the loaded inventory ``inv``), in
    parallel, bounded by the connect timeout; results in the order of ``hosts``."""
    if timeout is None:
        timeout = connect_timeout()
    ssh_args = config_ssh_args()
    env = dict(os.environ if environ is None else environ)
    # The runner pins these; the rule looks at the rest of the caller's environment.
    for key in BOOL_ENV + ("ANSIBLE_SSH_ARGS",):
        env.pop(key, None)

    def one(h: str) -> HostCheck:
        return check_host(h, inv.host_vars(h), timeout=timeout, ssh_args=ssh_args,
                          environ=env)

    if not hosts:
        return []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(jobs, len(hosts)))) as ex:
        return list(ex.map(one, hosts))


def control_digest(checks: Iterable[HostCheck]) -> str:
    """A short digest of the known host keys the gate accepted: the directory of Ansible's
    ControlMaster sockets is named by it, so a master opened while other keys were known
    is never reused."""
    h = hashlib.sha256()
    for c in sorted(checks, key=lambda c: c.host):
        if c.ok:
            h.update(repr((c.host, c.address, c.known_keys, c.known_files)).encode())
    return h.hexdigest()[:12]


def control_path_dir(digest: str | None) -> str:
    """Ansible's ControlMaster directory for a digest (short: socket paths are limited to
    about 100 bytes)."""
    if not digest:
        digest = "run-" + os.urandom(4).hex()
    root = os.path.join(os.path.expanduser("~"), ".ansible", "cp")
    _prune_control_dirs(root)
    return os.path.join(root, f"rk-{digest}")


def _prune_control_dirs(root: str, older_than: float = 1800) -> None:
    """Remove empty ``rk-*`` directories left by earlier runs (their masters are gone)."""
    import time

    try:
        names = [n for n in os.listdir(root) if n.startswith("rk-")]
    except OSError:
        return
    limit = time.time() - older_than
    for n in names:
        path = os.path.join(root, n)
        try:
            if os.path.getmtime(path) < limit and not os.listdir(path):
                os.rmdir(path)
        except OSError:
            pass


def stop_masters(checks: Iterable[HostCheck], control_path: str, timeout: int = 10) -> int:
    """Ask ControlMasters at ``control_path`` (a pattern with ssh tokens, e.g.
    ``~/.ansible/cp/%C``) for the checked hosts to stop accepting new sessions (``ssh -O
    stop``: running sessions finish), so nothing opened before this check carries a run.
    Returns how many were stopped."""
    ssh = shutil.which("ssh")
    if not ssh:
        return 0
    stopped = 0
    for c in checks:
        if not c.ssh_argv:
            continue
        argv = [*c.ssh_argv[:-2], "-o", f"ControlPath={control_path}", *c.ssh_argv[-2:]]
        cfg, err = _effective(ssh, argv, timeout)
        path = cfg.get("controlpath", "")
        if err or not path or path == "none" or not os.path.exists(path):
            continue
        proc = subprocess.run([ssh, "-O", "stop", *argv], capture_output=True, text=True,
                              timeout=timeout + 5, stdin=subprocess.DEVNULL)
        stopped += proc.returncode == 0
    return stopped
