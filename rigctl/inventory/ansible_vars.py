"""Ansible's own connection variables that rigctl passes on to its runs: their ONE definition
for the inventory check (type, range, format), next to the rig variables of ``schema.py``.

Ansible reads these when it connects, not when it reads the inventory: ``ansible-inventory``
accepts ``ansible_port: ssh`` or ``ansible_become: sudo`` and the run fails (or silently does
something else) only at the first connection. ``rigctl inventory check`` refuses them before
anything runs.

What Ansible itself converts is accepted as it converts it: a quoted whole number for an
integer (``ansible_port: "2222"``) and its boolean words for a boolean (``"yes"``,
``"false"``). Values with Jinja or vault are not checked (Ansible computes them at run
time). The SSH host key variables (``ansible_host_key_checking``,
``ansible_ssh_host_key_checking``) are checked by their own rule, not here.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import re
from typing import Any

from rigctl.inventory import secrets
from rigctl.inventory.schema import Field

PORT_MIN, PORT_MAX = 1, 65535

# Ansible's boolean words (ansible.module_utils.parsing.convert_bool), as strings.
BOOL_WORDS_TRUE = ("yes", "on", "true", "y", "t", "1")
BOOL_WORDS_FALSE = ("no", "off", "false", "n", "f", "0")

# Become and connection plugins a rig inventory may name by their short name: ansible-core's
# and those of community.general / community.docker that Ansible routes short names to. Any
# full collection name (namespace.collection.plugin) is accepted as is.
BECOME_METHODS = ("sudo", "su", "doas", "dzdo", "ksu", "machinectl", "pbrun", "pfexec",
                  "pmrun", "run0", "runas", "sesu", "sudosu", "enable")
CONNECTIONS = ("ssh", "paramiko", "paramiko_ssh", "local", "smart", "docker", "podman",
               "buildah", "lxc", "lxd", "incus", "chroot", "jail", "zone", "winrm", "psrp",
               "network_cli", "netconf", "httpapi", "libssh", "kubectl", "qubes", "iocage",
               "funcd", "saltstack", "wsl")
SHELL_TYPES = ("sh", "csh", "fish", "powershell", "cmd")
TRANSFER_METHODS = ("smart", "sftp", "scp", "piped")
INTERPRETER_WORDS = ("auto", "auto_silent", "auto_legacy", "auto_legacy_silent")

# Ansible's grammar for a host name (ansible.parsing.utils.addresses, without ranges):
# dot-separated labels of letters, digits, '_' and '-', not ending with '_' or '-' (and the
# final dot of a fully qualified name).
_LABEL = r"\w(?:[\w-]*(?<![_-]))?"
HOSTNAME_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$", re.UNICODE)
# A user name SSH and sudo accept: no spaces, no ':' '@' '/' (those mean other things).
USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$")


# --- the rules that are more than a type -------------------------------------------------


def address_problem(value: Any, what: str = "ansible_host") -> tuple[str, str] | None:
    """Why ``value`` is not an address SSH can connect to (``what`` names it), or None.
    Accepted: a host name by Ansible's grammar (letters, digits, '.', '-', '_'), an IPv4 or
    an IPv6 address (with an optional %zone)."""
    if not isinstance(value, str):
        return None
    text = value
    if not text.strip():
        return ("empty: there is no address to connect to",
                f"write the rig's IP address or DNS name, like {what}: 192.0.2.10")
    if text != text.strip() or re.search(r"\s", text):
        return (f"{text!r} has spaces in it, so it is no host name or address",
                f"write the address alone, like {what}: {text.split()[0]}"
                if text.split() else f"write the address, like {what}: 192.0.2.10")
    if "://" in text:
        rest = text.split("://", 1)[1].split("/", 1)[0]
        return (f"{text!r} is a URL, not a host name", f"write the host alone: {what}: {rest}")
    if "@" in text:
        user, _, host = text.rpartition("@")
        return (f"{text!r} has a user in it; SSH would connect as {user!r} whatever "
                "ansible_user says", f"write {what}: {host} and ansible_user: {user}")
    if text.startswith("[") and text.endswith("]"):
        return (f"{text!r}: SSH takes an IPv6 address without brackets",
                f"write {what}: {text[1:-1]}")
    m = re.match(r"^(\[[^\]]+\]|[^:]+):(\d+)$", text)
    if m:
        return (f"{text!r} has a port in it; SSH would look for a host named {text!r}",
                f"write {what}: {m.group(1).strip('[]')} and ansible_port: {m.group(2)}")
    if re.match(r"^[\d.]+$", text):
        try:
            ipaddress.IPv4Address(text)
        except ValueError:
            return (f"{text!r} is not a valid IPv4 address (four numbers from 0 to 255 "
                    "separated by dots)", f"fix the address, like {what}: 192.0.2.10")
        return None
    if ":" in text:
        try:
            ipaddress.IPv6Address(text.split("%", 1)[0])
        except ValueError:
            return (f"{text!r} is not a valid IPv6 address",
                    f"fix the address, like {what}: 2001:db8::10")
        return None
    if not HOSTNAME_RE.fullmatch(text):
        bad = sorted({c for c in text if not (c.isalnum() or c in "._-")})
        shown = " ".join(bad) if bad else "'-' or '_' at the start or end of a part"
        return (f"{text!r} is not a valid host name (it has {shown}); Ansible and SSH "
                "cannot connect to it", f"write the rig's IP address or DNS name, like "
                f"{what}: 192.0.2.10")
    return None


def _host_problem(value: Any) -> tuple[str, str] | None:
    return address_problem(value, "ansible_host")


def _port_problem(value: Any) -> tuple[str, str] | None:
    if isinstance(value, int) and not isinstance(value, bool) and not (
            PORT_MIN <= value <= PORT_MAX):
        return (f"port {value} does not exist (TCP ports go from {PORT_MIN} to {PORT_MAX})",
                "write the port sshd listens on, like ansible_port: 22")
    return None


def _user_problem(value: Any) -> tuple[str, str] | None:
    if not isinstance(value, str):
        return None
    if not value:
        return ("empty user name", "write the user SSH logs in as, like ansible_user: rig, "
                "or remove the line")
    if value.isdigit():
        return (f"{value!r} is a number: SSH and sudo take a user name, not a uid",
                "write the user's name, like ansible_user: rig")
    if not USER_RE.fullmatch(value):  # `$` alone would let a trailing newline through
        first = re.split(r"[\s:@/]", value.strip())[0] or "rig"
        return (f"{value!r} is not a user name (spaces, ':', '@' and '/' are not allowed)",
                f"write the user's name alone, like ansible_user: {first}")
    return None


def _choice_problem(choices: tuple[str, ...], what: str, name: str):
    def problem(value: Any) -> tuple[str, str] | None:
        if not isinstance(value, str):
            return None
        if value in choices or re.match(r"^\w+\.\w+\.\w+$", value):
            return None
        hint = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
        valid = ", ".join(choices)
        fix = (f"did you mean {hint[0]!r}? ({name}: {hint[0]})" if hint else
               f"use one of: {valid}, or a plugin's full name (collection.name)")
        return (f"{value!r} is not a {what} Ansible has", fix)

    return problem


def _interpreter_problem(value: Any) -> tuple[str, str] | None:
    if not isinstance(value, str) or value in INTERPRETER_WORDS:
        return None
    if not value.strip():
        return ("empty", "write the path of Python on the rig, like "
                "ansible_python_interpreter: /usr/bin/python3, or remove the line")
    if not value.startswith("/"):
        return (f"{value!r} is not an absolute path (nor auto / auto_silent)",
                "write the path of Python on the rig, like "
                "ansible_python_interpreter: /usr/bin/python3")
    return None


def _path_problem(name: str, example: str):
    def problem(value: Any) -> tuple[str, str] | None:
        if isinstance(value, str) and not value.strip():
            return ("empty path", f"write the path, like {name}: {example}, or remove the line")
        return None

    return problem


# --- the table ---------------------------------------------------------------------------

_S = "Ansible connection"

VARIABLES: tuple[Field, ...] = (
    Field("ansible_host", "str", "The address Ansible connects to (IP or DNS name); the "
          "host's inventory name when unset.", check=_host_problem, example="192.0.2.10",
          section=_S),
    Field("ansible_port", "int", "The TCP port of the rig's sshd.", check=_port_problem,
          example=22, section=_S),
    Field("ansible_user", "str", "The user SSH logs in as.", check=_user_problem,
          example="rig", section=_S),
    Field("ansible_connection", "str", "The connection plugin (rigctl's rigs: ssh).",
          check=_choice_problem(CONNECTIONS, "connection plugin", "ansible_connection"),
          example="ssh", section=_S),
    Field("ansible_password", "str", "The SSH password (keep it in vault).", section=_S),
    Field("ansible_ssh_private_key_file", "str", "The SSH private key file on the controller.",
          check=_path_problem("ansible_ssh_private_key_file", "~/.ssh/id_ed25519"),
          example="~/.ssh/id_ed25519", section=_S),
    Field("ansible_ssh_common_args", "str", "Extra options for ssh, sftp and scp, as one "
          "string.", example="-o ProxyJump=bastion", section=_S),
    Field("ansible_ssh_extra_args", "str", "Extra options for ssh only, as one string.",
          example="-o ServerAliveInterval=30", section=_S),
    Field("ansible_sftp_extra_args", "str", "Extra options for sftp, as one string.",
          example="-l 8192", section=_S),
    Field("ansible_scp_extra_args", "str", "Extra options for scp, as one string.",
          example="-l 8192", section=_S),
    Field("ansible_ssh_args", "str", "Replaces ansible.cfg's ssh_args, as one string.",
          example="-o ControlMaster=auto", section=_S),
    Field("ansible_ssh_executable", "str", "The ssh program on the controller.",
          check=_path_problem("ansible_ssh_executable", "/usr/bin/ssh"),
          example="/usr/bin/ssh", section=_S),
    Field("ansible_ssh_pipelining", "bool", "Pipelining over SSH.", example=True, section=_S),
    Field("ansible_ssh_retries", "int", "How often to retry an SSH connection.", min=0,
          max=100, example=2, section=_S),
    Field("ansible_ssh_timeout", "int", "SSH connection timeout in seconds.", min=1,
          max=3600, example=30, section=_S),
    Field("ansible_ssh_transfer_method", "str", "How files reach the rig.",
          choices=TRANSFER_METHODS, example="smart", section=_S),
    Field("ansible_become", "bool", "Whether tasks run as another user (root) through "
          "become.", example=True, section=_S),
    Field("ansible_become_method", "str", "The become plugin (sudo on rigs).",
          check=_choice_problem(BECOME_METHODS, "become method", "ansible_become_method"),
          example="sudo", section=_S),
    Field("ansible_become_user", "str", "The user tasks become (root by default).",
          check=_user_problem, example="root", section=_S),
    Field("ansible_become_password", "str", "The become (sudo) password (keep it in vault).",
          section=_S),
    Field("ansible_become_exe", "str", "The become program on the rig.",
          check=_path_problem("ansible_become_exe", "/usr/bin/sudo"), example="/usr/bin/sudo",
          section=_S),
    Field("ansible_become_flags", "str", "Options for the become program, as one string.",
          example="-H -S -n", section=_S),
    Field("ansible_python_interpreter", "str", "Python on the rig: an absolute path, or "
          "auto / auto_silent.", check=_interpreter_problem, example="/usr/bin/python3",
          section=_S),
    Field("ansible_shell_type", "str", "The rig's shell family.", choices=SHELL_TYPES,
          example="sh", section=_S),
    Field("ansible_shell_executable", "str", "The shell on the rig.",
          check=_path_problem("ansible_shell_executable", "/bin/sh"), example="/bin/sh",
          section=_S),
)

# Other names Ansible reads for the same settings: same rules, messages with the alias.
ALIASES: dict[str, str] = {
    "ansible_ssh_host": "ansible_host",
    "ansible_ssh_port": "ansible_port",
    "ansible_ssh_user": "ansible_user",
    "ansible_ssh_pass": "ansible_password",
    "ansible_ssh_password": "ansible_password",
    "ansible_private_key_file": "ansible_ssh_private_key_file",
    "ansible_pipelining": "ansible_ssh_pipelining",
    "ansible_become_pass": "ansible_become_password",
}

BY_NAME: dict[str, Field] = {f.name: f for f in VARIABLES}
for _alias, _target in ALIASES.items():
    BY_NAME[_alias] = dataclasses.replace(BY_NAME[_target], name=_alias)
NAMES: tuple[str, ...] = tuple(BY_NAME)


# Passwords: checked without their value ever appearing in a message. Which names are
# secret is decided in one place, rigctl.inventory.secrets.
SECRETS = frozenset(n for n in BY_NAME if secrets.is_secret_name(n))


def get(name: str) -> Field | None:
    """The definition of an Ansible connection variable rigctl checks, or None."""
    return BY_NAME.get(name)


def secret_problem(value: Any) -> tuple[str, str] | None:
    """Why a password value is not one, saying nothing of the value itself."""
    if isinstance(value, str):
        return None
    if value is None:
        return ("empty (null)", "give the password (encrypted with ansible-vault "
                "encrypt_string), or remove the line")
    kind = ("a boolean" if isinstance(value, bool) else "a number"
            if isinstance(value, (int, float)) else "a list" if isinstance(value, list)
            else "a mapping" if isinstance(value, dict) else "not a string")
    return (f"expected a string, got {kind} (the value is not shown): YAML reads unquoted "
            "digits as a number (with a leading 0, as an octal one)",
            "encrypt it with `ansible-vault encrypt_string` and paste the `!vault |` block "
            "in its place (that also makes it a string)")


def as_ansible_reads(f: Field, value: Any) -> Any:
    """The value as Ansible converts it for a connection variable: a quoted whole number
    for an integer, a boolean word for a boolean. Anything else is returned as it is."""
    if f.name not in BY_NAME or not isinstance(value, str):
        return value
    text = value.strip()
    if f.type == "int" and re.match(r"^[0-9]+$", text):
        return int(text)
    if f.type == "bool" and text.lower() in BOOL_WORDS_TRUE + BOOL_WORDS_FALSE:
        return text.lower() in BOOL_WORDS_TRUE
    return value


def suggest(name: str) -> str | None:
    """The connection variable a misspelled ``ansible_*`` name probably meant."""
    found = difflib.get_close_matches(name.lower(), NAMES, n=1, cutoff=0.85)
    return found[0] if found else None
