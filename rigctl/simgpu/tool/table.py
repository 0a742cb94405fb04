"""``nvidia-smi -L``, ``--version`` and the plain ``nvidia-smi`` summary table."""

import time

from .apps import listed_apps
from .profile import select_gpus
from .state import gpu_state
from .telemetry import readings


def cmd_list(profile, gpu_ids):
    return "".join(
        "GPU %d: %s (UUID: %s)\n" % (g["index"], g["name"], g["uuid"])
        for g in select_gpus(profile, gpu_ids)
    )


def cmd_version(profile):
    driver = profile["driver_version"]
    nvml = ".".join(driver.split(".")[:2])
    return (
        "NVIDIA-SMI version  : %s\nNVML version        : %s\nDRIVER version      : %s\n"
        "CUDA Version        : %s\n" % (driver, nvml, driver, profile["cuda_version"])
    )


RULE = "+" + "-" * 89 + "+"


def _gpu_rows(profile, state, gpu_ids):
    sep = "+" + "-" * 41 + "+" + "-" * 24 + "+" + "-" * 22 + "+"
    out = []
    now = time.time()
    for gpu in select_gpus(profile, gpu_ids):
        st = gpu_state(state, gpu)
        reading = readings(profile, state, gpu, now)
        name = gpu["name"] if len(gpu["name"]) <= 29 else gpu["name"][:26] + "..."
        out.append(
            "|%4d  %-30s%3s  |   %s %3s |%21s |"
            % (gpu["index"], name, "On" if st["persistence_mode"] else "Off", gpu["bus_id"],
               "Off", "N/A")
        )
        out.append(
            "| %3s   %3s    %-2s%16s / %5s |%11s / %9s |%8s%13s |"
            % ("%d%%" % reading["fan_percent"], "%dC" % reading["temperature_c"], reading["pstate"],
               "%dW" % round(reading["power_draw_w"]), "%dW" % round(st["power_limit_w"]),
               "%dMiB" % reading["memory_used_mib"], "%dMiB" % int(gpu["vram_mib"]),
               "%d%%" % reading["utilization_gpu"], "Default")
        )
        out.append("|" + " " * 41 + "|" + " " * 24 + "|%21s |" % "N/A")
        out.append(sep)
    return out


def _process_rows(profile, state, gpu_ids):
    wanted = {g["bus_id"] for g in select_gpus(profile, gpu_ids)}
    rows = []
    for gpu, app in listed_apps(profile, state):
        if gpu["bus_id"] not in wanted:
            continue
        left = "%5d   N/A  N/A %9d      C   %s" % (gpu["index"], int(app["pid"]), app["name"][:38])
        memory = "%dMiB" % int(app["used_mib"])
        rows.append("|" + left + " " * max(1, 88 - len(left) - len(memory)) + memory + " |")
    return rows or ["|  No running processes found" + " " * 61 + "|"]


def cmd_summary(profile, state, gpu_ids):
    """The plain `nvidia-smi` table (R545+ layout)."""
    mid = "|" + "-" * 41 + "+" + "-" * 24 + "+" + "-" * 22 + "+"
    eq = "|" + "=" * 41 + "+" + "=" * 24 + "+" + "=" * 22 + "|"
    out = [
        time.ctime() + "       ",
        RULE,
        "| NVIDIA-SMI %-23sDriver Version: %-15sCUDA Version: %-9s|"
        % (profile["driver_version"], profile["driver_version"], profile["cuda_version"]),
        mid,
        "| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |",
        "| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |",
        "|                                         |                        |               MIG M. |",
        eq,
    ]
    out += _gpu_rows(profile, state, gpu_ids)
    out += [
        " " * 89,
        RULE,
        "| Processes:" + " " * 78 + "|",
        "|  GPU   GI   CI        PID   Type   Process name                              GPU Memory |",
        "|        ID   ID                                                               Usage      |",
        "|" + "=" * 89 + "|",
    ]
    out += _process_rows(profile, state, gpu_ids)
    out.append(RULE)
    return "\n".join(out) + "\n"
