"""Faults: what makes a simulated rig unhealthy, from the profile (``"faults": [...]``) and
added at run time (``rigctl-simgpu fault add ...``, kept in the state directory, so a reboot
drops them like it drops a real kernel log).

A fault is an object with a ``kind`` and the fields of that kind (GPUs by index)::

    {"kind": "xid", "gpu": 2, "code": 79}                  Xid lines in the kernel log
        optional: count (1), at_s (boot + seconds of the first), interval_s (60),
                  pid, process (python3), message (the driver's text for the code)
    {"kind": "aer", "gpu": 2, "errors": {"RxErr": 40, "BadTLP": 3}}
        PCIe AER errors counted in sysfs (aer_dev_correctable|nonfatal|fatal) and logged
        optional: device ("gpu", "root_port", "switch_downstream", "switch_upstream": the
                  device above the GPU that saw them), severity ("correctable", "nonfatal",
                  "fatal"; correctable), log_records (records in the kernel log; min(count, 8)),
                  at_s
    {"kind": "nvlink_down", "gpu": 0, "links": [2, 3]}     NVLink links of the GPU's bridge
        inactive (all when ``links`` is left out: the pair falls back to PCIe)
    {"kind": "nvlink_slow", "gpu": 0, "speed_gbs": 7.031, "links": [0]}
    {"kind": "throttle", "gpu": 1, "reason": "hw_power_brake_slowdown"}
        reasons: hw_slowdown, hw_thermal_slowdown, hw_power_brake_slowdown,
                 sw_thermal_slowdown, sw_power_cap; under_load (true): only while loaded
    {"kind": "p2p_broken", "gpu": 0, "mode": "mismatch"}
        topo -p2p still says OK; the probe's copies to and from the GPU's peers go wrong:
        mode mismatch (copies run, data comes back wrong), enable_fails
        (cudaDeviceEnablePeerAccess fails: the pairs run staged), slow (peer access runs
        slower than copies staged through host memory)
    {"kind": "slow_pair", "gpus": [1, 2], "fraction": 0.25}  that pair's bandwidth scaled
"""

import json
import time

from .common import RC_NO_PERMISSION, SimError, usage_error

# field -> type of its value (the CLI parses `--field value` by it)
FIELD_TYPES = {
    "gpu": "int", "gpus": "intlist", "code": "int", "count": "int", "at_s": "float",
    "interval_s": "float", "pid": "int", "process": "str", "message": "str", "device": "str",
    "severity": "str", "errors": "errors", "log_records": "int", "links": "intlist",
    "speed_gbs": "float", "reason": "str", "under_load": "bool", "mode": "str",
    "fraction": "float",
}

# kind -> (required fields, optional fields)
KINDS = {
    "xid": (("gpu", "code"), ("count", "at_s", "interval_s", "pid", "process", "message")),
    "aer": (("gpu", "errors"), ("device", "severity", "log_records", "at_s")),
    "nvlink_down": (("gpu",), ("links",)),
    "nvlink_slow": (("gpu", "speed_gbs"), ("links",)),
    "throttle": (("gpu", "reason"), ("under_load",)),
    "p2p_broken": (("gpu",), ("mode",)),
    "slow_pair": (("gpus",), ("fraction",)),
}

AER_DEVICES = ("gpu", "root_port", "switch_downstream", "switch_upstream")
AER_SEVERITIES = ("correctable", "nonfatal", "fatal")
# The names the kernel prints (drivers/pci/pcie/aer.c), by bit, for each counter file.
AER_CORRECTABLE = (
    (0, "RxErr"), (6, "BadTLP"), (7, "BadDLLP"), (8, "Rollover"), (12, "Timeout"),
    (13, "NonFatalErr"), (14, "CorrIntErr"), (15, "HeaderOF"),
)
AER_UNCORRECTABLE = (
    (0, "Undefined"), (4, "DLP"), (5, "SDES"), (12, "TLP"), (13, "FCP"), (14, "CmpltTO"),
    (15, "CmpltAbrt"), (16, "UnxCmplt"), (17, "RxOF"), (18, "MalfTLP"), (19, "ECRC"),
    (20, "UnsupReq"), (21, "ACSViol"), (22, "UncorrIntErr"), (23, "BlockedTLP"),
    (24, "AtomicOpBlocked"), (25, "TLPBlockedErr"), (26, "PoisonTLPBlocked"),
)
THROTTLE_REASONS = (
    "hw_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown", "sw_thermal_slowdown",
    "sw_power_cap",
)
P2P_MODES = ("mismatch", "enable_fails", "slow")


def aer_names(severity):
    return [name for _, name in (AER_CORRECTABLE if severity == "correctable" else AER_UNCORRECTABLE)]


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _type_ok(kind, value):
    if kind == "int":
        return _is_int(value)
    if kind == "float":
        return _is_number(value)
    if kind == "str":
        return isinstance(value, str) and value != ""
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "intlist":
        return isinstance(value, list) and all(_is_int(v) for v in value)
    if kind == "errors":
        return isinstance(value, dict) and value and all(
            isinstance(k, str) and _is_int(v) and v > 0 for k, v in value.items()
        )
    return False


def check_fault(fault, gpu_count):
    """What is wrong with a fault object (one sentence), or None when it is valid."""
    if not isinstance(fault, dict):
        return "must be an object with a 'kind'"
    kind = fault.get("kind")
    if kind not in KINDS:
        return "kind must be one of %s, not %r" % (", ".join(sorted(KINDS)), kind)
    required, optional = KINDS[kind]
    for name in required:
        if name not in fault:
            return "a %s fault needs %r" % (kind, name)
    for name, value in fault.items():
        if name in ("kind", "id", "added"):
            continue
        if name not in required and name not in optional:
            return "%r is not a field of a %s fault (fields: %s)" % (
                name, kind, ", ".join(required + optional))
        if not _type_ok(FIELD_TYPES[name], value):
            return "%r of a %s fault must be of type %s, not %r" % (name, kind, FIELD_TYPES[name], value)
    for name in ("gpu",):
        if name in fault and not 0 <= fault[name] < gpu_count:
            return "gpu %d does not exist (the rig has GPUs 0..%d)" % (fault[name], gpu_count - 1)
    return _check_kind(kind, fault, gpu_count)


def _check_kind(kind, fault, gpu_count):
    if kind == "xid" and not 1 <= fault["code"] <= 999:
        return "code must be an Xid number (1..999), not %d" % fault["code"]
    if kind == "aer":
        severity = fault.get("severity", "correctable")
        if severity not in AER_SEVERITIES:
            return "severity must be one of %s, not %r" % (", ".join(AER_SEVERITIES), severity)
        if fault.get("device", "gpu") not in AER_DEVICES:
            return "device must be one of %s, not %r" % (", ".join(AER_DEVICES), fault.get("device"))
        names = aer_names(severity)
        unknown = [k for k in fault["errors"] if k not in names]
        if unknown:
            return "%s is not a %s AER error name (names: %s)" % (unknown[0], severity, ", ".join(names))
    if kind == "throttle" and fault["reason"] not in THROTTLE_REASONS:
        return "reason must be one of %s, not %r" % (", ".join(THROTTLE_REASONS), fault["reason"])
    if kind == "p2p_broken" and fault.get("mode", "mismatch") not in P2P_MODES:
        return "mode must be one of %s, not %r" % (", ".join(P2P_MODES), fault.get("mode"))
    if kind == "slow_pair":
        gpus = fault["gpus"]
        if len(gpus) != 2 or gpus[0] == gpus[1] or not all(0 <= g < gpu_count for g in gpus):
            return "gpus must be two different GPU indexes of the rig (0..%d), not %r" % (gpu_count - 1, gpus)
        if not 0 < fault.get("fraction", 0.25) <= 1:
            return "fraction must be > 0 and <= 1"
    if kind in ("nvlink_down", "nvlink_slow"):
        if any(not 0 <= link < 18 for link in fault.get("links", [])):
            return "links must be NVLink link numbers (0..17)"
        if kind == "nvlink_slow" and not 0 < fault["speed_gbs"] < 100:
            return "speed_gbs must be a link speed in GB/s (0..100)"
    return None


def all_faults(profile, state):
    """The profile's faults, then the ones added at run time (in the order added)."""
    runtime = state.get("faults") if isinstance(state.get("faults"), list) else []
    return list(profile.get("faults") or []) + [f for f in runtime if isinstance(f, dict)]


def of_kind(profile, state, kind, gpu=None):
    return [
        f for f in all_faults(profile, state)
        if f.get("kind") == kind and (gpu is None or f.get("gpu") == gpu)
    ]


# --- `rigctl-simgpu fault ...` ----------------------------------------------------------

FAULT_USAGE = """usage: rigctl-simgpu fault add KIND --FIELD VALUE ...   (root)
       rigctl-simgpu fault list [--json]
       rigctl-simgpu fault clear [ID|all]                (root)
kinds and fields: %s
values: lists as 0,1; errors as RxErr=40,BadTLP=3; booleans as true/false.
Faults added here live in the state directory: a reboot (or `rigctl-simgpu reset`) drops them.
""" % "; ".join(
    "%s (%s)" % (k, ", ".join(list(r) + ["[%s]" % o for o in opt])) for k, (r, opt) in sorted(KINDS.items())
)


def parse_value(kind, text):
    """A CLI value by its field type; ValueError with the reason."""
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "bool":
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError("not a boolean: %r" % text)
    if kind == "intlist":
        return [int(v) for v in text.split(",") if v.strip()]
    if kind == "errors":
        out = {}
        for item in [v.strip() for v in text.split(",") if v.strip()]:
            name, sep, count = item.partition("=")
            if not sep:
                raise ValueError("errors are NAME=COUNT, not %r" % item)
            out[name.strip()] = int(count)
        return out
    return text


def parse_fault_args(args):
    """``KIND --field value ...`` -> a fault object (not yet checked)."""
    if not args:
        raise usage_error("fault add needs a KIND\n" + FAULT_USAGE)
    fault = {"kind": args[0].replace("-", "_")}
    rest = args[1:]
    i = 0
    while i < len(rest):
        arg = rest[i]
        if not arg.startswith("--"):
            raise usage_error("expected --FIELD VALUE, got %r\n%s" % (arg, FAULT_USAGE))
        name, sep, value = arg[2:].partition("=")
        name = name.replace("-", "_")
        if not sep:
            i += 1
            if i >= len(rest):
                raise usage_error("--%s needs a value" % name)
            value = rest[i]
        if name not in FIELD_TYPES:
            raise usage_error("unknown field --%s\n%s" % (name.replace("_", "-"), FAULT_USAGE))
        try:
            fault[name] = parse_value(FIELD_TYPES[name], value)
        except ValueError as exc:
            raise usage_error("--%s: %s" % (name.replace("_", "-"), exc)) from None
        i += 1
    return fault


def cmd_fault(profile, argv, is_root, update_state, load_state, on_change):
    """``fault add|list|clear``. ``on_change(profile, state)`` runs after a change (it
    rewrites the AER counters of the simulated sysfs tree)."""
    if not argv or argv[0] not in ("add", "list", "clear"):
        raise usage_error("fault: say add, list or clear\n" + FAULT_USAGE)
    action, args = argv[0], argv[1:]
    if action == "list":
        return _fault_list(profile, load_state(), args)
    if not is_root():
        raise SimError(RC_NO_PERMISSION, stderr="rigctl-simgpu fault %s: must run as root\n" % action)
    if action == "add":
        fault = parse_fault_args(args)
        problem = check_fault(fault, len(profile["gpus"]))
        if problem:
            raise usage_error("fault add: %s" % problem)
        box = {}

        def add(state):
            runtime = state.setdefault("faults", [])
            fault["id"] = max([f.get("id", 0) for f in runtime] + [0]) + 1
            fault["added"] = time.time()
            runtime.append(fault)
            box["state"] = state
            return True

        update_state(add)
        on_change(profile, box["state"])
        return "fault %d added: %s\n" % (fault["id"], describe(fault))
    return _fault_clear(profile, args, update_state, on_change)


def _fault_clear(profile, args, update_state, on_change):
    if len(args) > 1:
        raise usage_error("fault clear takes one ID or 'all'")
    which = args[0] if args else "all"
    if which != "all" and not which.isdigit():
        raise usage_error("fault clear: %r is not a fault id (see `rigctl-simgpu fault list`)" % which)
    box = {"removed": 0}

    def clear(state):
        runtime = state.get("faults") or []
        keep = [f for f in runtime if which != "all" and str(f.get("id")) != which]
        box["removed"] = len(runtime) - len(keep)
        state["faults"] = keep
        box["state"] = state
        return box["removed"] > 0

    update_state(clear)
    if which != "all" and not box["removed"]:
        raise usage_error("fault clear: no run-time fault %s (profile faults cannot be cleared)" % which)
    if box["removed"]:
        on_change(profile, box["state"])
    return "%d run-time fault(s) cleared; the profile's %d fault(s) stay\n" % (
        box["removed"], len(profile.get("faults") or []))


def _fault_list(profile, state, args):
    if args not in ([], ["--json"]):
        raise usage_error("fault list takes only --json")
    rows = [dict(f, source="profile") for f in profile.get("faults") or []]
    rows += [dict(f, source="runtime") for f in state.get("faults") or [] if isinstance(f, dict)]
    if args == ["--json"]:
        return json.dumps(rows, indent=2, sort_keys=True) + "\n"
    if not rows:
        return "no faults (profile %s)\n" % profile.get("name")
    return "".join(
        "%-8s %-4s %s\n" % (row["source"], row.get("id", "-"), describe(row)) for row in rows
    )


def describe(fault):
    fields = ", ".join(
        "%s=%s" % (k, json.dumps(v, sort_keys=True)) for k, v in sorted(fault.items())
        if k not in ("kind", "id", "added", "source")
    )
    return "%s %s" % (fault.get("kind"), fields)
