"""What the last run saw on a rig, from the facts rigctl keeps on this controller.

Every rigctl run goes through ansible-runner, which keeps the run's fact cache with the
run's artifacts: ``$RIGCTL_HOME/runs/<run>/artifacts/<ident>/fact_cache/<host>`` (a JSON
file per inventory host; ansible-core may prefix the name with its cache format, ``s1_``).
The ``rig_facts`` result (the fact ``rig_host``, formerly ``rig``) is in there. The
inventory check reads the newest one of a host (never a host itself) to judge what depends
on the rig's state, like the kernels a P2P branch must build for, and says when it was
gathered. Runs are keyed by inventory name within one ``$RIGCTL_HOME``.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

FACT_NAMES = ("rig_host", "rig")
_PREFIX_RE = r"(?:s\d+_)?"


def _candidates(host: str) -> list[Path]:
    from rigctl import paths

    runs = paths.runs_dir()
    if not runs.is_dir():
        return []
    name = re.compile(_PREFIX_RE + re.escape(host) + "$")
    return [p for p in runs.glob("*/artifacts/*/fact_cache/*" + host)
            if name.fullmatch(p.name) and p.is_file()]


def _read(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        if isinstance(data, dict) and isinstance(data.get("__payload__"), str):
            data = json.loads(data["__payload__"])
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return next((data[n] for n in FACT_NAMES if isinstance(data.get(n), dict)), None)


def rig_facts(host: str) -> dict | None:
    """``{"facts": <the rig_facts fact>, "time": "YYYY-MM-DD HH:MM UTC", "path"}`` of the
    newest kept run that gathered HOST's facts, or None."""
    found = []
    for path in _candidates(host):
        try:
            found.append((path.stat().st_mtime, path))
        except OSError:
            continue
    for mtime, path in sorted(found, reverse=True):
        facts = _read(path)
        if facts is not None:
            return {"facts": facts, "path": str(path),
                    "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(mtime))}
    return None
