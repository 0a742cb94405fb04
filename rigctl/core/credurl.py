"""Credentials inside URLs (``https://user:token@host/path``): split them off, mask them
in anything printed or recorded, and hand them to git without a command line or a file.

Stdlib only, Python 3.9 syntax: shipped to managed hosts as module_utils (the
nvidia_p2p_source module) and used by the CLI's secret masking.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"
# Schemes whose user part is itself a credential by convention (a token as the user name,
# https://TOKEN@github.com/...). In ssh URLs the user part is a login name, not a secret.
_TOKEN_USER_SCHEMES = ("http", "https", "ftp", "ftps")
_CREDENTIAL_SCHEMES = ("http", "https")
# scheme://userinfo@ inside any text (messages, tables, logs)
_URL_USERINFO_RE = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)([^/\s@'\"<>]+)@")


def _is_secret_userinfo(scheme, userinfo):
    return ":" in userinfo or scheme.lower() in _TOKEN_USER_SCHEMES


def has_credentials(text):
    """Whether TEXT (a URL, or any text) holds a URL with a password or a token in its
    user part."""
    return isinstance(text, str) and mask_text(text) != text


def mask_url(url):
    """URL with its credentials replaced by ``***`` (``https://***@host/path``); any other
    URL or string unchanged."""
    if not isinstance(url, str):
        return url
    return mask_text(url)


def mask_text(text):
    """Every URL credential inside TEXT replaced by ``***``."""
    if not isinstance(text, str) or "@" not in text:
        return text

    def repl(m):
        scheme, userinfo = m.group(1)[:-3], m.group(2)
        if _is_secret_userinfo(scheme, userinfo):
            return m.group(1) + MASK + "@"
        return m.group(0)

    return _URL_USERINFO_RE.sub(repl, text)


def split_credentials(url):
    """(clean_url, username, password): URL without its user part, and the credentials
    from it (percent-decoded; None when absent). A token as the user name (GitHub's
    ``https://TOKEN@github.com/...``) comes back as the username with password "".

    Raises ValueError (without the secret in its text) for a password in a URL whose
    scheme cannot carry one to git (ssh://user:pass@..., file://...)."""
    if not isinstance(url, str) or "://" not in url:
        return url, None, None
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, hostport = parts.netloc.rsplit("@", 1)
    scheme = parts.scheme.lower()
    if scheme not in _CREDENTIAL_SCHEMES:
        if ":" in userinfo:
            raise ValueError(
                "the URL %s carries a password, which git cannot use with %s://; use an "
                "https:// URL with the token, or an SSH key for ssh://" % (mask_url(url),
                                                                          scheme))
        return url, None, None  # ssh://git@host/...: a login name, kept
    user, sep, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment))
    return clean, unquote(user), unquote(password) if sep else ""


# git asks this helper for credentials (git-credential(1) protocol: attributes on stdin,
# username/password on stdout). It answers only for the one protocol and host the URL
# names (never to a redirect elsewhere), reads the secret from its environment, and is
# passed to git through GIT_CONFIG_* variables: nothing on a command line or on disk.
_HELPER = (
    '!f() { test "$1" = get || return 0; p=; h=; '
    'while IFS= read -r l && test -n "$l"; do case "$l" in '
    'protocol=*) p=${l#protocol=};; host=*) h=${l#host=};; esac; done; '
    'test "$p" = "$RIGCTL_GIT_PROTOCOL" && test "$h" = "$RIGCTL_GIT_HOST" || return 0; '
    'printf "username=%s\\npassword=%s\\n" "$RIGCTL_GIT_USERNAME" "$RIGCTL_GIT_PASSWORD"; }; f'
)


def git_credential_env(clean_url, username, password):
    """Environment for a git command that fetches CLEAN_URL with these credentials: the
    credential helpers of every git config are reset, then one helper answers from the
    environment. Empty dict when there are no credentials."""
    if username is None:
        return {}
    parts = urlsplit(clean_url)
    return {
        "GIT_CONFIG_COUNT": "3",
        "GIT_CONFIG_KEY_0": "credential.helper",
        "GIT_CONFIG_VALUE_0": "",  # an empty value drops the helpers configured earlier
        "GIT_CONFIG_KEY_1": "credential.helper",
        "GIT_CONFIG_VALUE_1": _HELPER,
        "GIT_CONFIG_KEY_2": "credential.interactive",
        "GIT_CONFIG_VALUE_2": "never",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "",
        "SSH_ASKPASS": "",
        "RIGCTL_GIT_PROTOCOL": parts.scheme.lower(),
        "RIGCTL_GIT_HOST": parts.netloc,
        "RIGCTL_GIT_USERNAME": username,
        "RIGCTL_GIT_PASSWORD": password or "",
    }
