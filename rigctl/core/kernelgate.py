"""The kernel gate: which Linux kernels an NVIDIA base (of a patched P2P branch, or of the
stock open module package) builds on, from a table of known breaks and, where a break can
be seen in the files, from the real source and the real kernel headers.

A P2P fork branch is NVIDIA's open-gpu-kernel-modules release X plus the patch; whether it
builds on a kernel is decided by X (the base, ``version.mk``'s ``NVIDIA_VERSION``), not by
the patch. Known breaks (NVIDIA open-gpu-kernel-modules issues; shared rig facts):

- Linux 6.13 (``ld: cannot find ./nvidia/nv-kernel.o``, NVIDIA #747): fixed in 550.142 and
  570.86.15. Bases before 550.142, the 555/560/565 branches (560.35.03, 565.57.01, 565.77)
  and 570 bases before 570.86.15 do not build on 6.13 or newer.
- Linux 6.15 (``fatal error: os-interface.h: No such file or directory``, the removal of
  EXTRA_CFLAGS from the kernel's build system, NVIDIA #866): fixed in 570.153.02 and
  575.57.08. 570 bases before 570.153.02 (570.86.16 to 570.148.08) and 575.51.x do not
  build on 6.15 or newer.
- ``pci_resize_resource()`` gained a fourth argument, ``exclude_bars`` (mainline commit
  337b1b566db0, "PCI: Fix restoring BARs on BAR resize rollback path", in the PCI pull for
  Linux 6.19; backported to stable 6.12.97 and 6.18.40). Sources that call it with three
  arguments and have no conftest for the new form fail with ``nv-pci.c: error: too few
  arguments to function 'pci_resize_resource'`` (NVIDIA #1272: Debian 13's
  nvidia-open-kernel-dkms 550.163.01-2 on trixie's 6.12.100 and later). A series-aware
  range: 6.12.97 up to 6.13, 6.18.40 up to 6.19, and 6.19 on. NVIDIA's fix shipped in
  580.126.09; every base below it is affected. For the 590 and later branches no fact is
  recorded here (neither affected nor fixed): the role reads the source. Other stable
  series (6.6, 6.1) are not known to carry the change; the headers say.

Evidence beats tables: the third break is visible in the files (the target kernel's
``include/linux/pci.h`` declares the four-argument form; the module source calls the
three-argument form without a conftest for it), so the nvidia_driver role checks the real
fork tree or the real DKMS package against the real headers before any module build or
package install (:func:`header_arity`, :func:`scan_source`, :func:`evidence_refusal`), and
its table gate before the fetch leaves that break to the evidence (``skip`` =
:data:`EVIDENCE_BREAKS`). Where no file can be read (``rigctl inventory check`` from cached
facts, ``rigctl p2p list``), the table is what is known.

Bases outside these ranges have no *known* limit (reported as such, never as "builds
everywhere"). :func:`refusal` is the one table message the nvidia_driver role
(``nvidia_kernel_gate``), ``rigctl inventory check`` and ``rigctl p2p`` give.

Stdlib only, Python 3.9 syntax: shipped to managed hosts as module_utils.
"""

from __future__ import annotations

import os
import re
import tarfile

PCI_RESIZE = "pci_resize_resource"

# One entry per known break, oldest first. ``kernels``: half-open kernel ranges [from, to)
# of (major, minor, patch) tuples, to None = no end; ``affected``: half-open base ranges
# [from, to) of version tuples; ``not_known``: base ranges no recorded fact covers;
# ``evidence``: the symbol whose use the role checks in the files (None: table only).
BREAKS = (
    {
        "name": "nv-kernel.o",
        "kernels": (((6, 13, 0), None),),
        "error": "ld: cannot find ./nvidia/nv-kernel.o",
        "issue": "NVIDIA open-gpu-kernel-modules #747",
        "fixed_in": ("550.142", "570.86.15"),
        "affected": (((0,), (550, 142)), ((551,), (570, 86, 15))),
        "not_known": (),
        "evidence": None,
    },
    {
        "name": "EXTRA_CFLAGS",
        "kernels": (((6, 15, 0), None),),
        "error": "fatal error: os-interface.h: No such file or directory (the kernel's "
                 "build system dropped EXTRA_CFLAGS)",
        "issue": "NVIDIA open-gpu-kernel-modules #866",
        "fixed_in": ("570.153.02", "575.57.08"),
        "affected": (((570,), (570, 153, 2)), ((575,), (575, 57, 8))),
        "not_known": (),
        "evidence": None,
    },
    {
        "name": PCI_RESIZE,
        # stable 6.12 from .97, stable 6.18 from .40, mainline from 6.19
        "kernels": (((6, 12, 97), (6, 13, 0)), ((6, 18, 40), (6, 19, 0)), ((6, 19, 0), None)),
        "error": "nv-pci.c: error: too few arguments to function 'pci_resize_resource' "
                 "(the kernel added its exclude_bars argument)",
        "issue": "NVIDIA open-gpu-kernel-modules #1272",
        "fixed_in": ("580.126.09",),
        "affected": (((0,), (580, 126, 9)),),
        "not_known": (((581,), None),),
        "evidence": PCI_RESIZE,
    },
)

# The breaks the role checks from the real files instead of the table.
EVIDENCE_BREAKS = tuple(b["name"] for b in BREAKS if b["evidence"])


def version_tuple(version):
    return tuple(int(p) for p in re.findall(r"\d+", str(version or "")))


def kernel_version(release):
    """(major, minor, patch) of a kernel release (``6.15.2-amd64``, ``6.12.38+deb13-amd64``,
    ``6.1.0-27-amd64``), or None when it does not start with a version."""
    m = re.match(r"^(\d+)\.(\d+)(?:\.(\d+))?", str(release or ""))
    if not m:
        return None
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def _fmt(version):
    v = tuple(version)
    while len(v) > 2 and v[-1] == 0:
        v = v[:-1]
    return ".".join(str(p) for p in v)


def _in(ranges, value):
    return any(lo <= value and (hi is None or value < hi) for lo, hi in ranges)


def _affected(brk, base):
    return _in(brk["affected"], version_tuple(base))


def _hits(brk, kv):
    return kv is not None and _in(brk["kernels"], kv)


def _breaks(base, skip=()):
    return [b for b in BREAKS if b["name"] not in skip and _affected(b, base)]


def _merged(ranges):
    out = []
    for lo, hi in sorted(ranges, key=lambda r: r[0]):
        if out and (out[-1][1] is None or lo <= out[-1][1]):
            top = out[-1][1]
            out[-1] = (out[-1][0], None if top is None or hi is None else max(top, hi))
        else:
            out.append((lo, hi))
    return out


def _span(lo, hi):
    if hi == (lo[0], lo[1] + 1, 0):
        return "%s and later %d.%d.x" % (_fmt(lo), lo[0], lo[1])
    return "%s up to %s" % (_fmt(lo), _fmt(hi))


def range_text(bad):
    """One line for the kernels a base builds on, given the merged ranges it fails on:
    ``Linux below 6.15 except 6.12.97 and later 6.12.x``."""
    if not bad:
        return "no known kernel limit"
    opened = [lo for lo, hi in bad if hi is None]
    bounded = [(lo, hi) for lo, hi in bad if hi is not None]
    text = "Linux below %s" % _fmt(opened[0]) if opened else "Linux"
    if bounded:
        text += " except " + ", ".join(_span(lo, hi) for lo, hi in bounded)
    return text


def kernel_range(base):
    """The kernels a base builds on, as far as known: ``{"base", "below"`` (the first
    kernel it does not build on, ``"6.12.97"``, or None: no known limit), ``"text"`` (one
    line: ``Linux below 6.15 except 6.12.97 and later 6.12.x``), ``"fails_on"`` (the
    failing ranges, ``["6.12.97 and later 6.12.x", "6.15 and newer"]``), ``"breaks"``
    (their names), ``"error"``, ``"issue"``, ``"fixed_in"`` (of the break hit first),
    ``"not_known"`` (breaks no recorded fact covers for this base)}."""
    found = _breaks(base)
    bad = _merged([r for b in found for r in b["kernels"]])
    first = min(found, key=lambda b: min(lo for lo, _ in b["kernels"])) if found else None
    return {
        "base": base,
        "below": _fmt(bad[0][0]) if bad else None,
        "text": range_text(bad),
        "fails_on": [_span(lo, hi) if hi else "%s and newer" % _fmt(lo) for lo, hi in bad],
        "breaks": [b["name"] for b in found],
        "error": first["error"] if first else None,
        "issue": first["issue"] if first else None,
        "fixed_in": list(first["fixed_in"]) if first else [],
        "not_known": [b["name"] for b in BREAKS
                      if _in(b["not_known"], version_tuple(base))],
    }


def breaks_hitting(base, kernel, skip=()):
    """The known breaks that keep ``base`` from building on ``kernel`` (a release)."""
    kv = kernel_version(kernel)
    return [b for b in _breaks(base, skip) if _hits(b, kv)]


def builds_on(base, kernel, skip=()):
    """False when ``base`` is known not to build on ``kernel`` (a release string), else
    True (also for an unparsable release: nothing is known against it). ``skip``: break
    names left out (:data:`EVIDENCE_BREAKS`, where the caller checks the files)."""
    return not breaks_hitting(base, kernel, skip)


def blocked_kernels(base, kernels, skip=()):
    """The target kernels ``base`` cannot build on, in the order given."""
    return [k for k in kernels or [] if not builds_on(base, k, skip)]


def _least_fix(brk):
    return min(version_tuple(v) for v in brk["fixed_in"])


def _fixes(breaks):
    """The NVIDIA releases from which a base gets past every one of ``breaks``: the fixes
    of the one fixed last (a later fix carries the earlier ones)."""
    return list(max(breaks, key=_least_fix)["fixed_in"]) if breaks else []


def first_fixed_bases(kernel):
    """The NVIDIA releases from which a base builds on ``kernel`` as far as known (the
    fixes of every break that hits it), e.g. ``["570.153.02", "575.57.08"]`` for 6.15."""
    kv = kernel_version(kernel)
    return _fixes([b for b in BREAKS if _hits(b, kv)])


def _hold_fix(rng, blocked):
    return ("keep the rig on a kernel it builds on (%s): remove %s (apt-get purge %s) and "
            "set rig_kernel_hold: true so upgrades do not bring a newer kernel back"
            % (rng["text"], ", ".join(blocked),
               " ".join("linux-image-%s linux-headers-%s" % (k, k) for k in blocked)))


def refusal(base, kernels, source, host=None, suggestions=(), skip=(), flavor="p2p"):
    """The refusal when a target kernel is one ``base`` cannot build on, or None.

    ``source``: how the branch is named to the rig owner (``catalog entry
    aikitoria-570.86.16 (branch 570.86.16-p2p)``; for flavor open the stock packages);
    ``suggestions``: branch names (or catalog entries) that build there, offered in the
    fix; ``skip``: break names left to the caller's evidence check. A break the role
    checks in the files says so (``"evidence"`` in the result: their names)."""
    what = "the patched P2P source" if flavor == "p2p" else "the stock open kernel module of"
    blocked = blocked_kernels(base, kernels, skip)
    if not blocked:
        return None
    rng = kernel_range(base)
    hit = []
    for k in blocked:
        for brk in breaks_hitting(base, k, skip):
            if brk not in hit:
                hit.append(brk)
    why = "; ".join(
        "%s fail%s with `%s` (%s; fixed from NVIDIA %s)"
        % (", ".join(ks), "s" if len(ks) == 1 else "", brk["error"], brk["issue"],
           " and ".join(brk["fixed_in"]))
        for brk in hit
        for ks in [[k for k in blocked if brk in breaks_hitting(base, k, skip)]])
    where = " on %s" % host if host else ""
    msg = ("target kernel%s %s%s: %s %s is cut from NVIDIA %s, which builds on %s only: %s"
           % ("s" if len(blocked) > 1 else "", ", ".join(blocked), where, what, source, base,
              rng["text"], why))
    evidence = [b["name"] for b in hit if b["evidence"]]
    if evidence:
        msg += (" (by the known ranges; before any build or install the role checks the real "
                "source against the real kernel headers for %s, and a source that handles "
                "the new form passes there)" % ", ".join(evidence))
    if flavor == "p2p":
        fix = "use a branch cut from NVIDIA %s or newer" % " / ".join(_fixes(hit))
        if suggestions:
            fix += " (%s)" % ", ".join(suggestions)
        fix += ", pinned with `rigctl p2p pin URL BRANCH`; or " + _hold_fix(rng, blocked)
    else:
        fix = ("use a driver base of NVIDIA %s or newer (rig_driver_version, from a "
               "rig_driver_source that has it); or %s"
               % (" / ".join(_fixes(hit)), _hold_fix(rng, blocked)))
    return {"message": msg, "fix": fix, "blocked": blocked, "range": rng,
            "evidence": evidence}


# --- evidence: the real source against the real kernel headers --------------------------

_NAME_RE = re.compile(r"(?<![A-Za-z0-9_])%s\s*\(" % PCI_RESIZE)
# the conftest macro or test NVIDIA (and distributions patching it) name the new form by
_CONFTEST_RE = re.compile(r"pci_resize_resource_has_exclude_bars", re.I)
_TOKEN_BEFORE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*$")
_NOT_TYPES = {"return", "else", "do", "case", "sizeof"}


def _strip_comments(text):
    """C comments blanked out (line numbers kept)."""
    def blank(m):
        return re.sub(r"[^\n]", " ", m.group(0))
    return re.sub(r"/\*.*?\*/|//[^\n]*", blank, text, flags=re.S)


def _arguments(text, start):
    """The text between the parenthesis opened just before ``start`` and its match."""
    depth = 1
    for i in range(start, len(text)):
        c = text[i]
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return None


def _count(args):
    args = args.strip()
    if not args or args == "void":
        return 0
    depth, n = 0, 1
    for c in args:
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            n += 1
    return n


def occurrences(text):
    """Each ``pci_resize_resource(`` in C text: ``(kind, arguments, line)``, kind
    ``"decl"`` where a type name precedes it (``int __must_check pci_resize_resource(``),
    else ``"call"``. Comments are left out."""
    clean = _strip_comments(text)
    out = []
    for m in _NAME_RE.finditer(clean):
        args = _arguments(clean, m.end())
        if args is None:
            continue
        before = _TOKEN_BEFORE.search(clean[max(0, m.start() - 80):m.start()])
        kind = "decl" if before and before.group(1) not in _NOT_TYPES else "call"
        out.append((kind, _count(args), clean.count("\n", 0, m.start()) + 1))
    return out


def header_arity(text):
    """How many parameters the kernel header text (``include/linux/pci.h``) declares
    ``pci_resize_resource`` with (4: the exclude_bars form, 3: the old one), or None when it
    declares none."""
    found = [n for kind, n, _ in occurrences(text) if kind == "decl"]
    return max(found) if found else None


def scan_source(files):
    """What a module source does with ``pci_resize_resource``. ``files``: ``(path, text)``
    pairs (the tree's C sources and conftest.sh). Returns ``{"old_calls"`` (``path:line`` of
    three-argument calls), ``"new_calls"`` (four-argument ones), ``"conftest"``
    (``path:line`` naming the conftest of the new form), ``"handled"`` (a four-argument call
    or the conftest: builds on both forms), ``"needs_old"`` (three-argument calls and not
    handled)}."""
    old, new, conf = [], [], []
    for path, text in files:
        if PCI_RESIZE not in text.lower():
            continue
        for m in _CONFTEST_RE.finditer(text):
            conf.append("%s:%d" % (path, text.count("\n", 0, m.start()) + 1))
        for kind, n, line in occurrences(text):
            if kind != "call":
                continue
            if n == 3:
                old.append("%s:%d" % (path, line))
            elif n >= 4:
                new.append("%s:%d" % (path, line))
    handled = bool(new or conf)
    return {"old_calls": old, "new_calls": new, "conftest": conf, "handled": handled,
            "needs_old": bool(old) and not handled}


def wants_file(path):
    """Whether a source file can hold the call or its conftest (C, headers, conftest.sh)."""
    return path.endswith((".c", ".h")) or path.rsplit("/", 1)[-1] == "conftest.sh"


def _pci_break():
    return [b for b in BREAKS if b["name"] == PCI_RESIZE][0]


def evidence_blocked(base, headers, scan):
    """The target kernels the real source cannot build on. ``headers``: ``{kernel:
    {"arity": 4|3|None, "path": ...}}`` (:func:`header_arity` of each kernel's pci.h, None
    where none was found); ``scan``: :func:`scan_source` of the source, or None where it
    could not be read. The files decide where they were read; the table (the base below
    580.126.09, the kernel in the break's ranges) only fills in what could not be read."""
    brk = _pci_break()
    if scan is not None and not scan["needs_old"]:
        return []
    blocked = []
    for kernel, h in headers.items():
        arity = (h or {}).get("arity")
        if arity == 3:
            continue
        if arity == 4 and (scan is not None or _affected(brk, base)):
            blocked.append(kernel)
        elif arity is None and _affected(brk, base) and _hits(brk, kernel_version(kernel)):
            blocked.append(kernel)
    return blocked


def evidence_refusal(base, blocked, headers, scan, source, host=None, os_name=None,
                     flavor="p2p", changed=(), unread=None):
    """The refusal when the real source cannot build on the real headers, or None.

    ``source``: what is built, as named to the owner (``nvidia-open-kernel-dkms
    550.163.01-2 (read from its package, not installed)``); ``changed``: what this run
    changed before the check (named honestly); ``unread``: why the source could not be
    read (``scan`` is None)."""
    if not blocked:
        return None
    brk = _pci_break()
    rng = kernel_range(base)
    where = " on %s" % host if host else ""
    ranges = ", ".join(_span(lo, hi) if hi else "%s and newer" % _fmt(lo)
                       for lo, hi in brk["kernels"])
    seen = ["%s declares it at %s" % (k, headers[k]["path"]) for k in blocked
            if (headers.get(k) or {}).get("arity") == 4]
    unseen = [k for k in blocked if (headers.get(k) or {}).get("arity") != 4]
    if unseen:
        seen.append("%s: no include/linux/pci.h found, so the known ranges (Linux %s) "
                    "decide" % (", ".join(unseen), ranges))
    if scan is not None:
        src = ("%s (NVIDIA %s) calls it with three (%s) and has no conftest for the new form"
               % (source, base, ", ".join(scan["old_calls"][:3])))
    else:
        src = ("%s (NVIDIA %s, whose source could not be read: %s) is cut from a base below "
               "NVIDIA %s, where the fix shipped" % (source, base, unread or "unknown",
                                                      brk["fixed_in"][0]))
    msg = ("target kernel%s %s%s: the kernel headers declare pci_resize_resource() with its "
           "fourth argument, exclude_bars (%s), but %s, so its build would fail with `%s` "
           "(%s; Linux %s; fixed from NVIDIA %s)"
           % ("s" if len(blocked) > 1 else "", ", ".join(blocked), where, "; ".join(seen),
              src, brk["error"].split(" (")[0], brk["issue"], ranges,
              " and ".join(brk["fixed_in"])))
    if not _affected(brk, base):
        msg += ("; no fact is recorded for NVIDIA %s's branch (the known fix is in the 580 "
                "branch), so its own source decided" % base)
    newer = "NVIDIA %s or newer" % " / ".join(brk["fixed_in"])
    if flavor == "p2p":
        fix = ("use a P2P branch cut from %s (rig_driver_version set to its base), pinned "
               "with `rigctl p2p pin URL BRANCH`" % newer)
    else:
        fix = ("use a driver base of %s: rig_driver_version set to it, from a "
               "rig_driver_source that has it (cuda-repo or mirror)" % newer)
    below = min(lo for lo, _ in brk["kernels"])
    fix += ("; or keep the rig on a kernel below %s (its headers have the three-argument "
            "form): remove %s (apt-get purge %s), boot the older kernel and set "
            "rig_kernel_hold: true so upgrades do not bring a newer kernel back"
            % (_fmt(below), ", ".join(blocked),
               " ".join("linux-image-%s linux-headers-%s" % (k, k) for k in blocked)))
    if os_name and re.match(r"(?i)^debian\s*13\b", os_name):
        fix += ("; or install Debian 12 (bookworm: kernel 6.1, whose headers have the "
                "three-argument form) on this rig")
    done = ("Refused before any driver package or module was installed or built. Changed "
            "by this run before the check: %s. The target kernels' headers were already "
            "installed before this check (the build needs them) and stay"
            % ("; ".join(changed) if changed else "nothing"))
    return {"message": msg, "fix": fix, "blocked": blocked, "done": done, "range": rng}


# --- reading the files (on the rig) ------------------------------------------------------


def header_candidates(kernel, root="/"):
    """Where a kernel's ``include/linux/pci.h`` can be, most likely first: the
    /lib/modules/K/source and build links, /usr/src/linux-headers-K, and Debian's split
    packages (``linux-headers-6.12.117+deb13-common`` next to ``...-amd64``)."""
    rel = "include/linux/pci.h"
    out = [os.path.join(root, "lib/modules", kernel, d, rel) for d in ("source", "build")]
    out.append(os.path.join(root, "usr/src", "linux-headers-%s" % kernel, rel))
    common = re.sub(r"-[a-z][a-z0-9-]*$", "-common", kernel)
    if common != kernel:
        out.append(os.path.join(root, "usr/src", "linux-headers-%s" % common, rel))
    return out


def read_headers(kernels, root="/"):
    """``{kernel: {"arity", "path"}}`` for each target kernel (arity None, path None where
    no pci.h was found or it declares no pci_resize_resource)."""
    out = {}
    for kernel in kernels or []:
        found = {"arity": None, "path": None}
        for path in header_candidates(kernel, root):
            try:
                with open(path, encoding="utf-8", errors="replace") as fh:
                    text = fh.read()
            except OSError:
                continue
            found = {"arity": header_arity(text), "path": path}
            for kind, _n, line in occurrences(text):
                if kind == "decl":
                    found["path"] = "%s:%d" % (path, line)
            break
        out[kernel] = found
    return out


def tree_files(root):
    """``(path, text)`` of a module tree's C sources and conftest.sh that mention
    pci_resize_resource (kernel-open/ only where the tree has it: what DKMS builds)."""
    top = os.path.join(root, "kernel-open") if os.path.isdir(
        os.path.join(root, "kernel-open")) else root
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not wants_file(path) or os.path.islink(path):
                continue
            try:
                with open(path, encoding="utf-8", errors="replace") as fh:
                    text = fh.read()
            except OSError:
                continue
            if PCI_RESIZE in text.lower():
                yield os.path.relpath(path, root), text


def tar_files(fileobj):
    """``(path, text)`` of the C sources and conftest.sh under usr/src in a package's data
    tarball (``dpkg-deb --fsys-tarfile`` output) that mention pci_resize_resource."""
    with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
        for member in tar:
            name = member.name.lstrip("./")
            if not member.isfile() or not name.startswith("usr/src/") or not wants_file(name):
                continue
            fh = tar.extractfile(member)
            text = fh.read().decode("utf-8", "replace") if fh else ""
            if PCI_RESIZE in text.lower():
                yield "/" + name, text


# --- holding the kernel (rig_kernel_hold) ----------------------------------------------


def kernel_flavour(release):
    """The flavour of a distribution kernel release: ``6.1.0-27-amd64`` -> ``amd64``,
    ``6.12.38+deb13-amd64`` -> ``amd64``, ``6.8.0-45-generic`` -> ``generic``,
    ``6.1.0-27-rt-amd64`` -> ``rt-amd64``; None without one (``6.15.2``)."""
    m = re.match(r"^\d+\.\d+(?:\.\d+)?[^-]*(?:-\d+)?-([a-z][a-z0-9-]*)$", str(release or ""))
    return m.group(1) if m else None


def meta_packages(flavour):
    """The meta-packages that pull in new kernels of a flavour (Debian: linux-image-F,
    linux-headers-F; Ubuntu also linux-F)."""
    return ["linux-image-%s" % flavour, "linux-headers-%s" % flavour, "linux-%s" % flavour]


def installed_metas(running, targets, installed):
    """The installed meta-packages ``rig_kernel_hold`` holds: those of the running
    kernel's flavour, or, where the running kernel is not installed on the rig (a lab
    container runs its host's kernel), of the target kernels' flavours."""
    kernels = [running] if running and running in (targets or []) else list(targets or [])
    have = set(installed or ())
    out = []
    for k in kernels:
        flavour = kernel_flavour(k)
        for name in meta_packages(flavour) if flavour else []:
            if name in have and name not in out:
                out.append(name)
    return out
