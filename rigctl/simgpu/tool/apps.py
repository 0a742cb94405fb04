"""Compute processes on the simulated GPUs: ``rigctl-simgpu apps add|clear|list`` puts them
into the state directory, ``nvidia-smi --query-compute-apps=FIELDS --format=csv`` lists
them in the real CSV format (and the summary table shows them)."""

import json
import time

from .common import RC_INVALID_ARGUMENT, RC_NO_PERMISSION, SimError, invalid_args, usage_error
from .profile import select_gpus

# field -> (unit or None, function(gpu, app) -> printed value); aliases as the real tool
APP_FIELDS = {
    "timestamp": (None, lambda g, a: time.strftime("%Y/%m/%d %H:%M:%S.000")),
    "gpu_name": (None, lambda g, a: g["name"]),
    "gpu_bus_id": (None, lambda g, a: g["bus_id"]),
    "gpu_serial": (None, lambda g, a: g["serial"] or "[N/A]"),
    "gpu_uuid": (None, lambda g, a: g["uuid"]),
    "pid": (None, lambda g, a: str(a["pid"])),
    "process_name": (None, lambda g, a: a["name"]),
    "used_gpu_memory": ("MiB", lambda g, a: str(a["used_mib"])),
}
APP_FIELDS["name"] = APP_FIELDS["process_name"]
APP_FIELDS["used_memory"] = APP_FIELDS["used_gpu_memory"]

APPS_USAGE = """usage: rigctl-simgpu apps add --gpu ID --pid N [--name NAME] [--used-mib N]   (root)
       rigctl-simgpu apps clear [--gpu ID] [--pid N]                            (root)
       rigctl-simgpu apps list [--json]
ID: index, PCI bus id or UUID. Processes live in the state directory (gone at a reboot).
"""


def listed_apps(profile, state):
    """(gpu, app) for every recorded process, in GPU order."""
    apps = [a for a in state.get("apps") or [] if isinstance(a, dict)]
    return [(gpu, app) for gpu in profile["gpus"] for app in apps if app.get("bus_id") == gpu["bus_id"]]


def cmd_query_compute_apps(profile, state, spec, fmt, gpu_ids):
    if fmt is None:
        raise SimError(
            RC_INVALID_ARGUMENT,
            stdout="'--format' switch is missing. Please run 'nvidia-smi -h' for help.\n",
        )
    options = [o.strip().lower() for o in fmt.split(",") if o.strip()]
    if "csv" not in options or any(o not in ("csv", "noheader", "nounits") for o in options):
        raise invalid_args()
    names = [f.strip() for f in spec.split(",") if f.strip()]
    if not names:
        raise invalid_args()
    for name in names:
        if name not in APP_FIELDS:
            raise SimError(RC_INVALID_ARGUMENT, stdout='Field "%s" is not a valid field to query.\n' % name)
    wanted = {g["bus_id"] for g in select_gpus(profile, gpu_ids)}
    lines = []
    if "noheader" not in options:
        lines.append(", ".join(
            "%s [%s]" % (n, APP_FIELDS[n][0]) if APP_FIELDS[n][0] else n for n in names))
    for gpu, app in listed_apps(profile, state):
        if gpu["bus_id"] not in wanted:
            continue
        cells = []
        for name in names:
            unit, getter = APP_FIELDS[name]
            value = getter(gpu, app)
            cells.append("%s %s" % (value, unit) if unit and "nounits" not in options else value)
        lines.append(", ".join(cells))
    return "".join(line + "\n" for line in lines)


def _options(args, allowed):
    opts = {}
    i = 0
    while i < len(args):
        name = args[i]
        if name not in allowed:
            raise usage_error("apps: unknown option %r\n%s" % (name, APPS_USAGE))
        if allowed[name] is bool:
            opts[name] = True
            i += 1
            continue
        if i + 1 >= len(args):
            raise usage_error("apps: %s needs a value" % name)
        try:
            opts[name] = allowed[name](args[i + 1])
        except ValueError:
            raise usage_error("apps: %s %r is not valid" % (name, args[i + 1])) from None
        i += 2
    return opts


def cmd_apps(profile, argv, is_root, update_state, load_state):
    if not argv or argv[0] not in ("add", "clear", "list"):
        raise usage_error("apps: say add, clear or list\n" + APPS_USAGE)
    action, args = argv[0], argv[1:]
    if action == "list":
        opts = _options(args, {"--json": bool})
        rows = [dict(app, gpu=gpu["index"]) for gpu, app in listed_apps(profile, load_state())]
        if opts.get("--json"):
            return json.dumps(rows, indent=2, sort_keys=True) + "\n"
        return "".join("GPU %d pid %d %s %d MiB\n" % (r["gpu"], r["pid"], r["name"], r["used_mib"])
                       for r in rows) or "no compute processes\n"
    if not is_root():
        raise SimError(RC_NO_PERMISSION, stderr="rigctl-simgpu apps %s: must run as root\n" % action)
    if action == "add":
        opts = _options(args, {"--gpu": str, "--pid": int, "--name": str, "--used-mib": int})
        if "--gpu" not in opts or "--pid" not in opts:
            raise usage_error("apps add needs --gpu and --pid\n" + APPS_USAGE)
        gpu = select_gpus(profile, opts["--gpu"])[0]
        app = {"bus_id": gpu["bus_id"], "pid": opts["--pid"], "name": opts.get("--name", "python3"),
               "used_mib": opts.get("--used-mib", 1024)}

        def add(state):
            state["apps"] = [a for a in state.get("apps") or []
                             if not (a.get("bus_id") == app["bus_id"] and a.get("pid") == app["pid"])]
            state["apps"].append(app)
            return True

        update_state(add)
        return "compute process %d (%s, %d MiB) added on GPU %d\n" % (
            app["pid"], app["name"], app["used_mib"], gpu["index"])
    opts = _options(args, {"--gpu": str, "--pid": int})
    bus = select_gpus(profile, opts["--gpu"])[0]["bus_id"] if "--gpu" in opts else None
    box = {}

    def clear(state):
        apps = state.get("apps") or []
        keep = [a for a in apps if not ((bus is None or a.get("bus_id") == bus)
                                        and opts.get("--pid", a.get("pid")) == a.get("pid"))]
        box["removed"] = len(apps) - len(keep)
        state["apps"] = keep
        return box["removed"] > 0

    update_state(clear)
    return "%d compute process(es) cleared\n" % box["removed"]
