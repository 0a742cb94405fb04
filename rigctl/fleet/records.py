"""What rigctl remembers about rigs on the controller, for `rigctl fleet status`.

Under ``$RIGCTL_HOME`` (rigctl.paths.state_home()):

- ``verify/<rig key>.json``: the last `rigctl verify` result of one rig, written when
  `rigctl verify` finishes (rigctl.verify.run.run_suites(record=True)):
  ``{"schema": 1, "host", "address", "time" (UTC, ISO 8601), "result" (ok | failed |
  unreachable | refused), "gpu_view", "simulation_profile", "counts" {outcome: n},
  "strict"}``.
- ``rollouts/<id>/rollout.json``: one record per `rigctl fleet update` rollout. ``<id>``
  starts with its UTC start time (``20261202T001500Z-<hex>``), so ids sort by time.
  ``{"schema": 1, "id", "started", "finished" (null while running), "state" (running |
  done | failed | stopped), "stop_reason", "inventory", "options", "plan": {"batches"},
  "budget", "runs": [{"step", "batch", "artifacts"}], "rigs": {host: {"address", "batch",
  "result" (done | failed | unreachable | skipped | not started | running), "state" (what
  the rig was left as), "message", "started", "finished", "seconds", "driver_before",
  "driver_after", "rebooted", "verify", "attempts"}}}``, rewritten atomically at every
  change (rigctl.fleet.update.Record); the runner artifacts of each step are under
  ``rollouts/<id>/runs/``. This module reads it for `fleet status`.

A rig is known by its inventory name and its SSH address (``user@host:port``, from the
inventory): a record of another rig that had the same name (another lab, a re-used name)
is not shown for it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from rigctl import paths

SCHEMA = 1


def verify_dir() -> Path:
    return paths.verify_records_dir()


def rollouts_dir() -> Path:
    return paths.rollouts_dir()


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def address(name: str, host_vars: dict[str, Any]) -> str:
    """``user@host:port`` as the inventory says it (Ansible's defaults: the inventory name,
    port 22, no user)."""
    host = str(host_vars.get("ansible_host") or name)
    port = str(host_vars.get("ansible_port") or 22)
    user = host_vars.get("ansible_user")
    return f"{user}@{host}:{port}" if user else f"{host}:{port}"


def rig_key(name: str, addr: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:80]
    return f"{safe}-{hashlib.sha256(addr.encode()).hexdigest()[:12]}"


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def addresses(inventory: str | list[str], hosts) -> dict[str, str]:
    """Each host's address from the inventory (rigctl's loader); {} when it cannot be read
    (the records are then not written: never a reason for verify itself to fail)."""
    from rigctl import inventory as inv_mod

    try:
        inv = inv_mod.load(inventory if isinstance(inventory, list) else [inventory])
        return {h: address(h, inv.host_vars(h)) for h in hosts if inv.has_host(h)}
    except Exception:  # noqa: BLE001 - a record is a convenience, verify's result stands
        return {}


def record_verify(result, inventory: str) -> list[Path]:
    """Write the last verify result of every rig in ``result`` (a VerifyResult)."""
    data = result.as_dict()
    addrs = addresses(inventory, list(data["hosts"]))
    written = []
    stamp = now()
    for host, h in data["hosts"].items():
        addr = addrs.get(host)
        if addr is None:
            continue
        record = {
            "schema": SCHEMA,
            "host": host,
            "address": addr,
            "time": stamp,
            "result": h["result"],
            "gpu_view": h["gpu_view"],
            "simulation_profile": h.get("simulation_profile"),
            "counts": {k: v for k, v in h.items() if isinstance(v, int) and not isinstance(v, bool)},
            "strict": data.get("strict", False),
        }
        path = verify_dir() / f"{rig_key(host, addr)}.json"
        try:
            _write_json(path, record)
            written.append(path)
        except OSError:
            continue
    return written


def last_verify(host: str, addr: str) -> dict | None:
    record = _read_json(verify_dir() / f"{rig_key(host, addr)}.json")
    if not record or record.get("host") != host or record.get("address") != addr:
        return None
    return record


def last_rollout(host: str, addr: str, root: Path | None = None) -> dict | None:
    """The newest rollout whose record names this rig (same name and address):
    ``{"id", "state", "started", "finished", "rig": <its entry>}``, or None."""
    root = root or rollouts_dir()
    try:
        ids = sorted((p.name for p in root.iterdir() if p.is_dir()), reverse=True)
    except OSError:
        return None
    for rid in ids:
        record = _read_json(root / rid / "rollout.json")
        if not record:
            continue
        entry = (record.get("rigs") or {}).get(host)
        if isinstance(entry, dict) and entry.get("address") == addr:
            return {"id": record.get("id") or rid, "state": record.get("state"),
                    "started": record.get("started"), "finished": record.get("finished"),
                    "rig": entry}
    return None


def age(stamp: str | None, now_: datetime.datetime | None = None) -> str:
    """``3m ago``, ``2h ago``, ``5d ago`` for an ISO 8601 UTC time; ``?`` when unreadable."""
    if not stamp:
        return "?"
    try:
        then = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.UTC)
    except ValueError:
        return "?"
    secs = int(((now_ or datetime.datetime.now(datetime.UTC)) - then).total_seconds())
    if secs < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit} ago"
    return f"{secs}s ago"
