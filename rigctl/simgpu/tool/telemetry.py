"""What a GPU reads right now: power draw, temperature, clocks, P-state, utilization,
memory in use and the clocks event (throttle) reasons.

Idle unless the load flag is up (the simulated probe raises it while it runs; see
:func:`state.load_window`): under load the draw climbs to just below the power limit and the
temperature to the GPU's ``load_temperature_c`` over :data:`RAMP_S` seconds, the SM clock
runs at ``load_sm_mhz`` (or the locked maximum), and the GPU is power capped once the draw
reaches its limit. ``throttle`` faults add their reason (HW slowdown, power brake, thermal)
with the clocks, draw and temperature that go with it.
"""

import time

from . import faults
from .state import gpu_state, load_window

RAMP_S = 5.0
# (query name, NVML bit, -q label) in the order nvidia-smi prints them
REASONS = (
    ("gpu_idle", 0x1, "Idle"),
    ("applications_clocks_setting", 0x2, "Applications Clocks Setting"),
    ("sw_power_cap", 0x4, "SW Power Cap"),
    ("hw_slowdown", 0x8, "HW Slowdown"),
    ("sync_boost", 0x10, "Sync Boost"),
    ("sw_thermal_slowdown", 0x20, "SW Thermal Slowdown"),
    ("hw_thermal_slowdown", 0x40, "HW Thermal Slowdown"),
    ("hw_power_brake_slowdown", 0x80, "HW Power Brake Slowdown"),
    ("display_clock_setting", 0x100, "Display Clock Setting"),
)
REASONS_SUPPORTED = 0x1FF
# -q "Clocks Event Reasons Counters" labels (R590+) -> reason
COUNTER_LABELS = (
    ("SW Power Capping", "sw_power_cap"),
    ("Sync Boost", "sync_boost"),
    ("SW Thermal Slowdown", "sw_thermal_slowdown"),
    ("HW Thermal Slowdown", "hw_thermal_slowdown"),
    ("HW Power Braking", "hw_power_brake_slowdown"),
)
PROBE_CONTEXT_MIB = 420  # CUDA context + the probe's buffers while it runs


def apps_of(state, gpu):
    apps = state.get("apps") if isinstance(state.get("apps"), list) else []
    return [a for a in apps if isinstance(a, dict) and a.get("bus_id") == gpu["bus_id"]]


def memory_used_mib(state, gpu, loaded=False):
    used = int(gpu["memory_used_mib"]) + sum(int(a.get("used_mib") or 0) for a in apps_of(state, gpu))
    if loaded:
        used += PROBE_CONTEXT_MIB
    total = int(gpu["vram_mib"]) - int(gpu["memory_reserved_mib"])
    return min(used, total)


def _throttles(profile, state, gpu, loaded):
    return [
        f["reason"] for f in faults.of_kind(profile, state, "throttle", gpu["index"])
        if loaded or not f.get("under_load", True)
    ]


def readings(profile, state, gpu, now=None):
    """Dict: ``loaded``, ``power_draw_w``, ``power_limit_w``, ``temperature_c``, ``sm_mhz``,
    ``memory_mhz``, ``pstate``, ``utilization_gpu``, ``utilization_memory``, ``fan_percent``,
    ``memory_used_mib``, ``reasons`` (set of active reason names), ``reasons_mask``,
    ``counters_us`` (reason -> microseconds under it in the current load window)."""
    now = time.time() if now is None else now
    st = gpu_state(state, gpu)
    window = load_window(state, now)
    loaded = window is not None
    elapsed = window[1] if loaded else 0.0
    limit = st["power_limit_w"]
    throttles = _throttles(profile, state, gpu, loaded)
    out = {
        "loaded": loaded, "power_limit_w": limit, "power_draw_w": float(gpu["idle_power_w"]),
        "temperature_c": int(gpu["temperature_c"]), "sm_mhz": 210, "memory_mhz": 405,
        "pstate": "P8", "utilization_gpu": 0, "utilization_memory": 0,
        "fan_percent": int(gpu["fan_percent"]), "reasons": set(),
        "memory_used_mib": memory_used_mib(state, gpu, loaded),
    }
    if not loaded and not throttles:
        out["reasons"].add("gpu_idle")
    else:
        _apply_load(out, gpu, st, limit, min(1.0, elapsed / RAMP_S) if loaded else 1.0, loaded)
        _apply_throttles(out, gpu, limit, throttles)
    out["reasons_mask"] = sum(bit for name, bit, _ in REASONS if name in out["reasons"])
    out["counters_us"] = {
        name: int(elapsed * 1e6) if loaded and name in out["reasons"] else 0
        for _, name in COUNTER_LABELS
    }
    return out


def _apply_load(out, gpu, st, limit, ramp, loaded):
    if not loaded:
        return
    idle_w, idle_t = float(gpu["idle_power_w"]), int(gpu["temperature_c"])
    out["power_draw_w"] = round(idle_w + (limit * 0.985 - idle_w) * ramp, 2)
    out["temperature_c"] = int(round(idle_t + (int(gpu["load_temperature_c"]) - idle_t) * ramp))
    sm = int(gpu["load_sm_mhz"])
    if st["locked_clocks_mhz"]:
        sm = min(sm, int(st["locked_clocks_mhz"][1]))
    out.update(sm_mhz=sm, memory_mhz=int(gpu["load_memory_mhz"]), pstate="P2",
               utilization_gpu=100, utilization_memory=38,
               fan_percent=int(out["fan_percent"] + 45 * ramp))
    if ramp >= 0.9:
        out["reasons"].add("sw_power_cap")


def _apply_throttles(out, gpu, limit, throttles):
    slowdown_t = int(gpu["slowdown_temperature_c"])
    for reason in throttles:
        out["reasons"].add(reason)
        if reason.startswith("hw_"):
            out["reasons"].add("hw_slowdown")
            out["reasons"].discard("sw_power_cap")
            out["sm_mhz"] = min(out["sm_mhz"], max(210, int(gpu["load_sm_mhz"]) * 3 // 10))
            out["power_draw_w"] = round(min(out["power_draw_w"], limit * 0.45), 2)
            if reason == "hw_thermal_slowdown":
                out["temperature_c"] = slowdown_t + 1
        elif reason == "sw_thermal_slowdown":
            out["temperature_c"] = max(out["temperature_c"], slowdown_t - 2)
            out["sm_mhz"] = min(out["sm_mhz"], int(gpu["load_sm_mhz"]) * 7 // 10)
        elif reason == "sw_power_cap":
            out["power_draw_w"] = round(limit, 2)
            out["sm_mhz"] = min(out["sm_mhz"], int(gpu["load_sm_mhz"]) * 85 // 100)
