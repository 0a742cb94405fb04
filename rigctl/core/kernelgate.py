"""The kernel gate: which Linux kernels the NVIDIA base of a patched P2P branch builds on.

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

Bases outside these ranges have no *known* limit (reported as such, never as "builds
everywhere"). :func:`refusal` is the one message the nvidia_driver role
(``nvidia_p2p_gate``), ``rigctl inventory check`` and ``rigctl p2p`` give.

Stdlib only, Python 3.9 syntax: shipped to managed hosts as module_utils.
"""

from __future__ import annotations

import re

# One entry per known break, oldest kernel first. ``affected``: half-open base ranges
# [from, to) of version tuples.
BREAKS = (
    {
        "kernel": (6, 13),
        "error": "ld: cannot find ./nvidia/nv-kernel.o",
        "issue": "NVIDIA open-gpu-kernel-modules #747",
        "fixed_in": ("550.142", "570.86.15"),
        "affected": (((0,), (550, 142)), ((551,), (570, 86, 15))),
    },
    {
        "kernel": (6, 15),
        "error": "fatal error: os-interface.h: No such file or directory (the kernel's "
                 "build system dropped EXTRA_CFLAGS)",
        "issue": "NVIDIA open-gpu-kernel-modules #866",
        "fixed_in": ("570.153.02", "575.57.08"),
        "affected": (((570,), (570, 153, 2)), ((575,), (575, 57, 8))),
    },
)


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
    return ".".join(str(p) for p in version)


def _affected(brk, base):
    b = version_tuple(base)
    return any(lo <= b < hi for lo, hi in brk["affected"])


def kernel_range(base):
    """The kernels a base builds on, as far as known: ``{"base", "below"`` (the first
    kernel it does not build on, ``"6.15"``, or None: no known limit), ``"text"`` (one
    line: ``Linux below 6.15``), ``"error"``, ``"issue"``, ``"fixed_in"``}."""
    for brk in BREAKS:
        if _affected(brk, base):
            below = _fmt(brk["kernel"])
            return {
                "base": base,
                "below": below,
                "text": "Linux below %s" % below,
                "error": brk["error"],
                "issue": brk["issue"],
                "fixed_in": list(brk["fixed_in"]),
            }
    return {"base": base, "below": None, "text": "no known kernel limit", "error": None,
            "issue": None, "fixed_in": []}


def builds_on(base, kernel):
    """False when ``base`` is known not to build on ``kernel`` (a release string), else
    True (also for an unparsable release: nothing is known against it)."""
    kv = kernel_version(kernel)
    if kv is None:
        return True
    return not any(_affected(brk, base) and kv[:2] >= brk["kernel"] for brk in BREAKS)


def blocked_kernels(base, kernels):
    """The target kernels ``base`` cannot build on, in the order given."""
    return [k for k in kernels or [] if not builds_on(base, k)]


def first_fixed_bases(kernel):
    """The NVIDIA releases from which a base builds on ``kernel`` as far as known (the
    fixes of every break at or below it), e.g. ``["570.153.02", "575.57.08"]`` for 6.15."""
    kv = kernel_version(kernel) or (0, 0, 0)
    needed = [brk for brk in BREAKS if kv[:2] >= brk["kernel"]]
    return list(needed[-1]["fixed_in"]) if needed else []


def refusal(base, kernels, source, host=None, suggestions=()):
    """The refusal when a target kernel is one ``base`` cannot build on, or None.

    ``source``: how the branch is named to the rig owner (``catalog entry
    aikitoria-570.86.16 (branch 570.86.16-p2p)``); ``suggestions``: branch names
    (or catalog entries) that build there, offered in the fix."""
    blocked = blocked_kernels(base, kernels)
    if not blocked:
        return None
    rng = kernel_range(base)
    newest = max(blocked, key=lambda k: kernel_version(k) or (0,))
    fixed = first_fixed_bases(newest)
    where = " on %s" % host if host else ""
    msg = ("target kernel%s %s%s: the patched P2P source %s is cut from NVIDIA %s, which "
           "builds on %s only (newer kernels fail with `%s`, %s; fixed from NVIDIA %s)"
           % ("s" if len(blocked) > 1 else "", ", ".join(blocked), where, source, base,
              rng["text"], rng["error"], rng["issue"], " and ".join(rng["fixed_in"])))
    fix = ("use a branch cut from NVIDIA %s or newer" % " / ".join(fixed))
    if suggestions:
        fix += " (%s)" % ", ".join(suggestions)
    fix += (", pinned with `rigctl p2p pin URL BRANCH`; or keep the rig on a kernel below "
            "%s: remove %s (apt-get purge %s) and set rig_kernel_hold: true so upgrades do "
            "not bring a newer kernel back"
            % (rng["below"], ", ".join(blocked),
               " ".join("linux-image-%s linux-headers-%s" % (k, k) for k in blocked)))
    return {"message": msg, "fix": fix, "blocked": blocked, "range": rng}


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
