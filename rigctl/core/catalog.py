"""Known patched P2P sources of NVIDIA's open kernel modules: the ONE place they are listed.

A rig sets ``rig_p2p_source: {catalog: <name>}`` to use one of these, instead of spelling
out ``url``/``branch``/``commit``. Every entry is pinned to a full commit id and carries
what a rig owner chooses by: the GPUs its README claims P2P for (claims, not a test
result), their generations, the NVIDIA base the branch was cut from (its ``version.mk``:
the userspace next to it must be exactly that version) and the kernels that base builds
on (:mod:`kernelgate`).

Only branches whose full head commit id is known are pinned here (the shared rig facts).
Newer branches (:data:`KNOWN_BRANCHES`: aikitoria's 570.124.04 to 615.71.09, tinygrad's
later 570.x) are pinned by their users with ``rigctl p2p pin URL BRANCH``, which reads the
branch's own ``version.mk`` and writes a user catalog entry: ``rig_p2p_catalog`` in
group_vars, named entries validated like these (:func:`entry_problems`) and used the same
way (``{catalog: NAME}``).

Stdlib only, Python 3.9 syntax: this module is shipped to managed hosts as module_utils
(the ``nvidia_p2p_source`` module names the matching entry in its refusals) and imported
by the inventory checks (``rigctl.inventory.catalog`` re-exports it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from . import gpudb, kernelgate

TINYGRAD_URL = "https://github.com/tinygrad/open-gpu-kernel-modules.git"
AIKITORIA_URL = "https://github.com/aikitoria/open-gpu-kernel-modules.git"

# GPU generations by their NVIDIA architecture names (as rigctl.core.gpudb names them).
AMPERE, ADA, BLACKWELL = "Ampere", "Ada", "Blackwell"
GENERATIONS = gpudb.GENERATIONS



def generations_of(gpus):
    """The generations of GPU model names (``RTX 4090`` -> Ada, by
    :func:`gpudb.generation_for_name`), oldest first."""
    found = {gpudb.generation_for_name(g) for g in gpus or ()} - {None}
    return tuple(g for g in GENERATIONS if g in found)


@dataclass(frozen=True)
class P2PSource:
    name: str
    url: str
    branch: str
    commit: str
    driver_version: str  # the NVIDIA base: version.mk's NVIDIA_VERSION
    gpus: Tuple[str, ...] = ()  # the GPUs its README claims P2P for; () = not recorded
    note: str = ""
    origin: str = "built-in"  # or "inventory" (rig_p2p_catalog)

    @property
    def base(self):
        return self.driver_version

    @property
    def generations(self):
        return generations_of(self.gpus)

    @property
    def kernels(self):
        """:func:`kernelgate.kernel_range` of the base."""
        return kernelgate.kernel_range(self.driver_version)

    def as_dict(self):
        rng = self.kernels
        return {
            "name": self.name,
            "origin": self.origin,
            "url": self.url,
            "branch": self.branch,
            "commit": self.commit,
            "base": self.driver_version,
            "gpus": list(self.gpus),
            "generations": list(self.generations),
            "kernels": rng["text"],
            "kernel_below": rng["below"],
            "note": self.note,
        }


_README_4090 = "README: P2P for the RTX 4090"

P2P_CATALOG: Dict[str, P2PSource] = {
    s.name: s
    for s in (
        P2PSource("tinygrad-550.54.15", TINYGRAD_URL, "550.54.15-p2p",
                  "cc5890dbae6093c0c4dc66c456b69642548e111d", "550.54.15", ("RTX 4090",),
                  "branch head of 2024-05-16; " + _README_4090),
        P2PSource("tinygrad-550.90.07", TINYGRAD_URL, "550.90.07-p2p",
                  "38f547f039d49959f8ad7745798c372e7b2d09eb", "550.90.07", ("RTX 4090",),
                  "branch head of 2024-06-07; " + _README_4090),
        P2PSource("tinygrad-565.57.01", TINYGRAD_URL, "565.57.01-p2p",
                  "9e39420bc4cb50cd7f8033ac6dd5c5583fd07567", "565.57.01", ("RTX 4090",),
                  "branch head of 2024-12-17; " + _README_4090),
        P2PSource("aikitoria-560.35.03", AIKITORIA_URL, "560.35.03-p2p",
                  "2a5e88a620b5ef1ef6166c8e742b5cbd4f507482", "560.35.03", (),
                  "GPU claims of its README not recorded"),
        P2PSource("aikitoria-565.77", AIKITORIA_URL, "565.77-p2p",
                  "b032e06c099478d527eaa578488fd6debf7b08a0", "565.77", ("RTX 4090",),
                  _README_4090),
        P2PSource("aikitoria-570.86.16", AIKITORIA_URL, "570.86.16-p2p",
                  "0e943687150e438f265b6fe2b0f6b8bae66050fe", "570.86.16", ("RTX 4090",),
                  "branch head of 2025-01-31; " + _README_4090 + " (its tree predates the "
                  "5090 support of aikitoria's branches from 580.105.08 on; a 5090 fails "
                  "with error 205 at cudaDeviceEnablePeerAccess)"),
    )
}


@dataclass(frozen=True)
class KnownBranch:
    """A fork branch reported to exist whose head commit is not known here: pin it with
    ``rigctl p2p pin URL BRANCH``."""

    url: str
    branch: str
    base: str
    gpus: Tuple[str, ...] = ()  # claims, where the shared facts record them
    note: str = ""

    @property
    def fork(self):
        return self.url.rstrip("/").rsplit("/", 2)[-2]


_AIKI_5090 = ("RTX 4090", "RTX 5090")
# README titles seen at these branches ("NVIDIA driver X with P2P for 4090 [and 5090]").
_README_CLAIMS = {"570.133.07": ("RTX 4090",), "575.64.05": _AIKI_5090,
                  "580.82.09": _AIKI_5090, "580.95.05": _AIKI_5090}
_AIKI_610 = ("RTX 3090", "RTX 4090", "RTX 5090")
_DISPLAY = "a GPU driving a display breaks 5090 P2P before 610.x"

KNOWN_BRANCHES: Tuple[KnownBranch, ...] = tuple(
    [KnownBranch(TINYGRAD_URL, v + "-p2p", v, (), "tinygrad's last branches")
     for v in ("570.124.06", "570.133.20", "570.148.08")]
    + [KnownBranch(AIKITORIA_URL, v + "-p2p", v, _README_CLAIMS.get(v, ()),
                   ("its README claims the 5090, but " if "RTX 5090" in _README_CLAIMS.get(v, ())
                    else "") + "5090 P2P fails (error 205) before 580.105.08")
       for v in ("570.124.04", "570.124.06", "570.133.07", "570.153.02", "575.51.02",
                 "575.64.05", "580.76.05", "580.82.09", "580.95.05")]
    + [KnownBranch(AIKITORIA_URL, v + "-p2p", v, _AIKI_5090, "5090 support; " + _DISPLAY)
       for v in ("580.105.08", "590.44.01", "590.48.01", "595.45.04", "595.58.03")]
    + [KnownBranch(AIKITORIA_URL, "595.71.05-p2p", "595.71.05", _AIKI_610,
                   "3090 over NVLink where bridged, BAR1 otherwise; " + _DISPLAY)]
    + [KnownBranch(AIKITORIA_URL, b, b.split("-")[0], _AIKI_610,
                   "3090 over NVLink where bridged, BAR1 otherwise; display-attached 5090s work")
       for b in ("610.43.02-p2p", "610.43.03-p2p", "610.57.04-p2p", "610.57.04-p2p-v3",
                 "615.71.09-p2p")]
)


def entries_for_version(version: str, user=None) -> list:
    """Catalog entries (built-in, then the user catalog's) built for exactly this driver
    version."""
    return [s for s in all_entries(user) if s.driver_version == version]


def branches_building_on(kernel, gpus=()):
    """Known branches (pinned entries and :data:`KNOWN_BRANCHES`) whose base builds on
    ``kernel`` and that claim every GPU model in ``gpus``: ``["aikitoria 580.105.08-p2p",
    ...]``, newest base last."""
    out = []
    for b in sorted(KNOWN_BRANCHES, key=lambda b: kernelgate.version_tuple(b.base)):
        if kernelgate.builds_on(b.base, kernel) and all(g in b.gpus for g in gpus):
            out.append("%s %s" % (b.fork, b.branch))
    return out


def suggested_branches(base, kernels):
    """What a kernel gate refusal offers: the first known branch of the same NVIDIA
    branch line as ``base`` that builds on every one of ``kernels``, and the newest
    known branch that does (``["aikitoria 570.153.02-p2p", "aikitoria 615.71.09-p2p"]``)."""
    fits = [b for b in sorted(KNOWN_BRANCHES, key=lambda b: kernelgate.version_tuple(b.base))
            if all(kernelgate.builds_on(b.base, k) for k in kernels or [])]
    major = kernelgate.version_tuple(base)[:1]
    same = [b for b in fits if kernelgate.version_tuple(b.base)[:1] == major
            and kernelgate.version_tuple(b.base) > kernelgate.version_tuple(base)]
    out = []
    for b in (same[:1] + fits[-1:]):
        name = "%s %s" % (b.fork, b.branch)
        if name not in out:
            out.append(name)
    return out


# --- the user catalog (rig_p2p_catalog) --------------------------------------------------

ENTRY_KEYS = ("url", "branch", "commit", "driver_version", "gpus", "note")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_BRANCH_RE = re.compile(r"^[^\s~^:?*\[\\]+$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_VERSION_RE = re.compile(r"^\d{3}\.\d{1,3}(\.\d{1,3})?$")


def url_problem(url):
    """(message, fix) when ``url`` is no git URL rigctl fetches from (http, https, ssh,
    file, ``git@host:path``, an absolute path), else None."""
    if not isinstance(url, str) or not url.strip():
        return ("expected a git URL", "write the fork's URL, like %s" % AIKITORIA_URL)
    if re.match(r"^(https?|ssh|file)://\S+$", url) or re.match(r"^[\w.-]+@[\w.-]+:\S+$", url) \
            or (url.startswith("/") and " " not in url):
        return None
    return ("%r is not a git URL rigctl can fetch (http://, https://, ssh://, file://, "
            "user@host:path or an absolute path)" % url,
            "write the fork's URL, like %s, or file:///path/to/mirror.git" % AIKITORIA_URL)


def entry_problems(name, value):
    """Problems of one user catalog entry: a list of (key, message, fix), key None for the
    entry as a whole."""
    out = []
    if not isinstance(name, str) or not _NAME_RE.match(name):
        out.append((None, "entry name %r: use letters, digits, '.', '_' and '-'" % (name,),
                    "name it like aikitoria-580.105.08"))
    elif name in P2P_CATALOG:
        out.append((None, "entry name %r is a built-in catalog entry" % name,
                    "use another name for your entry, or use the built-in one"))
    if not isinstance(value, dict):
        out.append((None, "expected a mapping with url, branch, commit and driver_version",
                    "write it like `rigctl p2p pin URL BRANCH --write FILE` does"))
        return out
    for key in value:
        if key not in ENTRY_KEYS:
            out.append((key, "unknown key %r (valid: %s)" % (key, ", ".join(ENTRY_KEYS)),
                        "remove it"))
    for key in ("url", "branch", "commit", "driver_version"):
        if value.get(key) in (None, ""):
            out.append((None, "%s is missing" % key,
                        "run `rigctl p2p pin URL BRANCH --write FILE`, which writes all four"))
    url, branch, commit = value.get("url"), value.get("branch"), value.get("commit")
    version = value.get("driver_version")
    if url not in (None, ""):
        found = url_problem(url)
        if found:
            out.append(("url",) + found)
    if branch not in (None, "") and not (isinstance(branch, str) and _BRANCH_RE.match(branch)):
        out.append(("branch", "%r is not a git branch name" % (branch,),
                    "write the branch, like 580.105.08-p2p"))
    if commit not in (None, "") and not (isinstance(commit, str) and _COMMIT_RE.match(commit)):
        out.append(("commit", "%r is not a full 40-character commit id (lower case)" % (commit,),
                    "pin the full id: `rigctl p2p pin URL BRANCH` prints it"))
    if version not in (None, "") and not (isinstance(version, str) and _VERSION_RE.match(version)):
        out.append(("driver_version", "%r is not a driver version" % (version,),
                    'quote it: driver_version: "580.105.08" (version.mk\'s NVIDIA_VERSION)'))
    gpus = value.get("gpus")
    if gpus is not None and not (isinstance(gpus, list) and all(isinstance(g, str) for g in gpus)):
        out.append(("gpus", "expected a list of GPU models, like [RTX 4090, RTX 5090]",
                    "list the GPUs the branch's README claims, or remove gpus"))
    note = value.get("note")
    if note is not None and not isinstance(note, str):
        out.append(("note", "expected a string", "quote the note"))
    return out


def user_entry(name, value):
    """A :class:`P2PSource` from a valid user catalog entry (check :func:`entry_problems`
    first)."""
    return P2PSource(name, value["url"], value["branch"], value["commit"],
                     value["driver_version"], tuple(value.get("gpus") or ()),
                     value.get("note") or "", "inventory")


def user_entries(user):
    """The valid entries of a user catalog (rig_p2p_catalog) as P2PSources."""
    out = []
    for name, value in sorted((user or {}).items(), key=lambda kv: str(kv[0])):
        if not entry_problems(name, value):
            out.append(user_entry(name, value))
    return out


def all_entries(user=None) -> List[P2PSource]:
    return list(P2P_CATALOG.values()) + user_entries(user)


def names(user=None):
    return [s.name for s in all_entries(user)]


def lookup(name: str, user=None) -> Optional[P2PSource]:
    """The built-in entry ``name``, else the user catalog's (when it is valid)."""
    if name in P2P_CATALOG:
        return P2P_CATALOG[name]
    value = (user or {}).get(name) if isinstance(user, dict) else None
    if value is None or entry_problems(name, value):
        return None
    return user_entry(name, value)
