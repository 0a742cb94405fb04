"""What nvidia-smi changes (root only, checked for every selected GPU before anything
changes): ``-pl`` power limit, ``-pm`` persistence mode, ``-lgc``/``-rgc`` locked clocks,
``-c`` compute mode."""

from .common import RC_INVALID_ARGUMENT, RC_NO_PERMISSION, SimError, invalid_args, w
from .profile import select_gpus
from .state import COMPUTE_MODE_NAMES, StateLock, gpu_state, is_root, load_state, save_state, set_gpu_state

PERSISTENCE_WARNING = (
    "\nWarning: persistence mode is disabled on device %s. See the Known Issues section of "
    "the nvidia-smi(1) man page for more information. Run with [--help | -h] switch to get "
    "more information on how to enable persistence mode.\n"
)


def cmd_power_limit(profile, value, gpu_ids):
    try:
        watts = float(value)
    except ValueError:
        raise invalid_args() from None
    if watts != watts or watts <= 0:  # NaN or not positive
        raise invalid_args()
    gpus = select_gpus(profile, gpu_ids)
    # The range is checked for every selected GPU before anything changes.
    for gpu in gpus:
        if watts < float(gpu["power_min_w"]) or watts > float(gpu["power_max_w"]):
            raise SimError(
                RC_INVALID_ARGUMENT,
                stdout="Provided power limit %s W is not a valid power limit which should be "
                "between %s W and %s W for GPU %s\nTerminating early due to previous errors.\n"
                % (w(watts), w(gpu["power_min_w"]), w(gpu["power_max_w"]), gpu["bus_id"]),
            )
    if not is_root():
        raise SimError(
            RC_NO_PERMISSION,
            stdout="Failed to set power management limit for GPU %s: Insufficient Permissions\n"
            "Terminating early due to previous errors.\n" % gpus[0]["bus_id"],
        )
    out = []
    with StateLock():
        state = load_state()
        for gpu in gpus:
            before = gpu_state(state, gpu)
            set_gpu_state(state, gpu, power_limit_w=round(watts, 2))
            out.append(
                "Power limit for GPU %s was set to %s W from %s W.\n"
                % (gpu["bus_id"], w(watts), w(before["power_limit_w"]))
            )
            if not before["persistence_mode"]:
                out.append(PERSISTENCE_WARNING % gpu["bus_id"])
        save_state(state)
    out.append("All done.\n")
    return "".join(out)


def _bus8(gpu):
    return gpu["bus_id"]


def cmd_lock_clocks(profile, value, gpu_ids):
    """``-lgc MIN,MAX``: lock the core clocks. Both values within 0..clocks.max.sm of every
    selected GPU, checked before anything changes (the refusal's wording is approximated)."""
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise invalid_args()
    low, high = int(parts[0]), int(parts[1])
    if low > high:
        raise invalid_args()
    gpus = select_gpus(profile, gpu_ids)
    for gpu in gpus:
        top = int(gpu["clocks_max_sm_mhz"])
        if high > top:
            raise SimError(
                RC_INVALID_ARGUMENT,
                stdout="Requested clocks (gpcClkMin %d, gpcClkMax %d) are outside the supported "
                "range 0-%d MHz for GPU %s\nTerminating early due to previous errors.\n"
                % (low, high, top, _bus8(gpu)),
            )
    if not is_root():
        raise SimError(
            RC_NO_PERMISSION,
            stdout="Setting locked GPU clocks for GPU %s failed: Insufficient Permissions\n"
            "Terminating early due to previous errors.\n" % _bus8(gpus[0]),
        )
    out = []
    with StateLock():
        state = load_state()
        for gpu in gpus:
            set_gpu_state(state, gpu, locked_clocks_mhz=[low, high])
            out.append('GPU clocks set to "(gpcClkMin %d, gpcClkMax %d)" for GPU %s\n'
                       % (low, high, _bus8(gpu)))
        save_state(state)
    out.append("All done.\n")
    return "".join(out)


def cmd_reset_clocks(profile, gpu_ids):
    """``-rgc``: unlock the core clocks (confirmation wording approximated)."""
    gpus = select_gpus(profile, gpu_ids)
    if not is_root():
        raise SimError(
            RC_NO_PERMISSION,
            stdout="Resetting locked GPU clocks for GPU %s failed: Insufficient Permissions\n"
            "Terminating early due to previous errors.\n" % _bus8(gpus[0]),
        )
    out = []
    with StateLock():
        state = load_state()
        for gpu in gpus:
            set_gpu_state(state, gpu, locked_clocks_mhz=None)
            out.append("All done.\n")
        save_state(state)
    return "".join(out)


def cmd_compute_mode(profile, value, gpu_ids):
    """``-c 0|2|3`` or ``-c DEFAULT|PROHIBITED|EXCLUSIVE_PROCESS``."""
    text = value.strip().upper()
    by_name = {name.upper(): num for num, name in COMPUTE_MODE_NAMES.items()}
    if text.isdigit() and int(text) in COMPUTE_MODE_NAMES:
        num = int(text)
    elif text in by_name:
        num = by_name[text]
    else:
        raise invalid_args()
    name = COMPUTE_MODE_NAMES[num]
    gpus = select_gpus(profile, gpu_ids)
    state = load_state()
    if not is_root() and any(gpu_state(state, g)["compute_mode"] != name for g in gpus):
        raise SimError(
            RC_NO_PERMISSION,
            stdout="Unable to set the compute mode for GPU %s: Insufficient Permissions\n"
            "Terminating early due to previous errors.\n" % _bus8(gpus[0]),
        )
    out = []
    with StateLock():
        state = load_state()
        changed = False
        for gpu in gpus:
            if gpu_state(state, gpu)["compute_mode"] == name:
                out.append("Compute mode is already set to %s for GPU %s.\n"
                           % (name.upper(), _bus8(gpu)))
                continue
            set_gpu_state(state, gpu, compute_mode=name)
            changed = True
            out.append("Set compute mode to %s for GPU %s.\n" % (name.upper(), _bus8(gpu)))
        if changed:
            save_state(state)
    out.append("All done.\n")
    return "".join(out)


def cmd_persistence(profile, value, gpu_ids):
    # Persistence should come from the nvidia-persistenced service (on lab rigs its unit
    # calls `rigctl-simgpu persistenced start`); `nvidia-smi -pm 1` is the deprecated way
    # and, like here, does not survive a reboot.
    mode = value.strip().upper()
    if mode in ("1", "ENABLED"):
        enable = True
    elif mode in ("0", "DISABLED"):
        enable = False
    else:
        raise invalid_args()
    gpus = select_gpus(profile, gpu_ids)
    word = "Enabled" if enable else "Disabled"
    out = []
    if not is_root():
        # Like the real tool: GPUs already in the wanted mode are fine, changing one is not
        # (and an unprivileged caller never touches the root-owned state directory).
        state = load_state()
        for gpu in gpus:
            if gpu_state(state, gpu)["persistence_mode"] == enable:
                out.append("Persistence mode is already %s for GPU %s.\n" % (word, gpu["bus_id"]))
                continue
            raise SimError(
                RC_NO_PERMISSION,
                stdout="".join(out)
                + "Unable to set persistence mode for GPU %s: Insufficient Permissions\n"
                "Terminating early due to previous errors.\n" % gpu["bus_id"],
            )
        out.append("All done.\n")
        return "".join(out)
    with StateLock():
        state = load_state()
        changed = False
        for gpu in gpus:
            if gpu_state(state, gpu)["persistence_mode"] == enable:
                out.append("Persistence mode is already %s for GPU %s.\n" % (word, gpu["bus_id"]))
                continue
            set_gpu_state(state, gpu, persistence_mode=enable)
            changed = True
            out.append("%s persistence mode for GPU %s.\n" % (word, gpu["bus_id"]))
        if changed:
            save_state(state)
    out.append("All done.\n")
    return "".join(out)

