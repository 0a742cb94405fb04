"""Runtime state under the state directory (a tmpfs on lab rigs: gone at a reboot, like the
driver's): power limits, persistence mode, locked clocks, compute mode, and what tests or
the simulated probe put there at run time: faults, compute processes, the load flag."""

import fcntl
import json
import os
import tempfile
import time

from .common import ENV_ASSUME_ROOT, ENV_STATE_DIR, LOCK_FILE, STATE_DIR, STATE_FILE

# nvidia-smi -c: number -> the name it prints in --query-gpu=compute_mode (1,
# EXCLUSIVE_THREAD, was removed from the drivers long ago and is refused here).
COMPUTE_MODE_NAMES = {0: "Default", 2: "Prohibited", 3: "Exclusive_Process"}


def state_dir():
    return os.environ.get(ENV_STATE_DIR) or STATE_DIR


def boot_marker():
    """Start time of PID 1 (changes when the container restarts), or None."""
    try:
        with open("/proc/1/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return fields[19]
    except (OSError, IndexError):
        return None


def load_state():
    path = os.path.join(state_dir(), STATE_FILE)
    try:
        with open(path) as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        return {}
    if not isinstance(state, dict):
        return {}
    marker = boot_marker()
    if marker is not None and state.get("boot_marker") not in (None, marker):
        return {}
    return state


class StateLock:
    """Exclusive lock around a read-modify-write of the state file."""

    def __enter__(self):
        directory = state_dir()
        os.makedirs(directory, mode=0o755, exist_ok=True)
        self.handle = open(os.path.join(directory, LOCK_FILE), "a+")
        fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
        self.handle.close()
        return False


def save_state(state):
    directory = state_dir()
    state = dict(state)
    state["version"] = 1
    state["boot_marker"] = boot_marker()
    state["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".state.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(state, handle, indent=1, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, os.path.join(directory, STATE_FILE))
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def gpu_state(state, gpu):
    entry = (state.get("gpus") or {}).get(gpu["bus_id"]) or {}
    limit = entry.get("power_limit_w")
    if not isinstance(limit, (int, float)):
        limit = float(gpu["power_default_w"])
    clocks = entry.get("locked_clocks_mhz")
    mode = entry.get("compute_mode")
    return {
        "power_limit_w": float(limit),
        "persistence_mode": bool(entry.get("persistence_mode", False)),
        "locked_clocks_mhz": list(clocks) if isinstance(clocks, list) and len(clocks) == 2 else None,
        "compute_mode": mode if mode in COMPUTE_MODE_NAMES.values() else "Default",
    }


def set_gpu_state(state, gpu, **values):
    gpus = state.setdefault("gpus", {})
    entry = gpus.setdefault(gpu["bus_id"], {})
    entry.update(values)


def is_root():
    forced = os.environ.get(ENV_ASSUME_ROOT)
    if forced in ("0", "1"):
        return forced == "1"
    return os.geteuid() == 0


def update_state(change):
    """Read, change (``change(state)``; a true return value means "changed") and write the
    state under the lock. Returns what ``change`` returned."""
    with StateLock():
        state = load_state()
        result = change(state)
        if result:
            save_state(state)
    return result


# --- the load flag: up while the simulated probe runs --------------------------------------
#
# Like the real probe, the simulated one runs as any user, so the flag is not in the
# root-owned state file: each user writes its own <state dir>/load/<uid>.json in a
# world-writable sticky directory (made at boot by the lab's tmpfiles.d entry, or by the
# first flag written by a user who may). The GPUs are loaded while any of those files says so.

LOAD_DIR = "load"


def load_dir():
    return os.path.join(state_dir(), LOAD_DIR)


def _ensure_load_dir():
    directory = load_dir()
    if not os.path.isdir(directory):
        os.makedirs(directory, exist_ok=True)
        os.chmod(directory, 0o1777)
    return directory


def load_flags():
    """Every load flag now on disk (dicts with ``started``, ``until``, ``owner``)."""
    flags = []
    try:
        names = sorted(os.listdir(load_dir()))
    except OSError:
        return flags
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(load_dir(), name)) as handle:
                flag = json.load(handle)
        except (OSError, ValueError):
            continue
        if isinstance(flag, dict):
            flags.append(flag)
    return flags


def load_window(state=None, now=None):
    """``(started, seconds under load so far)`` while a load flag is up, else None (the
    earliest start among the flags up now). Each flag carries its own end time, so a probe
    that was killed does not leave the GPUs busy. ``state`` is not read (kept for callers
    that pass it)."""
    now = time.time() if now is None else now
    starts = []
    for flag in load_flags():
        started, until = flag.get("started"), flag.get("until")
        if isinstance(started, (int, float)) and isinstance(until, (int, float)) and started <= now <= until:
            starts.append(started)
    if not starts:
        return None
    return min(starts), now - min(starts)


def set_load(seconds, owner):
    """Raise this user's load flag for ``seconds`` (``owner`` says who: probe, manual)."""
    directory = _ensure_load_dir()
    now = time.time()
    flag = {"started": now, "until": now + float(seconds), "owner": owner, "pid": os.getpid()}
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".load.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(flag, handle)
    os.chmod(tmp, 0o644)
    os.replace(tmp, os.path.join(directory, "%d.json" % os.geteuid()))


def clear_load(owner=None):
    """Drop this user's load flag (only ``owner``'s, when given; root: every flag)."""
    directory = load_dir()
    mine = os.path.join(directory, "%d.json" % os.geteuid())
    paths = [mine]
    if owner is None and os.geteuid() == 0:
        paths = [os.path.join(directory, n) for n in _listdir(directory) if n.endswith(".json")]
    for path in paths:
        if owner is not None:
            try:
                with open(path) as handle:
                    if json.load(handle).get("owner") != owner:
                        continue
            except (OSError, ValueError, AttributeError):
                continue
        try:
            os.unlink(path)
        except OSError:
            pass


def _listdir(directory):
    try:
        return sorted(os.listdir(directory))
    except OSError:
        return []
