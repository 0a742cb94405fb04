"""``rig_p2p_registry_dwords``: NVIDIA registry keys for the patched P2P module, checked
against the NVIDIA base they are read by, and written as ``NVreg_RegistryDwords``.

The P2P patch hard-codes its defaults, so no key is needed; a key that is set overrides
them. ``RMForceP2PType`` changed meaning at 575: up to 570, 1 = mailbox, 2 = BAR1,
3 = NVLink; from 575, 1 = PCIe, 2 = NVLink, 3 = C2C, and the PCIe path is chosen with
``RMPcieP2PType`` (new in 575: 0 mailbox, 1 BAR1, 2 auto). A value written for one side
of 575 means something else on the other, so every known key is checked against the base.

Stdlib only, Python 3.9 syntax: shipped to managed hosts as module_utils.
"""

from __future__ import annotations

import re

from .kernelgate import version_tuple

MEANING_CHANGED_AT = (575,)
_KEY_RE = re.compile(r"^RM[A-Za-z0-9_]+$")
MAX_DWORD = 0xFFFFFFFF

# key -> (first base it exists in or None, {value: meaning} before 575, from 575)
KNOWN = {
    "RMForceP2PType": (None, {0: "default", 1: "mailbox", 2: "BAR1", 3: "NVLink"},
                       {0: "default", 1: "PCIe", 2: "NVLink", 3: "C2C"}),
    "RMPcieP2PType": ((575,), None, {0: "mailbox", 1: "BAR1", 2: "auto"}),
}


def _new(base):
    return version_tuple(base) >= MEANING_CHANGED_AT


def meaning(key, value, base):
    """What ``key=value`` means for ``base``, or None when not known."""
    spec = KNOWN.get(key)
    if not spec:
        return None
    table = spec[2] if _new(base) else spec[1]
    return (table or {}).get(value)


def problems(base, dwords):
    """Problems of ``rig_p2p_registry_dwords`` for the NVIDIA base ``base``: a list of
    ``{"key", "severity" (error|warning), "message", "fix"}``."""
    out = []
    if dwords is None:
        return out
    if not isinstance(dwords, dict):
        return [{"key": None, "severity": "error", "message": "expected a mapping of "
                 "registry key names to numbers", "fix": "write it like {RMForceP2PType: 1}"}]
    new = _new(base)
    side = "from 575 on" if new else "before 575"
    for key, value in dwords.items():
        if not isinstance(key, str) or not _KEY_RE.match(key):
            out.append({"key": key, "severity": "error",
                        "message": "%r is not an NVIDIA registry key name (RM...)" % (key,),
                        "fix": "use the key's exact name, like RMForceP2PType"})
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DWORD:
            out.append({"key": key, "severity": "error",
                        "message": "%s must be a number from 0 to %d, got %r" % (key, MAX_DWORD,
                                                                                   value),
                        "fix": "write it without quotes, like %s: 1" % key})
            continue
        spec = KNOWN.get(key)
        if not spec:
            continue
        first, _old, _new_table = spec
        if first and version_tuple(base) < first:
            out.append({"key": key, "severity": "error",
                        "message": "%s does not exist before NVIDIA 575 (the base is %s)"
                                   % (key, base),
                        "fix": "remove it; before 575, RMForceP2PType=2 selects BAR1 P2P"})
            continue
        table = spec[2] if new else spec[1]
        if value not in table:
            out.append({"key": key, "severity": "error",
                        "message": "%s=%d is not a known value %s (base %s): %s"
                                   % (key, value, side, base, ", ".join(
                                       "%d %s" % kv for kv in sorted(table.items()))),
                        "fix": "use one of those values, or remove the key (the patch's "
                               "defaults need none)"})
            continue
        other = (spec[1] if new else spec[2]) or {}
        # The values a setting written for the other side of 575 turns into something
        # unintended: before 575, 1 (PCIe from 575 on) is the mailbox consumer cards lack;
        # from 575, 2 (BAR1 before) is NVLink, and 1 alone leaves the PCIe path to auto.
        surprising = (value == 1 and (not new or "RMPcieP2PType" not in dwords)) or \
            (new and value == 2)
        if key == "RMForceP2PType" and surprising and value in other \
                and other[value] != table[value]:
            out.append({"key": key, "severity": "warning",
                        "message": "%s=%d means %s on this base (%s, %s); it meant %s %s"
                                   % (key, value, table[value], base, side, other[value],
                                      "before 575" if new else "from 575 on"),
                        "fix": ("for BAR1 P2P from 575 on write RMForceP2PType: 1 with "
                                "RMPcieP2PType: 1" if new else
                                "for BAR1 P2P before 575 write RMForceP2PType: 2")
                        + "; or remove the key (the patch's defaults need none)"})
    return out


def modprobe_options(dwords):
    """The ``options nvidia ...`` line for ``NVreg_RegistryDwords`` (keys sorted), or None
    when there is none."""
    if not dwords:
        return None
    value = ";".join("%s=%d" % (k, dwords[k]) for k in sorted(dwords))
    return 'options nvidia NVreg_RegistryDwords="%s"' % value
