"""Input checks of `lab up` before anything is touched: inotify room, profiles, mirror dir."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from rigctl.errors import InputError
from rigctl.lab import profiles
from rigctl.lab.model import (
    INOTIFY_PER_RIG,
    Lab,
    check_rigs,
    inotify_error,
    inotify_shortfall,
)


def _inotify_limit() -> int | None:
    try:
        return int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    except (OSError, ValueError):
        return None


def _inotify_used_by_root() -> int | None:
    """inotify instances held by root's processes (containers run as root), or None
    when this user cannot see them."""
    if os.geteuid() != 0:
        return None
    used = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            status = (proc / "status").read_text()
            uid = next(ln.split()[1] for ln in status.splitlines() if ln.startswith("Uid:"))
            if uid != "0":
                continue
            for fd in (proc / "fd").iterdir():
                try:
                    if os.readlink(fd) == "anon_inode:inotify":
                        used += 1
                except OSError:
                    continue
        except (OSError, StopIteration):
            continue
    return used


def check_inotify(new_rigs: int, running_rigs: int) -> None:
    """InputError (before anything is started) when the rigs would run out of inotify
    instances: systemd then hangs at boot or restarts in a loop."""
    limit = _inotify_limit()
    if limit is None or new_rigs <= 0:
        return
    used = _inotify_used_by_root()
    if used is None:
        used = INOTIFY_PER_RIG * running_rigs + 16
    suggest = inotify_shortfall(limit, used, new_rigs)
    if suggest is not None:
        raise inotify_error(limit, used, new_rigs, suggest)


def _resolve_profiles(
    n_existing: dict[int, str],
    rigs: int | None,
    profile: str | None,
    profile_list: Sequence[str] | None,
) -> tuple[int, dict[int, str]]:
    """(number of rigs, profile per rig index)."""
    if profile and profile_list:
        raise InputError(
            "give either --profile or --profiles, not both",
            fix="`--profiles P1,P2,...` sets one profile per rig",
        )
    if profile_list:
        profile_list = [p.strip() for p in profile_list]
        if rigs is None:
            rigs = len(profile_list)
        if len(profile_list) != rigs:
            raise InputError(
                f"--profiles gives {len(profile_list)} profile(s) for {rigs} rig(s)",
                fix="give exactly one profile per rig (or leave out --rigs)",
            )
    if rigs is None:
        rigs = max(n_existing) if n_existing else 1
    check_rigs(rigs)
    wanted = {}
    for i in range(1, rigs + 1):
        if profile_list:
            wanted[i] = profile_list[i - 1]
        elif profile:
            wanted[i] = profile
        else:
            wanted[i] = n_existing.get(i) or profiles.DEFAULT_PROFILE
    for p in sorted(set(wanted.values())):
        profiles.check_profile(p)
    return rigs, wanted


def _resolve_mirror_dir(name: str, lab: Lab, containers: dict[int, dict], wanted: str | None) -> str:
    """The mirror directory the lab will have: the one it has (containers keep their bind
    mounts), or `wanted` for a new lab. InputError for a change, or a recorded directory
    that is gone (Docker would serve an empty one made in its place)."""
    exists = bool(lab.rigs or containers)
    have = lab.mirror_dir if lab.rigs else ""
    mounted = {c.get("mirror_dir", "") for c in containers.values()}
    if containers and len(mounted) == 1:
        have = mounted.pop()
    elif len(mounted) > 1:
        raise InputError(
            f"the rigs of lab {name!r} serve different mirror directories: "
            + ", ".join(sorted(d or "(none)" for d in mounted)),
            fix=f"`rigctl lab down --name {name}` first, then `rigctl lab up` again",
        )
    if not exists:
        return wanted or ""
    if wanted is not None and wanted != have:
        what = f"serves {have} to its rigs" if have else "was started without --mirror-dir"
        raise InputError(
            f"lab {name!r} {what}; it cannot serve {wanted} instead",
            fix=f"a rig's directory is mounted when its container is created: `rigctl lab down "
            f"--name {name}` first, then `rigctl lab up --name {name} --mirror-dir {wanted}`"
            + (f" (or leave out --mirror-dir to keep {have})" if have else ""),
        )
    if have and not os.path.isdir(have):
        raise InputError(
            f"lab {name!r} serves the mirror directory {have}, which is gone",
            fix=f"recreate {have}, or `rigctl lab down --name {name}` and start the lab again",
        )
    return have
