"""rigctl-simgpu's own commands: status, persistenced, reset, load."""

import json
import os

from . import faults
from .common import RC_INVALID_ARGUMENT, RC_NO_PERMISSION, STATE_FILE, SimError, usage_error, w
from .profile import profile_file
from .state import (
    StateLock,
    clear_load,
    gpu_state,
    is_root,
    load_state,
    load_window,
    save_state,
    set_gpu_state,
    set_load,
    state_dir,
)
from .sysfs import rewrite_aer


def status_data(profile, state):
    directory = state_dir()
    return {
        "simulated": True,
        "profile": profile.get("name"),
        "description": profile.get("description"),
        "profile_path": profile_file(),
        "state_path": os.path.join(directory, STATE_FILE),
        "state_present": os.path.exists(os.path.join(directory, STATE_FILE)),
        "persistenced": bool(state.get("persistenced")),
        "driver_version": profile.get("driver_version"),
        "p2p": profile.get("p2p"),
        "faults": len(faults.all_faults(profile, state)),
        "load": bool(load_window(state)),
        "gpus": [
            dict(
                index=g["index"],
                name=g["name"],
                bus_id=g["bus_id"],
                uuid=g["uuid"],
                power_default_w=float(g["power_default_w"]),
                power_min_w=float(g["power_min_w"]),
                power_max_w=float(g["power_max_w"]),
                **gpu_state(state, g)
            )
            for g in profile["gpus"]
        ],
    }


def cmd_status(profile, state, as_json):
    data = status_data(profile, state)
    if as_json:
        return json.dumps(data, indent=2, sort_keys=True) + "\n"
    out = [
        "rigctl GPU simulator: the GPUs of this host are SIMULATED (no real hardware).",
        "profile:       %s (%s)" % (data["profile"], data["profile_path"]),
        "description:   %s" % (data["description"] or ""),
        "driver:        %s, P2P %s" % (data["driver_version"], data["p2p"]),
        "runtime state: %s (%s)"
        % (
            data["state_path"],
            "present" if data["state_present"] else "absent: defaults, as after a reboot",
        ),
        "persistenced:  %s" % ("running" if data["persistenced"] else "stopped"),
        "faults:        %d (see `rigctl-simgpu fault list`)" % data["faults"],
        "load:          %s" % ("on (GPUs busy)" if data["load"] else "off (idle)"),
    ]
    for g in data["gpus"]:
        out.append(
            "GPU %d: %s %s power limit %s W (default %s W, range %s-%s W), persistence %s, "
            "clocks %s, compute mode %s"
            % (
                g["index"], g["name"], g["bus_id"], w(g["power_limit_w"]),
                w(g["power_default_w"]), w(g["power_min_w"]), w(g["power_max_w"]),
                "Enabled" if g["persistence_mode"] else "Disabled",
                "locked %d-%d MHz" % tuple(g["locked_clocks_mhz"]) if g["locked_clocks_mhz"]
                else "unlocked", g["compute_mode"],
            )
        )
    return "\n".join(out) + "\n"


def cmd_persistenced(profile, action):
    """What nvidia-persistenced does to the driver: persistence on for every GPU while it
    runs, off again when it stops. The lab's nvidia-persistenced unit calls this."""
    if action == "status":
        return "running\n" if load_state().get("persistenced") else "stopped\n"
    if action not in ("start", "stop"):
        raise SimError(RC_INVALID_ARGUMENT, stderr="usage: rigctl-simgpu persistenced start|stop|status\n")
    if not is_root():
        raise SimError(RC_NO_PERMISSION, stderr="rigctl-simgpu persistenced: must run as root\n")
    enable = action == "start"
    with StateLock():
        state = load_state()
        state["persistenced"] = enable
        for gpu in profile["gpus"]:
            set_gpu_state(state, gpu, persistence_mode=enable)
        save_state(state)
    return "nvidia-persistenced (simulated) %s: persistence mode %s on %d GPU(s)\n" % (
        "started" if enable else "stopped",
        "Enabled" if enable else "Disabled",
        len(profile["gpus"]),
    )


def cmd_reset(profile):
    if not is_root():
        raise SimError(RC_NO_PERMISSION, stderr="rigctl-simgpu reset: must run as root\n")
    with StateLock():
        path = os.path.join(state_dir(), STATE_FILE)
        if os.path.exists(path):
            os.unlink(path)
    clear_load()
    if profile is not None:
        rewrite_aer(profile, {})
    return "runtime state dropped (as after a reboot)\n"


def cmd_load(argv):
    """``load on [--seconds N]`` / ``load off`` / ``load status``: the flag the simulated probe
    raises while it runs, by hand (tests, or sampling nvidia-smi under load). Any user, like
    loading a real GPU; ``off`` drops the caller's own flag (root: every flag)."""
    if argv[:1] == ["status"] and len(argv) == 1:
        return "on\n" if load_window(load_state()) else "off\n"
    if argv[:1] == ["off"] and len(argv) == 1:
        clear_load()
        return "load off\n"
    if argv[:1] == ["on"] and len(argv) in (1, 3) and (len(argv) == 1 or argv[1] == "--seconds"):
        try:
            seconds = float(argv[2]) if len(argv) == 3 else 600.0
        except ValueError:
            seconds = -1
        if not 0 < seconds <= 86400:
            raise usage_error("load on --seconds wants 1..86400")
        set_load(seconds, "manual")
        return "load on for %g s\n" % seconds
    raise usage_error("usage: rigctl-simgpu load on [--seconds N] | off | status")
