"""The rig's pending-reboot mark: ``/var/lib/rigctl/reboot-required``.

A role that changes something only a reboot applies (the GRUB drop-in with the IOMMU
kernel options) records a reason here, under a key so that a re-run does not repeat it.
The mark records the boot it was written in (``boot``: the kernel's boot id and the start
time of PID 1, so that a container restart, which keeps the lab host's boot id, counts as
a reboot too). It holds until the next boot: readers (``rig_facts``, ``rigctl verify``)
report a mark from an earlier boot as cleared, and the next module call that writes the
mark removes it. There is no other way to clear it than a reboot (or deleting the file).

File format (JSON, one object)::

    {"schema": 1, "boot": "<boot_id>/<pid 1 start ticks>", "since": "2026-...Z",
     "reasons": {"iommu": "kernel command line: ..."}}

A plain-text mark written by an older rigctl (one reason per line, no boot) counts as
pending until PID 1 started after the file was last written.

Stdlib only, Python 3.9 syntax: shipped to managed hosts.
"""

from __future__ import annotations

import json
import os
import tempfile
import time

MARK = "/var/lib/rigctl/reboot-required"
SCHEMA = 1

# The `boot_time_command` for ansible.builtin.reboot that sees a container restart too
# (its default reads only the boot id, which a lab rig shares with its host).
BOOT_TIME_COMMAND = "cat /proc/sys/kernel/random/boot_id; cut -d' ' -f22 /proc/1/stat"


def _path(root, path):
    return os.path.join(root, path.lstrip("/"))


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def _pid1_start_ticks(root="/"):
    """Field 22 of /proc/1/stat (clock ticks after the kernel booted), or None."""
    text = _read(_path(root, "/proc/1/stat"))
    if not text or ")" not in text:
        return None
    fields = text.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): starttime, field 22, is fields[19]
    return fields[19] if len(fields) > 19 else None


def boot_token(root="/"):
    """What identifies this boot: ``<boot id>/<PID 1 start ticks>``."""
    boot_id = (_read(_path(root, "/proc/sys/kernel/random/boot_id")) or "").strip() or "?"
    return "%s/%s" % (boot_id, _pid1_start_ticks(root) or "?")


def _pid1_started_epoch(root="/"):
    ticks = _pid1_start_ticks(root)
    btime = None
    for line in (_read(_path(root, "/proc/stat")) or "").splitlines():
        if line.startswith("btime "):
            btime = line.split()[1]
    try:
        return int(btime) + int(ticks) / float(os.sysconf("SC_CLK_TCK"))
    except (TypeError, ValueError, OSError):
        return None


def load(root="/", path=MARK):
    """The mark as stored: ``None`` when there is none, else a dict with ``reasons`` (key ->
    text), ``boot`` (None for an old plain-text mark), ``since`` and ``mtime``."""
    full = _path(root, path)
    text = _read(full)
    if text is None:
        return None
    try:
        mtime = os.stat(full).st_mtime
    except OSError:
        mtime = None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("reasons"), dict):
        return {
            "boot": data.get("boot"),
            "since": data.get("since"),
            "reasons": {str(k): str(v) for k, v in data["reasons"].items()},
            "mtime": mtime,
        }
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return {
        "boot": None,
        "since": None,
        "reasons": {"legacy-%d" % i: line for i, line in enumerate(lines or ["(no reason recorded)"])},
        "mtime": mtime,
    }


def is_current(mark, root="/"):
    """Whether ``mark`` was written in this boot (so the reboot it asks for is pending)."""
    if mark is None:
        return False
    if mark.get("boot"):
        return mark["boot"] == boot_token(root)
    started = _pid1_started_epoch(root)
    if started is None or mark.get("mtime") is None:
        return True  # cannot tell: keep asking for the reboot
    return mark["mtime"] >= started


def describe(mark, current, path=MARK):
    """What rig_facts reports as ``reboot`` for ``mark``: ``required`` (bool), ``reasons``
    (texts of a pending mark), ``since``, ``mark`` (the path), and ``cleared_by_reboot``
    (True when a mark from an earlier boot is still on disk: no longer pending)."""
    pending = bool(mark is not None and current)
    return {
        "required": pending,
        "reasons": [mark["reasons"][k] for k in sorted(mark["reasons"])] if pending else [],
        "since": mark.get("since") if pending else None,
        "mark": path,
        "cleared_by_reboot": bool(mark is not None and not current),
    }


def status(root="/", path=MARK):
    """The rig's pending reboot, read only (see describe)."""
    mark = load(root, path)
    return describe(mark, is_current(mark, root), path)


def plan(mark, current, token, state, key=None, reason=None, now=None):
    """The mark to store after ``state`` (``present``: add or update ``key``; ``absent``:
    remove the whole mark; ``current``: only drop a mark of an earlier boot), given the
    stored ``mark`` (from load), whether it is of this boot (``current``, from is_current)
    and this boot's ``token``. Returns ``(new, changed)``; ``new`` None means no file. A
    mark of an earlier boot is dropped first in every state.
    """
    live = mark if (mark is not None and current) else None
    if state == "absent":
        return None, mark is not None
    if state == "current":
        return live, mark is not None and live is None
    if state != "present":
        raise ValueError("unknown state %r" % state)
    if not key or not reason:
        raise ValueError("state present needs a key and a reason")
    if live is not None and live.get("boot") == token and live["reasons"].get(key) == reason:
        return live, False
    reasons = dict(live["reasons"]) if live is not None else {}
    reasons[key] = reason
    since = (live or {}).get("since") or time.strftime("%Y-%m-%dT%H:%M:%SZ", now or time.gmtime())
    return {"boot": token, "since": since, "reasons": reasons}, True


def write(new, root="/", path=MARK):
    """Store ``new`` (from plan) atomically, mode 0644; None removes the file."""
    full = _path(root, path)
    if new is None:
        try:
            os.unlink(full)
        except FileNotFoundError:
            pass
        return
    directory = os.path.dirname(full)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    body = {"schema": SCHEMA, "boot": new["boot"], "since": new["since"], "reasons": new["reasons"]}
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".reboot-required.")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(body, handle, indent=1, sort_keys=True)
            handle.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, full)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def update(state, key=None, reason=None, root="/", path=MARK, check_mode=False):
    """Apply ``state`` to the mark on disk (see plan); returns ``(changed, status)``, the
    status being what the mark is afterwards (what it would be, in check mode)."""
    mark = load(root, path)
    new, changed = plan(mark, is_current(mark, root), boot_token(root), state, key, reason)
    if changed and not check_mode:
        write(new, root, path)
    return changed, describe(new, True, path)
