"""Structured GPU facts per rig, and the power-limit, clock-lock and compute-mode plans
built on them.

Runs ON the managed host (shipped as module_utils inside the ``gpu_facts``,
``gpu_settings`` and ``hw_checks`` modules) and in the verification suites. Standard
library only, Python 3.9 syntax. The merging and planning functions are pure (text or
parsed data in, plain dicts out); :func:`gather` runs the tools.

Sources, per GPU:

- sysfs (``/sys/bus/pci/devices``, or the simulated tree on a lab rig): bus id, device id,
  the card's own maximum link (``max_link_*``: its LnkCap) and the current link;
- ``nvidia-smi --query-gpu`` CSV (when a driver answers): index, uuid, name, VRAM, power
  limits (current/default/min/max), persistence mode, link gen/width current and max,
  compute mode, maximum SM/graphics clocks;
- locked clocks: read from the GPU layer where it can say (a lab rig: the simulated GPU
  layer's ``rigctl-simgpu status --json``; ``locked_source: gpu``). nvidia-smi's query
  fields cannot read locked clocks back on every real driver, so there the clock locks
  rigctl applied since boot, ``/run/rigctl/gpu-clocks.json`` (written by the
  ``gpu_settings`` module and the boot script), are what is compared
  (``locked_source: record``);
- ``nvidia-smi -q -d MEMORY`` (driver) or ``lspci -vv`` (no driver): BAR1 size;
- ``nvidia-smi topo -p2p r``: ``CNS`` cells mark GPUs attached through the chipset.
"""

from __future__ import annotations

import json
import os

from . import constants, gpudb, gpulayer, gpumodel, hostfacts, pcidev, smiquery, smitopo

PERSISTENCED_UNIT = "nvidia-persistenced.service"
# The boot unit that re-applies the GPU settings (power limits, clock locks, compute mode),
# the file it reads and the script it runs (role gpu_tuning writes them).
SETTINGS_UNIT = "rigctl-gpu-settings.service"
SETTINGS_CONF = "/etc/rigctl/gpu-settings.conf"
SETTINGS_SCRIPT = "/usr/local/sbin/rigctl-gpu-settings"
# The same three under the names an earlier rigctl gave them (before they held clock locks
# and compute mode too): gpu_tuning removes them when it finds them.
LEGACY_SETTINGS_UNIT = "rigctl-power-limits.service"
LEGACY_SETTINGS_CONF = "/etc/rigctl/power-limits.conf"
LEGACY_SETTINGS_SCRIPT = "/usr/local/sbin/rigctl-power-limits"
# What rigctl locked since boot (tmpfs: gone at reboot, like the locks): {bus id: [min, max]}.
CLOCKS_RECORD = "/run/rigctl/gpu-clocks.json"

def settings_argument_spec():
    """Module options for the GPU settings (rig_power_limit_*, rig_gpu_clock_lock_*,
    rig_compute_mode), shared by the gpu_facts and gpu_settings modules. A fresh copy:
    AnsibleModule may keep a reference to it."""
    return {
        "power_limit_w": {"type": "int", "required": False},
        "power_limit_overrides": {"type": "dict", "default": {}},
        "clock_lock_mhz": {"type": "dict", "required": False},
        "clock_lock_overrides": {"type": "dict", "default": {}},
        "compute_mode": {"type": "str", "required": False, "choices": list(gpudb.COMPUTE_MODES)},
    }

# A limit within this many watts of the target counts as set (nvidia-smi prints 2 decimals).
POWER_TOLERANCE_W = 0.5


# --- pure merging ---------------------------------------------------------------------


def bar1_from_q(text):
    """{bus id: BAR1 MiB} from ``nvidia-smi -q -d MEMORY``."""
    out = {}
    for gpu in smiquery.parse_nvidia_smi_q(text)["gpus"]:
        if gpu.get("bar1_total_mib") is not None:
            out[gpudb.normalize_bus_id(gpu["bus_id"])] = int(gpu["bar1_total_mib"])
    return out


def bar1_from_lspci(devices):
    """{bus id: BAR1 MiB} of NVIDIA display devices in parsed ``lspci -v``/``-vv``: the VRAM
    aperture (NVIDIA's "BAR1"), picked by what it is, not by its region number: the largest
    prefetchable memory region (region 1 on GeForce cards, region 2 on the RTX PRO 6000
    Blackwell, no number in ``-v`` output). Its size is the Physical Resizable BAR
    capability's current size for that region when shown (it is there when the region is
    unassigned), else the region's size. Audio functions and devices without a prefetchable
    region have none."""
    out = {}
    for dev in devices:
        if dev.get("vendor_id") not in (None, constants.NVIDIA_PCI_VENDOR):
            continue
        if dev.get("vendor_id") is None and "NVIDIA" not in (dev.get("description") or ""):
            continue
        regions = [r for r in dev.get("memory_regions") or [] if r.get("prefetchable")]
        if not regions:
            continue
        rebar = {bar["bar"]: bar.get("current_bytes") for bar in dev.get("rebar") or []
                 if bar.get("current_bytes")}
        sized = [r for r in regions if r.get("size_bytes")]
        size = None
        if sized:
            vram = max(sized, key=lambda r: r["size_bytes"])
            size = rebar.get(vram.get("index")) or vram["size_bytes"]
        elif rebar:
            # regions unassigned (no size printed): the prefetchable regions' ReBAR sizes
            sizes = [rebar[r["index"]] for r in regions if r.get("index") in rebar]
            size = max(sizes) if sizes else None
        if size is not None:
            try:
                out[gpudb.normalize_bus_id(dev["bdf"])] = int(size // 2**20)
            except ValueError:
                continue
    return out


def chipset_from_p2p(matrix):
    """{GPU index: True/False} from ``topo -p2p r``. A pair reads ``CNS`` (chipset not
    supported) when either GPU hangs off the chipset, so a GPU is behind the chipset when
    every peer cell in its row is ``CNS`` (with two GPUs both are flagged: the matrix
    cannot tell which one it is). Empty with fewer than two GPUs."""
    out = {}
    for dev, row in (matrix.get("status") or {}).items():
        cells = [cell for peer, cell in row.items() if peer != dev]
        if cells:
            out[int(dev[3:])] = all(cell == "CNS" for cell in cells)
    return out


def locks_from_simgpu_status(text):
    """{bus id: [min, max] or None} of every GPU in ``rigctl-simgpu status --json`` (what
    the simulated GPUs really have locked). Raises ValueError on unparsable output."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError("not JSON: %s" % exc) from None
    out = {}
    for gpu in (data.get("gpus") or []) if isinstance(data, dict) else []:
        try:
            bus = gpudb.normalize_bus_id(str(gpu.get("bus_id", "")))
        except ValueError:
            continue
        pair = _clock_pair(gpu.get("locked_clocks_mhz"))
        out[bus] = list(pair) if pair else None
    return out


# --- power-limit plan -----------------------------------------------------------------


def _label(gpu):
    return "GPU %d (%s, %s)" % (gpu["index"], gpu["bus_id"], gpu["name"])


def resolve_overrides(gpus, overrides, key_name):
    """Map a per-GPU override dict (selector -> value) onto the GPUs: ``({bus id: (key,
    value)}, errors)``. An error for a selector that names no GPU and for two selectors
    naming the same GPU, each naming the inventory key."""
    errors = []
    chosen = {}
    for key, value in (overrides or {}).items():
        gpu = gpudb.select_gpu(gpus, key)
        if gpu is None:
            errors.append(
                "%s[%r] names no GPU on this rig (GPUs: %s); use an index, a PCI bus id or a "
                "UUID that `nvidia-smi -L` shows"
                % (key_name, key, ", ".join("%d=%s" % (g["index"], g["bus_id"]) for g in gpus)
                   or "none")
            )
            continue
        if gpu["bus_id"] in chosen:
            errors.append("%s[%r] and [%r] both name %s; keep one"
                          % (key_name, chosen[gpu["bus_id"]][0], key, _label(gpu)))
            continue
        chosen[gpu["bus_id"]] = (key, value)
    return chosen, errors


def plan_power_limits(gpus, power_limit_w=None, overrides=None):
    """What each GPU's power limit must be. Returns ``{"gpus": [...], "errors": [...],
    "configured": {bus id: watts}}``; per GPU ``target_w``, ``source`` (the inventory key
    that asks for it, or ``default``), ``current_w``, ``change``. ``configured`` holds only
    the GPUs with a configured limit (what the boot unit re-applies). Every error names the
    GPU, its range and the inventory key; nothing may be set when there is one."""
    chosen, errors = resolve_overrides(gpus, overrides, "rig_power_limit_overrides")
    planned = []
    configured = {}
    for gpu in gpus:
        power = gpu["power"]
        if gpu["bus_id"] in chosen:
            key, target = chosen[gpu["bus_id"]]
            source = "rig_power_limit_overrides[%r]" % (key,)
        elif power_limit_w is not None:
            target, source = power_limit_w, "rig_power_limit_w"
        else:
            target, source = power.get("default_w"), "default"
        entry = {
            "index": gpu["index"],
            "bus_id": gpu["bus_id"],
            "uuid": gpu.get("uuid"),
            "name": gpu["name"],
            "target_w": target,
            "source": source,
            "current_w": power.get("current_w"),
            "default_w": power.get("default_w"),
            "min_w": power.get("min_w"),
            "max_w": power.get("max_w"),
            "change": False,
        }
        planned.append(entry)
        if None in (power.get("current_w"), power.get("min_w"), power.get("max_w")):
            if source != "default":
                errors.append(
                    "%s: no power limits readable (no NVIDIA driver answers nvidia-smi), so "
                    "%s = %s W cannot be checked or set; install the driver first"
                    % (_label(gpu), source, target)
                )
            continue
        if target is None:
            continue
        if not power["min_w"] - 1e-6 <= float(target) <= power["max_w"] + 1e-6:
            errors.append(
                "%s: power limit %s W from %s is outside this card's range %s-%s W; set "
                "%s to a value in that range"
                % (_label(gpu), _fmt(target), source, _fmt(power["min_w"]), _fmt(power["max_w"]),
                   source)
            )
            continue
        entry["change"] = abs(float(target) - float(power["current_w"])) >= POWER_TOLERANCE_W
        if source != "default":
            configured[gpu["bus_id"]] = target
    return {"gpus": planned, "errors": errors, "configured": configured}


def _fmt(watts):
    value = float(watts)
    return "%d" % value if value == int(value) else "%.2f" % value


def _clock_pair(value):
    """(min, max) of a ``{min, max}`` mapping or a 2-list, or None when it is not one."""
    if isinstance(value, dict):
        value = [value.get("min"), value.get("max")]
    if isinstance(value, (list, tuple)) and len(value) == 2:
        try:
            low, high = int(value[0]), int(value[1])
        except (TypeError, ValueError):
            return None
        return (low, high)
    return None


def plan_gpu_settings(gpus, clock_lock=None, clock_overrides=None, compute_mode=None):
    """What each GPU's clock lock and compute mode must be. Returns ``{"gpus": [...],
    "errors": [...], "configured": {bus id: {"clocks": [min, max], "compute": N}}}``.

    Per GPU: ``clocks_target`` ([min, max] or None = unlocked), ``clocks_source`` (the
    inventory key), ``clocks_current`` (what rigctl locked since boot, from the record),
    ``clocks_change`` (``lock`` / ``reset`` / None); ``compute_target`` (a
    rig_compute_mode name), ``compute_current``, ``compute_change``. ``configured`` holds
    what the boot unit re-applies (locks, and compute modes other than ``default``). Every
    error names the GPU, its range and the inventory key; nothing may be set when there is
    one. A lock must lie within 0..``clocks.max.sm`` (else ``clocks.max.graphics``)."""
    key_name = "rig_gpu_clock_lock_overrides"
    chosen, errors = resolve_overrides(gpus, clock_overrides, key_name)
    mode = compute_mode or "default"
    if mode not in gpudb.COMPUTE_MODES:
        errors.append("rig_compute_mode %r is not one of %s" % (mode, ", ".join(gpudb.COMPUTE_MODES)))
        mode = None
    planned = []
    configured = {}
    for gpu in gpus:
        clocks = gpu.get("clocks") or {}
        if gpu["bus_id"] in chosen:
            key, value = chosen[gpu["bus_id"]]
            source = "%s[%r]" % (key_name, key)
        elif clock_lock is not None:
            value, source = clock_lock, "rig_gpu_clock_lock_mhz"
        else:
            value, source = None, "default"
        target = _clock_pair(value) if value is not None else None
        current = _clock_pair(clocks.get("locked_mhz"))
        top = clocks.get("max_sm_mhz") or clocks.get("max_graphics_mhz")
        entry = {
            "index": gpu["index"],
            "bus_id": gpu["bus_id"],
            "uuid": gpu.get("uuid"),
            "name": gpu["name"],
            "clocks_target": list(target) if target else None,
            "clocks_source": source,
            "clocks_current": list(current) if current else None,
            # gpu: read from the GPU; record: what rigctl applied since boot (CLOCKS_RECORD)
            "clocks_current_source": clocks.get("locked_source") or "record",
            "clocks_max_mhz": top,
            "clocks_change": None,
            "compute_target": mode,
            "compute_source": "rig_compute_mode" if compute_mode else "default",
            "compute_current": gpu.get("compute_mode"),
            "compute_change": False,
        }
        planned.append(entry)
        settings = {}
        if value is not None and target is None:
            errors.append("%s: %s = %r is not a {min, max} clock range in MHz"
                          % (_label(gpu), source, value))
        elif target is not None:
            if top is None:
                errors.append(
                    "%s: no maximum clock readable (clocks.max.sm; no NVIDIA driver answers "
                    "nvidia-smi), so %s = %d-%d MHz cannot be checked or set; install the "
                    "driver first" % (_label(gpu), source, target[0], target[1]))
            elif not 0 <= target[0] <= target[1] <= top:
                errors.append(
                    "%s: clock lock %d-%d MHz from %s is outside this card's range 0-%s MHz "
                    "(clocks.max.sm); set %s to a range inside it (min <= max)"
                    % (_label(gpu), target[0], target[1], source, _fmt(top), source))
            else:
                entry["clocks_change"] = "lock" if current != target else None
                settings["clocks"] = list(target)
        elif current is not None:
            entry["clocks_change"] = "reset"
        if mode is not None:
            if gpu.get("compute_mode") is None and mode != "default":
                errors.append(
                    "%s: compute mode not readable (no NVIDIA driver answers nvidia-smi), so "
                    "rig_compute_mode = %s cannot be set; install the driver first"
                    % (_label(gpu), mode))
            elif gpu.get("compute_mode") is not None:
                entry["compute_change"] = gpu["compute_mode"] != mode
            if mode != "default":
                settings["compute"] = gpudb.COMPUTE_MODES[mode][0]
        if settings:
            configured[gpu["bus_id"]] = settings
    return {"gpus": planned, "errors": errors, "configured": configured}


def plan_tuning(gpus, power_limit_w=None, power_limit_overrides=None, clock_lock_mhz=None,
                clock_lock_overrides=None, compute_mode=None):
    """The desired tuning state of every GPU and how the live state differs from it: the
    one comparison that provision (``gpu_settings``) converges and verify checks.

    Null means the card's default everywhere: its default power limit, unlocked clocks,
    the ``default`` compute mode. Returns ``{"power": plan_power_limits(...), "settings":
    plan_gpu_settings(...), "errors": [...], "drift": [...]}``; a drift entry per GPU and
    setting that differs: ``index``, ``bus_id``, ``what`` (power, clocks, compute),
    ``expected``, ``found`` (as :func:`describe` prints them), ``source`` (the inventory key
    or ``default``)."""
    power = plan_power_limits(gpus, power_limit_w, power_limit_overrides)
    settings = plan_gpu_settings(gpus, clock_lock_mhz, clock_lock_overrides, compute_mode)
    drift = []
    by_bus = {g["bus_id"]: g for g in settings["gpus"]}
    for gpu in power["gpus"]:
        bus = gpu["bus_id"]
        setting = by_bus[bus]
        before, after = gpu_state_text(gpu, setting), gpu_state_text(gpu, setting, target=True)
        for what in ("power", "clocks", "compute"):
            if before[what] != after[what]:
                source = {"power": gpu["source"], "clocks": setting["clocks_source"],
                          "compute": setting["compute_source"]}[what]
                drift.append({"index": gpu["index"], "bus_id": bus, "what": what,
                              "expected": after[what], "found": before[what],
                              "source": source})
    return {"power": power, "settings": settings, "errors": power["errors"] + settings["errors"],
            "drift": drift}


def _clocks_text(pair):
    return "locked %d-%d MHz" % tuple(pair) if pair else "unlocked"


def gpu_state_text(power_entry, settings_entry, target=False):
    """{"power", "clocks", "compute"}: one GPU's live state (or, with ``target``, its
    desired state) as short text. A setting the plan does not change reads the same in
    both (so an unreadable value is not reported as drift)."""
    p, s = power_entry, settings_entry
    current_w = p.get("current_w")
    power = "%s W" % _fmt(current_w) if current_w is not None else "unreadable"
    if target and p.get("change"):
        power = "%s W" % _fmt(p["target_w"])
    clocks = _clocks_text(s.get("clocks_current"))
    if target and s.get("clocks_change"):
        clocks = _clocks_text(s.get("clocks_target"))
    compute = s.get("compute_current") or "unreadable"
    if target and s.get("compute_change"):
        compute = s["compute_target"]
    return {"power": power, "clocks": clocks, "compute": compute}


def tuning_diff(plan, unit=None, unit_start=False):
    """Ansible ``diff`` entries (before/after text) of a :func:`plan_tuning` plan: one per
    GPU whose power limit, clock lock or compute mode changes, and one for the boot unit
    when it is started (``unit``: its name)."""
    out = []
    changed = {d["bus_id"] for d in plan["drift"]}
    by_bus = {g["bus_id"]: g for g in plan["settings"]["gpus"]}
    for gpu in plan["power"]["gpus"]:
        if gpu["bus_id"] not in changed:
            continue
        setting = by_bus[gpu["bus_id"]]
        header = "GPU %d (%s) %s" % (gpu["index"], gpu["bus_id"], gpu["name"])
        texts = []
        for target in (False, True):
            state = gpu_state_text(gpu, setting, target=target)
            texts.append("power limit: %s\nclocks: %s\ncompute mode: %s\n"
                         % (state["power"], state["clocks"], state["compute"]))
        out.append({"before_header": header, "after_header": header,
                    "before": texts[0], "after": texts[1]})
    if unit and unit_start:
        out.append({"before_header": unit, "after_header": unit,
                    "before": "not run at this boot (inactive)\n",
                    "after": "started: re-applies %s\n" % SETTINGS_CONF})
    return out


def settings_conf(plan, settings=None):
    """The text of ``/etc/rigctl/gpu-settings.conf`` for a power plan and optionally a
    settings plan (:func:`plan_gpu_settings`): ``<bus id> <watts>`` lines, then
    ``<bus id> clocks <min>,<max>`` and ``<bus id> compute <nvidia-smi -c number>``. The
    one writer of the format: the gpu_facts module returns it, role gpu_tuning writes it."""
    lines = [
        "# Written by rigctl (role gpu_tuning). GPU power limits, clock locks and compute modes",
        "# re-applied at every boot by %s:" % SETTINGS_UNIT,
        "# <PCI bus id> <watts> | <PCI bus id> clocks <min>,<max> | <PCI bus id> compute <0|2|3>.",
        "# Edit the inventory (rig_power_limit_w, rig_power_limit_overrides, rig_gpu_clock_lock_mhz,",
        "# rig_gpu_clock_lock_overrides, rig_compute_mode), not this file.",
    ]
    by_bus = {g["bus_id"]: g for g in plan["gpus"]}
    for bus in sorted(plan["configured"]):
        gpu = by_bus[bus]
        lines.append(
            "%s %s  # GPU %d %s %s (%s)"
            % (bus, _fmt(plan["configured"][bus]), gpu["index"], gpu["name"], gpu.get("uuid") or "",
               gpu["source"])
        )
    if settings:
        by_bus = {g["bus_id"]: g for g in settings["gpus"]}
        for bus in sorted(settings["configured"]):
            gpu, conf = by_bus[bus], settings["configured"][bus]
            if "clocks" in conf:
                lines.append("%s clocks %d,%d  # GPU %d (%s)"
                             % (bus, conf["clocks"][0], conf["clocks"][1], gpu["index"],
                                gpu["clocks_source"]))
            if "compute" in conf:
                lines.append("%s compute %d  # GPU %d %s (rig_compute_mode)"
                             % (bus, conf["compute"], gpu["index"], gpu["compute_target"]))
    return "\n".join(lines) + "\n"


def parse_settings_conf(text):
    """What ``/etc/rigctl/gpu-settings.conf`` (:func:`settings_conf`) lists, read the way the
    boot script reads it (``<bus> <what> <value>``, ``#`` comments): {"power": {bus: watts},
    "clocks": {bus: [min, max]}, "compute": {bus: nvidia-smi -c number}, "unreadable":
    [lines the boot script could not apply]}."""
    out = {"power": {}, "clocks": {}, "compute": {}, "unreadable": []}
    for line in (text or "").splitlines():
        parts = line.split("#")[0].split()
        if not parts:
            continue
        try:
            if len(parts) == 2:
                out["power"][parts[0]] = float(parts[1])
            elif len(parts) == 3 and parts[1] == "clocks":
                pair = [int(x) for x in parts[2].split(",")]
                if len(pair) != 2:
                    raise ValueError(parts[2])
                out["clocks"][parts[0]] = pair
            elif len(parts) == 3 and parts[1] == "compute":
                out["compute"][parts[0]] = int(parts[2])
            else:
                raise ValueError(line)
        except ValueError:
            out["unreadable"].append(line.strip())
    return out


def read_clock_record(root="/"):
    """{bus id: [min, max]} from :data:`CLOCKS_RECORD`; empty when absent or unreadable."""
    path = os.path.join(root, CLOCKS_RECORD.lstrip("/"))
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    out = {}
    if isinstance(data, dict):
        for bus, pair in data.items():
            pair = _clock_pair(pair)
            try:
                out[gpudb.normalize_bus_id(str(bus))] = list(pair) if pair else None
            except ValueError:
                continue
    return {bus: pair for bus, pair in out.items() if pair}


def write_clock_record(locks, root="/"):
    """Write {bus id: [min, max]} to :data:`CLOCKS_RECORD` (removed when empty)."""
    path = os.path.join(root, CLOCKS_RECORD.lstrip("/"))
    if not locks:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump({bus: list(pair) for bus, pair in sorted(locks.items())}, handle)
        handle.write("\n")
    os.replace(tmp, path)


# --- gathering (runs tools) -----------------------------------------------------------


def unit_state(unit):
    """``systemctl show`` of a unit: load/active/enabled state and whether it is there."""
    rc, out, _ = hostfacts.run(
        ["systemctl", "show", unit, "-p", "LoadState,ActiveState,UnitFileState,Result,FragmentPath"]
    )
    props = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            props[key] = value
    return {
        "present": rc == 0 and props.get("LoadState") == "loaded",
        "enabled": props.get("UnitFileState") in ("enabled", "enabled-runtime"),
        "active": props.get("ActiveState") == "active",
        "result": props.get("Result"),
        "path": props.get("FragmentPath") or None,
    }


def read_lspci(gpu_layer):
    """Parsed ``lspci -vv -D -nn`` (all devices: GPUs and the bridges above them), or
    (None, reason). On a lab rig the simulated GPU layer's view (:func:`gpulayer.layer`)."""
    rc, out, err = hostfacts.run(gpu_layer["lspci"])
    if rc != 0:
        return None, (err or out).strip().splitlines()[0] if (err or out).strip() else "rc=%d" % rc
    try:
        return pcidev.parse_lspci_vv(out), None
    except ValueError as exc:
        return None, str(exc)


def gather(root="/", lspci=True):
    """Structured GPU facts of this host (see the module docstring)."""
    gpu_layer = gpulayer.layer(root)
    pci, answer = hostfacts.read_gpus(gpu_layer)
    smi = gpu_layer["nvidia_smi"]
    errors = []
    rows, driver = answer["gpus"], answer["available"]
    if pci and not driver:
        errors.append("nvidia-smi: %s" % answer["error"])
    bar1_q = {}
    chipset = {}
    if driver:
        rc, out, _ = hostfacts.run([smi, "-q", "-d", "MEMORY"])
        if rc == 0:
            try:
                bar1_q = bar1_from_q(out)
            except ValueError as exc:
                errors.append("nvidia-smi -q -d MEMORY: %s" % exc)
        if len(rows) > 1:
            rc, out, _ = hostfacts.run([smi, "topo", "-p2p", "r"])
            if rc == 0:
                try:
                    chipset = chipset_from_p2p(smitopo.parse_topo_p2p(out))
                except ValueError as exc:
                    errors.append("nvidia-smi topo -p2p r: %s" % exc)
    devices, lspci_error = (None, "not read")
    if lspci and pci:
        devices, lspci_error = read_lspci(gpu_layer)
        if lspci_error:
            errors.append("lspci: %s" % lspci_error)
    clock_live = {}
    if driver and gpu_layer["simgpu_tool"]:
        # The simulated GPU layer can say what is locked; real drivers cannot everywhere.
        rc, out, err = hostfacts.run([gpu_layer["simgpu_tool"], "status", "--json"])
        try:
            clock_live = locks_from_simgpu_status(out) if rc == 0 else {}
        except ValueError as exc:
            errors.append("rigctl-simgpu status --json: %s" % exc)
        if rc != 0:
            errors.append("rigctl-simgpu status --json: %s" % ((err or out).strip() or rc))
    gpus = gpumodel.build(pci, rows, bar1_q, bar1_from_lspci(devices or []), chipset,
                          read_clock_record(root), clock_live)
    bridges = [
        {"bdf": d["bdf"], "bus": d["bus"], "acs_ctl": d["acs_ctl"], "description": d["description"]}
        for d in devices or []
        if d.get("bus")
    ]
    return {
        "gpu_view": gpulayer.gpu_view(gpu_layer, gpus),
        "simulation": gpu_layer["simulation"],
        "driver_answers": driver,
        "driver_version": rows[0].get("driver_version") if rows else None,
        "gpus": gpus,
        "bridges": bridges if devices is not None else None,
        "persistenced": unit_state(PERSISTENCED_UNIT),
        "settings_unit": unit_state(SETTINGS_UNIT),
        "legacy_settings_unit": unit_state(LEGACY_SETTINGS_UNIT),
        "errors": errors,
    }
