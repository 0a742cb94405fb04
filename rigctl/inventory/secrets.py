"""Secrets in inventories: what looks like one, masking it in everything rigctl prints,
and the warning for a secret written in plain text (the fix: Ansible Vault).

One decision for every output (``rigctl inventory show``, ``inventory check``'s messages,
run summaries): a variable is secret by its name (``ansible_become_password``,
``ansible_ssh_pass``, ``*_token``, ``*_api_key``, ``vault_*``...) or by its value (an
``!vault`` value, an ``$ANSIBLE_VAULT`` block, a private key, a well-known token format);
a URL with credentials (``https://user:token@host/...``) keeps everything but them
(``https://***@host/...``). Contacts nothing; imports no Ansible.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from typing import Any

from rigctl.core import credurl
from rigctl.inventory import yamlpos
from rigctl.inventory.problems import Problem

MASK = "***"
VAULT_SHOWN = "<vault-encrypted>"

# Words that make a variable name secret-looking (names are split at _ - . and spaces).
_SECRET_WORDS = frozenset({
    "password", "passwd", "pass", "passphrase", "passwords", "pwd", "secret", "secrets",
    "token", "tokens", "apikey", "api-key", "credential", "credentials", "privkey",
    "vault",  # Ansible's convention: vault_* variables hold the values kept in a vault
})
# Two words in a row that do (api_key, private_key, access_key, auth_key, ...).
_SECRET_PAIRS = frozenset({("api", "key"), ("private", "key"), ("access", "key"),
                           ("auth", "key"), ("secret", "key"), ("client", "secret"),
                           ("become", "pass"), ("ssh", "pass")})
# A last word that makes the name point at a secret rather than hold it
# (ansible_ssh_private_key_file, vault_password_file, ...).
_REFERENCE_WORDS = frozenset({"file", "files", "path", "dir", "directory", "url", "uri",
                              "fingerprint", "method", "exe", "executable", "prompt",
                              "policy", "length", "timeout", "user", "username", "enabled"})
# Values that are secrets whatever their name.
_SECRET_VALUE_RE = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"
    r"|^\s*\$ANSIBLE_VAULT;"
    r"|\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,}|glpat-[A-Za-z0-9_-]{20,}"
    r"|xox[abprs]-[A-Za-z0-9-]{10,}|hf_[A-Za-z0-9]{30,}|AKIA[0-9A-Z]{16})\b"
)
# A plain reference to another variable ({{ vault_become_pass }}): shown, it holds nothing.
_REFERENCE_RE = re.compile(r"^\s*\{\{\s*[A-Za-z_][A-Za-z0-9_.]*\s*\}\}\s*$")


def _words(name: str) -> list[str]:
    return [w for w in re.split(r"[_\-.\s]+", str(name).lower()) if w]


def is_secret_name(name: Any) -> bool:
    """Whether a variable (or mapping key) of this name holds a secret."""
    words = _words(name)
    if not words or words[-1] in _REFERENCE_WORDS:
        return False
    if any(w in _SECRET_WORDS for w in words):
        return True
    return any(pair in _SECRET_PAIRS for pair in zip(words, words[1:], strict=False))


def is_secret_value(value: Any) -> bool:
    """Whether the value itself is a secret (whatever its name): vault-encrypted, a
    private key, a well-known token format. (A URL with credentials is not: only its
    credentials are; see ``mask``.)"""
    if isinstance(value, yamlpos.VaultValue):
        return True
    return isinstance(value, str) and bool(_SECRET_VALUE_RE.search(value))


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def mask(value: Any, name: Any = None) -> Any:
    """VALUE as it may be shown: secrets replaced by ``***`` (``<vault-encrypted>`` for a
    vault value), URL credentials by ``***@``, recursively through mappings and lists
    (a mapping key's name decides for its value). Never returns a secret."""
    if isinstance(value, yamlpos.VaultValue):
        return VAULT_SHOWN
    secret_name = name is not None and is_secret_name(name)
    if isinstance(value, dict):
        return {k: mask(v, k) if not secret_name else _mask_all(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v, name) for v in value]
    if secret_name:
        return _mask_all(value)
    if isinstance(value, str):
        shown = credurl.mask_text(value)  # a token inside a URL: only the credentials go
        return MASK if is_secret_value(shown) else shown
    return value


def _mask_all(value: Any) -> Any:
    """Everything under a secret name: structure kept, every leaf masked."""
    if isinstance(value, yamlpos.VaultValue):
        return VAULT_SHOWN
    if isinstance(value, dict):
        return {k: _mask_all(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_all(v) for v in value]
    if _empty(value) or isinstance(value, bool):
        return value
    if isinstance(value, str) and _REFERENCE_RE.match(value):
        return value
    return MASK


# --- what is in plain text --------------------------------------------------------------


@dataclasses.dataclass
class PlainSecret:
    """A secret written in plain text: where, under which name, and what it is."""

    file: str | None
    line: int | None
    name: str  # the variable, or variable.key.path for one inside a mapping
    # "secret", "url" (credentials in a URL), "part" (the user or token of such a URL, for
    # scrubbing only) or "value" (key or token format)
    kind: str
    text: str  # the secret itself: for scrubbing messages, never printed
    owner_kind: str | None = None
    owner: str | None = None


def _node_lines(node) -> dict[Any, Any]:
    """child key (or index) -> node, for a mapping or sequence node."""
    if yamlpos.is_mapping(node):
        pairs, _ = yamlpos.mapping_pairs(node)
        return {p.key: p.value_node for p in pairs}
    if yamlpos.is_sequence(node):
        return dict(enumerate(node.value))
    return {}


def _plain(value: Any, name: str, node, line: int | None, under_secret: bool
           ) -> Iterator[tuple[str, int | None, str, str]]:
    """(name, line, kind, secret text) for every plain-text secret inside VALUE."""
    if isinstance(value, yamlpos.VaultValue) or _empty(value) or isinstance(value, bool):
        return
    secret_name = under_secret or is_secret_name(name.rsplit(".", 1)[-1].split("[", 1)[0])
    if isinstance(value, (dict, list)):
        children = _node_lines(node)
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in items:
            sub = children.get(k)
            label = f"{name}.{k}" if isinstance(value, dict) else f"{name}[{k}]"
            yield from _plain(v, label, sub, yamlpos.line_of(sub) or line, secret_name)
        return
    if isinstance(value, str) and yamlpos.contains_jinja(value):
        return  # computed when the play runs (a lookup, another variable): not in plain text
    if secret_name:
        yield name, line, "secret", str(value)
        return
    if not isinstance(value, str):
        return
    if credurl.has_credentials(value):
        for m in re.finditer(r"[A-Za-z][A-Za-z0-9+.-]*://([^/\s@'\"<>]+)@", value):
            if credurl.mask_text(m.group(0)) != m.group(0):
                yield name, line, "url", m.group(1)
                for part in m.group(1).split(":", 1):  # the user and the token alone, too
                    if len(part) >= 8:
                        yield name, line, "part", part
    elif is_secret_value(value):
        yield name, line, "value", value


def plain_secrets(inv) -> list[PlainSecret]:
    """Every secret written in plain text in the inventory (not vaulted, not computed)."""
    out = []
    for d in inv.written_defs():
        for name, line, kind, text in _plain(d.value, d.name, d.node, d.line, False):
            out.append(PlainSecret(d.file, line, name, kind, text, d.owner_kind, d.owner))
    return out


def _warned(found: list[PlainSecret]) -> list[PlainSecret]:
    return [s for s in found if s.kind != "part"]  # parts only scrub; their URL is warned


_WHAT = {
    "secret": "a secret written in plain text (the value is not shown)",
    "url": "a URL with a password or token in plain text (not shown)",
    "value": "a private key or access token written in plain text (not shown)",
}


def plain_text_warning(s: PlainSecret) -> Problem:
    top = s.name.split(".", 1)[0].split("[", 1)[0]
    if s.name == top:
        fix = (f"encrypt it with Ansible Vault: run `ansible-vault encrypt_string --stdin-name "
               f"{top}`, type the value (it stays out of your shell history and the process "
               "list), and paste the printed `!vault |` block in place of this line; or move "
               "the variable to a vars file encrypted with `ansible-vault encrypt`")
    else:
        fix = (f"encrypt that value with Ansible Vault: `ansible-vault encrypt_string "
               f"--stdin-name {s.name.rsplit('.', 1)[-1]}` and paste the `!vault |` block in "
               "its place (or keep the whole variable in a vars file encrypted with "
               "`ansible-vault encrypt`)")
    return Problem(file=s.file, line=s.line, message=_WHAT[s.kind], fix=fix,
                   severity="warning", host=s.owner if s.owner_kind == "host" else None,
                   group=s.owner if s.owner_kind == "group" else None, key=s.name)


# --- scrubbing text ---------------------------------------------------------------------


def _forms(text: str) -> list[str]:
    """How a secret can appear inside a message: as is, repr'd, JSON-encoded."""
    forms = {repr(text), json.dumps(text)}
    if len(text) >= 4:  # short values only in quotes: "a" would mask every a
        forms.update((text, repr(text)[1:-1], json.dumps(text)[1:-1]))
    return sorted((f for f in forms if f), key=len, reverse=True)


class Scrubber:
    """Removes known secrets (and any URL credentials) from text."""

    def __init__(self, secrets: list[str]):
        self._forms = sorted({f for s in secrets if s for f in _forms(s)}, key=len, reverse=True)
        # a short one as a whole word too (`the number 123`), never inside other words
        short = sorted({s for s in secrets if s and len(s) < 4}, key=len, reverse=True)
        words = "|".join(map(re.escape, short))
        self._short = re.compile(rf"(?<![\w])(?:{words})(?![\w])") if short else None

    def __call__(self, text: Any) -> Any:
        if not isinstance(text, str):
            return text
        for form in self._forms:
            if form in text:
                quote = form[0] if form[0] in "'\"" and form[-1] == form[0] else ""
                text = text.replace(form, f"{quote}{MASK}{quote}")
        if self._short is not None:
            text = self._short.sub(MASK, text)
        return credurl.mask_text(text)


def scrubber_for(inv) -> Scrubber:
    return Scrubber([s.text for s in plain_secrets(inv)])


def scrub_and_warn(inv, problems: list[Problem]) -> list[Problem]:
    """PROBLEMS with no secret value left in any message or fix, plus one warning per
    secret written in plain text (file:line, the variable, the fix; never the value)."""
    found = plain_secrets(inv)
    scrub = Scrubber([s.text for s in found])
    out = [dataclasses.replace(p, message=scrub(p.message), fix=scrub(p.fix)) for p in problems]
    out.extend(plain_text_warning(s) for s in _warned(found))
    return out
