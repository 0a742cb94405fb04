#!/usr/bin/env python3
"""Benchmark: the fleet commands on 1, 8 and 32 lab rigs, against the Ansible floor.

Per fleet size, measured in the same run on the same rigs and inventory:
`ansible -m ping` (the floor: touching every rig once, same ansible.cfg and SSH settings
as rigctl), `rigctl fleet status --json`, `rigctl verify --json`, and a no-op
`rigctl fleet update --canary 0 --batch 100%` (one batch: host keys, prepare, converge,
finish in one job, verify; the rigs were converged by one untimed update first). Printed: seconds
(median of --repeat runs), each command's ratio to the same command on one rig, and its
ratio to the ping floor on the same rigs. The controller's load average before and after
is printed too (the figures mean little on a busy machine), and each update job's seconds
(from the rollout record).

Usage: .venv/bin/python bench/fleet.py [--rigs 1,8,32] [--repeat 3] [--keep-lab]
Brings up its own lab ('fleet-bench', profile 4x3090) under a temporary RIGCTL_HOME and
removes it at the end unless --keep-lab. More than ~20 rigs need
`sysctl fs.inotify.max_user_instances=1024` (`rigctl lab up` says so). Traffic goes only to
the lab rigs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from _common import BIN, sh, tool_env  # puts this checkout on sys.path

LAB = "fleet-bench"


def timed(fn, repeat: int) -> float:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return statistics.median(out)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rigs", default="1,8,32")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep-lab", action="store_true")
    ap.add_argument("--home", default=None, help="RIGCTL_HOME to use (default: a temporary one)")
    args = ap.parse_args()
    sizes = sorted({int(x) for x in args.rigs.split(",")})
    if sizes[0] != 1:
        sizes.insert(0, 1)  # the ratios are to one rig
    home = args.home or tempfile.mkdtemp(prefix="rigctl-bench-fleet-")
    os.environ["RIGCTL_HOME"] = home
    rigctl = str(BIN / "rigctl")
    load_before = os.getloadavg()
    sh(rigctl, "lab", "up", "--name", LAB, "--rigs", str(max(sizes)), "--profile", "4x3090")
    inventory = sh(rigctl, "lab", "inventory", "--name", LAB).strip()
    env = tool_env()
    try:
        results = {}
        for n in sizes:
            limit = ",".join(f"lab-rig-{i}" for i in range(1, n + 1))

            forks = str(max(n, 5))

            def ping(limit=limit, forks=forks):
                sh(str(BIN / "ansible"), "-i", inventory, limit, "-m", "ping", "-o",
                   "-f", forks, env=env)

            def status(limit=limit):
                sh(rigctl, "fleet", "status", "-i", inventory, "--limit", limit, "--json")

            def verify(limit=limit):
                proc = subprocess.run([rigctl, "verify", "-i", inventory, "--limit", limit, "--json"],
                                      capture_output=True, text=True)
                if proc.returncode not in (0, 1) or not proc.stdout.startswith("{"):
                    raise SystemExit(f"verify did not run:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")

            steps: dict[str, list[float]] = {}

            def update(limit=limit, steps=steps):
                proc = subprocess.run([rigctl, "fleet", "update", "-i", inventory, "--limit", limit,
                                       "--canary", "0", "--batch", "100%", "--json"],
                                      capture_output=True, text=True)
                if proc.returncode != 0:
                    raise SystemExit(f"fleet update failed:\n{proc.stdout[-2000:]}\n"
                                     f"{proc.stderr[-2000:]}")
                for run in json.loads(proc.stdout).get("runs") or []:  # each job's seconds
                    if run.get("seconds") is not None:
                        steps.setdefault(run["step"], []).append(run["seconds"])

            ping()  # warm the SSH master connections, like a fleet that was just touched
            update()  # converge once: the timed runs are no-op updates
            steps.clear()
            results[n] = {
                "ping": timed(ping, args.repeat),
                "status": timed(status, args.repeat),
                "verify": timed(verify, args.repeat),
                "update": timed(update, args.repeat),
            }
            results[n]["steps"] = {k: statistics.median(v) for k, v in steps.items()}
            print(f"measured {n} rig(s): " + ", ".join(
                f"{k} {v:.2f} s" for k, v in results[n].items() if isinstance(v, float)),
                file=sys.stderr)
        one = results[1]

        def cell(n, key):
            v = results[n][key]
            return f"{v:.2f} s ({v / one[key]:.1f}x 1 rig, {v / results[n]['ping']:.1f}x ping)"

        cols = ["ansible -m ping", "fleet status", "verify", "fleet update (no-op)"]
        keys = ["ping", "status", "verify", "update"]
        rows = [[str(n)] + [f"{results[n]['ping']:.2f} s ({results[n]['ping'] / one['ping']:.1f}x 1 rig)"]
                + [cell(n, k) for k in keys[1:]] for n in sizes]
        head = ["rigs"] + cols
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
        print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
        for n in sizes:  # where a no-op update's time goes: each job of its one batch
            print(f"fleet update, {n} rig(s), per job (median): " + ", ".join(
                f"{k} {v:.2f} s" for k, v in results[n]["steps"].items()))
        load_after = os.getloadavg()
        print(f"(median of {args.repeat} runs each; {os.cpu_count()} CPU cores; load average "
              f"{load_before[0]:.2f} before, {load_after[0]:.2f} after)")
    finally:
        if not args.keep_lab:
            sh(rigctl, "lab", "down", "--name", LAB)
    return 0


if __name__ == "__main__":
    sys.exit(main())
